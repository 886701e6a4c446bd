"""The planner: (desired, observed, history, now) -> per-object actions made of typed steps.

    core.desired + core.observed + core.history ─plan()─▶ Plan ─▶ daemon workers (execute)

Pure: no I/O, no clock reads, no runtime import. Planning again against the state a plan
produced yields nothing (a property test holds it to that). Each ``Action`` is one
object's decision: its ``kind`` and ``cause`` say why, its ``steps`` say exactly what to
do, in order (the tuple is the ordering). The executor runs the steps and never decides.

Rules, per object name:
- in the desired state, not on the host: create (unless desired ``Stopped``);
- on the host, not desired: delete — unless the source that defined it is unavailable,
  the origin that defined it is broken now, its name is contested, or the deletion would
  remove every object of a source that is valid but defines none (refused without
  ``allow_empty``);
- both, spec hash differs: a new instance (the next generation), naming the fields that
  changed; stop-then-create is the order;
- both, same hash: start/stop/pause/resume towards the desired run state; live changes
  (mounts, limits, metadata) in place; an exited instance is restarted per
  ``restartPolicy`` with exponential backoff (the first restart at once); a failed action
  is retried with backoff until the manifest changes.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import changes, dependencies, pods
from reconciler.core.backoff import Backoff
from reconciler.core.desired import Desired, DesiredState

# the history transitions are the planner's vocabulary too: re-exported
from reconciler.core.history import History as History
from reconciler.core.history import on_exit as on_exit
from reconciler.core.history import on_failure as on_failure
from reconciler.core.history import on_live_impossible as on_live_impossible
from reconciler.core.history import on_started as on_started
from reconciler.core.history import on_update_failed as on_update_failed
from reconciler.core.history import restart_due as restart_due
from reconciler.core.instance import (
    ANN_POD,
    ANN_POD_ROLE,
    ANN_POD_SPEC,
    ANN_SANDBOX,
    ANN_STOP_SIGNAL,
    instance_id,
)
from reconciler.core.observed import ExitStatus, Observed, Status
from reconciler.manifest.model import (
    RESTARTED_AT,
    Container,
    Mount,
    Resources,
    RestartPolicy,
    RunState,
)
from reconciler.manifest.network import ANN_NETWORKS


class Kind(str, enum.Enum):
    CREATE = "create"
    RECREATE = "recreate"
    RESTART = "restart"
    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"
    UPDATE = "update"  # live: mounts, resources, labels — same instance, same init PID


class Cause(str, enum.Enum):
    """Why an action is planned, as data (the ``reason`` says it in words)."""

    NOT_ON_HOST = "NotOnHost"
    NOT_DESIRED = "NotDesired"
    SPEC_CHANGED = "SpecChanged"
    HALF_MADE = "HalfMade"
    LIVE_IMPOSSIBLE = "LiveUpdateImpossible"
    LIVE_CHANGE = "LiveChange"
    RUN_STATE = "RunState"
    EXITED = "Exited"
    STRAY = "Stray"  # an older instance of an object that has a newer one
    SANDBOX_GONE = "SandboxGone"  # a pod container whose sandbox was replaced or stopped
    DEPENDENCY = "Dependency"  # a dependency with restart: true was started again


# -- steps: what a worker does, one after the other ------------------------------------------


@dataclass(frozen=True)
class Create:
    """Resolve the desired object into an instance spec and create it (not started)."""

    instance: str
    generation: int
    previous: str | None  # the instance it replaces (its logs carry over)
    join: tuple[str, int] | None = None  # a pod container: its sandbox's instance and PID


@dataclass(frozen=True)
class Start:
    instance: str


@dataclass(frozen=True)
class Stop:
    """Stop signal, then up to ``grace`` seconds, then SIGKILL; the grace holds no slot."""

    instance: str
    signal: str
    grace: float
    pre_stop: tuple[str, ...] = ()  # run inside first, within the grace period


@dataclass(frozen=True)
class Delete:
    instance: str
    keep_logs: bool = False
    pod_gone: bool = False  # a sandbox whose pod is no longer desired: its volumes go too


@dataclass(frozen=True)
class UpdateMounts:
    instance: str
    old: tuple[Mount, ...]
    new: tuple[Mount, ...]


@dataclass(frozen=True)
class UpdateLimits:
    instance: str
    before: Resources | None
    after: Resources


@dataclass(frozen=True)
class RecordApplied:
    """The manifest now in force (after live changes), recorded before they are told."""

    instance: str
    container: Container
    metadata_changed: bool = False


@dataclass(frozen=True)
class SetRunState:
    instance: str
    state: RunState  # RUNNING (resume) or PAUSED (pause)


@dataclass(frozen=True)
class SyncVolumes:
    """A pod sandbox's ConfigMap, Secret and downward API files written anew, in place."""

    instance: str


