"""Kubernetes v1 Pods as the units the planner knows: one sandbox, one unit per container.

    loader (kube.Pod, ConfigMap, Secret) ─▶ desired.build ─▶ expand (this module)
        ─▶ Desired units (a ``model.Container`` each, with ``PodInfo``) ─▶ planner

Pure: no I/O. A pod ``default/web`` with containers ``server`` and ``client`` becomes
three units, ``default_web`` (the sandbox: catatonit holding the pod's network, IPC and
UTS namespaces, and PID with ``shareProcessNamespace``) and ``default_web_server``,
``default_web_client`` (each joins the sandbox's namespaces). ``_`` is in no DNS label,
so a unit name never collides with a ``kind: Container`` name, and splits back.

Each container is translated into our own ``Container`` model with Kubernetes' defaults
applied: env resolved (``valueFrom``, ``envFrom``, ``$(VAR)`` expansion), volume mounts
as bind mounts from the pod's volume directories, limits as our resources. Its spec hash
covers the pod-level identity (``pod_identity``: namespaces, volumes' identity, runtime
class, the init containers), so a pod-level change recreates every unit and a change to
one app container recreates that one only. Volume *content* (ConfigMap, Secret, downward
API files) is not in any hash: it is a live annotation on the sandbox, changed in place.
"""

from __future__ import annotations

import enum
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic

from reconciler.manifest import model, network, quantity

if TYPE_CHECKING:  # the runtime reads PodInfo without paying for the Kubernetes models
    from reconciler.manifest import kube, loader

INFRA_DIR = "infra"  # under the pods dir: the sandbox's root (catatonit alone)
INFRA_ARGV = ("/catatonit", "-P")  # catatonit's pause mode: hold the namespaces, reap
ANN_VOLUMES = "io.reconciler.volumes"  # the sandbox's: a hash of its volumes' content
ANN_SUBDOMAIN = "io.reconciler.subdomain"  # the sandbox's: the pod's spec.subdomain
DEPENDS_ON = "reconciler.io/depends-on"  # a Pod's dependsOn: "db:Ready,pod/cache"
CONFIG_KINDS = ("ConfigMap", "Secret")
SHM = "..shm"  # the pod's /dev/shm: a tmpfs the sandbox's volumes hold (no user name has "..")
SHM_SIZE = 64 << 20  # bytes, as containerd's and runc spec's


class Role(str, enum.Enum):
    SANDBOX = "sandbox"
    INIT = "init"  # runs to completion, in order, before the next
    SIDECAR = "sidecar"  # an init container with restartPolicy Always: keeps running
    APP = "app"


@dataclass(frozen=True)
class VolumeFile:
    """One projected file (a ConfigMap or Secret key, a downward API field)."""

    path: str  # relative to the volume
    data: bytes = field(repr=False)
    mode: int


@dataclass(frozen=True)
class PodVolume:
    """One pod volume as the host sees it. ``kind``: ``dir`` (emptyDir on disk), ``tmpfs``
    (emptyDir in memory), ``files`` (projected: written atomically, a ``..data`` symlink
    swapped as the kubelet does), ``host`` (a hostPath, checked by ``host_type``)."""

    name: str
    kind: str
    path: str
    size: int | None = None  # tmpfs bytes
    files: tuple[VolumeFile, ...] = ()
    secret: bool = False  # files on a tmpfs of their own, never on disk
    host_type: str = ""
    fs_group: int | None = None


