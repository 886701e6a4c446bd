"""The OCI runtime config (``config.json``, runc 1.1) of one container.

Pure: manifest → OCI config; the runc adapter is the only caller. Nothing here runs runc
or mounts anything. It reads a few host facts only: the hard rlimits (unless given),
whether the cgroup namespace and cgroup v1 swap accounting exist, and the seccomp profile
(through ``runtime.seccomp``).

Without a ``base`` the config starts from secure defaults close to Podman's and Docker's:
Docker's capability set, ``runc spec``'s masked and read-only paths, no new privileges,
and the default seccomp profile. With a ``base`` (a bundle's own config.json) the config
starts from that, and only what the manifest sets is overridden. A manifest field at its
default value counts as not set there, as it does in ``model.spec_hash``. The root path,
``cgroupsPath`` and ``terminal: false`` are always ours.

Mounts from the manifest are tracked in the ``ANN_MOUNTS`` annotation (the destinations
they own and the mounts they displaced), so ``update_mounts`` can swap them for others
and give a restarted container the same mounts as the live one.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import resource
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler import errors
from reconciler.core.instance import IdMap
from reconciler.manifest import model, quantity
from reconciler.runtime import seccomp

Config = dict[str, Any]
Mount = model.BindMount | model.TmpfsMount

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FALLBACK_ARGV = ("/bin/sh",)
# Docker's and Podman's default set, without the CAP_ prefix as in manifests.
DEFAULT_CAPABILITIES = frozenset(
    """CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
    NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE""".split()
)
DEFAULT_NOFILE = 1024
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
ANN_MOUNTS = "io.reconciler.mounts"

# Host facts, looked up when a config is built (module attributes so tests can point
# them elsewhere).
CGROUP_NS_FILE = "/proc/self/ns/cgroup"
MEMSW_FILE = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
_DEFAULT_MOUNTS: tuple[Config, ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": [*_NOSUID_NOEXEC_NODEV]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": [*_NOSUID_NOEXEC_NODEV]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"]},
)
# The keys of linux.resources the manifest owns; the rest (devices, ...) is left alone.
_OWNED_RESOURCES = {"memory": ("limit", "swap"), "cpu": ("quota", "period"), "pids": ("limit",)}


def build_config(
    container: model.Container,
    *,
    rootfs: str,
    annotations: Mapping[str, str],
    cgroups_path: str,
    base: Config | None = None,
    seccomp_profile: str | None = seccomp.DEFAULT_PATH,
    seccomp_root: str = seccomp.DEFAULT_ROOT,
    host_rlimits: Mapping[str, int] | None = None,
    entrypoint: Sequence[str] = (),
    namespaces: Mapping[str, str | None] | None = None,
    etc_files: Mapping[str, str] | None = None,
    id_map: IdMap | None = None,
) -> Config:
    """The complete config.json of ``container``, as a new dict (``base`` is not changed).

    ``seccomp_profile`` is the Docker-format profile behind ``RuntimeDefault``, None for
    none; a base's own ``linux.seccomp`` is kept unless the manifest names a profile.
    ``seccomp_root`` is where a relative ``Localhost`` profile is found. ``host_rlimits``
    maps names such as ``RLIMIT_NOFILE`` to the host's hard limit (None: ask the host); no
    rlimit is raised above it, since runc cannot start a container that asks for more.
    ``entrypoint`` is an image's Entrypoint, which manifest ``args`` are appended to.
    ``namespaces`` maps a namespace type to a path to join (a pod's sandbox's) or None
    for the host's; the types it does not name stay the container's own. ``etc_files``
    maps /etc/hosts and /etc/resolv.conf to the network's files (read-only binds), unless
    the manifest mounts something there itself. ``id_map``: a user namespace with that
    mapping (a new one, or the pod's that ``namespaces`` names).
    """
    spec = container.spec
    pod_namespaces = dict(namespaces or {})
    config = copy.deepcopy(base) if base is not None else _defaults()
    config.setdefault("ociVersion", OCI_VERSION)
    process: Config = config.setdefault("process", {})
    linux: Config = config.setdefault("linux", {})
    own: list[Config] = linux.setdefault("namespaces", [])

    if spec.host_network:
        own[:] = [ns for ns in own if ns.get("type") != "network"]
    for kind, path in pod_namespaces.items():
        own[:] = [ns for ns in own if ns.get("type") != kind]
        if path is not None:
            own.append({"type": kind, "path": path})
    if id_map is not None:
        if not _has_namespace(own, "user"):
            own.append({"type": "user"})
        # runc wants the mapping when it joins the pod's namespace too: it finds the host
        # uid of root there, for what it chowns (the console, /dev/pts).
        linux["uidMappings"] = [{"containerID": 0, "hostID": id_map.uid, "size": id_map.size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": id_map.gid, "size": id_map.size}]
    if pod_namespaces.get("uts") is not None:
        pass  # the sandbox set the pod's hostname in the namespace it holds
    elif spec.hostname is not None:
        config["hostname"] = spec.hostname
        if not _has_namespace(own, "uts"):  # runc sets a hostname only in its own
            own.append({"type": "uts"})
    elif not config.get("hostname") and _has_namespace(own, "uts"):
        config["hostname"] = container.name

    process["terminal"] = spec.tty
    process["args"] = _argv(spec, current=process.get("args") or (), entrypoint=entrypoint)
    process["env"] = _env(process.get("env") or (), spec.env, hostname=config.get("hostname"))
    process["cwd"] = spec.working_dir or process.get("cwd") or "/"
    if spec.user is not None:
        process["user"] = _user(spec.user)
    process.setdefault("user", {"uid": 0, "gid": 0})
    if spec.supplemental_groups:
        user = process["user"]
        user["additionalGids"] = sorted({*user.get("additionalGids", ()),
                                         *spec.supplemental_groups})
    if base is None or "allow_privilege_escalation" in spec.model_fields_set:
        process["noNewPrivileges"] = not spec.allow_privilege_escalation
    caps = process.get("capabilities")
    if base is None or spec.capabilities.add or spec.capabilities.drop:
        process["capabilities"] = _capabilities(caps, spec.capabilities)
    if "rlimits" in process:
        process["rlimits"] = _rlimits(process["rlimits"], host_rlimits)

    config["root"] = {**config.get("root", {}), "path": rootfs}
    if spec.read_only_root_filesystem:
        config["root"]["readonly"] = True
    config["root"].setdefault("readonly", False)

    mounts, ledger = _apply_mounts(config.get("mounts") or [], spec.mounts)
    config["mounts"] = mounts
    taken = {m.destination for m in spec.mounts}
    mounts += [{"destination": dest, "type": "bind", "source": src,
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
               for dest, src in sorted((etc_files or {}).items()) if dest not in taken]
    linux["resources"] = _resources(linux.get("resources") or {}, spec.resources, keep_unset=True)
    linux["cgroupsPath"] = cgroups_path
    if spec.privileged:
        _privileged(config, process, linux)
        if spec.seccomp_profile is None:  # Docker's and the kubelet's rule: unconfined
            linux.pop("seccomp", None)
    if not spec.privileged or spec.seccomp_profile is not None:
        _apply_seccomp(linux, process, spec.seccomp_profile, default=seccomp_profile,
                       root=seccomp_root, name=container.name)

    merged = {**config.get("annotations", {}), **annotations}
    config["annotations"] = _with_ledger(merged, ledger)
    return config


def update_mounts(config: Config, mounts: Sequence[Mount]) -> Config:
    """``config`` with the manifest's mounts replaced by ``mounts``; displaced ones return."""
    new = copy.deepcopy(config)
    annotations: dict[str, str] = new.get("annotations") or {}
    ledger = json.loads(annotations.get(ANN_MOUNTS, '{"owned": [], "replaced": []}'))
    current = _unapply_mounts(new.get("mounts") or [], ledger)
    new["mounts"], ledger = _apply_mounts(current, mounts)
    new["annotations"] = _with_ledger(annotations, ledger)
    return new


def update_resources(config: Config, resources: model.Resources) -> Config:
    """``config`` with memory, CPU and pids limits as ``resources`` says (None: no limit)."""
    new = copy.deepcopy(config)
    linux: Config = new.setdefault("linux", {})
    linux["resources"] = _resources(linux.get("resources") or {}, resources, keep_unset=False)
    return new


def _defaults() -> Config:
    namespaces = ["pid", "ipc", "uts", "mount", "network"]
    if os.path.exists(CGROUP_NS_FILE):
        namespaces.append("cgroup")
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": DEFAULT_NOFILE, "soft": DEFAULT_NOFILE}],
            "noNewPrivileges": True,
        },
        "root": {"readonly": False},
        "mounts": copy.deepcopy(list(_DEFAULT_MOUNTS)),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": ns} for ns in namespaces],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _privileged(config: Config, process: Config, linux: Config) -> None:
    """``privileged: true``, as Docker and the kubelet make it: every capability, no
    no_new_privs, nothing masked or read-only in /proc and /sys, every host device node
    (and the cgroup's device rule allowing all)."""
    process["capabilities"] = _capabilities(
        None, model.Capabilities.model_validate({"add": ["ALL"]}))
    process["noNewPrivileges"] = False
    linux["maskedPaths"], linux["readonlyPaths"] = [], []
    linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    linux["devices"] = host_devices()
    for m in config.get("mounts") or []:
        if m.get("destination") in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m.get("options", []) if o != "ro"]


