"""A pod's volumes on the host: emptyDirs, memory tmpfs, hostPath checks, projected files.

    runc adapter (creating a pod's sandbox, a live ConfigMap change, the pod's delete)
        ─▶ volumes (this module) ─▶ the pod's directory under <state-dir>/pods/

    <state-dir>/pods/<namespace>_<pod>/volumes/<volume>/   bind-mounted into containers

Projected volumes (ConfigMap, Secret, downward API) are written as the kubelet's
AtomicWriter does, so a running container sees a change all at once or not at all:

    <volume>/..2026_12_01_07_42_20.123456789/<files>   one directory per version
    <volume>/..data -> ..2026_...                      swapped with one rename(2)
    <volume>/<key> -> ..data/<key>                     stable names, made once

A volume with Secret data is a tmpfs of its own: secret bytes never reach the disk. Only
paths under a pod's own directory are ever mounted, written or removed here (a hostPath
is checked, and created for ``*OrCreate``, never removed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from reconciler import errors
from reconciler.core.pods import INFRA_ARGV, SHM, PodInfo, PodVolume
from reconciler.runtime import hostmount

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
MS_NOSUID, MS_NODEV, MS_REMOUNT = 2, 4, 32
SECRET_TMPFS = 16 << 20  # bytes: a Secret holds at most 1 MiB in Kubernetes
DATA = "..data"


CATATONIT = ("catatonit", "/usr/libexec/podman/catatonit")


def infra(rootfs: str, *, container: str) -> None:
    """The sandboxes' root: catatonit alone (a static binary), copied once from the host."""
    binary = Path(rootfs) / INFRA_ARGV[0].lstrip("/")
    if binary.exists():
        return
    found = next((p for p in (shutil.which(c) or c for c in CATATONIT)
                  if os.path.isabs(p) and os.access(p, os.X_OK)), None)
    if found is None:
        raise errors.RootfsError("a pod needs catatonit to hold its namespaces: install"
                                 " Debian's catatonit package", container=container)
    for sub in ("proc", "dev", "sys", "etc"):
        os.makedirs(Path(rootfs) / sub, exist_ok=True)
    tmp = binary.with_name(".catatonit.tmp")
    shutil.copy2(found, tmp)
    os.replace(tmp, binary)


def sources(pod: PodInfo, mounts: Iterable[str], *, container: str) -> None:
    """A pod container's bind sources checked before runc mounts them: a ``subPath`` must
    stay inside its volume once every symlink is followed (a container can plant a link
    to / in an emptyDir it writes: CVE-2017-1002101's hole), and a missing one is made
    there, as the kubelet does. runc mounts the path after this check; a container
    racing to swap a checked directory for a link in between is not stopped here."""
    for source in mounts:
        for v in pod.volumes:
            if source.startswith(v.path + "/"):
                beneath(v.path, source[len(v.path) + 1:], create=v.kind != "files",
                        what=f"volume {v.name}", container=container)
                break


def beneath(root: str, sub: str, *, create: bool, what: str, container: str) -> str:
    """``root/sub`` resolved, proven inside ``root``; missing directories made one by one
    under a resolved parent (``create``). Raises ``errors.MountError`` otherwise."""
    top = os.path.realpath(root)
    current = top
    for part in [p for p in sub.split("/") if p not in ("", ".")]:
        step = os.path.join(current, part)
        if not os.path.lexists(step) and create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(step, 0o777)
        current = os.path.realpath(step)
        if current != top and not current.startswith(top + "/"):
            raise errors.MountError(f"{what}: subPath {sub!r} leads out of the volume "
                                    f"(through {part!r}): refused", container=container)
    if not os.path.lexists(current):
        raise errors.MountError(f"{what}: subPath {sub!r} does not exist",
                                container=container)
    return current


def prepare(pod: PodInfo, *, container: str) -> None:
    """Make every volume of ``pod`` ready to bind-mount (idempotent: a restarted sandbox
    keeps its emptyDirs' data), and remove the ones the pod no longer has (its sandbox is
    made anew, so no container uses them). ``container`` names the pod in errors."""
    wanted = {Path(v.path).name for v in pod.volumes if v.kind != "host"}
    base = Path(pod.dir) / "volumes"
    if base.is_dir():
        for entry in base.iterdir():
            if entry.name not in wanted:
                hostmount.unmount(entry)
                shutil.rmtree(entry, ignore_errors=True)
    for volume in pod.volumes:
        try:
            _prepare(volume)
        except OSError as exc:
            raise errors.MountError(f"volume {volume.name}: {volume.path}: "
                                    f"{exc.strerror or exc}", container=container) from exc