@dataclass(frozen=True)
class PodInfo:
    """What a unit is to its pod: role, order, the sandbox it joins, how it shares."""

    key: str  # namespace/name
    role: Role
    container: str  # the container's name in the pod; "" for the sandbox
    sandbox: str  # the sandbox unit's name
    before: tuple[str, ...] = ()  # units that must be done first (init order)
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    share_pid: bool = False
    host_users: bool = True  # False: the sandbox makes a user namespace the others join
    runtime_class: str | None = None
    dir: str = ""  # the pod's directory (volumes, termination logs)
    volumes: tuple[PodVolume, ...] = ()  # the pod's (made by the sandbox, checked by all)
    run_as_non_root: bool = False
    identity: str = ""  # pod_identity: in every unit's spec hash
    identity_doc: str = ""  # ... and what it is a hash of (ANN_POD_SPEC)
    sysctls: tuple[tuple[str, str], ...] = ()  # the sandbox's: set in the pod's namespaces
    requests: tuple[tuple[str, str], ...] = ()  # resources.requests: shown, not enforced
    index: int = 0  # its place in the pod: init containers first, then app containers
    secret_env: frozenset[str] = frozenset()  # env names whose value is a Secret's: masked
    annotations: tuple[tuple[str, str], ...] = ()  # the pod's (for kubectl's habits)

    def hash_extra(self) -> dict[str, str]:
        """What a unit's spec hash covers beyond its container (``model.spec_hash``)."""
        return {"pod": self.identity}

    @property
    def cgroup(self) -> str:
        """The pod's cgroup, under the daemon's parent: every unit's cgroup is below it."""
        return f"{self.sandbox}.pod"

    def namespaces(self, sandbox_pid: int | None) -> dict[str, str | None]:
        """Namespace type -> a path to join, or None for the host's; types not named are
        the unit's own. The sandbox makes what the pod shares; the others join it."""
        host = {"network": self.host_network, "uts": self.host_network,
                "ipc": self.host_ipc, "pid": self.host_pid}
        out: dict[str, str | None] = {t: None for t, on in host.items() if on}
        if self.role is Role.SANDBOX or sandbox_pid is None:
            return out
        shared = ["network", "uts", "ipc"] + (["pid"] if self.share_pid else [])
        shared += [] if self.host_users else ["user"]
        names = {"network": "net"}
        for kind in shared:
            if kind not in out:
                out[kind] = f"/proc/{sandbox_pid}/ns/{names.get(kind, kind)}"
        return out


