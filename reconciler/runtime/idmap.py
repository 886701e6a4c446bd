"""User namespaces for ``hostUsers: false``: a root filesystem the mapped root can use.

    runc.create ─▶ idmapped_root (this module) ─▶ an idmapped mount of the lower tree,
                                                  then runc's overlay stacked on it

runc 1.1 cannot idmap a mount itself, and an idmapped mount of an overlay fails with
EINVAL on this kernel; an overlay whose lower directory is an idmapped mount works
(``shared/notes/runtime-facts.md``). So, before ``runc create``:

1. a user namespace with the object's mapping is made by a short-lived ``unshare --user``
   child (its ``uid_map`` and ``gid_map`` written from here), and held by a descriptor;
2. ``open_tree(OPEN_TREE_CLONE)`` of the lower tree, ``mount_setattr(MOUNT_ATTR_IDMAP)``
   with that descriptor, ``move_mount`` onto the instance's ``idmapped`` directory: its
   files owned by 0 show as the range's first id, never copied or chowned;
3. the upper and work directories are chowned to the range's root, and the overlay is
   mounted on top as for any container;
4. runc mounts the root filesystem from inside the user namespace, as the mapped root,
   who cannot search a private state directory (0700, as docs/security.md advises): the
   overlay is also bound at ``/run/reconciler/userns/<state dir's hash>/<instance>``,
   whose directories are 0711, and that path is the config's ``root.path``. Bind-mount
   sources need no such thing: runc 1.1 opens them on the host's side.

The image's tree is never written. The mount is removed with the instance (``unmount``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

from reconciler import errors
from reconciler.core.instance import IdMap
from reconciler.runtime import hostmount
from reconciler.runtime import livemount as lm

MOUNT_ATTR_IDMAP = 0x00100000
RUN_DIR = Path("/run/reconciler/userns")
_NS_WAIT = 2.0  # seconds for the unshare child to be in its namespace


def user_namespace(ids: IdMap) -> int:
    """A descriptor of a new user namespace mapping 0..size-1 to ``ids`` (its holder gone)."""
    child = subprocess.Popen(["unshare", "--user", "cat"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _NS_WAIT
        while os.readlink(f"/proc/{child.pid}/ns/user") == ours:
            if child.poll() is not None or time.monotonic() > deadline:
                raise errors.MountError("cannot make a user namespace (unshare --user): "
                                        f"{child.stderr.read().decode() if child.stderr else ''}"
                                        .strip())
            time.sleep(0.001)
        for kind, first in (("uid", ids.uid), ("gid", ids.gid)):
            with open(f"/proc/{child.pid}/{kind}_map", "w") as f:
                f.write(f"0 {first} {ids.size}\n")
        return os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise errors.MountError(f"cannot map user ids {ids.uid}+{ids.size}: "
                                f"{exc.strerror or exc}") from exc
    finally:
        if child.stdin is not None:
            child.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        if child.stderr is not None:
            child.stderr.close()


def mount_idmapped(source: Path, target: Path, userns: int) -> None:
    """``source`` bound on ``target`` with the ids of the namespace ``userns``."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        fd = lm._check(lm._syscall(lm.SYS_OPEN_TREE, ctypes.c_int(lm.AT_FDCWD),
                                   os.fsencode(source),
                                   ctypes.c_uint(lm.OPEN_TREE_CLONE | lm.AT_RECURSIVE
                                                 | lm.O_CLOEXEC)), f"open_tree {source}")
        try:
            attr = lm.MountAttr(attr_set=MOUNT_ATTR_IDMAP, userns_fd=userns)
            lm._check(lm._syscall(lm.SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"",
                                  ctypes.c_uint(lm.AT_EMPTY_PATH | lm.AT_RECURSIVE),
                                  ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
                      f"idmap {source}")
            lm._check(lm._syscall(lm.SYS_MOVE_MOUNT, ctypes.c_int(fd), b"",
                                  ctypes.c_int(lm.AT_FDCWD), os.fsencode(target),
                                  ctypes.c_uint(lm.MOVE_MOUNT_F_EMPTY_PATH)),
                      f"move_mount onto {target}")
        finally:
            os.close(fd)
    except lm.LiveMountError as exc:
        raise errors.MountError(f"cannot idmap the root {source}: {exc}") from exc


def visible_root(state_dir: Path, instance: str) -> Path:
    """Where runc finds an instance's root filesystem (see step 4)."""
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    return RUN_DIR / digest / instance


def expose(rootfs: Path, at: Path, ids: IdMap) -> None:
    """The overlay at ``rootfs`` bound on ``at``, every directory above it searchable."""
    for d in reversed(at.parents):
        if not d.exists():
            d.mkdir(mode=0o711)
            d.chmod(0o711)  # whatever the umask
    reachable(at, ids)
    hostmount.bind_dir(rootfs, at)


def conceal(at: Path) -> None:
    """``expose`` undone: the bind, its directory, and the state dir's if now empty;
    nothing to do (one stat) for an instance that was never exposed."""
    if not os.path.lexists(at):
        return
    hostmount.unmount(at)
    for d in (at, at.parent):
        with contextlib.suppress(OSError):
            d.rmdir()


def reachable(path: Path, ids: IdMap) -> None:
    """runc mounts the root filesystem from inside the user namespace, as the mapped root:
    every directory above it must let others search it (0711 is enough)."""
    for parent in path.parents:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue  # made by the daemon, 0755
        if not st.st_mode & stat.S_IXOTH and st.st_uid != ids.uid:
            raise errors.MountError(
                f"hostUsers: false: {parent} (mode {stat.S_IMODE(st.st_mode):04o}) does not"
                f" let others search it, so the container's root (host uid {ids.uid}) cannot"
                f" reach its root filesystem; give it o+x (chmod 0711: searchable, not"
                f" listable)")


def idmapped_root(ids: IdMap, *, lower: Path, mapped: Path, upper: Path, work: Path) -> None:
    """``lower`` idmapped on ``mapped``, and the overlay's own directories given to the
    mapped root: the overlay then stacks on ``mapped`` as on any lower directory."""
    userns = user_namespace(ids)
    try:
        mount_idmapped(lower, mapped, userns)
    finally:
        os.close(userns)
    for d in (upper, work):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, ids.uid, ids.gid)
