"""Default locations, in one light module the CLI can import without the runtime.

One daemon, one cgroup tree: unless ``--cgroup-parent`` says otherwise, a daemon puts its
instances under ``/reconciler-<hash>``, the hash of its resolved state dir, so two daemons
on one host (two manifests directories, a test run beside production) never share a
cgroup. The parent in use is recorded in ``<state-dir>/daemon.json``; the CLI reads it
from there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DEFAULT_MANIFESTS = "/etc/reconciler/manifests"
DEFAULT_STATE_DIR = "/var/lib/reconciler"
DEFAULT_RUNC_ROOT = "/run/reconciler/runc"
CGROUP_LOCKS = "/run/reconciler/cgroup-locks"  # one flock per cgroup parent in use
DAEMON_FILE = "daemon.json"


def pods_dir(state_dir: str | os.PathLike[str]) -> str:
    """Where pods' volumes live (``<state-dir>/pods``), and the sandboxes' root (``infra``)."""
    return os.path.join(os.path.abspath(os.fspath(state_dir)), "pods")


def default_cgroup_parent(state_dir: str | os.PathLike[str]) -> str:
    """``/reconciler-<8 hex>``: derived from the daemon's identity, its state dir."""
    key = os.path.realpath(os.fspath(state_dir)).encode()
    return "/reconciler-" + hashlib.sha256(key).hexdigest()[:8]


def recorded_cgroup_parent(state_dir: str | os.PathLike[str]) -> str:
    """The cgroup parent the daemon of ``state_dir`` uses (or would use by default)."""
    try:
        data = json.loads((Path(state_dir) / DAEMON_FILE).read_text())
        parent = data["cgroupParent"]
    except (OSError, ValueError, KeyError, TypeError):
        return default_cgroup_parent(state_dir)
    return str(parent)


def recorded_runtime_classes(state_dir: str | os.PathLike[str]
                             ) -> dict[str, tuple[str, ...]] | None:
    """The runtime classes the daemon of ``state_dir`` was given (None: not recorded)."""
    try:
        data = json.loads((Path(state_dir) / DAEMON_FILE).read_text())["runtimeClasses"]
        return {str(k): tuple(str(a) for a in v) for k, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


STATUS_FALLBACK = "/run/reconciler/status"


def status_fallback(state_dir: str | os.PathLike[str]) -> Path:
    """Where the daemon writes its status while its state dir is full (a tmpfs): the CLI
    reads it while it is newer than ``status.json``."""
    key = os.path.realpath(os.fspath(state_dir)).encode()
    return Path(STATUS_FALLBACK) / f"{hashlib.sha256(key).hexdigest()[:16]}.json"


def cgroup_lock(parent: str) -> Path:
    """The lock file a live daemon holds for its cgroup parent."""
    digest = hashlib.sha256(("/" + parent.strip("/")).encode()).hexdigest()[:16]
    return Path(CGROUP_LOCKS) / f"{digest}.lock"