class PodError(ValueError):
    """A pod that cannot be expanded (a reference to nothing): a finding at ``path``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def unit_name(pod_key: str, container: str | None = None) -> str:
    """``default/web`` -> ``default_web``; with ``server`` -> ``default_web_server``."""
    base = pod_key.replace("/", "_")
    return base if container is None else f"{base}_{container}"


def pod_dir(pods_dir: str, pod_key: str) -> str:
    return posixpath.join(pods_dir, unit_name(pod_key))


ConfigObjects = Mapping[tuple[str, str], "kube.ConfigMap | kube.Secret"]


@dataclass(frozen=True)
class Unit:
    """One unit of an expanded pod, before it becomes a ``Desired``."""

    name: str
    container: model.Container
    spec_hash: str
    pod: PodInfo


def expand(pod: kube.Pod, *, config: ConfigObjects, pods_dir: str) -> list[Unit]:
    """The units of ``pod``, with ConfigMaps and Secrets looked up in ``config`` (keyed
    ``(kind, namespace/name)``); raises ``PodError`` for a reference to nothing."""
    spec = pod.spec
    ns = pod.metadata.namespace
    sandbox = unit_name(pod.key)
    directory = pod_dir(pods_dir, pod.key)
    lookup = _Lookup(config, ns)
    volumes = tuple(_volume(v, i, pod, lookup, directory) for i, v in enumerate(spec.volumes))
    volumes += (PodVolume(SHM, "tmpfs", posixpath.join(directory, "shm"), size=SHM_SIZE),)
    sc = spec.security_context
    by_volume = {v.name: v for v in volumes}
    members: list[tuple[Role, kube.KubeContainer, str]] = []
    for i, c in enumerate(spec.init_containers):
        role = Role.SIDECAR if c.restart_policy == "Always" else Role.INIT
        members.append((role, c, f"spec.initContainers[{i}]"))
    members += [(Role.APP, c, f"spec.containers[{i}]") for i, c in enumerate(spec.containers)]
    if spec.runtime_class_name and sum(r is not Role.INIT for r, _, _ in members) > 1:
        raise PodError("spec.runtimeClassName",
                       f"runtimeClassName {spec.runtime_class_name}: a pod with more than one"
                       " long-running container is not supported yet under another runtime"
                       " (each container is a sandbox of its own there, without the pod's"
                       " loopback); init containers are fine")
    made = []
    for role, c, where in members:
        doc = _container_doc(pod, c, role=role, where=where, lookup=lookup, volumes=by_volume)
        made.append((role, c, _validated(doc, where=f"container {c.name}")))
    # An init container as it will run (pod-level fields such as the grace period and the
    # pod's securityContext included) is part of the pod's identity: a change to one
    # makes the pod again, so it runs before the app containers, never beside them.
    inits = [_without_values(u) for r, _, u in made if r is Role.INIT]
    identity, identity_doc = pod_identity(pod, volumes, inits=inits)
    shared: dict[str, Any] = {
        "identity": identity, "identity_doc": identity_doc, "key": pod.key, "sandbox": sandbox,
        "host_network": spec.host_network, "host_pid": spec.host_pid,
        "host_ipc": spec.host_ipc, "share_pid": spec.share_process_namespace,
        "host_users": spec.host_users,
        "runtime_class": spec.runtime_class_name, "dir": directory,
    }
    units = []
    order: list[str] = []
    annotations = tuple(sorted(pod.metadata.annotations.items()))
    for index, (role, c, container) in enumerate(made):
        name = unit_name(pod.key, c.name)
        run_as_non_root = bool(_pick(c.security_context, sc, "run_as_non_root"))
        info = PodInfo(role=role, container=c.name, before=tuple(order), volumes=volumes,
                       run_as_non_root=run_as_non_root,
                       requests=tuple(sorted(c.resources.requests.items())), index=index,
                       secret_env=_secret_names(c, lookup),
                       annotations=annotations, **shared)
        units.append(Unit(name, container,
                          model.spec_hash(container, extra={"pod": identity}), info))
        if role is not Role.APP:
            order.append(name)
    box = _validated(_sandbox_doc(pod, volumes, directory), where="sandbox")
    sysctls = tuple((s.name, s.value) for s in sc.sysctls)
    info = PodInfo(role=Role.SANDBOX, container="", volumes=volumes, sysctls=sysctls,
                   **shared)
    units.insert(0, Unit(sandbox, box, model.spec_hash(box, extra={"pod": identity}), info))
    return units


def _without_values(container: model.Container) -> str:
    """An init container as it runs, its env values hashed: the identity document is
    recorded on every instance, and a value may come from a Secret."""
    doc = json.loads(model.canonical_json(container))
    for var in doc.get("spec", {}).get("env", []):
        var["value"] = hashlib.sha256(str(var.get("value", "")).encode()).hexdigest()[:16]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def pod_identity(pod: kube.Pod, volumes: Sequence[PodVolume], *, inits: Sequence[str] = ()
                 ) -> tuple[str, str]:
    """What needs a new sandbox (and so new containers) when it changes: the shared
    namespaces, the hostname, the volumes (their kind and source, not their content),
    the runtime class, and the init containers (Kubernetes: changing one restarts the
    pod). Native sidecars are left out: a change to one recreates it alone. Its hash, and
    the document itself (recorded on every instance, so a recreate can name the fields)."""
    spec = pod.spec
    doc = {
        "hostNetwork": spec.host_network, "hostPID": spec.host_pid,
        "hostIPC": spec.host_ipc, "shareProcessNamespace": spec.share_process_namespace,
        **({} if spec.host_users else {"hostUsers": False}),  # hashes of older pods hold
        "hostname": spec.hostname, "subdomain": spec.subdomain,
        "runtimeClassName": spec.runtime_class_name,
        "volumes": [[v.name, v.kind, v.path if v.kind == "host" else "", v.size, v.host_type,
                     v.secret] for v in volumes],
        "initContainers": list(inits),  # each as it runs (canonical JSON)
        "fsGroup": spec.security_context.fs_group,  # the volumes' group: made with them
        "sysctls": [s.model_dump(mode="json") for s in spec.security_context.sysctls],
    }
    restarted = pod.metadata.annotations.get(model.RESTARTED_AT)
    if restarted is not None:  # reconciler restart POD: the whole pod, as a rollout does
        doc["restartedAt"] = restarted
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def volumes_digest(volumes: Sequence[PodVolume]) -> str:
    """A hash of the volumes' content: the sandbox's live annotation, so a changed
    ConfigMap is a live change (the files swapped in place), not a new sandbox."""
    h = hashlib.sha256()
    for v in volumes:
        for f in v.files:
            h.update(f"{v.name}\0{f.path}\0{f.mode}\0{len(f.data)}\0".encode())
            h.update(f.data)
    return h.hexdigest()[:16]


# -- translation -------------------------------------------------------------------------


class _Lookup:
    """ConfigMaps and Secrets of one namespace."""

    def __init__(self, config: ConfigObjects, namespace: str) -> None:
        self.config = config
        self.namespace = namespace

    def get(self, kind: str, name: str) -> kube.ConfigMap | kube.Secret | None:
        return self.config.get((kind, f"{self.namespace}/{name}"))

    def items(self, kind: str, name: str, *, optional: bool, path: str
              ) -> dict[str, bytes] | None:
        found = self.get(kind, name)
        if found is None:
            if optional:
                return None
            raise PodError(path, f'{kind} "{self.namespace}/{name}" not found (define it in'
                                 " the manifests, or set optional: true)")
        return found.items()


def _pick(container_sc: Any, pod_sc: Any, attr: str) -> Any:
    """A container's securityContext field, else the pod's (Kubernetes' precedence)."""
    value = getattr(container_sc, attr, None) if container_sc is not None else None
    return value if value is not None else getattr(pod_sc, attr, None)


def _restart_policy(pod: kube.Pod, role: Role) -> str:
    policy: str = pod.spec.restart_policy.value
    if role is Role.SIDECAR:
        return "Always"
    if role is Role.INIT:  # Kubernetes: an init container is retried unless Never
        return "Never" if policy == "Never" else "OnFailure"
    return policy


def _container_doc(pod: kube.Pod, c: kube.KubeContainer, *, role: Role, where: str,
                   lookup: _Lookup, volumes: Mapping[str, PodVolume]) -> dict[str, Any]:
    """Our ``kind: Container`` document for one container of ``pod``."""
    psc = pod.spec.security_context
    sc = c.security_context
    _refuse_unsupported(pod, c, where=where)
    env = _env(pod, c, lookup=lookup, where=where)
    spec: dict[str, Any] = {
        "image": c.image,
        "imagePullPolicy": c.pull_policy.value,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "restartPolicy": _restart_policy(pod, role),
        "terminationGracePeriodSeconds": pod.spec.termination_grace_period_seconds,
        "hostNetwork": pod.spec.host_network,
        **({} if pod.spec.host_users else {"hostUsers": False}),
    }
    if c.command is not None:
        spec["command"] = [_expand(a, env) for a in c.command]
    if c.args is not None:
        spec["args"] = [_expand(a, env) for a in c.args]
    if c.working_dir is not None:
        spec["workingDir"] = c.working_dir
    if c.tty:
        spec["tty"] = True
    if c.stdin:
        spec["stdin"] = True
    if c.lifecycle is not None and c.lifecycle.pre_stop is not None:
        spec["preStop"] = list(c.lifecycle.pre_stop.exec.command)
    uid, gid = _pick(sc, psc, "run_as_user"), _pick(sc, psc, "run_as_group")
    groups = [*psc.supplemental_groups, *([psc.fs_group] if psc.fs_group is not None else [])]
    if gid is not None and uid is None:
        at = "securityContext" if sc is not None and sc.run_as_group is not None \
            else "spec.securityContext"
        raise PodError(f"{where}.{at}.runAsGroup" if at == "securityContext"
                       else f"{at}.runAsGroup",
                       "runAsGroup without runAsUser is not supported by reconciler yet (the"
                       " image's user is not known here): set runAsUser too")
    if uid is not None:
        spec["user"] = {"uid": uid, "gid": gid if gid is not None else 0}
    if groups:  # added to whichever user runs: the manifest's or the image's
        spec["supplementalGroups"] = sorted(set(groups))
    limits = c.resources.limits
    resources = {k: limits[k] for k in ("memory", "cpu") if k in limits}
    if resources:
        spec["resources"] = resources
    mounts = [_mount(m, volumes[m.name], where=f"{where}.volumeMounts[{i}]")
              for i, m in enumerate(c.volume_mounts)]
    if not pod.spec.host_ipc and all(m.mount_path != "/dev/shm" for m in c.volume_mounts):
        shm = volumes[SHM]  # the pod's one /dev/shm, as its one IPC namespace
        mounts.append({"type": "bind", "source": shm.path, "destination": "/dev/shm",
                       "readOnly": False})
    if mounts:
        spec["mounts"] = mounts
    if sc is not None:
        if sc.read_only_root_filesystem:
            spec["readOnlyRootFilesystem"] = True
        if sc.capabilities is not None:
            spec["capabilities"] = sc.capabilities.model_dump(mode="json")
        if sc.privileged:
            spec["privileged"] = True
    escalate = getattr(sc, "allow_privilege_escalation", None)
    spec["allowPrivilegeEscalation"] = True if escalate is None else escalate
    seccomp = _pick(sc, psc, "seccomp_profile")
    if seccomp is not None:
        spec["seccompProfile"] = seccomp.model_dump(mode="json", exclude_none=True)
    ports = {p.name: p.container_port for p in c.ports if p.name is not None}
    for which, probe in c.probes().items():
        doc = probe.model_dump(mode="json", by_alias=True, exclude_none=True)
        for handler in ("httpGet", "tcpSocket"):
            if handler in doc and isinstance(doc[handler]["port"], str):  # checked by kube
                doc[handler]["port"] = ports[doc[handler]["port"]]
        spec[which] = doc
    return {
        "apiVersion": model.API_VERSION, "kind": "Container",
        "metadata": {"name": c.name, "labels": dict(pod.metadata.labels),
                     "annotations": dict(pod.metadata.annotations)},
        "spec": spec,
    }


def _refuse_unsupported(pod: kube.Pod, c: kube.KubeContainer, *, where: str) -> None:
    """Values the schema accepts that this version cannot honour: said, never ignored."""
    for name in c.resources.limits:
        if name not in ("cpu", "memory"):
            raise PodError(f"{where}.resources.limits.{name}",
                           f"a {name} limit is not enforced by reconciler (cpu and memory"
                           " are); leave it out, or set it as a request")
    if c.termination_message_path != "/dev/termination-log" \
            or c.termination_message_policy != "File":
        raise PodError(f"{where}.terminationMessagePath",
                       "only the default terminationMessagePath (/dev/termination-log, policy"
                       " File) is accepted: termination messages are not collected yet")


def _sandbox_doc(pod: kube.Pod, volumes: Sequence[PodVolume], directory: str
                 ) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rootfs": posixpath.join(posixpath.dirname(directory), INFRA_DIR),
        "command": list(INFRA_ARGV),
        "hostNetwork": pod.spec.host_network,
        **({} if pod.spec.host_users else {"hostUsers": False}),
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 2,
    }
    if pod.spec.host_network and network.POD_ANNOTATION in pod.metadata.annotations:
        raise PodError(f"metadata.annotations['{network.POD_ANNOTATION}']",
                       "a pod with hostNetwork joins no other network")
    if not pod.spec.host_network:
        spec["hostname"] = pod.spec.hostname or pod.metadata.name
        spec["ports"] = [{"containerPort": p.container_port, "hostPort": p.host_port,
                          "protocol": p.protocol,
                          **({"hostIP": p.host_ip} if p.host_ip else {})}
                         for _, c in pod.spec.all_containers() for p in c.ports
                         if p.host_port is not None]
        wanted = pod.metadata.annotations.get(network.POD_ANNOTATION)
        if wanted is not None:
            spec["networks"] = [{"name": n} for n in _network_names(wanted)]
    deps = pod.metadata.annotations.get(DEPENDS_ON)
    if deps is not None:
        try:
            spec["dependsOn"] = _parse_deps(deps)
        except ValueError as exc:
            raise PodError(f"metadata.annotations['{DEPENDS_ON}']", str(exc)) from None
    annotations = {ANN_VOLUMES: volumes_digest(volumes)} if volumes else {}
    if pod.spec.subdomain and not pod.spec.host_network:
        annotations[ANN_SUBDOMAIN] = pod.spec.subdomain  # hostname.subdomain resolves too
    return {
        "apiVersion": model.API_VERSION, "kind": "Container",
        "metadata": {"name": pod.metadata.name, "labels": dict(pod.metadata.labels),
                     "annotations": annotations},
        "spec": spec,
    }