@dataclass(frozen=True)
class AwaitReady:
    """MakeBeforeBreak: until the new instance is READY (then the handover), or
    ``deadline`` seconds pass or the manifest changes again (then it is deleted and
    ``old`` keeps running: a rollback)."""

    instance: str
    old: str
    deadline: float


@dataclass(frozen=True)
class Handover:
    """MakeBeforeBreak: the object's published ports and name move from ``old`` to
    ``new`` (the new mapping added before the old one is removed)."""

    old: str
    new: str


@dataclass(frozen=True)
class UpdateNetworks:
    """Interfaces and published ports made what ``container`` asks, on the live instance
    (CNI ADD/DEL in its namespace: same init PID)."""

    instance: str
    container: Container


Step = (Create | Start | Stop | Delete | UpdateMounts | UpdateLimits | RecordApplied
        | SetRunState | SyncVolumes | UpdateNetworks | AwaitReady | Handover)


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str
    reason: str
    desired: Desired | None = None
    patch: tuple[Mapping[str, Any], ...] = ()  # UPDATE: the live JSON-patch operations
    steps: tuple[Step, ...] = ()
    cause: Cause | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}: {self.reason}"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    wake_at: float | None = None  # plan again then (a backoff ends)
    notes: tuple[str, ...] = ()  # what was held back, and why
    warnings: tuple[str, ...] = ()  # the notes a person must act on (a refused prune)
    waiting: Mapping[str, float] = field(default_factory=dict)  # name -> retry due
    blocked: Mapping[str, str] = field(default_factory=dict)  # name -> what it waits for


