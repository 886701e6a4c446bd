"""Live mounts: add, change and remove bind and tmpfs mounts in a running container.

Runs as a small single-threaded helper process (``python -m reconciler.runtime.livemount``
with a JSON request on stdin), because ``setns(CLONE_NEWNS)`` refuses a multi-threaded
caller and the daemon has threads. The kernel's mount API does the work:

- on the host: ``open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`` of a bind source, or
  ``fsopen("tmpfs")``/``fsconfig``/``fsmount`` for a tmpfs; read-only is applied to the
  detached tree with ``mount_setattr(MOUNT_ATTR_RDONLY)`` *before* it is attached, and a
  failure there is an error, never a silently writable mount;
- inside the container's mount namespace: ``umount2(MNT_DETACH)`` of what is at the
  destination (a change or a removal), then ``move_mount`` of the new tree.

The mountpoint must exist; the runc adapter creates it in the container's writable layer
from the host side before calling this. Only the standard library is imported, so the
helper starts fast. The runc adapter (``runc.py``) is its only caller.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
O_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
CLONE_NEWNS = 0x00020000
MNT_DETACH = 2
EXIT_UNSUPPORTED = 3  # the kernel lacks the new mount API: the caller falls back

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class LiveMountError(Exception):
    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise LiveMountError(f"{what}: {os.strerror(err)}", unsupported=err == 38)  # ENOSYS
    return result


def _syscall(nr: int, *args: Any) -> int:
    return int(_libc.syscall(ctypes.c_long(nr), *args))


def _readonly(fd: int) -> None:
    attr = MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    _check(_syscall(SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"",
                    ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE), ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr))), "make the mount read-only")


def _bind_tree(source: str, read_only: bool) -> int:
    fd = _check(_syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), os.fsencode(source),
                         ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC)),
                f"open_tree {source}")
    if read_only:
        _readonly(fd)
    return fd


def _tmpfs_tree(size: int | None, read_only: bool) -> int:
    fs = _check(_syscall(SYS_FSOPEN, b"tmpfs", ctypes.c_uint(FSOPEN_CLOEXEC)), "fsopen tmpfs")
    try:
        options = {"mode": "1777"}
        if size is not None:
            options["size"] = str(size)
        for key, value in options.items():
            _check(_syscall(SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_SET_STRING),
                            key.encode(), value.encode(), ctypes.c_int(0)), f"tmpfs {key}")
        _check(_syscall(SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_CMD_CREATE),
                        None, None, ctypes.c_int(0)), "create tmpfs")
        attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (MOUNT_ATTR_RDONLY if read_only else 0)
        return _check(_syscall(SYS_FSMOUNT, ctypes.c_int(fs), ctypes.c_uint(FSMOUNT_CLOEXEC),
                               ctypes.c_uint(attrs)), "fsmount tmpfs")
    finally:
        os.close(fs)


def apply(pid: int, ops: list[dict[str, Any]]) -> None:
    """Prepare every new tree on the host, then enter the namespace and swap them in."""
    trees: list[tuple[dict[str, Any], int | None]] = []
    for op in ops:
        if op["op"] == "remove":
            trees.append((op, None))
        elif op["type"] == "bind":
            trees.append((op, _bind_tree(op["source"], op.get("readOnly", False))))
        else:
            trees.append((op, _tmpfs_tree(op.get("size"), op.get("readOnly", False))))
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc.setns(ns, CLONE_NEWNS), "enter the container's mount namespace")
    os.close(ns)
    for op, fd in trees:
        dest = os.fsencode(op["destination"])
        if op.get("replace") or fd is None:
            if _libc.umount2(dest, MNT_DETACH) != 0 and fd is None:
                err = ctypes.get_errno()
                if err != 22:  # EINVAL: nothing mounted there any more
                    raise LiveMountError(f"umount {op['destination']}: {os.strerror(err)}")
        if fd is not None:
            if not os.path.lexists(op["destination"]):
                raise LiveMountError(f"mountpoint {op['destination']} does not exist in the "
                                     "container")
            _check(_syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), dest,
                            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
                   f"move_mount onto {op['destination']}")
            os.close(fd)


def main() -> int:
    request = json.load(sys.stdin)
    try:
        apply(int(request["pid"]), request["ops"])
    except LiveMountError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201
        return EXIT_UNSUPPORTED if exc.unsupported else 1
    except OSError as exc:
        print(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "), file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