def _parse_deps(text: str) -> list[dict[str, object]]:
    """The depends-on annotation: ``NAME[:CONDITION]``, separated by commas."""
    out: list[dict[str, object]] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, _, rest = item.partition(":")
        condition, _, flag = rest.partition(":")
        entry: dict[str, object] = {"name": name.strip()}
        if condition.strip():
            if condition.strip() not in ("Started", "Ready", "Completed"):
                raise ValueError(f"{item!r}: the condition is Started, Ready or Completed")
            entry["condition"] = condition.strip()
        if flag.strip():  # restart: true would stop the sandbox under running containers
            raise ValueError(f"{item!r}: restart is not supported on a Pod's dependencies"
                             " yet (give NAME or NAME:CONDITION)")
        try:
            model.Dependency.model_validate(entry)
        except pydantic.ValidationError as exc:
            raise ValueError(f"{item!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
                             ) from None
        out.append(entry)
    return out


def _network_names(text: str) -> list[str]:
    """The ``reconciler.io/networks`` annotation: names separated by commas."""
    path = f"metadata.annotations['{network.POD_ANNOTATION}']"
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if len(name) > 63 or not model.NAME_RE.match(name):
            raise PodError(path, f"{name!r} is not a network name (a DNS-1123 label)")
        if names.count(name) > 1:
            raise PodError(path, f"network {name!r} is named twice")
    return names


