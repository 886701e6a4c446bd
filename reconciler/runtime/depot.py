"""The depot: one directory per container under the state dir, the source of truth on disk.

    <state-dir>/containers/<name>/
        bundle/               the OCI bundle runc and conmon run
            config.json       generated; carries our annotations (self-describing)
            rootfs/           overlay mount point (lower: the manifest's rootfs, read-only)
            pidfile           written by runc: the init PID
            conmon.pid        the monitor's PID
            exits/<name>      written by conmon when init exits: the exit code
            oom               conmon's marker: the container saw an OOM kill
        applied.json          the manifest in force now, live changes included
        layer/upper, layer/work   the container's own writable layer
        layer/mapped          hostUsers: false: the lower tree idmapped (runtime.idmap)
        logs/current.log      conmon's size-capped log (Kubernetes log format)
        logs/previous.log     the log of the previous run, kept across a restart

Pure path arithmetic plus two small file helpers; the runc adapter owns the life cycle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import atomic


@dataclass(frozen=True)
class Depot:
    root: Path  # <state-dir>/containers/<name>
    name: str

    @classmethod
    def of(cls, state_dir: str | os.PathLike[str], name: str) -> Depot:
        return cls(Path(state_dir) / "containers" / name, name)

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def config(self) -> Path:
        return self.bundle / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def applied(self) -> Path:
        return self.root / "applied.json"

    @property
    def upper(self) -> Path:
        return self.root / "layer" / "upper"

    @property
    def work(self) -> Path:
        return self.root / "layer" / "work"

    @property
    def mapped(self) -> Path:
        """hostUsers: false: the lower tree idmapped here, the overlay's lower layer."""
        return self.root / "layer" / "mapped"

    @property
    def pidfile(self) -> Path:
        return self.bundle / "pidfile"

    @property
    def conmon_pidfile(self) -> Path:
        return self.bundle / "conmon.pid"

    @property
    def exit_dir(self) -> Path:
        return self.bundle / "exits"

    @property
    def exit_file(self) -> Path:
        return self.exit_dir / self.name

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log(self) -> Path:
        return self.logs / "current.log"

    @property
    def previous_log(self) -> Path:
        return self.logs / "previous.log"


def containers_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "containers"


def write_json_atomic(path: Path, data: Any) -> None:
    """config.json: old or new, never half, for a reader or a daemon that crashes
    (``reconciler.atomic``); compact, so the C encoder writes it.

    Not fsynced: it is on the critical path of every create, and nothing needs it to
    outlive a power cut. A power cut ends the container with it; runc's own state (under
    ``/run`` by default) goes too, the next daemon clears the depot as a leftover and
    creates anew; and a relist reads the annotations from runc's state, not from here.
    What is fsynced, because it must outlive a power cut: the image store's index and
    blobs, ``daemon.json`` (the cgroup parent), and ``applied.json`` after a live change.
    """
    atomic.write(path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode(),
                 fsync=False)


def read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return int(text)
    except ValueError:
        return None

