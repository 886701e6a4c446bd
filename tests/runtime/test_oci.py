"""Manifest → OCI config.json (``runtime.oci``) and seccomp conversion (``runtime.seccomp``).

All but the last test are pure. The last one, marked ``runc``, runs a generated config
under the real runc to prove that runc accepts it and enforces it.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.manifest import model
from reconciler.runtime import oci, seccomp

Config = dict[str, Any]
PROFILE = seccomp.DEFAULT_PATH
HOST = {"RLIMIT_NOFILE": 20000}

needs_profile = pytest.mark.skipif(not os.path.exists(PROFILE), reason=f"{PROFILE} missing")
needs_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 profile facts")


def make(name: str = "web", **spec: Any) -> model.Container:
    spec.setdefault("rootfs", "/srv/rootfs")
    return model.Container.model_validate(
        {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
         "spec": spec}
    )


def build(container: model.Container | None = None, **kwargs: Any) -> Config:
    kwargs.setdefault("rootfs", "/var/lib/reconciler/web/rootfs")
    kwargs.setdefault("annotations", {"io.reconciler.managed-by": "reconciler"})
    kwargs.setdefault("cgroups_path", "/reconciler/web")
    kwargs.setdefault("host_rlimits", HOST)
    return oci.build_config(container or make(), **kwargs)


def caps(config: Config) -> Config:
    result: Config = config["process"]["capabilities"]
    return result


def by_destination(config: Config) -> dict[str, Config]:
    return {m["destination"]: m for m in config["mounts"]}


def env(config: Config) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config["process"]["env"])


def rules(profile: Config, name: str, action: str) -> list[Config]:
    return [r for r in profile["syscalls"] if name in r["names"] and r["action"] == action]


# --- defaults -------------------------------------------------------------------------

DEFAULT_CAPS = sorted(
    "CAP_" + c for c in """CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
    SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE""".split()
)


def test_defaults_are_secure_and_complete() -> None:
    config = build()
    process = config["process"]
    assert config["ociVersion"] == "1.0.2-dev"
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is True
    assert process["args"] == ["/bin/sh"]
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert caps(config) == {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS,
                            "permitted": DEFAULT_CAPS}
    assert env(config) == {"PATH": oci.DEFAULT_PATH, "HOSTNAME": "web"}
    assert config["hostname"] == "web"
    assert config["root"] == {"path": "/var/lib/reconciler/web/rootfs", "readonly": False}
    linux = config["linux"]
    assert {"type": "network"} in linux["namespaces"]
    assert {ns["type"] for ns in linux["namespaces"]} >= {"pid", "ipc", "uts", "mount", "network"}
    assert linux["cgroupsPath"] == "/reconciler/web"
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert linux["maskedPaths"] == [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi",
    ]
    assert linux["readonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
    mounts = by_destination(config)
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                            "/sys/fs/cgroup"]
    assert (mounts["/sys"]["type"], mounts["/sys"]["options"][-1]) == ("sysfs", "ro")
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert config["annotations"] == {"io.reconciler.managed-by": "reconciler"}
    assert "stopSignal" not in json.dumps(config)


@pytest.mark.parametrize("host_has_it", [True, False])
def test_cgroup_namespace_only_when_the_host_has_one(
    host_has_it: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns_file = tmp_path / "cgroup"
    if host_has_it:
        ns_file.touch()
    monkeypatch.setattr(oci, "CGROUP_NS_FILE", str(ns_file))
    kinds = [ns["type"] for ns in build()["linux"]["namespaces"]]
    assert ("cgroup" in kinds) is host_has_it


def test_host_network_drops_only_the_network_namespace() -> None:
    private = {ns["type"] for ns in build()["linux"]["namespaces"]}
    shared = {ns["type"] for ns in build(make(hostNetwork=True))["linux"]["namespaces"]}
    assert private - shared == {"network"}
    assert shared >= {"pid", "ipc", "uts", "mount"}


# --- process --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "entrypoint", "argv"),
    [
        ({"command": ["/app", "-v"]}, (), ["/app", "-v"]),
        ({"command": ["/app"], "args": ["serve"]}, ("/entry",), ["/app", "serve"]),
        ({"args": ["/bin/echo", "hi"]}, (), ["/bin/echo", "hi"]),  # rootfs: no entrypoint
        ({"args": ["serve"]}, ("/entry", "--x"), ["/entry", "--x", "serve"]),
        ({}, ("/entry",), ["/entry"]),
        ({}, (), ["/bin/sh"]),
    ],
)
def test_command_replaces_entrypoint_and_args_replace_arguments(
    spec: Config, entrypoint: tuple[str, ...], argv: list[str]
) -> None:
    assert build(make(**spec), entrypoint=entrypoint)["process"]["args"] == argv


def test_env_defaults_lose_to_the_manifest_and_keep_its_order() -> None:
    container = make(env=[{"name": "B", "value": "2"}, {"name": "PATH", "value": "/x"},
                          {"name": "A", "value": "a=b"}])
    assert build(container)["process"]["env"] == ["PATH=/x", "HOSTNAME=web", "B=2", "A=a=b"]


def test_user_cwd_hostname_and_read_only_root() -> None:
    container = make(workingDir="/srv", hostname="box", readOnlyRootFilesystem=True,
                     user={"uid": 1000, "gid": 100, "additionalGids": [10, 20]})
    config = build(container)
    assert config["process"]["user"] == {"uid": 1000, "gid": 100, "additionalGids": [10, 20]}
    assert config["process"]["cwd"] == "/srv"
    assert config["hostname"] == "box"
    assert env(config)["HOSTNAME"] == "box"
    assert config["root"]["readonly"] is True


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], set(DEFAULT_CAPS)),
        (["SYS_ADMIN", "CAP_SYS_TIME"], ["NET_RAW"],
         set(DEFAULT_CAPS) - {"CAP_NET_RAW"} | {"CAP_SYS_ADMIN", "CAP_SYS_TIME"}),
        ([], ["ALL"], set()),
        (["NET_BIND_SERVICE"], ["ALL"], {"CAP_NET_BIND_SERVICE"}),
        (["ALL"], [], {"CAP_" + c for c in oci.own_capabilities()}),
        (["ALL"], ["SYS_ADMIN"], {"CAP_" + c for c in oci.own_capabilities()} - {"CAP_SYS_ADMIN"}),
        (["CHOWN"], ["CHOWN"], set(DEFAULT_CAPS)),  # as Docker: an explicit add wins
    ],
)
def test_capabilities_add_and_drop(add: list[str], drop: list[str], expected: set[str]) -> None:
    granted = caps(build(make(capabilities={"add": add, "drop": drop})))
    assert set(granted) == {"bounding", "effective", "permitted"}
    assert granted["bounding"] == granted["effective"] == granted["permitted"]
    assert granted["bounding"] == sorted(expected)


@pytest.mark.parametrize(
    ("host", "wanted", "expected"),
    [
        ({"RLIMIT_NOFILE": 20000}, None, (1024, 1024)),
        ({"RLIMIT_NOFILE": 512}, None, (512, 512)),
        ({"RLIMIT_NOFILE": -1}, None, (1024, 1024)),  # RLIM_INFINITY
        ({"RLIMIT_NOFILE": 20000}, (1048576, 1048576), (20000, 20000)),  # podman's default
        ({"RLIMIT_NOFILE": 20000}, (4096, 65536), (4096, 20000)),
        ({}, (1048576, 1048576), (1048576, 1048576)),  # no known host limit: kept
    ],
)
def test_rlimits_never_exceed_the_host_hard_limit(
    host: dict[str, int], wanted: tuple[int, int] | None, expected: tuple[int, int]
) -> None:
    base = None
    if wanted is not None:
        base = {"process": {"rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": wanted[0], "hard": wanted[1]}]}}
    [nofile] = build(base=base, host_rlimits=host)["process"]["rlimits"]
    assert (nofile["soft"], nofile["hard"]) == expected


def test_rlimits_are_read_from_the_host_by_default() -> None:
    _, host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = {"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2**40, "hard": 2**40}]}}
    [nofile] = build(base=base, host_rlimits=None)["process"]["rlimits"]
    if host_hard != resource.RLIM_INFINITY:
        assert nofile["hard"] == host_hard
    else:  # pragma: no cover - depends on the host
        assert nofile["hard"] == 2**40


# --- mounts ---------------------------------------------------------------------------


def test_bind_and_tmpfs_mounts() -> None:
    container = make(mounts=[
        {"type": "bind", "source": "/srv/data", "destination": "/data", "readOnly": True},
        {"type": "bind", "source": "/srv/logs", "destination": "/logs"},
        {"type": "tmpfs", "destination": "/scratch", "sizeLimit": "64Mi"},
        {"type": "tmpfs", "destination": "/frozen", "readOnly": True},
    ])
    mounts = by_destination(build(container))
    assert mounts["/data"] == {"destination": "/data", "type": "bind", "source": "/srv/data",
                               "options": ["rbind", "rprivate", "ro"]}
    assert mounts["/logs"]["options"] == ["rbind", "rprivate", "rw"]
    assert mounts["/scratch"] == {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["nosuid", "nodev", "mode=1777", "size=67108864"]}
    assert mounts["/frozen"]["options"] == ["nosuid", "nodev", "mode=1777", "ro"]


def test_a_manifest_mount_replaces_the_default_in_place_and_parents_come_first() -> None:
    container = make(mounts=[
        {"type": "bind", "source": "/srv/sub", "destination": "/data/sub"},
        {"type": "tmpfs", "destination": "/dev/shm", "sizeLimit": "1Gi"},
        {"type": "bind", "source": "/srv/data", "destination": "/data"},
    ])
    destinations = [m["destination"] for m in build(container)["mounts"]]
    default = [m["destination"] for m in build()["mounts"]]
    assert destinations == [*default, "/data", "/data/sub"]
    assert by_destination(build(container))["/dev/shm"]["options"][-1] == f"size={2**30}"


MOUNTS_A = [
    {"type": "tmpfs", "destination": "/dev/shm", "sizeLimit": "1Gi"},
    {"type": "bind", "source": "/srv/a", "destination": "/a"},
]
MOUNTS_B = [{"type": "bind", "source": "/srv/b", "destination": "/b", "readOnly": True}]


@pytest.mark.parametrize(
    ("before", "after"),
    [(MOUNTS_A, MOUNTS_B), (MOUNTS_A, []), ([], MOUNTS_A), (MOUNTS_B, MOUNTS_A)],
)
def test_update_mounts_gives_what_a_fresh_build_would(
    before: list[Config], after: list[Config]
) -> None:
    old = build(make(mounts=before))
    snapshot = copy.deepcopy(old)
    updated = oci.update_mounts(old, make(mounts=after).spec.mounts)
    assert updated == build(make(mounts=after))
    assert old == snapshot


def test_update_mounts_restores_a_displaced_base_mount() -> None:
    base_mount = {"destination": "/data", "type": "bind", "source": "/base", "options": ["rbind"]}
    base = {"mounts": [base_mount]}
    built = build(make(mounts=[{"type": "tmpfs", "destination": "/data"}]), base=base)
    assert built["mounts"][0]["type"] == "tmpfs"
    assert oci.update_mounts(built, [])["mounts"] == [base_mount]


# --- resources ------------------------------------------------------------------------


@pytest.fixture
def memsw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend the host has cgroup v1 swap accounting (memory.memsw.*)."""
    path = tmp_path / "memory.memsw.limit_in_bytes"
    path.touch()
    monkeypatch.setattr(oci, "MEMSW_FILE", str(path))
    return path