def _validated(doc: dict[str, Any], *, where: str) -> model.Container:
    try:
        return model.Container.model_validate(doc)
    except pydantic.ValidationError as exc:  # a translation bug or an odd combination
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PodError("spec", f"{where}: cannot be run as given: {loc}: {first['msg']}"
                       ) from exc


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined variable's value, an undefined one left
    as written, ``$$`` an escaped ``$``."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(one, text)


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _env(pod: kube.Pod, c: kube.KubeContainer, *, lookup: _Lookup, where: str
         ) -> dict[str, str]:
    """``envFrom`` first, then ``env`` in order (a later one wins), each value expanded
    against the ones before it, as the kubelet does."""
    env: dict[str, str] = {}
    if pod.spec.host_network is False:
        env["HOSTNAME"] = pod.spec.hostname or pod.metadata.name
    for i, src in enumerate(c.env_from):
        kind, ref = (("ConfigMap", src.config_map_ref) if src.config_map_ref is not None
                     else ("Secret", src.secret_ref))
        assert ref is not None
        items = lookup.items(kind, ref.name, optional=bool(ref.optional),
                             path=f"{where}.envFrom[{i}]")
        for key, data in sorted((items or {}).items()):
            name = f"{src.prefix or ''}{key}"
            if _ENV_NAME.match(name):  # the kubelet skips (and reports) the others
                env[name] = data.decode("utf-8", "replace")
    for i, var in enumerate(c.env):
        path = f"{where}.env[{i}]"
        if var.value_from is None:
            env[var.name] = _expand(var.value or "", env)
            continue
        value = _value_from(pod, var.value_from, lookup=lookup, path=f"{path}.valueFrom")
        if value is not None:
            env[var.name] = value
    return env