# capability numbers, as the kernel counts them (linux/capability.h)
_CAP_NUMBERS = """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE""".split()


@functools.cache
def own_capabilities() -> frozenset[str]:
    """The capabilities in this process's bounding set (a host's root may lack some, as
    in a container or under a systemd CapabilityBoundingSet=): what ``ALL`` grants."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
        bits = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return frozenset(model.CAPABILITIES)
    return frozenset(n for i, n in enumerate(_CAP_NUMBERS) if bits >> i & 1) & frozenset(
        model.CAPABILITIES)


_SKIP_DEVICES = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/console")


def host_devices(root: str = "/dev") -> list[Config]:
    """Every character and block device node under ``root`` as ``linux.devices`` entries
    (what a privileged container gets), links and runc's own mounts left out."""
    out: list[Config] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in _SKIP_DEVICES]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path in _SKIP_DEVICES:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None
            if kind is None:
                continue
            out.append({"path": path, "type": kind, "major": os.major(st.st_rdev),
                        "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                        "uid": st.st_uid, "gid": st.st_gid})
    return sorted(out, key=lambda d: str(d["path"]))


def _has_namespace(namespaces: Iterable[Config], kind: str) -> bool:
    return any(ns.get("type") == kind for ns in namespaces)


def _argv(spec: model.Spec, *, current: Sequence[str], entrypoint: Sequence[str]) -> list[str]:
    """Kubernetes' rule: ``command`` replaces the entrypoint, ``args`` the arguments."""
    if spec.command is not None:
        argv = [*spec.command, *(spec.args or ())]
    elif spec.args is not None:
        argv = [*entrypoint, *spec.args]
    else:
        argv = list(current) or list(entrypoint)
    return argv or list(FALLBACK_ARGV)


def _env(
    current: Iterable[str], manifest: Sequence[model.EnvVar], *, hostname: str | None
) -> list[str]:
    env = dict(item.partition("=")[::2] for item in current)
    env.setdefault("PATH", DEFAULT_PATH)
    if hostname:
        env.setdefault("HOSTNAME", hostname)
    env.update((var.name, var.value) for var in manifest)
    return [f"{name}={value}" for name, value in env.items()]


def _user(user: model.User) -> Config:
    out: Config = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        out["additionalGids"] = list(user.additional_gids)
    return out


def _capabilities(current: Config | None, change: model.Capabilities) -> Config:
    """Docker's rules: add ALL → every one but the dropped; drop ALL → only the added."""
    if current and "bounding" in current:
        start = {name.removeprefix("CAP_") for name in current["bounding"]}
    else:
        start = set(DEFAULT_CAPABILITIES)
    add, drop = set(change.add), set(change.drop)
    if "ALL" in add:  # every one this host's root has: runc cannot grant more
        names = set(own_capabilities()) - drop
    elif "ALL" in drop:
        names = add
    else:
        names = (start - drop) | add
    granted = sorted(f"CAP_{name}" for name in names)
    out: Config = {kind: list(granted) for kind in ("bounding", "effective", "permitted")}
    for kind in ("inheritable", "ambient"):  # a base's own: never widened
        if current and kind in current:
            out[kind] = [name for name in current[kind] if name in granted]
    return out


def _host_hard_limit(kind: str, host: Mapping[str, int] | None) -> int | None:
    if host is not None:
        hard = host.get(kind)
    else:
        number = getattr(resource, kind, None)
        hard = None if number is None else resource.getrlimit(number)[1]
    return None if hard is None or hard < 0 or hard == resource.RLIM_INFINITY else hard


def _rlimits(current: Iterable[Config], host: Mapping[str, int] | None) -> list[Config]:
    out: list[Config] = []
    for limit in current:
        cap = _host_hard_limit(limit["type"], host)
        hard = limit["hard"] if cap is None else min(limit["hard"], cap)
        out.append({**limit, "hard": hard, "soft": min(limit["soft"], hard)})
    return out


def _oci_mount(mount: Mount) -> Config:
    if isinstance(mount, model.BindMount):
        options = ["rbind", "rprivate", "ro" if mount.read_only else "rw"]
        return {"destination": mount.destination, "type": "bind", "source": mount.source,
                "options": options}
    options = ["nosuid", "nodev", "mode=1777"]
    if mount.size_limit is not None:
        options.append(f"size={quantity.to_bytes(mount.size_limit)}")
    if mount.read_only:
        options.append("ro")
    return {"destination": mount.destination, "type": "tmpfs", "source": "tmpfs",
            "options": options}


def _destination(mount: Config) -> str:
    return os.path.normpath(str(mount["destination"]))


def _apply_mounts(
    current: Sequence[Config], mounts: Sequence[Mount]
) -> tuple[list[Config], Config]:
    """Replace mounts at the same destination in place, append the rest, parents first."""
    out = [copy.deepcopy(m) for m in current]
    index = {_destination(m): i for i, m in enumerate(out)}
    wanted = sorted(mounts, key=lambda m: m.destination.count("/"))
    appended: list[Config] = []
    replaced: list[Config] = []
    for mount in wanted:
        i = index.get(mount.destination)
        if i is None:
            appended.append(_oci_mount(mount))
        else:
            replaced.append(out[i])
            out[i] = _oci_mount(mount)
    ledger = {"owned": [m.destination for m in wanted], "replaced": replaced}
    return out + appended, ledger


def _unapply_mounts(current: Sequence[Config], ledger: Config) -> list[Config]:
    owned = set(ledger["owned"])
    displaced = {_destination(m): m for m in ledger["replaced"]}
    out: list[Config] = []
    for mount in current:
        destination = _destination(mount)
        if destination not in owned:
            out.append(mount)
        elif destination in displaced:
            out.append(displaced.pop(destination))
    return out


def _with_ledger(annotations: Mapping[str, str], ledger: Config) -> dict[str, str]:
    out = {k: v for k, v in annotations.items() if k != ANN_MOUNTS}
    if ledger["owned"]:
        out[ANN_MOUNTS] = json.dumps(ledger, sort_keys=True, separators=(",", ":"))
    return dict(sorted(out.items()))


def _limits(resources: model.Resources) -> dict[str, Config | None]:
    memory: Config | None = None
    if (limit := resources.memory_bytes) is not None:
        memory = {"limit": limit}
        if os.path.exists(MEMSW_FILE):  # memory+swap = limit: no swapping past it
            memory["swap"] = limit
    cpu: Config | None = None
    if (millicores := resources.cpu_millicores) is not None:
        quota = max(millicores * CPU_PERIOD_US // 1000, MIN_CPU_QUOTA_US)
        cpu = {"quota": quota, "period": CPU_PERIOD_US}
    pids = None if resources.pids is None else {"limit": resources.pids}
    return {"memory": memory, "cpu": cpu, "pids": pids}


def _resources(current: Config, resources: model.Resources, *, keep_unset: bool) -> Config:
    out = copy.deepcopy(current)
    for section, values in _limits(resources).items():
        if values is None and keep_unset:
            continue
        owned = _OWNED_RESOURCES[section]
        merged = {k: v for k, v in out.get(section, {}).items() if k not in owned}
        merged.update(values or {})
        if merged:
            out[section] = merged
        else:
            out.pop(section, None)
    return out


def _apply_seccomp(linux: Config, process: Config, choice: model.SeccompProfile | None, *,
                   default: str | None, root: str, name: str) -> None:
    """``linux.seccomp`` per the manifest's ``seccompProfile`` (unset: RuntimeDefault)."""
    kind = model.SeccompType.RUNTIME_DEFAULT if choice is None else choice.type
    if choice is None and "seccomp" in linux:
        return  # a bundle's own profile, and the manifest said nothing
    linux.pop("seccomp", None)
    if kind is model.SeccompType.UNCONFINED:
        return
    bounding = process.get("capabilities", {}).get("bounding", ())
    if kind is model.SeccompType.RUNTIME_DEFAULT:
        if default is None:
            return
        profile = seccomp.for_capabilities(bounding, path=default, hardened=True)
        if profile is None:
            raise errors.RuntimeFailure(
                f"seccompProfile: the default profile {default} is missing, and a container "
                f"does not start without one (install golang-github-containers-common, or "
                f"set seccompProfile: Unconfined for this container)", container=name)
        linux["seccomp"] = profile
        return
    assert choice is not None and choice.localhost_profile is not None
    path = os.path.join(root, choice.localhost_profile)
    try:
        profile = seccomp.for_capabilities(bounding, path=path, native_only=False)
    except errors.RuntimeFailure as exc:
        raise exc.for_container(name) from exc
    except OSError as exc:
        raise errors.RuntimeFailure(f"seccompProfile: cannot read {path}: {exc.strerror}",
                                    container=name) from exc
    if profile is None:
        raise errors.RuntimeFailure(
            f"seccompProfile: Localhost profile {path} not found (relative names are "
            f"looked up under the daemon's --seccomp-root, {root})", container=name)
    linux["seccomp"] = profile