@pytest.mark.usefixtures("memsw")
@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"memory": "64Mi"}, {"memory": {"limit": 67108864, "swap": 67108864}}),
        ({"cpu": "500m"}, {"cpu": {"quota": 50000, "period": 100000}}),
        ({"cpu": 2}, {"cpu": {"quota": 200000, "period": 100000}}),
        ({"cpu": "1m"}, {"cpu": {"quota": 1000, "period": 100000}}),  # the kernel's minimum
        ({"pids": 64}, {"pids": {"limit": 64}}),
        ({}, {}),
    ],
)
def test_resources(resources: Config, expected: Config) -> None:
    got = build(make(resources=resources))["linux"]["resources"]
    assert got == {"devices": [{"allow": False, "access": "rwm"}], **expected}


def test_no_swap_limit_without_swap_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oci, "MEMSW_FILE", str(tmp_path / "absent"))
    assert build(make(resources={"memory": "64Mi"}))["linux"]["resources"]["memory"] == {
        "limit": 67108864
    }


@pytest.mark.usefixtures("memsw")
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"memory": "64Mi", "cpu": "1", "pids": 10}, {"memory": "128Mi"}),
        ({"memory": "64Mi"}, {}),
        ({}, {"cpu": "250m", "pids": 5}),
    ],
)
def test_update_resources_gives_what_a_fresh_build_would(before: Config, after: Config) -> None:
    old = build(make(resources=before))
    snapshot = copy.deepcopy(old)
    updated = oci.update_resources(old, make(resources=after).spec.resources)
    assert updated == build(make(resources=after))
    assert old == snapshot