def _secret_names(c: kube.KubeContainer, lookup: _Lookup) -> frozenset[str]:
    """The env names whose value comes from a Secret (shown masked, never printed)."""
    names = {v.name for v in c.env
             if v.value_from is not None and v.value_from.secret_key_ref is not None}
    for src in c.env_from:
        if src.secret_ref is not None:
            found = lookup.get("Secret", src.secret_ref.name)
            names |= {f"{src.prefix or ''}{k}" for k in (found.items() if found else {})}
    return frozenset(names)


def masked(ops: Sequence[Mapping[str, Any]], info: PodInfo, env: Sequence[Mapping[str, Any]]
           ) -> list[dict[str, Any]]:
    """JSON-patch operations on a unit's manifest with Secret values replaced by
    ``<secret>`` (``env``: the manifest's env list the paths index into), for ``diff``."""
    def hide(var: Mapping[str, Any]) -> dict[str, Any]:
        return {**var, "value": "<secret>"} if var.get("name") in info.secret_env else {**var}

    out = []
    for op in ops:
        op = dict(op)
        parts = op["path"].split("/")
        if "value" in op and parts[1:3] == ["spec", "env"]:
            if len(parts) == 3 and isinstance(op["value"], list):
                op["value"] = [hide(v) for v in op["value"]]
            elif len(parts) >= 4 and parts[3].isdigit() and int(parts[3]) < len(env):
                name = env[int(parts[3])].get("name")
                if name in info.secret_env:
                    op["value"] = "<secret>" if len(parts) == 5 else hide(op["value"])
        out.append(op)
    return out


