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


def for_capabilities(
    caps: Iterable[str],
    *,
    path: str = DEFAULT_PATH,
    machine: str | None = None,
    kernel: str | None = None,
    native_only: bool = True,
) -> dict[str, Any] | None:
    """``linux.seccomp`` for this host (or ``machine``/``kernel``); None if ``path`` is missing."""
    try:
        profile = _load(path)
    except FileNotFoundError:
        return None
    return convert(
        profile,
        caps,
        machine=machine or platform.machine(),
        kernel=kernel or os.uname().release,
        native_only=native_only,
    )