def plan(
    desired: DesiredState,
    observed: Mapping[str, Observed],
    history: Mapping[str, History],
    now: float,
    *,
    allow_empty: bool = False,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
    ready: Mapping[str, bool] | None = None,
    locks: Mapping[str, str] | None = None,
) -> Plan:
    """``ready``: each unit's READY (daemon.probes), for dependsOn's Ready condition;
    ``locks``: objects whose update lock holds disruptive steps back now, with what holds
    it (the loop leaves out locks that timed out or were overridden)."""
    locks = locks or {}
    actions: list[Action] = []
    notes: list[str] = []
    waiting: dict[str, float] = {}
    blocked: dict[str, str] = {}
    wakes: list[float] = []
    ready = ready or {}
    members = _pod_members(observed)
    ordered: set[str] = set()  # deletes held back only by a pod's order (still deletes)
    for name in sorted(set(desired.specs) | set(observed)):
        want = desired.specs.get(name)
        have = observed.get(name)
        hist = history.get(name, History())
        if want is None:
            assert have is not None
            held = _hold_delete(desired, have)
            if held:
                notes.append(f"{name}: kept: {held}")
            elif (dependent := _dependent_left(have, observed, desired)) is not None:
                notes.append(f"{name}: delete waits for {dependent} (it depends on this)")
                ordered.add(name)
            elif (waits := _pod_delete_waits(have, members)) is not None:
                notes.append(f"{name}: delete waits for {waits}")
                ordered.add(name)
            elif name in locks and have.status in (Status.RUNNING, Status.PAUSED):
                blocked[name] = f"Locked: delete waits ({locks[name]})"
                notes.append(f"{name}: {blocked[name]}")
                ordered.add(name)
            else:
                actions.append(_delete(have, evicted=object_key(have) in desired.evicted))
            continue
        sandbox: Observed | None = None
        if want.pod is not None and want.pod.role is not pods.Role.SANDBOX:
            gate = _pod_gate(want, have, desired, observed, history)
            if isinstance(gate, Action):
                actions.append(gate)
                continue
            if isinstance(gate, str):
                if gate:
                    notes.append(f"{name}: {gate}")
                continue
            sandbox = observed.get(want.pod.sandbox)
        deps = want.container.spec.depends_on
        if deps and (have is None or have.status is Status.STOPPED) \
                and want.container.spec.state is not RunState.STOPPED:
            why = next((w for d in deps if (w := dependencies.waiting_for(
                d, desired.specs, observed, history, ready, now)) is not None), None)
            if why is not None:
                blocked[name] = why
                notes.append(f"{name}: {why}")
                if why.endswith("to have started"):  # looked at again when it has
                    wakes.append(now + dependencies.STEADY / 4)
                continue
        if (have is not None and have.spec_hash != want.spec_hash
                and hist.update_failed == want.spec_hash and _make_before_break(want, have)):
            blocked[name] = f"UpdateFailed: {hist.update_error or 'not ready in time'}"
            notes.append(f"{name}: {blocked[name]} (the old instance runs on; change the"
                         " manifest to try again)")
            continue
        action = _converge(want, have, hist, sandbox=sandbox)
        if action is None and deps and have is not None and have.status is Status.RUNNING:
            again = [d.name for d in deps if dependencies.restarted_since(
                d, desired.specs, history, hist.started_at)]
            pending = [w for d in deps if (w := dependencies.waiting_for(
                d, desired.specs, observed, history, ready, now)) is not None]
            if again and any(w.endswith("to have started") for w in pending):
                wakes.append(now + dependencies.STEADY / 4)
            if again and not pending:
                action = _make(Kind.RESTART, want, have, hist,
                               f"its dependency {', '.join(again)} was started again"
                               " (restart: true)", Cause.DEPENDENCY)
        if action is None:
            continue
        if name in locks and _disruptive(action, have):
            blocked[name] = f"Locked: {action.kind.value} waits ({locks[name]})"
            notes.append(f"{name}: {blocked[name]}")
            continue
        if (want.pod is not None and want.pod.role is pods.Role.SANDBOX
                and action.kind is Kind.RECREATE
                and any(n != name for n in members.get(want.pod.key, {}))):
            notes.append(f"{name}: the new sandbox waits for the pod's containers to stop")
            continue
        due = _retry_due(hist, want, backoff)
        if action.kind is Kind.RESTART:
            after_crash = restart_due(hist, backoff)
            due = after_crash if due is None else max(due, after_crash)
        if due is not None and due > now:
            waiting[name] = due
            notes.append(f"{name}: {action.kind.value} waits {due - now:.1f}s (backoff)")
            continue
        actions.append(action)
    actions, refused = _guard_prune(actions, desired, observed, allow_empty=allow_empty,
                                    ordered=ordered)
    notes += refused
    return Plan(actions=tuple(actions), wake_at=min([*waiting.values(), *wakes], default=None),
                notes=tuple(notes), waiting=waiting, warnings=tuple(refused),
                blocked=blocked)


def _disruptive(action: Action, have: Observed | None) -> bool:
    """What an update lock holds back: stopping a running instance (a recreate, a stop, a
    restart it did not ask for), never a live change or a start."""
    running = have is not None and have.status in (Status.RUNNING, Status.PAUSED)
    return running and action.kind in (Kind.RECREATE, Kind.STOP, Kind.RESTART, Kind.DELETE)


def _dependent_left(have: Observed, observed: Mapping[str, Observed],
                    desired: DesiredState) -> str | None:
    """Another object that still runs and depends on ``have``'s (by its desired dependsOn,
    or its applied one if it is being deleted too): deletion goes in reverse order, so
    ``have`` waits for it; an object left depending on a deleted one holds it."""
    mine = ("Pod", have.annotations[ANN_POD]) if ANN_POD in have.annotations \
        else ("Container", have.name)
    for other in observed.values():
        if other.name == have.name:
            continue
        if ANN_POD in other.annotations and ANN_POD in have.annotations \
                and other.annotations[ANN_POD] == have.annotations[ANN_POD]:
            continue  # the pod's own order (_pod_delete_waits) applies within it
        want = desired.specs.get(other.name)  # still desired: what it asks for now
        container = want.container if want is not None else applied_container(other)
        if container is not None and any(dependencies.key_of(d.name) == mine
                                         for d in container.spec.depends_on):
            return other.annotations.get(ANN_POD) or other.name
    return None