def _value_from(pod: kube.Pod, source: kube.EnvVarSource, *, lookup: _Lookup, path: str
                ) -> str | None:
    if source.field_ref is not None:
        return _field(pod, source.field_ref.field_path)
    kind, ref = (("ConfigMap", source.config_map_key_ref)
                 if source.config_map_key_ref is not None else ("Secret", source.secret_key_ref))
    assert ref is not None
    optional = bool(ref.optional)
    items = lookup.items(kind, ref.name, optional=optional, path=path)
    if items is None:
        return None
    if ref.key not in items:
        if optional:
            return None
        raise PodError(path, f'{kind} "{lookup.namespace}/{ref.name}" has no key'
                             f' "{ref.key}" (it has: {", ".join(sorted(items)) or "none"})')
    return items[ref.key].decode("utf-8", "replace")


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


def _field(pod: kube.Pod, path: str) -> str:
    """A downward API field. ``status.podIP`` and ``status.hostIP`` are empty until the
    pod has a network of its own (docs/pods.md)."""
    meta = pod.metadata
    if path == "metadata.name":
        return meta.name
    if path == "metadata.namespace":
        return meta.namespace
    if path in ("status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"):
        return "127.0.0.1" if pod.spec.host_network else ""
    m = _FIELD.match(path)
    if m:
        table = meta.labels if m.group(1) == "labels" else meta.annotations
        return table.get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        table = meta.labels if path == "metadata.labels" else meta.annotations
        return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}"  # the kubelet's %q
                         for k, v in sorted(table.items()))
    raise PodError("fieldRef.fieldPath", f"fieldPath {path!r} is not supported")


