"""Docker/Podman seccomp profiles → OCI ``linux.seccomp``, for one set of capabilities.

Pure, apart from reading (once, cached) the profile file: ``runtime.oci`` calls
``for_capabilities`` while building a config.json; nothing else uses this module.

The profile format (``/usr/share/containers/seccomp.json``) makes rules conditional on
capabilities, architectures and a minimum kernel; the OCI form has no conditions, so the
conversion picks the rules that apply here, as containers/common and moby do:

- ``includes.caps``: every listed capability is granted; ``excludes.caps``: none is;
- ``includes.arches`` / ``excludes.arches``: Go architecture names (``amd64``, ``arm64``);
- ``includes.minKernel``: the running kernel is at least that ``major.minor``.

The daemon's default (Kubernetes' ``RuntimeDefault``) keeps only the native architecture:
32-bit (``int 0x80``) and x32 system calls then fail, which is stricter, and runc's
``runc init`` compiles a third of the filter, which is most of its start-up cost here
(docs/runtime.md, "seccomp"). A profile named by a manifest (``Localhost``) keeps the
sub-architectures its ``archMap`` lists, or its own ``architectures``: its author chose.

The default is also narrowed to what Docker's own profile allows (``harden``): Podman's
file lets any process make namespaces (``unshare``, ``clone`` with ``CLONE_NEWUSER``),
mount in them and use the kernel keyring, which is the kernel attack surface a user
namespace opens. Without ``CAP_SYS_ADMIN`` those calls fail with EPERM, ``clone`` with a
namespace flag fails with the profile's default (ENOSYS), and ``clone3`` (whose flags
seccomp cannot read) fails with ENOSYS so the C library falls back to ``clone``
(docs/security.md).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
from collections.abc import Iterable
from typing import Any

from reconciler import errors

DEFAULT_PATH = "/usr/share/containers/seccomp.json"
DEFAULT_ROOT = "/etc/reconciler/seccomp"  # where a relative Localhost profile is found

# platform.machine() → (Go's GOARCH, which the profile's arches use; libseccomp's name).
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


@functools.lru_cache(maxsize=8)
def _load(path: str) -> dict[str, Any]:
    """The parsed profile; a missing file raises, so it is not cached and may appear later."""
    try:
        with open(path, encoding="utf-8") as f:
            profile: dict[str, Any] = json.load(f)
    except ValueError as exc:
        raise errors.RuntimeFailure(f"seccomp profile {path} is not valid JSON: {exc}") from exc
    return profile


def _version(release: str) -> tuple[int, int]:
    """``6.18.44-fc-v669`` → (6, 18); only major.minor count, as in the profile format."""
    m = re.match(r"(\d+)(?:\.(\d+))?", release)
    return (int(m[1]), int(m[2] or 0)) if m else (0, 0)


def _applies(rule: dict[str, Any], caps: frozenset[str], goarch: str, kernel: str) -> bool:
    inc: dict[str, Any] = rule.get("includes") or {}
    exc: dict[str, Any] = rule.get("excludes") or {}
    if not caps.issuperset(inc.get("caps") or ()):
        return False
    if caps.intersection(exc.get("caps") or ()):
        return False
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if goarch in (exc.get("arches") or ()):
        return False
    min_kernel = inc.get("minKernel")
    return not min_kernel or _version(kernel) >= _version(str(min_kernel))


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(rule["names"]), "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    if rule.get("args"):
        out["args"] = [dict(arg) for arg in rule["args"]]
    return out


def convert(
    profile: dict[str, Any], caps: Iterable[str], *, machine: str, kernel: str,
    native_only: bool = True,
) -> dict[str, Any]:
    """The OCI form of ``profile`` for capabilities ``caps`` (``CHOWN`` or ``CAP_CHOWN``):
    for the native architecture only, or (``native_only=False``) also the sub-architectures
    the profile names."""
    granted = frozenset("CAP_" + c.upper().removeprefix("CAP_") for c in caps)
    goarch, native = _ARCHES.get(machine, (machine, "SCMP_ARCH_" + machine.upper()))
    arches = [native]
    if not native_only:
        for entry in profile.get("archMap") or ():
            if entry["architecture"] == native:
                arches.extend(entry.get("subArchitectures") or ())
        if not profile.get("archMap"):
            arches.extend(a for a in profile.get("architectures") or () if a not in arches)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": arches}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["syscalls"] = [
        _rule(rule)
        for rule in profile.get("syscalls") or ()
        if _applies(rule, granted, goarch, kernel)
    ]
    return out


# Docker's default profile allows these only with CAP_SYS_ADMIN (namespaces and mounts),
# or not at all (the keyring); Podman's allows them to everyone.
_NEEDS_SYS_ADMIN = frozenset({
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig",
    "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
})
_NEVER = frozenset({"keyctl", "add_key", "request_key"})
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: clone(2)'s first
# argument on every architecture but s390 (whose first two arguments are swapped).
_CLONE_NAMESPACES = 0x7E020000
_EPERM, _ENOSYS = 1, 38


def harden(linux_seccomp: dict[str, Any], caps: Iterable[str], *, machine: str) -> dict[str, Any]:
    """``linux_seccomp`` (an OCI profile) without what Docker's default denies to ``caps``."""
    granted = frozenset("CAP_" + c.upper().removeprefix("CAP_") for c in caps)
    if "CAP_SYS_ADMIN" in granted:
        denied = _NEVER
    else:
        denied = _NEVER | _NEEDS_SYS_ADMIN | {"clone", "clone3"}
    rules: list[dict[str, Any]] = []
    for rule in linux_seccomp["syscalls"]:
        names = [n for n in rule["names"] if n not in denied]
        if names:
            rules.append({**rule, "names": names})
    rules.append({"names": sorted(denied - {"clone", "clone3"}), "action": "SCMP_ACT_ERRNO",
                  "errnoRet": _EPERM})
    if "CAP_SYS_ADMIN" not in granted:
        # clone with a namespace flag falls to the default action (ENOSYS), as in
        # Docker's profile: an unconditional rule beside this one would override it.
        index = 1 if machine.startswith("s390") else 0
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": index, "value": _CLONE_NAMESPACES, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {**linux_seccomp, "syscalls": rules}


def for_capabilities(
    caps: Iterable[str],
    *,
    path: str = DEFAULT_PATH,
    machine: str | None = None,
    kernel: str | None = None,
    native_only: bool = True,
    hardened: bool = False,
) -> dict[str, Any] | None:
    """``linux.seccomp`` for this host (or ``machine``/``kernel``); None if ``path`` is
    missing. ``hardened``: with Docker's denials on top (``harden``), for the default."""
    try:
        profile = _load(path)
    except FileNotFoundError:
        return None
    machine = machine or platform.machine()
    out = convert(profile, caps, machine=machine, kernel=kernel or os.uname().release,
                  native_only=native_only)
    return harden(out, caps, machine=machine) if hardened else out
