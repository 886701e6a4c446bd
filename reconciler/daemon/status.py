"""Status and events on disk: what the daemon knows, readable by the CLI while it runs.

    <state-dir>/status.json     the whole status, replaced atomically after every change
    <state-dir>/events.jsonl    one JSON event a line, appended; rotated past a size

A crash leaves the old status.json or the new one, never half of one; a torn last line of
events.jsonl is skipped by readers. The daemon is the only writer (it holds the lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from reconciler import atomic, errors, paths
from reconciler.core.history import History
from reconciler.core.observed import ExitStatus

EVENTS_MAX_BYTES = 4 << 20

log = logging.getLogger(__name__)


class Store:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.status_path = self.dir / "status.json"
        self.events_path = self.dir / "events.jsonl"
        self._lock_fd: int | None = None
        self._cgroup_fd: int | None = None
        self._cgroup_lock: Path | None = None

    # -- the daemon lock -------------------------------------------------------------------

    def lock(self) -> None:
        """One daemon per state dir: a second one fails at once with a clear message.
        The state dir is made private (0700): it holds Secret values (pods' volumes, env in
        config.json) and every container's files; runc and conmon run as root."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = self.dir.stat().st_mode & 0o777
        if mode & 0o077:
            self.dir.chmod(0o700)
            log.info("state dir %s: mode %04o made 0700 (it holds Secrets)", self.dir, mode)
        fd, holder = _flock(self.dir / "daemon.lock", f"{os.getpid()}")
        if fd is None:
            raise errors.StateDirLocked(
                f"another reconciler daemon (pid {holder}) is running with state dir {self.dir}")
        self._lock_fd = fd

    def claim_cgroup_parent(self, parent: str, *,
                            runtime_classes: Mapping[str, Sequence[str]] | None = None
                            ) -> None:
        """One daemon per cgroup tree: hold the parent's lock for the daemon's life, and
        record the parent in ``daemon.json`` (the CLI and ``get -o wide`` read it there),
        with the runtime classes it runs pods under (the CLI's exec and logs find them)."""
        path = paths.cgroup_lock(parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, holder = _flock(path, f"pid {os.getpid()}, state dir {self.dir}", unlinked=True)
        if fd is None:
            raise errors.StateDirLocked(
                f"cgroup parent {parent} is held by another live reconciler daemon"
                f" ({holder}); give this one its own --cgroup-parent (or leave it unset:"
                " each state dir then gets its own)")
        self._cgroup_fd, self._cgroup_lock = fd, path
        doc: dict[str, Any] = {"cgroupParent": parent, "pid": os.getpid()}
        if runtime_classes is not None:
            doc["runtimeClasses"] = {k: list(v) for k, v in runtime_classes.items()}
        atomic.write(self.dir / paths.DAEMON_FILE, json.dumps(doc, sort_keys=True).encode())

    def unlock(self) -> None:
        if self._cgroup_fd is not None:
            # removed while still held, so no one locks a file that is about to go
            with contextlib.suppress(OSError):
                if self._cgroup_lock is not None:
                    os.unlink(self._cgroup_lock)
            os.close(self._cgroup_fd)
            self._cgroup_fd = self._cgroup_lock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- status ----------------------------------------------------------------------------

    def write_status(self, status: Mapping[str, Any], *, fallback: bool = False) -> None:
        """``status.json``; with ``fallback``, the copy in /run the CLI reads while the
        state dir is full (``paths.status_fallback``)."""
        path = paths.status_fallback(self.dir) if fallback else self.status_path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(status, sort_keys=True, separators=(",", ":"), default=str)
        atomic.write(path, data.encode(), fsync=False)

    def clear_fallback(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.status_fallback(self.dir).unlink()

    def read_status(self) -> dict[str, Any]:
        path = self.status_path
        with contextlib.suppress(OSError):  # the daemon's copy while its state dir is full
            fallback = paths.status_fallback(self.dir)
            if fallback.stat().st_mtime >= path.stat().st_mtime:
                path = fallback
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise errors.ReconcilerError(f"{path} is not valid JSON: {exc}") from exc
        return data

    # -- events ----------------------------------------------------------------------------

    def event(self, name: str | None, reason: str, message: str, *, warning: bool = False,
              now: float | None = None) -> dict[str, Any]:
        record = {"time": now if now is not None else time.time(), "name": name,
                  "reason": reason, "message": message,
                  "type": "Warning" if warning else "Normal"}
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.events_path.stat().st_size > EVENTS_MAX_BYTES:
                os.replace(self.events_path, self.events_path.with_suffix(".jsonl.1"))
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):  # a full disk takes what fits
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                with contextlib.suppress(OSError):  # no half line for the next to join
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        return record

    def events(self, name: str | None = None) -> Iterator[dict[str, Any]]:
        for path in (self.events_path.with_suffix(".jsonl.1"), self.events_path):
            with contextlib.suppress(FileNotFoundError), open(path) as f:
                for line in f:
                    record = _parse(line)
                    if record is not None and (name is None or record.get("name") == name):
                        yield record


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None  # a torn last line after a crash
    return record if isinstance(record, dict) else None


def _flock(path: Path, me: str, *, unlinked: bool = False) -> tuple[int | None, str]:
    """An exclusive lock on ``path`` with ``me`` written in it: (fd, me), or (None, what
    the holder wrote). ``unlinked``: the holder removes the file on its way out, so a lock
    taken on a removed file is dropped and taken again on the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return None, holder
        try:
            if not unlinked or os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{me}\n".encode(), 0)
    return fd, me


def history_to_json(hist: History) -> dict[str, Any]:
    """camelCase, as the rest of status.json (``lastExit.oomKilled``); without
    ``dataclasses.asdict``'s deep copies (status.json is written many times a second
    during a burst; every field is a scalar but ``last_exit``)."""
    doc = {_CAMEL[f]: getattr(hist, f) for f in _HISTORY_FIELDS}
    if hist.last_exit is not None:
        e = hist.last_exit
        doc["lastExit"] = {"code": e.code, "signal": e.signal, "oomKilled": e.oom_killed,
                           "finishedAt": e.finished_at,
                           **({"unhealthy": True} if e.unhealthy else {})}
    return doc


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_HISTORY_FIELDS = tuple(f.name for f in fields(History))
_CAMEL = {f: _camel(f) for f in _HISTORY_FIELDS}
_EXIT_FIELDS = {_camel(f): f for f in ExitStatus.__dataclass_fields__}


def history_from_json(data: Mapping[str, Any]) -> History:
    """Read back what ``history_to_json`` wrote (or an older daemon's snake_case)."""
    names = {**{f: f for f in _HISTORY_FIELDS}, **{c: f for f, c in _CAMEL.items()}}
    found = {names[k]: v for k, v in data.items() if k in names}
    exit_ = found.get("last_exit")
    if isinstance(exit_, Mapping):
        exits = {**{f: f for f in ExitStatus.__dataclass_fields__}, **_EXIT_FIELDS}
        found["last_exit"] = ExitStatus(**{exits[k]: v for k, v in exit_.items()
                                           if k in exits})
    return History(**found)
