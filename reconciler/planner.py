"""The planner: (desired, observed, history, now) -> ordered actions, each with its reason.

Pure: no I/O, no clock reads, no runtime import. The controller feeds it the desired state
(from the manifests), what the runtime reports, and the per-container history it keeps,
then hands the actions to the executor. Planning again against the state a plan produced
yields nothing (a property test holds it to that).

Rules, per container name:
- in the manifests, not on the host: create (unless desired ``Stopped``);
- on the host, not in the manifests: delete — unless the source is unavailable, the
  file that defined it is broken now, its name is contested, or the deletion would remove
  every container because the directory is empty (refused without ``allow_empty``);
- both, spec hash differs: recreate, naming the fields that changed;
- both, same hash: start/stop/pause/resume towards the desired run state; an exited
  container is restarted per ``restartPolicy`` with exponential backoff (the first restart
  at once); a failed action is retried with backoff until the manifest changes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from reconciler import changes
from reconciler.backoff import Backoff
from reconciler.manifest.model import RestartPolicy, RunState
from reconciler.runtime.types import ANN_MANIFEST, ExitStatus, Observed, Status

if TYPE_CHECKING:
    from reconciler.daemon.desired import Desired, DesiredState


class Kind(str, enum.Enum):
    CREATE = "create"
    RECREATE = "recreate"
    RESTART = "restart"
    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"
    UPDATE = "update"  # live: mounts, resources, labels — same container, same init PID


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str
    reason: str
    desired: Desired | None = None
    patch: tuple[Mapping[str, Any], ...] = ()  # UPDATE: the live JSON-patch operations

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}: {self.reason}"


@dataclass(frozen=True)
class History:
    """What the controller remembers of one container across passes (and restarts)."""

    spec_hash: str | None = None  # the revision the counters below belong to
    restarts: int = 0  # restarts done, shown by `get`
    crashes: int = 0  # consecutive exits counted for the restart backoff
    last_exit: ExitStatus | None = None
    started_at: float | None = None
    stopped_by_us: bool = False  # a stop we made, not a crash
    failures: int = 0  # consecutive failed actions for this revision
    failed_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    wake_at: float | None = None  # plan again then (a backoff ends)
    notes: tuple[str, ...] = ()  # what was held back, and why
    waiting: Mapping[str, float] = field(default_factory=dict)  # name -> retry due


def plan(
    desired: DesiredState,
    observed: Mapping[str, Observed],
    history: Mapping[str, History],
    now: float,
    *,
    allow_empty: bool = False,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
) -> Plan:
    actions: list[Action] = []
    notes: list[str] = []
    waiting: dict[str, float] = {}
    for name in sorted(set(desired.specs) | set(observed)):
        want = desired.specs.get(name)
        have = observed.get(name)
        hist = history.get(name, History())
        if want is None:
            assert have is not None
            held = _hold_delete(desired, have)
            if held:
                notes.append(f"{name}: kept: {held}")
            else:
                actions.append(Action(Kind.DELETE, name, "no longer in any manifest"))
            continue
        action = _converge(want, have, hist)
        if action is None:
            continue
        due = _retry_due(hist, want, backoff)
        if action.kind is Kind.RESTART:
            after_crash = restart_due(hist, backoff)
            due = after_crash if due is None else max(due, after_crash)
        if action.kind is not Kind.DELETE and due is not None and due > now:
            waiting[name] = due
            notes.append(f"{name}: {action.kind.value} waits {due - now:.1f}s (backoff)")
            continue
        actions.append(action)
    deletes = [a for a in actions if a.kind is Kind.DELETE]
    if deletes and not desired.specs and not allow_empty and len(deletes) == len(observed):
        actions = [a for a in actions if a.kind is not Kind.DELETE]
        notes.append(
            f"refusing to delete all {len(deletes)} containers: the manifests directory is"
            " valid but defines none (start the daemon with --allow-empty to allow this)"
        )
    return Plan(actions=tuple(actions), wake_at=min(waiting.values(), default=None),
                notes=tuple(notes), waiting=waiting)


def _hold_delete(desired: DesiredState, have: Observed) -> str | None:
    if not desired.available:
        return f"manifests source unavailable ({desired.reason})"
    if have.source is not None and have.source in desired.broken_sources:
        return f"its manifest {have.source} has errors; running on its last good spec"
    if have.name in desired.conflicts:
        return f"defined in several files: {', '.join(desired.conflicts[have.name])}"
    return None


def _retry_due(hist: History, want: Desired, backoff: Backoff) -> float | None:
    """When a failed action for this revision may run again (None: no failure pending)."""
    if hist.failures and hist.spec_hash == want.spec_hash and hist.failed_at is not None:
        return hist.failed_at + backoff.delay(hist.failures)
    return None


def _converge(want: Desired, have: Observed | None, hist: History) -> Action | None:
    state = want.container.spec.state
    if have is None:
        if state is RunState.STOPPED:
            return None
        return Action(Kind.CREATE, want.name, "in the manifests, not on the host", want)
    if state is RunState.STOPPED:  # never start anything: a changed or half-made one is
        if have.status is Status.STOPPED:  # recreated when it is started again
            return None
        return Action(Kind.STOP, want.name, "desired state Stopped", want)
    if have.status in (Status.CREATING, Status.CREATED):
        return Action(Kind.RECREATE, want.name, f"found half-made ({have.status.value})", want)
    if have.spec_hash != want.spec_hash:
        return Action(Kind.RECREATE, want.name, _changed(want, have), want)
    if have.status is Status.STOPPED:
        return _exited(want, hist)
    update = _live_update(want, have)
    if update is not None:
        return update
    if state is RunState.PAUSED and have.status is Status.RUNNING:
        return Action(Kind.PAUSE, want.name, "desired state Paused", want)
    if state is RunState.RUNNING and have.status is Status.PAUSED:
        return Action(Kind.RESUME, want.name, "desired state Running", want)
    return None


def _live_update(want: Desired, have: Observed) -> Action | None:
    """Mounts, resources or metadata differ from what is applied: change them in place."""
    applied = have.applied or have.annotations.get(ANN_MANIFEST)
    if applied == want.manifest_json:  # the common case, and cheap: nothing changed
        return None
    change = changes.classify(applied, json.loads(want.manifest_json))
    ops = tuple(op for op in change.live if not op["path"].startswith("/spec/state"))
    if not ops:
        return None
    parts = sorted(changes.live_parts(changes.Change(live=ops, recreate=())))
    return Action(Kind.UPDATE, want.name, f"live change: {', '.join(parts)}", want, patch=ops)


def _exited(want: Desired, hist: History) -> Action | None:
    spec = want.container.spec
    if spec.state is RunState.STOPPED:
        return None
    if hist.stopped_by_us:
        return Action(Kind.START, want.name, f"desired state {spec.state.value}", want)
    exit_ = hist.last_exit
    policy = spec.restart_policy
    if policy is RestartPolicy.NEVER:
        return None
    if policy is RestartPolicy.ON_FAILURE and exit_ is not None and not exit_.failed:
        return None
    code = "unknown status" if exit_ is None else _describe_exit(exit_)
    return Action(Kind.RESTART, want.name, f"exited ({code}); restartPolicy {policy.value}",
                  want)


def restart_due(hist: History, backoff: Backoff) -> float:
    """When an exited container may be restarted: at once after the first crash."""
    finished = hist.last_exit.finished_at if hist.last_exit else None
    return (finished or 0.0) + backoff.delay(hist.crashes - 1)


def _describe_exit(exit_: ExitStatus) -> str:
    if exit_.oom_killed:
        return f"OOM-killed, code {exit_.exit_code}"
    if exit_.signal:
        return f"signal {exit_.signal}"
    return f"code {exit_.code}"


def _changed(want: Desired, have: Observed) -> str:
    """``spec changed: command, env`` — the top-level fields that differ, when known."""
    try:
        applied = have.applied or have.annotations[ANN_MANIFEST]  # live changes included
        before: dict[str, Any] = json.loads(applied).get("spec", {})
    except (KeyError, ValueError):
        return f"spec hash {have.spec_hash} -> {want.spec_hash}"
    after = want.container.model_dump(mode="json", exclude_defaults=True).get("spec", {})
    fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return f"spec changed: {', '.join(fields) or 'defaults'}"


# -- history transitions: pure, so the controller's bookkeeping is tested with the planner --


def on_started(hist: History, spec_hash: str, now: float, *, restart: bool) -> History:
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