def _mount(m: kube.VolumeMount, volume: PodVolume, *, where: str) -> dict[str, Any]:
    source = volume.path
    if m.sub_path:
        source = posixpath.join(source, m.sub_path)
    read_only = m.read_only or volume.kind == "files"  # the kubelet mounts these read-only
    return {"type": "bind", "source": source, "destination": m.mount_path,
            "readOnly": read_only}


def _volume(v: kube.Volume, index: int, pod: kube.Pod, lookup: _Lookup, directory: str
            ) -> PodVolume:
    path = posixpath.join(directory, "volumes", v.name)
    where = f"spec.volumes[{index}]"
    fs_group = pod.spec.security_context.fs_group
    if v.empty_dir is not None:
        size = v.empty_dir.size_limit
        if v.empty_dir.medium == "Memory":
            return PodVolume(v.name, "tmpfs", path,
                             size=quantity.to_bytes(size) if size else None,
                             fs_group=fs_group)
        return PodVolume(v.name, "dir", path, fs_group=fs_group)
    if v.host_path is not None:
        return PodVolume(v.name, "host", posixpath.normpath(v.host_path.path),
                         host_type=v.host_path.type)
    files: list[VolumeFile] = []
    secret = False
    if v.config_map is not None:
        files += _projected("ConfigMap", v.config_map.name, v.config_map.items,
                            v.config_map.default_mode, bool(v.config_map.optional), lookup,
                            path=f"{where}.configMap")
    elif v.secret is not None:
        secret = True
        files += _projected("Secret", v.secret.secret_name, v.secret.items,
                            v.secret.default_mode, bool(v.secret.optional), lookup,
                            path=f"{where}.secret")
    elif v.downward_api is not None:
        files += _downward(pod, v.downward_api.items, v.downward_api.default_mode)
    elif v.projected is not None:
        mode = v.projected.default_mode
        for i, src in enumerate(v.projected.sources):
            at = f"{where}.projected.sources[{i}]"
            if src.config_map is not None:
                files += _projected("ConfigMap", src.config_map.name, src.config_map.items,
                                    mode, bool(src.config_map.optional), lookup,
                                    path=f"{at}.configMap")
            elif src.secret is not None:
                secret = True
                files += _projected("Secret", src.secret.name, src.secret.items, mode,
                                    bool(src.secret.optional), lookup, path=f"{at}.secret")
            elif src.downward_api is not None:
                files += _downward(pod, src.downward_api.items, mode)
    return PodVolume(v.name, "files", path, files=tuple(files), secret=secret,
                     fs_group=fs_group)


def _projected(kind: str, name: str | None, items: Sequence[kube.KeyToPath],
               default_mode: int | None, optional: bool, lookup: _Lookup, *, path: str
               ) -> list[VolumeFile]:
    data = lookup.items(kind, name or "", optional=optional, path=path) or {}
    mode = 0o644 if default_mode is None else default_mode
    if not items:
        return [VolumeFile(k, v, mode) for k, v in sorted(data.items())]
    out = []
    for i, item in enumerate(items):
        if item.key not in data:
            if optional:
                continue
            raise PodError(f"{path}.items[{i}].key",
                           f'{kind} "{lookup.namespace}/{name}" has no key "{item.key}"')
        out.append(VolumeFile(item.path, data[item.key],
                              item.mode if item.mode is not None else mode))
    return out


def _downward(pod: kube.Pod, items: Sequence[kube.DownwardAPIVolumeFile],
              default_mode: int | None) -> list[VolumeFile]:
    mode = 0o644 if default_mode is None else default_mode
    return [VolumeFile(i.path, _field(pod, i.field_ref.field_path).encode(),
                       i.mode if i.mode is not None else mode)
            for i in items if i.field_ref is not None]


def finding(pod_doc: loader.Loaded, error: PodError) -> loader.Finding:
    """A ``PodError`` as a finding on the pod's document."""
    from reconciler.manifest import loader

    return loader.Finding(pod_doc.file, pod_doc.line, error.path, error.message)