def _guard_prune(actions: list[Action], desired: DesiredState,
                 observed: Mapping[str, Observed], *, allow_empty: bool,
                 ordered: Collection[str] = ()
                 ) -> tuple[list[Action], list[str]]:
    """Per source: deleting every object of a source that is valid but defines none is
    refused unless ``allow_empty`` (an emptied directory is more often a mistake).
    ``ordered``: deletes a pod's order holds back for now; they count as deletes."""
    if allow_empty:
        return actions, []
    notes: list[str] = []
    by_source: dict[str | None, list[str]] = {}
    for name, obs in observed.items():
        by_source.setdefault(_source_of(obs, desired), []).append(name)
    refused: set[str] = set()
    for sid, names in sorted(by_source.items(), key=lambda kv: str(kv[0])):
        defines_some = desired.defined.get(sid, 0) if sid else bool(desired.specs)
        if defines_some:
            continue
        deletes = [a for a in actions if a.kind is Kind.DELETE and a.name in names]
        later = [n for n in names if n in ordered]
        if deletes and len(deletes) + len(later) == len(names):
            refused.update(a.name for a in deletes)
            notes.append(
                f"refusing to delete all {len(names)} containers: the manifests"
                f" {'directory' if sid in (None, 'directory') else f'source {sid}'}"
                " is valid but defines none (start the daemon with --allow-empty to allow"
                " this)")
    return [a for a in actions if a.name not in refused], notes


def _source_of(obs: Observed, desired: DesiredState) -> str | None:
    if obs.source_id is not None:
        return obs.source_id
    return next(iter(desired.sources)) if len(desired.sources) == 1 else None


def _hold_delete(desired: DesiredState, have: Observed) -> str | None:
    sid = _source_of(have, desired)
    if not desired.source_available(sid):
        why = desired.unavailable.get(sid or "") or desired.reason
        return f"manifests source unavailable ({why})"
    if object_key(have) in desired.evicted:
        return None  # the policy says evict: its last good revision is not kept
    if have.source is not None and have.source in desired.broken_sources:
        return f"its manifest {have.source} has errors; running on its last good spec"
    contested = have.annotations.get(ANN_POD) or have.name
    if contested in desired.conflicts:
        return f"defined in several files: {', '.join(desired.conflicts[contested])}"
    if contested in desired.held:
        return f"its pod cannot be made as written ({desired.held[contested]}); left running"
    return None


def _retry_due(hist: History, want: Desired, backoff: Backoff) -> float | None:
    """When a failed action for this revision may run again (None: no failure pending)."""
    if hist.failures and hist.spec_hash == want.spec_hash and hist.failed_at is not None:
        return hist.failed_at + backoff.delay(hist.failures)
    return None


def _pod_members(observed: Mapping[str, Observed]) -> dict[str, dict[str, Observed]]:
    """Pod key -> its instances on the host (by unit name), the sandbox's included."""
    out: dict[str, dict[str, Observed]] = {}
    for name, obs in observed.items():
        key = obs.annotations.get(ANN_POD)
        if key:
            out.setdefault(key, {})[name] = obs
    return out


def _role(obs: Observed) -> str:
    return obs.annotations.get(ANN_POD_ROLE, "")


def _pod_delete_waits(have: Observed, members: Mapping[str, Mapping[str, Observed]]
                      ) -> str | None:
    """A pod goes in Kubernetes' order: app containers, then native sidecars, then the
    sandbox (which holds the namespaces the others are in)."""
    key = have.annotations.get(ANN_POD)
    if not key:
        return None
    others = [o for n, o in members.get(key, {}).items() if n != have.name]
    if _role(have) == pods.Role.SANDBOX.value and others:
        return "the pod's containers to stop"
    if _role(have) == pods.Role.SIDECAR.value and any(
            _role(o) == pods.Role.APP.value for o in others):
        return "the pod's app containers to stop (a sidecar stops last)"
    return None


def _sandbox_ref(obs: Observed) -> str:
    return f"{obs.id}@{obs.pid}"