def sync(pod: PodInfo, *, container: str) -> list[str]:
    """Write the projected volumes' files anew where they changed; the volumes changed."""
    changed = []
    for volume in pod.volumes:
        if volume.kind != "files":
            continue
        try:
            if volume.secret and not hostmount.is_mountpoint(Path(volume.path)):
                _prepare(volume)  # its tmpfs first: a Secret's bytes never reach the disk
            if _write_files(volume):
                changed.append(volume.name)
        except OSError as exc:
            raise errors.MountError(f"volume {volume.name}: cannot write its files: "
                                    f"{exc.strerror or exc}", container=container) from exc
    return changed


def remove(pod_dir: Path) -> None:
    """Unmount every tmpfs under the pod's directory and remove it (the pod is gone)."""
    volumes = pod_dir / "volumes"
    if volumes.is_dir():
        for entry in volumes.iterdir():
            hostmount.unmount(entry)
    hostmount.unmount(pod_dir / "shm")
    shutil.rmtree(pod_dir, ignore_errors=True)


def _prepare(v: PodVolume) -> None:
    path = Path(v.path)
    if v.kind == "host":
        _check_host(v)
        return
    path.mkdir(parents=True, exist_ok=True)
    mode = 0o1777 if v.name == SHM else 0o777  # /dev/shm is sticky, an emptyDir is not
    if v.kind == "tmpfs" or (v.kind == "files" and v.secret):
        size = v.size if v.kind == "tmpfs" else SECRET_TMPFS
        options = f"mode={mode:o}" + (f",size={size}" if size else "")
        # mounted already (a sandbox made again): remounted, so a new sizeLimit holds
        _mount_tmpfs(path, options, remount=hostmount.is_mountpoint(path))
    if v.kind in ("dir", "tmpfs"):
        os.chmod(path, mode)  # the kubelet's emptyDir: writable by any uid in the pod
        if v.fs_group is not None:
            os.chown(path, -1, v.fs_group)
            os.chmod(path, 0o2777)
    if v.kind == "files":
        os.chmod(path, 0o755)
        _write_files(v)


def _mount_tmpfs(path: Path, options: str, *, remount: bool = False) -> None:
    flags = MS_NOSUID | MS_NODEV | (MS_REMOUNT if remount else 0)
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount a tmpfs: {os.strerror(err)}")


_HOST_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _check_host(v: PodVolume) -> None:
    """Kubernetes' hostPath ``type`` checks, made before any container mounts it."""
    path = Path(v.path)
    kind = v.host_type
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        kind = "Directory"
    elif kind == "FileOrCreate":
        if not os.path.lexists(path):  # never opens what is there (a FIFO, a device)
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY
                                 | os.O_CLOEXEC, 0o644))
        kind = "File"
    if kind not in _HOST_CHECKS:
        return  # "": no check, as in Kubernetes
    test, words = _HOST_CHECKS[kind]
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise OSError(2, f"hostPath type {kind}: it does not exist") from None
    if not test(mode):
        raise OSError(20, f"hostPath type {kind}: it is not {words}")


def _write_files(v: PodVolume) -> bool:
    """The kubelet's atomic writer: a new version directory, ``..data`` swapped to it with
    one rename, the stable names linked once; the old version removed. False when the
    files already say this (nothing written)."""
    root = Path(v.path)
    current = root / DATA
    if current.is_dir() and _same(current, v):
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    version = root / stamp
    version.mkdir(mode=0o755)
    for f in v.files:
        target = version / f.path
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as out:
            out.write(f.data)
        os.chmod(target, f.mode)
        if v.fs_group is not None:
            os.chown(target, -1, v.fs_group)
    old = os.readlink(current) if current.is_symlink() else None
    tmp = root / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp)
    os.replace(tmp, current)
    wanted = {f.path.split("/", 1)[0] for f in v.files}
    for entry in root.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in wanted and entry.is_symlink():
            entry.unlink()
    for name in sorted(wanted):
        link = root / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
    if old and old != stamp:
        shutil.rmtree(root / old, ignore_errors=True)
    return True


def _same(current: Path, v: PodVolume) -> bool:
    """The version in force holds exactly these files, bytes and modes."""
    try:
        found = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
        if found != {f.path for f in v.files}:
            return False
        for f in v.files:
            p = current / f.path
            info = p.stat()
            if stat.S_IMODE(info.st_mode) != f.mode or p.read_bytes() != f.data:
                return False
            if v.fs_group is not None and info.st_gid != v.fs_group:
                return False
    except OSError:
        return False
    return True
