"""Host-side mounts for the runtime: the overlay that gives each container its own layer.

Uses the mount(2)/umount2(2) syscalls through ctypes (no `mount` subprocess on the hot
path). Only paths under our own depot are ever mounted or unmounted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
from pathlib import Path

from reconciler import errors

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2
_OCTAL = re.compile(rb"\\([0-7]{3})")


def mount_overlay(*, lower: Path, upper: Path, work: Path, target: Path) -> None:
    for p in (upper, work, target):
        p.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={_escape(lower)},upperdir={_escape(upper)},workdir={_escape(work)}"
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise errors.MountError(
            f"cannot mount the overlay root on {target} (lower {lower}): {os.strerror(err)}"
        )


MS_BIND = 4096


def bind(source: Path, target: Path) -> None:
    """Bind ``source`` (a file, e.g. ``/proc/PID/ns/net``) on ``target``, made empty."""
    target.touch(exist_ok=True)
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise errors.MountError(f"cannot bind {source} on {target}: {os.strerror(err)}")


def bind_dir(source: Path, target: Path) -> None:
    """Bind the directory ``source`` (a mount point too) on ``target``, made if missing."""
    target.mkdir(exist_ok=True)
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise errors.MountError(f"cannot bind {source} on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Detach every mount stacked at ``target``; a path with no mount is fine.

    ``umount2`` itself says when nothing is left (EINVAL: not a mount point; ENOENT: no
    such path), so mountinfo, hundreds of lines on a busy host, is not read: that read
    cost ~5 ms of every delete and restart."""
    path = os.fsencode(target)
    for _ in range(_MAX_STACKED):
        if _libc.umount2(path, MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            raise errors.MountError(f"cannot unmount {target}: {os.strerror(err)}")
    raise errors.MountError(f"cannot unmount {target}: still mounted after "
                            f"{_MAX_STACKED} detaches")


_MAX_STACKED = 64  # mounts on one path; more means something keeps mounting there


def is_mountpoint(target: Path) -> bool:
    want = os.fsencode(os.path.realpath(target)) if target.exists() else os.fsencode(target)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                if unescape_bytes(line.split()[4]) == want:
                    return True
    except OSError:
        return False
    return False


def _escape(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ",:\n"):
        raise errors.MountError(f"path {text!r} cannot be used in overlay options (',' or ':')")
    return text


def unescape_bytes(field: bytes) -> bytes:
    """A mountinfo path field: space, tab, newline and backslash come as octal ``\\ooo``."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def unescape(field: str) -> str:
    """A mountinfo path field as text."""
    return os.fsdecode(unescape_bytes(os.fsencode(field)))