# --- a base bundle --------------------------------------------------------------------

BASE: Config = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": True,
        "user": {"uid": 5, "gid": 5},
        "args": ["sh"],
        "env": ["PATH=/bin", "TERM=xterm"],
        "cwd": "/home",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/data", "type": "bind", "source": "/base/data",
                "options": ["rbind"]}],
    "annotations": {"keep": "1", "io.reconciler.source": "old"},
    "linux": {
        "resources": {"memory": {"limit": 2**30, "swap": 2**31},
                      "devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}],
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
        "cgroupsPath": "/elsewhere",
    },
}


def test_a_base_is_kept_where_the_manifest_is_silent() -> None:
    base = copy.deepcopy(BASE)
    config = build(base=base, annotations={"io.reconciler.source": "bundle:/b"})
    assert base == BASE  # not changed in place
    assert config["process"]["terminal"] is False  # we never allocate a terminal
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["env"] == ["PATH=/bin", "TERM=xterm"]  # no uts ns: no HOSTNAME
    assert config["process"]["user"] == {"uid": 5, "gid": 5}
    assert config["process"]["cwd"] == "/home"
    assert caps(config) == BASE["process"]["capabilities"]
    assert "rlimits" not in config["process"]
    assert "hostname" not in config  # the host's UTS namespace: runc could not set one
    assert config["root"] == {"path": "/var/lib/reconciler/web/rootfs", "readonly": True}
    assert config["mounts"] == BASE["mounts"]
    assert config["linux"]["namespaces"] == BASE["linux"]["namespaces"]
    assert config["linux"]["resources"] == BASE["linux"]["resources"]
    assert config["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert config["linux"]["cgroupsPath"] == "/reconciler/web"
    assert "maskedPaths" not in config["linux"]
    assert config["annotations"] == {"io.reconciler.source": "bundle:/b", "keep": "1"}


def test_the_manifest_overrides_a_base(memsw: Path) -> None:
    container = make(
        command=["/app"], env=[{"name": "TERM", "value": "dumb"}], workingDir="/w",
        user={"uid": 1, "gid": 2}, hostname="box", hostNetwork=True,
        capabilities={"add": ["SYS_TIME"], "drop": ["KILL"]},
        mounts=[{"type": "bind", "source": "/srv/data", "destination": "/data"}],
        resources={"cpu": "500m", "memory": "64Mi"},
    )
    config = build(container, base=copy.deepcopy(BASE))
    process = config["process"]
    assert process["args"] == ["/app"]
    assert process["env"] == ["PATH=/bin", "TERM=dumb", "HOSTNAME=box"]
    assert (process["cwd"], process["user"]) == ("/w", {"uid": 1, "gid": 2})
    expected = ["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"]
    assert caps(config) == {"bounding": expected, "effective": expected, "permitted": expected,
                            "ambient": ["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]}
    assert config["hostname"] == "box"
    assert [ns["type"] for ns in config["linux"]["namespaces"]] == ["pid", "mount", "uts"]
    assert by_destination(config)["/data"]["source"] == "/srv/data"
    assert len(config["mounts"]) == 2
    assert config["linux"]["resources"]["memory"] == {"limit": 67108864, "swap": 67108864}
    assert config["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000}


# --- seccomp --------------------------------------------------------------------------


@needs_profile
def test_seccomp_from_the_real_profile_follows_capabilities() -> None:
    default = build()["linux"]["seccomp"]
    admin = build(make(capabilities={"add": ["SYS_ADMIN"]}))["linux"]["seccomp"]
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    assert default["defaultErrnoRet"] == 38  # ENOSYS, so new syscalls fall back gracefully
    # Podman's profile allows mount, umount2 and unshare to everyone; the default, hardened
    # as Docker's, allows them only with CAP_SYS_ADMIN, and the keyring to nobody.
    for name in ("mount", "umount2", "unshare"):
        assert not rules(default, name, "SCMP_ACT_ALLOW")
        assert [r["errnoRet"] for r in rules(default, name, "SCMP_ACT_ERRNO")] == [1]
        assert rules(admin, name, "SCMP_ACT_ALLOW")
    assert not rules(admin, "keyctl", "SCMP_ACT_ALLOW")
    assert not rules(default, "bpf", "SCMP_ACT_ALLOW")
    assert [r["errnoRet"] for r in rules(default, "bpf", "SCMP_ACT_ERRNO")] == [1]  # EPERM
    assert rules(admin, "bpf", "SCMP_ACT_ALLOW")
    assert not rules(admin, "bpf", "SCMP_ACT_ERRNO")
    assert rules(default, "chroot", "SCMP_ACT_ALLOW")  # SYS_CHROOT is a default capability
    assert not rules(default, "clock_settime", "SCMP_ACT_ALLOW")
    for profile in (default, admin):
        for rule in profile["syscalls"]:
            assert set(rule) <= {"names", "action", "errnoRet", "args"}


@needs_profile
def test_seccomp_socket_rules_depend_on_audit_write() -> None:
    granted = build()["linux"]["seccomp"]
    dropped = build(make(capabilities={"drop": ["AUDIT_WRITE"]}))["linux"]["seccomp"]
    assert any("args" not in r for r in rules(granted, "socket", "SCMP_ACT_ALLOW"))
    assert all(r["args"] for r in rules(dropped, "socket", "SCMP_ACT_ALLOW"))
    assert rules(dropped, "socket", "SCMP_ACT_ERRNO")[0]["errnoRet"] == 22  # EINVAL


@needs_profile
@needs_x86_64
def test_seccomp_architectures_and_arch_rules_on_x86_64() -> None:
    profile = build()["linux"]["seccomp"]
    # RuntimeDefault: the native architecture only (int 0x80 and x32 calls are refused).
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    assert rules(profile, "arch_prctl", "SCMP_ACT_ALLOW")
    assert not [r for r in profile["syscalls"] if "s390_pci_mmio_read" in r["names"]]
    assert not [r for r in profile["syscalls"] if "sync_file_range2" in r["names"]]


SYNTHETIC: Config = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["always"], "action": "SCMP_ACT_ALLOW", "args": None, "comment": "",
         "includes": {}, "excludes": {}},
        {"names": ["new"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
        {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.18"}},
        {"names": ["arm"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["not_amd"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {"names": ["both"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}},
        {"names": ["no_admin"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM",
         "excludes": {"caps": ["CAP_SYS_ADMIN"]},
         "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
    ],
}


@pytest.mark.parametrize(
    ("machine", "kernel", "granted", "names", "arches"),
    [
        ("x86_64", "5.4.0-150-generic", [], {"always", "newer", "no_admin"},
         ["SCMP_ARCH_X86_64"]),
        ("x86_64", "5.10.1", ["SYS_ADMIN"], {"always", "new", "newer"}, ["SCMP_ARCH_X86_64"]),
        ("x86_64", "4.9.0", ["SYS_ADMIN", "NET_ADMIN"], {"always", "both"},
         ["SCMP_ARCH_X86_64"]),
        ("aarch64", "6.18.44-fc-v669", ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"],
         {"always", "new", "newer", "arm", "not_amd", "both"},
         ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    ],
)
def test_seccomp_conversion_filters_by_kernel_arch_and_caps(
    tmp_path: Path, machine: str, kernel: str, granted: list[str], names: set[str],
    arches: list[str],
) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(SYNTHETIC))
    native = seccomp.for_capabilities(granted, path=str(path), machine=machine, kernel=kernel)
    assert native is not None and native["architectures"] == arches[:1]
    profile = seccomp.for_capabilities(granted, path=str(path), machine=machine, kernel=kernel,
                                       native_only=False)
    assert profile is not None
    assert profile["architectures"] == arches
    assert native["syscalls"] == profile["syscalls"]
    assert "defaultErrnoRet" not in profile
    assert {n for r in profile["syscalls"] for n in r["names"]} == names
    for rule in profile["syscalls"]:
        if rule["names"] == ["no_admin"]:
            assert rule == {"names": ["no_admin"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                            "args": [{"index": 0, "value": 1, "valueTwo": 0,
                                      "op": "SCMP_CMP_EQ"}]}
        else:
            assert set(rule) == {"names", "action"}


def test_a_missing_default_profile_fails_closed(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    assert seccomp.for_capabilities(["CHOWN"], path=missing) is None
    with pytest.raises(errors.RuntimeFailure, match=f"the default profile {missing} is missing"):
        build(seccomp_profile=missing)


def test_the_default_is_hardened_as_docker_s_profile() -> None:
    """Podman's profile allows unshare, mount and keyctl to anyone; the default does not."""
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read", "unshare", "clone", "clone3", "keyctl", "mount"],
         "action": "SCMP_ACT_ALLOW"},
        {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ]}
    plain = seccomp.harden(seccomp.convert(profile, [], machine="x86_64", kernel="6.1"), [],
                           machine="x86_64")
    allowed = {n for r in plain["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
               for n in r["names"]}
    assert allowed == {"read"}
    eperm = {n for r in plain["syscalls"] if r.get("errnoRet") == 1 for n in r["names"]}
    assert {"unshare", "keyctl", "add_key", "mount", "setns"} <= eperm
    [clone] = [r for r in plain["syscalls"] if r["names"] == ["clone"]]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]
    names = [n for r in plain["syscalls"] for n in r["names"]]
    assert names.count("setns") == 1  # one rule per call: libseccomp refuses conflicting ones
    admin = seccomp.harden(seccomp.convert(profile, ["SYS_ADMIN"], machine="x86_64",
                                           kernel="6.1"), ["SYS_ADMIN"], machine="x86_64")
    allowed = {n for r in admin["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert allowed == {"read", "unshare", "clone", "clone3", "mount"}  # the keyring: never


def test_a_profile_that_appears_later_is_used_and_a_broken_one_is_our_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "late.json"
    assert seccomp.for_capabilities([], path=str(path)) is None
    path.write_text(json.dumps(SYNTHETIC))
    assert seccomp.for_capabilities([], path=str(path)) is not None
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(errors.RuntimeFailure, match="not valid JSON"):
        seccomp.for_capabilities([], path=str(broken))


def test_no_seccomp_when_asked_for_none() -> None:
    assert "seccomp" not in build(seccomp_profile=None)["linux"]


def test_an_old_style_profile_keeps_its_own_architectures_when_named(tmp_path: Path) -> None:
    old_style = {"defaultAction": "SCMP_ACT_ERRNO",
                 "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": []}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(old_style))
    named = seccomp.for_capabilities([], path=str(path), machine="x86_64", kernel="6.1",
                                     native_only=False)
    assert named is not None and named["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]


def seccomp_of(profile: Config | None, **kwargs: Any) -> Config:
    linux: Config = build(make(seccompProfile=profile), **kwargs)["linux"]
    return linux


@needs_profile
def test_seccomp_profile_runtime_default_unconfined_and_localhost(tmp_path: Path) -> None:
    default = seccomp_of(None)["seccomp"]
    assert seccomp_of({"type": "RuntimeDefault"})["seccomp"] == default
    assert "seccomp" not in seccomp_of({"type": "Unconfined"})
    shutil.copy(PROFILE, tmp_path / "podman.json")
    for ref in ("podman.json", str(tmp_path / "podman.json")):  # under the root, or absolute
        mine = seccomp_of({"type": "Localhost", "localhostProfile": ref},
                          seccomp_root=str(tmp_path))["seccomp"]
        # a Localhost profile is taken as its author wrote it: not hardened
        assert any("unshare" in r["names"] and r["action"] == "SCMP_ACT_ALLOW"
                   for r in mine["syscalls"])
        assert mine["syscalls"] != default["syscalls"]
        if platform.machine() == "x86_64":  # the file's archMap: its sub-architectures too
            assert mine["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                             "SCMP_ARCH_X32"]


def test_a_missing_localhost_profile_is_an_error_on_that_container(tmp_path: Path) -> None:
    with pytest.raises(errors.RuntimeFailure) as caught:
        seccomp_of({"type": "Localhost", "localhostProfile": "nope.json"},
                   seccomp_root=str(tmp_path))
    assert caught.value.container == "web"
    assert f"Localhost profile {tmp_path}/nope.json not found" in str(caught.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(errors.RuntimeFailure, match="not valid JSON") as caught:
        seccomp_of({"type": "Localhost", "localhostProfile": "bad.json"},
                   seccomp_root=str(tmp_path))
    assert caught.value.container == "web"


def test_a_named_profile_replaces_a_bundles_own_and_unset_keeps_it() -> None:
    base: Config = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_LOG"}}}
    assert build(base=base)["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG"}
    assert "seccomp" not in build(make(seccompProfile={"type": "Unconfined"}), base=base)["linux"]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"type": "Localhost"}, "type Localhost needs localhostProfile"),
        ({"type": "Localhost", "localhostProfile": "../etc/x.json"}, "no '..'"),
        ({"type": "Unconfined", "localhostProfile": "x.json"},
         "localhostProfile is only for type Localhost, not Unconfined"),
        ({"type": "Strict"}, "'RuntimeDefault', 'Unconfined' or 'Localhost'"),
    ],
)
def test_seccomp_profile_validation(profile: Config, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(seccompProfile=profile)


# --- determinism ----------------------------------------------------------------------


def test_same_input_same_config_down_to_key_order() -> None:
    def one() -> str:
        container = make(
            command=["/app"], env=[{"name": "X", "value": "1"}], hostname="h",
            capabilities={"add": ["SYS_TIME", "NET_ADMIN"], "drop": ["KILL", "CHOWN"]},
            mounts=MOUNTS_A + MOUNTS_B, resources={"memory": "1Gi", "cpu": "1.5", "pids": 9},
        )
        annotations = {"z": "1", "io.reconciler.spec-hash": "v1-abc", "a": "2"}
        return json.dumps(build(container, annotations=annotations, base=copy.deepcopy(BASE)))

    assert one() == one()
    assert json.loads(one())["annotations"]["io.reconciler.spec-hash"] == "v1-abc"


# --- real runc ------------------------------------------------------------------------

BUSYBOX_APPLETS = ("sh", "cat", "grep", "id", "hostname", "touch", "echo")


def _busybox_bundle(bundle: Path) -> Path:
    rootfs = bundle / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "data"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    return rootfs


@pytest.mark.runc
def test_the_generated_config_runs_under_runc(tmp_path: Path) -> None:
    runc = shutil.which("runc")
    if os.geteuid() != 0:
        pytest.skip("runc containers need root")
    if runc is None:
        pytest.skip("runc is not installed")
    if not (shutil.which("busybox") or os.path.exists("/bin/busybox")):
        pytest.skip("busybox is not installed")
    bundle = tmp_path / "bundle"
    rootfs = _busybox_bundle(bundle)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("hello from the host\n")
    cid = f"reconciler-test-{uuid.uuid4().hex[:12]}"
    script = (
        "cat /proc/self/status | grep -E 'Seccomp|NoNewPrivs|CapEff'; id; hostname;"
        " echo nofile=$(ulimit -n); cat /data/hello;"
        " touch /data/new 2>/dev/null && echo data=rw || echo data=ro"
    )
    container = make(
        name="probe", command=["/bin/sh", "-c", script],
        user={"uid": 0, "gid": 0, "additionalGids": [10]},
        mounts=[{"type": "bind", "source": str(shared), "destination": "/data",
                 "readOnly": True}],
        resources={"memory": "64Mi", "pids": 32},
    )
    config = oci.build_config(
        container, rootfs=str(rootfs), annotations={"io.reconciler.managed-by": "reconciler"},
        cgroups_path=f"/reconciler-test/{cid}",
    )
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    runc_root = tmp_path / "runc-root"
    parents = [Path(d) / "reconciler-test" for d in Path("/sys/fs/cgroup").glob("*")]
    existed = {p for p in parents if p.is_dir()}
    try:
        run = subprocess.run(
            [runc, "--root", str(runc_root), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, check=False,
        )
        assert run.returncode == 0, run.stderr
        fields = dict(line.split(":", 1) for line in run.stdout.splitlines() if ":" in line)
        assert fields["Seccomp"].strip() == "2"
        assert fields["NoNewPrivs"].strip() == "1"
        assert int(fields["CapEff"], 16) == 0xA80425FB  # Docker's default capability set
        lines = run.stdout.splitlines()
        assert "uid=0 gid=0 groups=10" in lines
        assert "probe" in lines  # hostname
        assert "nofile=1024" in lines
        assert "hello from the host" in lines
        assert "data=ro" in lines
        assert not (shared / "new").exists()
    finally:
        subprocess.run([runc, "--root", str(runc_root), "delete", "-f", cid],
                       capture_output=True, timeout=20, check=False)
        for parent in parents:
            for path in (parent / cid, parent):
                if path == parent and parent in existed:
                    continue
                try:
                    path.rmdir()
                except OSError:
                    pass


def test_privileged_is_docker_s() -> None:
    config = build(make(privileged=True))
    assert caps(config)["bounding"] == sorted(f"CAP_{c}" for c in oci.own_capabilities())
    assert config["process"]["noNewPrivileges"] is False
    linux = config["linux"]
    assert "seccomp" not in linux  # unconfined unless a profile is named
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    null = next(d for d in linux["devices"] if d["path"] == "/dev/null")
    assert (null["type"], null["major"], null["minor"]) == ("c", 1, 3)
    assert not [d for d in linux["devices"] if d["path"].startswith("/dev/pts/")]
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]
    named = build(make(privileged=True, seccompProfile={"type": "RuntimeDefault"}))
    assert "seccomp" in named["linux"] or not Path(seccomp.DEFAULT_PATH).exists()
    plain = build()
    assert "devices" not in plain["linux"] and plain["linux"]["maskedPaths"]