def _pod_gate(want: Desired, have: Observed | None, desired: DesiredState,
              observed: Mapping[str, Observed], history: Mapping[str, History]
              ) -> Action | str | None:
    """A pod container's place in its pod: an instance in a sandbox that is no longer the
    pod's goes (an action); a missing one waits for the sandbox and for the containers
    before it in the init order (a note); None: plan it as any object."""
    assert want.pod is not None
    info = want.pod
    box_want = desired.specs.get(info.sandbox)
    box = observed.get(info.sandbox)
    current = (box is not None and box.status in (Status.RUNNING, Status.PAUSED)
               and box_want is not None and box.spec_hash == box_want.spec_hash)
    ref = _sandbox_ref(box) if current and box is not None else None
    if have is not None:
        if ref is not None and have.annotations.get(ANN_SANDBOX) == ref:
            exit_ = history.get(want.name, History()).last_exit
            if (info.role is pods.Role.INIT and have.status is Status.STOPPED
                    and exit_ is not None and not exit_.failed):
                return ""  # done in this sandbox: never run again beside the app containers
            return None
        if have.status is Status.CREATING:
            return "waits for its create to end"
        steps: list[Step] = []
        if have.status in (Status.RUNNING, Status.PAUSED):
            steps.append(_stop(have, applied_container(have)))
        steps.append(Delete(have.id))
        return Action(Kind.DELETE, want.name,
                      "its pod sandbox was replaced or stopped: it is made again in the new"
                      " one", steps=tuple(steps), cause=Cause.SANDBOX_GONE)
    if ref is None:
        return "waits for its pod sandbox to run"
    for before in info.before:
        prior, prior_want = observed.get(before), desired.specs.get(before)
        label = prior_want.pod.container if prior_want and prior_want.pod else before
        if prior is None or prior.annotations.get(ANN_SANDBOX) != ref:
            return f"waits for init container {label}"
        if prior_want is not None and prior_want.pod is not None \
                and prior_want.pod.role is pods.Role.SIDECAR:
            if prior.status is not Status.RUNNING:
                return f"waits for sidecar {label} to run"
            continue
        exit_ = history.get(before, History()).last_exit
        if prior.status is not Status.STOPPED or exit_ is None:
            return f"waits for init container {label} to complete"
        if exit_.failed:
            return f"waits: init container {label} failed ({_describe_exit(exit_)})"
    return None


def _converge(want: Desired, have: Observed | None, hist: History, *,
              sandbox: Observed | None = None) -> Action | None:
    state = want.container.spec.state
    if have is None:
        if state is RunState.STOPPED:
            return None
        return _make(Kind.CREATE, want, None, hist, "in the manifests, not on the host",
                     Cause.NOT_ON_HOST, sandbox=sandbox)
    if state is RunState.STOPPED:  # never start anything: a changed or half-made one is
        if have.status is Status.STOPPED:  # recreated when it is started again
            return None
        return Action(Kind.STOP, want.name, "desired state Stopped", want,
                      steps=(_stop(have, want.container),), cause=Cause.RUN_STATE)
    if have.status in (Status.CREATING, Status.CREATED):
        return _make(Kind.RECREATE, want, have, hist, f"found half-made ({have.status.value})",
                     Cause.HALF_MADE, sandbox=sandbox)
    if have.spec_hash != want.spec_hash:
        if _make_before_break(want, have):
            return _rollout(want, have, hist)
        return _make(Kind.RECREATE, want, have, hist, _changed(want, have), Cause.SPEC_CHANGED,
                     sandbox=sandbox)
    if have.status is Status.STOPPED:
        return _exited(want, have, hist, sandbox=sandbox)
    if hist.live_blocked is not None and hist.live_blocked == want.manifest_json \
            and have.applied != want.manifest_json:
        return _make(Kind.RECREATE, want, have, hist,
                     "live change impossible in place: a new instance", Cause.LIVE_IMPOSSIBLE,
                     sandbox=sandbox)
    update = _live_update(want, have)
    if update is not None:
        return update
    if state is RunState.PAUSED and have.status is Status.RUNNING:
        return Action(Kind.PAUSE, want.name, "desired state Paused", want,
                      steps=(SetRunState(have.id, RunState.PAUSED),), cause=Cause.RUN_STATE)
    if state is RunState.RUNNING and have.status is Status.PAUSED:
        return Action(Kind.RESUME, want.name, "desired state Running", want,
                      steps=(SetRunState(have.id, RunState.RUNNING),), cause=Cause.RUN_STATE)
    return None


def _make_before_break(want: Desired, have: Observed) -> bool:
    """A changed object whose strategy is MakeBeforeBreak and whose old instance serves."""
    return (want.pod is None and have.status is Status.RUNNING
            and want.container.spec.update_strategy.type == "MakeBeforeBreak")


