"""Update locks: an app's veto on being stopped while it does something critical.

    loop (each pass) ─▶ UpdateLocks.check (this module) ─▶ planner (``locks``: which
        objects' disruptive steps wait) ◀─ `reconciler unlock NAME --force` (a file)

A ``kind: Container`` names a file in its own filesystem (``spec.updateLock.path``, as
balena's ``updates.lock``). While it exists, a recreate, a stop, a restart for a change
and a delete of the object wait. It is read from the host through
``/proc/<init PID>/root``: the container's own view, whatever volume it lives in. A lock
holding a PID (its first line) is stale once that PID no longer runs in the container's
PID namespace (``/proc/<init>/root/proc/<PID>``): it is removed and the break logged, as
balena's stale lockfiles (#810, #2261) should have been. ``timeoutSeconds`` and
``reconciler unlock NAME --force`` (a file under ``<state>/unlock``, naming the instance
it overrides) let the change through; each override is an event.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core import planner
from reconciler.core.observed import Status

if TYPE_CHECKING:
    from reconciler.core.desired import DesiredState
    from reconciler.core.observed import Observed

Event = Callable[[str, str, str, bool], None]  # (name, reason, message, warning)


def force_file(state_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(state_dir) / "unlock" / name


def write_force(state_dir: str | os.PathLike[str], name: str, instance: str | None,
                who: str) -> None:
    """What `reconciler unlock NAME --force` leaves for the daemon."""
    path = force_file(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instance": instance, "at": time.time(), "by": who}))


class UpdateLocks:
    def __init__(self, state_dir: str | os.PathLike[str], event: Event) -> None:
        self.state_dir = state_dir
        self.event = event
        self.since: dict[str, float] = {}  # name -> when its lock was first seen held
        self._told: dict[str, str] = {}  # name -> the override already told

    def check(self, desired: DesiredState | None, observed: Mapping[str, Observed],
              now: float) -> dict[str, str]:
        """Objects whose lock holds disruptive steps back now -> what holds it, in words."""
        out: dict[str, str] = {}
        for name, obs in observed.items():
            want = desired.specs.get(name) if desired is not None else None
            container = want.container if want is not None else planner.applied_container(obs)
            lock = container.spec.update_lock if container is not None else None
            if (lock is None or obs.pid is None
                    or obs.status not in (Status.RUNNING, Status.PAUSED)):
                self._clear(name)
                continue
            root = f"/proc/{obs.pid}/root"
            holder = _read(root + lock.path)
            if holder is None:
                self._clear(name)
                continue
            if holder and not os.path.exists(f"{root}/proc/{holder}"):
                with contextlib.suppress(OSError):
                    os.unlink(root + lock.path)
                self.event(name, "LockBroken", f"stale update lock {lock.path}: PID {holder}"
                                               " no longer runs in the container; removed",
                           True)
                self._clear(name)
                continue
            since = self.since.setdefault(name, now)
            held = (f"{lock.path} held since {time.strftime('%H:%M:%S', time.localtime(since))}"
                    + (f" by PID {holder}" if holder else ""))
            forced = _forced(force_file(self.state_dir, name), obs.id)
            if forced is not None:
                self._tell(name, "LockOverridden", f"{held}: overridden by {forced}")
                continue
            if lock.timeout_seconds is not None and now - since >= lock.timeout_seconds:
                self._tell(name, "LockTimedOut", f"{held}: past its timeoutSeconds"
                                                 f" ({lock.timeout_seconds}s); going on")
                continue
            out[name] = held
        for name in [n for n in self.since if n not in observed]:
            self._clear(name)
        return out

    def _tell(self, name: str, reason: str, message: str) -> None:
        if self._told.get(name) != reason:
            self._told[name] = reason
            self.event(name, reason, message, True)

    def _clear(self, name: str) -> None:
        if self.since.pop(name, None) is None:
            return  # not held before: no override to retire
        self._told.pop(name, None)
        with contextlib.suppress(OSError):
            force_file(self.state_dir, name).unlink()


def _read(path: str) -> str | None:
    """None: no lock; "": held, no PID; else the PID it holds (its first line)."""
    try:
        with open(path, "rb") as f:
            first = f.read(64).split(b"\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    except OSError:
        return ""  # there but unreadable: held
    text = first.decode(errors="replace")
    return text if text.isdigit() else ""


def _forced(path: Path, instance: str) -> str | None:
    """Who overrode the lock of ``instance`` (`unlock --force`), or None."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("instance") not in (None, instance):
        return None  # an override of an instance that is gone
    return f"`reconciler unlock --force` ({doc.get('by') or 'someone'})"
