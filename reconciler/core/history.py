"""What the daemon remembers of one object across passes and restarts, and its transitions.

    daemon worker ─(started, exited, failed)─▶ history (this module) ─▶ planner

Pure: each transition is a function from one frozen ``History`` to the next, so the
bookkeeping is tested with the planner, not with a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reconciler.core.backoff import Backoff
from reconciler.core.observed import ExitStatus


@dataclass(frozen=True)
class History:
    spec_hash: str | None = None  # the revision the counters below belong to
    restarts: int = 0  # restarts done, shown by `get`
    crashes: int = 0  # consecutive exits counted for the restart backoff
    last_exit: ExitStatus | None = None
    started_at: float | None = None
    stopped_by_us: bool = False  # a stop we made, not a crash
    failures: int = 0  # consecutive failed actions for this revision
    failed_at: float | None = None
    last_error: str | None = None
    generation: int = 0  # the newest instance generation made for this object
    live_blocked: str | None = None  # a manifest (JSON) the runtime could not apply live
    update_failed: str | None = None  # a revision (spec hash) a MakeBeforeBreak rolled back
    update_error: str | None = None  # ... and why


def on_started(hist: History, spec_hash: str, now: float, *, restart: bool,
               generation: int | None = None) -> History:
    """A run began; a new revision starts its counters afresh."""
    fresh = hist.spec_hash != spec_hash
    return replace(
        hist,
        spec_hash=spec_hash,
        restarts=hist.restarts + 1 if restart else hist.restarts,
        crashes=0 if fresh else hist.crashes,
        started_at=now,
        stopped_by_us=False,
        failures=0,
        failed_at=None,
        last_error=None,
        generation=max(hist.generation, generation or 0),
        live_blocked=None,
    )


def on_exit(hist: History, exit_: ExitStatus, *, by_us: bool, backoff: Backoff) -> History:
    """The init process ended. A run longer than ``reset_after`` forgets earlier crashes."""
    crashes = hist.crashes
    if not by_us:
        ran = None
        if exit_.finished_at is not None and hist.started_at is not None:
            ran = exit_.finished_at - hist.started_at
        crashes = 1 if ran is not None and ran >= backoff.reset_after else crashes + 1
    return replace(hist, last_exit=exit_, crashes=crashes, stopped_by_us=by_us)


def on_failure(hist: History, spec_hash: str, error: str, now: float) -> History:
    """An action failed; a failure of another revision does not count against this one."""
    fresh = hist.spec_hash != spec_hash
    return replace(hist, spec_hash=spec_hash, crashes=0 if fresh else hist.crashes,
                   failures=1 if fresh else hist.failures + 1, failed_at=now,
                   last_error=error)


def on_update_failed(hist: History, spec_hash: str, why: str) -> History:
    """A MakeBeforeBreak's new revision never became ready: not tried again until the
    manifest changes (the old instance runs on)."""
    return replace(hist, update_failed=spec_hash, update_error=why)


def on_live_impossible(hist: History, manifest_json: str) -> History:
    """The runtime refused a live change: the planner makes a new instance for it instead."""
    return replace(hist, live_blocked=manifest_json)


def restart_due(hist: History, backoff: Backoff) -> float:
    """When an exited object may be restarted: at once after the first crash."""
    finished = hist.last_exit.finished_at if hist.last_exit else None
    return (finished or 0.0) + backoff.delay(hist.crashes - 1)