def _rollout(want: Desired, have: Observed, hist: History) -> Action:
    """The new instance beside the old, ready, the handover, then the old one goes."""
    generation = max(hist.generation, have.generation) + 1
    iid = instance_id(want.name, generation)
    deadline = float(want.container.spec.update_strategy.progress_deadline_seconds)
    steps: tuple[Step, ...] = (
        Create(iid, generation, None), Start(iid), AwaitReady(iid, have.id, deadline),
        Handover(have.id, iid), _stop(have, applied_container(have)), Delete(have.id))
    return Action(Kind.RECREATE, want.name, f"{_changed(want, have)} (make before break)",
                  want, steps=steps, cause=Cause.SPEC_CHANGED)


def _make(kind: Kind, want: Desired, have: Observed | None, hist: History, reason: str,
          cause: Cause, *, sandbox: Observed | None = None) -> Action:
    """Steps that end with a running (or paused) instance of ``want``.

    A new revision gets the next generation; a restart, a start after a stop we made and
    a half-made leftover keep the instance's id (same object, same logs)."""
    steps: list[Step] = []
    if have is None:  # the last instance made, if any, left its logs (a failed create)
        generation = hist.generation + 1
        previous = instance_id(want.name, hist.generation) if hist.generation else None
    else:
        if kind is Kind.RECREATE and cause is not Cause.HALF_MADE:
            generation = max(hist.generation, have.generation) + 1
        else:
            generation = have.generation
        previous = have.id
        if have.status in (Status.RUNNING, Status.PAUSED) and kind in (Kind.RECREATE,
                                                                         Kind.RESTART):
            applied = applied_container(have)
            steps.append(_stop(have, applied))
        steps.append(Delete(have.id, keep_logs=True))
    iid = instance_id(want.name, generation) if generation else want.name
    join = (sandbox.id, sandbox.pid) if sandbox is not None and sandbox.pid else None
    steps += [Create(iid, generation, previous, join=join), Start(iid)]
    if want.container.spec.state is RunState.PAUSED:
        steps.append(SetRunState(iid, RunState.PAUSED))
    return Action(kind, want.name, reason, want, steps=tuple(steps), cause=cause)


def object_key(have: Observed) -> tuple[str, str]:
    """The object an instance is of, as ``Desired.key``: ("Pod", "default/web")."""
    pod = have.annotations.get(ANN_POD)
    return ("Pod", pod) if pod else ("Container", have.name)


def _delete(have: Observed, *, evicted: bool = False) -> Action:
    steps: list[Step] = []
    if have.status in (Status.RUNNING, Status.PAUSED):
        steps.append(_stop(have, applied_container(have)))
    sandbox = have.annotations.get(ANN_POD_ROLE) == pods.Role.SANDBOX.value
    steps.append(Delete(have.id, pod_gone=sandbox))
    why = ("evicted: the policy forbids it now (enforce: evict)" if evicted
           else "no longer in any manifest")
    return Action(Kind.DELETE, have.name, why, steps=tuple(steps), cause=Cause.NOT_DESIRED)


def remove_stray(have: Observed, *, vanished: bool = False) -> Action:
    """An instance that is no longer its object's: an older one left beside a newer one
    (a crash mid-update), or one runc forgot (``vanished``: its depot, overlay and cgroup
    are left to clear). It goes; the object's current instance is left alone."""
    steps: list[Step] = []
    if have.status in (Status.RUNNING, Status.PAUSED) and not vanished:
        steps.append(_stop(have, applied_container(have)))
    steps.append(Delete(have.id))
    why = "what runc forgot of it" if vanished else "an older instance of this object"
    return Action(Kind.DELETE, have.name, why, steps=tuple(steps), cause=Cause.STRAY)


def _stop(have: Observed, container: Container | None) -> Stop:
    """The instance's own stop signal (an image may set it), else its manifest's."""
    spec = container.spec if container is not None else None
    sig = have.annotations.get(ANN_STOP_SIGNAL) or (spec.stop_signal if spec else "SIGTERM")
    grace = spec.termination_grace_period_seconds if spec else 10
    pre_stop = tuple(spec.pre_stop) if spec is not None and spec.pre_stop else ()
    return Stop(have.id, sig, float(grace), pre_stop)


def applied_container(have: Observed) -> Container | None:
    """The manifest an instance runs with (a deleted one is no longer desired)."""
    return _parse_applied(have.applied) if have.applied else None


@functools.lru_cache(maxsize=1024)
def _parse_applied(text: str) -> Container | None:
    """Parsed once per distinct text: a pass plans every object, and 100 pending deletes
    would otherwise parse 100 manifests on every pass (the models are frozen)."""
    try:
        return Container.model_validate(json.loads(text))
    except ValueError:
        return None


