"""``reconciler cp NAME:PATH LOCAL`` and ``reconciler cp LOCAL NAME:PATH``: files into and
out of a running container, as a tar stream through ``runc exec tar``.

    reconciler cp ─▶ runc exec INSTANCE tar -c/-x ─▶ the container's own view of its files

What RunDMC's StreamIn/StreamOut and Pouch's archive API do: the tar is made and read
inside the container (its mounts, its root, its user 0), so what is copied is what the
container sees; on this side Python's ``tarfile`` streams it, never holding it in memory,
and extracts with the ``data`` filter (no absolute paths, no links out, no devices).
A container needs a ``tar`` (busybox has one). A path on a read-only root can only be
written through a writable mount; the error says which mounts are.
"""

from __future__ import annotations

import argparse
import functools
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors
from reconciler.cli import daemon as daemon_cli
from reconciler.core.observed import Status

if TYPE_CHECKING:
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

TIMEOUT = 600  # seconds one copy may take


def register(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "cp", help="copy files into or out of a running container",
        description="Copy a file or directory out of a container (NAME:PATH LOCAL) or into"
                    " it (LOCAL NAME:PATH), as a tar stream through the container's own tar."
                    " A pod's container: POD:PATH with -c CONTAINER.")
    daemon_cli._common(p)
    daemon_cli.namespace_option(p)
    p.add_argument("source", metavar="SRC", help="NAME:PATH in a container, or a local path")
    p.add_argument("dest", metavar="DEST", help="a local path, or NAME:PATH in a container")
    p.add_argument("-c", "--container", help="a pod's container (default: kubectl's choice)")
    p.set_defaults(func=cmd_cp)


def _remote(text: str) -> tuple[str, str] | None:
    """``web:/etc/hosts`` -> (web, /etc/hosts); a local path -> None."""
    name, colon, path = text.partition(":")
    if not colon or not name or "/" in name.replace("pod/", "", 1):
        return None
    if not path.startswith("/"):
        raise errors.UsageError(f"{text}: the path in a container must be absolute")
    return name, posixpath.normpath(path)


def cmd_cp(args: argparse.Namespace) -> int:
    from reconciler.cli import inspect

    src, dst = _remote(args.source), _remote(args.dest)
    if (src is None) == (dst is None):
        raise errors.UsageError("one of SRC and DEST must be NAME:PATH, the other a local"
                                " path")
    remote = src or dst
    assert remote is not None
    args.name = remote[0]
    # errors name the container as typed (a pod's as POD/CONTAINER), not its instance
    return inspect._by_name(functools.partial(_cp, src=src, dst=dst))(args)


def _cp(args: argparse.Namespace, *, src: tuple[str, str] | None,
        dst: tuple[str, str] | None) -> int:
    from reconciler.cli import inspect

    rt = inspect._runtime(args)
    instance = rt.locate(inspect._units(args, rt)[0].unit)
    _running(rt, instance, way="from" if src is not None else "into")
    if src is not None:
        return _out(rt, instance, src[1], Path(args.dest), shown=src[0])
    assert dst is not None
    return _in(rt, instance, Path(args.source), dst[1], shown=dst[0])


def _running(rt: Any, instance: str, *, way: str) -> None:
    """Before runc is asked: a container that does not exist is the one wording of that
    fact (``container "web" not found``), and one not running says so, not runc's log
    line (``exec failed: ...``)."""
    import anyio

    obs = anyio.run(rt.state, instance)  # ContainerNotFound when runc does not know it
    if obs.status is not Status.RUNNING:
        raise errors.RuntimeFailure(f"cannot copy {way} a {obs.status.value} container",
                                    container=instance)


def _out(rt: Any, instance: str, path: str, local: Path, *, shown: str) -> int:
    """A container's PATH to LOCAL: into LOCAL if it is a directory, else as LOCAL."""
    parent, base = posixpath.split(path.rstrip("/") or "/")
    argv = rt.exec_argv(instance, ["tar", "-cf", "-", "-C", parent or "/", base or "."])
    into = local if local.is_dir() else local.parent
    with tempfile.TemporaryDirectory(dir=into, prefix=".reconciler-cp-") as tmp, \
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                archive.extractall(tmp, filter="data")
        except tarfile.TarError:
            pass  # an empty stream: tar's own words below say why
        err = _said(proc.stderr.read())
        if proc.wait(TIMEOUT) != 0:
            raise errors.RuntimeFailure(f"cannot copy {path} out: {err or 'tar failed'}",
                                        container=shown)
        got = Path(tmp) / (base or ".")
        target = local / got.name if local.is_dir() else local
        if target.exists() and target.is_dir() and not got.is_dir():
            raise errors.UsageError(f"{target} is a directory")
        if target.is_dir() and got.is_dir():
            shutil.copytree(got, target, dirs_exist_ok=True)
        else:
            os.replace(got, target)
    return 0


def _in(rt: Any, instance: str, local: Path, path: str, *, shown: str) -> int:
    """LOCAL into a container's PATH: into PATH if it is a directory there, else as PATH."""
    if not local.exists():
        raise errors.UsageError(f"{local}: no such file or directory")
    test = subprocess.run(rt.exec_argv(instance, ["test", "-d", path]),
                          capture_output=True, check=False, timeout=60)
    into, name = (path, local.name) if test.returncode == 0 else posixpath.split(path)
    argv = rt.exec_argv(instance, ["tar", "-xf", "-", "-C", into or "/"])
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|") as archive:
                archive.add(local, arcname=name)
        except BrokenPipeError:
            pass  # tar stopped reading: its words below
        proc.stdin.close()
        err = _said(proc.stderr.read())
        if proc.wait(TIMEOUT) != 0:
            raise errors.RuntimeFailure(_in_error(rt, instance, path, err), container=shown)
    return 0


def _said(stderr: bytes) -> str:
    """What went wrong in words: runc's message when runc failed (a container that went
    since ``_running``), not its ``time=... level=error`` line; else all tar said."""
    from reconciler import proc

    text = stderr.decode(errors="replace").strip()
    return proc.runc_message(stderr) if "level=error" in text else text


def _in_error(rt: Any, instance: str, path: str, err: str) -> str:
    """tar's refusal, and on a read-only root which mounts can be written."""
    message = f"cannot copy into {path}: {err or 'tar failed'}"
    if "Read-only file system" not in err:
        return message
    config = rt.config(instance)
    writable = sorted(m["destination"] for m in config.get("mounts") or []
                      if m.get("type") in ("bind", "tmpfs")
                      and "ro" not in (m.get("options") or [])
                      and m["destination"] not in ("/dev", "/dev/shm", "/dev/mqueue"))
    where = ", ".join(writable) or "none"
    return (f"cannot copy into {path}: the container's root is read-only; copy into a"
            f" writable mount ({where})")