def _live_update(want: Desired, have: Observed) -> Action | None:
    """Mounts, resources or metadata differ from what is applied: change them in place."""
    applied = have.applied
    if applied == want.manifest_json:  # the common case, and cheap: nothing changed
        return None
    change = changes.classify(applied, json.loads(want.manifest_json))
    ops = tuple(op for op in change.live if not op["path"].startswith("/spec/state"))
    if not ops:
        return None
    parts = changes.live_parts(changes.Change(live=ops, recreate=()))
    old = applied_container(have)
    new = want.container
    steps: list[Step] = []
    if (want.pod is not None and want.pod.role is pods.Role.SANDBOX
            and _annotation(old, pods.ANN_VOLUMES) != _annotation(new, pods.ANN_VOLUMES)):
        steps.append(SyncVolumes(have.id))
    if "mounts" in parts:
        steps.append(UpdateMounts(have.id, tuple(old.spec.mounts) if old else (),
                                  tuple(new.spec.mounts)))
    if "resources" in parts:
        steps.append(UpdateLimits(have.id, old.spec.resources if old else None,
                                  new.spec.resources))
    if ("networks" in parts or "ports" in parts
            or _annotation(old, ANN_NETWORKS) != _annotation(new, ANN_NETWORKS)):
        steps.append(UpdateNetworks(have.id, new))
    steps.append(RecordApplied(have.id, new, metadata_changed="metadata" in parts))
    state = new.spec.state
    if state is RunState.PAUSED and have.status is Status.RUNNING:
        steps.append(SetRunState(have.id, RunState.PAUSED))
    elif state is RunState.RUNNING and have.status is Status.PAUSED:
        steps.append(SetRunState(have.id, RunState.RUNNING))
    return Action(Kind.UPDATE, want.name, f"live change: {', '.join(sorted(parts))}", want,
                  patch=ops, steps=tuple(steps), cause=Cause.LIVE_CHANGE)


def _annotation(container: Container | None, key: str) -> str | None:
    return container.metadata.annotations.get(key) if container is not None else None


def _exited(want: Desired, have: Observed, hist: History, *,
            sandbox: Observed | None = None) -> Action | None:
    spec = want.container.spec
    if spec.state is RunState.STOPPED:
        return None
    if hist.stopped_by_us:
        return _make(Kind.START, want, have, hist, f"desired state {spec.state.value}",
                     Cause.RUN_STATE, sandbox=sandbox)
    exit_ = hist.last_exit
    policy = spec.restart_policy
    if policy is RestartPolicy.NEVER:
        return None
    if policy is RestartPolicy.ON_FAILURE and exit_ is not None and not exit_.failed:
        return None
    code = "unknown status" if exit_ is None else _describe_exit(exit_)
    return _make(Kind.RESTART, want, have, hist,
                 f"exited ({code}); restartPolicy {policy.value}", Cause.EXITED, sandbox=sandbox)


def _describe_exit(exit_: ExitStatus) -> str:
    if exit_.oom_killed:
        return f"OOM-killed, code {exit_.exit_code}"
    if exit_.signal:
        return f"signal {exit_.signal}"
    return f"code {exit_.code}"


def _changed(want: Desired, have: Observed) -> str:
    """``spec changed: command, env`` — the top-level fields that differ, when known."""
    try:
        before: dict[str, Any] = json.loads(have.applied or "").get("spec", {})
    except ValueError:
        return f"spec hash {have.spec_hash} -> {want.spec_hash}"
    after = json.loads(want.manifest_json).get("spec", {})
    fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    said = [f"spec changed: {', '.join(fields)}"] if fields else []
    restarted = want.container.metadata.annotations.get(RESTARTED_AT)
    old_meta = json.loads(have.applied or "{}").get("metadata", {})
    if restarted is not None and (old_meta.get("annotations") or {}).get(RESTARTED_AT) \
            != restarted:
        said.append(f"restarted on request ({RESTARTED_AT} {restarted})")
    if want.pod is not None:  # a pod-level change: its fields, from the recorded ones
        try:
            old = json.loads(have.annotations.get(ANN_POD_SPEC) or "{}")
            new = json.loads(want.pod.identity_doc or "{}")
        except ValueError:
            old, new = {}, {}
        pod_fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if pod_fields and old:
            said.append(f"pod changed: {', '.join(pod_fields)}")
    return "; ".join(said) or "spec changed: defaults"
