"""The controller's view: a frozen copy published after every pass and step, and what
`reconciler get` shows of it (each object's phase and message).

    loop (publishes) ─▶ ControllerView ─▶ status_document() ─▶ status.json (get, describe)
                                      └▶ the Prometheus collector (metrics thread)

Readers outside the loop see only a published view, never the loop's live maps. The
phase functions are pure; ``PhaseClock`` (owned by the status writer) remembers since
when each object is in its phase.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.core.history import History
from reconciler.core.instance import ANN_POD, ANN_POD_CONTAINER, ANN_POD_ROLE
from reconciler.core.observed import ExitStatus, Limits, Observed, Stats, Status
from reconciler.core.planner import Kind, Plan
from reconciler.daemon.status import history_to_json
from reconciler.manifest.model import RestartPolicy, RunState

if TYPE_CHECKING:
    from reconciler.core.desired import Desired, DesiredState
    from reconciler.daemon.probes import Readiness


@dataclass(frozen=True)
class ControllerView:
    desired: DesiredState | None
    observed: Mapping[str, Observed]
    history: Mapping[str, History]
    busy: Mapping[str, Kind]
    plan: Plan | None
    actual: Mapping[str, Mapping[str, Any]]
    passes: int
    last_pass_at: float | None
    ready: bool
    cgroup_parent: str | None
    taken_at: float
    resync: float = 30.0  # the relist period: status older than this and a margin is stale
    networks: Mapping[str, Any] = field(default_factory=dict)  # daemon.network's view
    readiness: Mapping[str, Readiness] = field(default_factory=dict)  # daemon.probes'
    disk: str | None = None  # why the state dir cannot be written (a full disk), now


def empty(cgroup_parent: str | None) -> ControllerView:
    return ControllerView(None, {}, {}, {}, None, {}, 0, None, False, cgroup_parent, 0.0)


class Viewed(Protocol):
    """What metrics and health read of the loop: its last published view (the Controller)."""

    @property
    def view(self) -> ControllerView: ...

    @property
    def stats_reader(self) -> Callable[[str], tuple[Stats, Limits] | None] | None: ...

    @property
    def resync(self) -> float: ...


def health(ctl: Viewed, now: float) -> tuple[bool, str]:
    """Alive: a pass finished within two resync periods (the loop is not stuck)."""
    last = ctl.view.last_pass_at
    if last is None:
        return False, "no pass yet"
    age = now - last
    limit = 2 * ctl.resync + 10
    return (age <= limit), f"last pass {age:.1f}s ago (limit {limit:.0f}s)"


class PhaseClock:
    """Since when each object is in its current phase (the status writer's own memory)."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, float]] = {}

    def since(self, name: str, phase: str, now: float) -> float:
        old = self._since.get(name)
        if old is not None and old[0] == phase:
            return old[1]
        self._since[name] = (phase, now)
        return now


def phase(
    want: Desired | None,
    obs: Observed | None,
    hist: History,
    *,
    busy: Kind | None,
    waiting: float | None,
    now: float,
) -> tuple[str, str]:
    """(phase, message) of one container."""
    if busy is Kind.DELETE:
        return "Terminating", "being deleted"
    if busy in (Kind.CREATE, Kind.RECREATE, Kind.RESTART, Kind.START):
        return "Creating", busy.value if busy else ""
    error = hist.last_error if hist.failures else None
    if waiting is not None:
        what = f"retry in {max(0.0, waiting - now):.0f}s"
        return "BackOff", f"{what}: {error}" if error else f"{what} after {_exit_text(hist)}"
    if obs is None:
        if want is not None and want.container.spec.state is RunState.STOPPED:
            return "Stopped", "desired state Stopped"
        if error:
            return "Failed", error
        return "Pending", ""
    if obs.status is Status.RUNNING:
        return "Running", ""
    if obs.status is Status.PAUSED:
        return "Paused", ""
    if obs.status is Status.STOPPED:
        if hist.stopped_by_us:
            return "Stopped", "stopped as desired"
        policy = want.container.spec.restart_policy if want else RestartPolicy.NEVER
        return "Exited", f"{_exit_text(hist)} (restartPolicy {policy.value})"
    return "Creating", obs.status.value


def _manifest_trouble(desired: DesiredState | None, name: str, want: Desired | None,
                      obs: Observed | None) -> str | None:
    """Why the manifest is not applied: a broken file or a contested name comes first in
    `get`, since the container then runs on its last good spec."""
    if desired is None:
        return None
    if name in desired.conflicts:
        return (f"defined in several files: {', '.join(desired.conflicts[name])}; neither"
                " applied, running its last good spec")
    source = want.source if want is not None else (obs.source if obs else None)
    if source is not None and source in desired.broken_sources:
        first = next((str(p) for p in desired.problems if p.file == source), source)
        return f"manifest has errors, running its last good spec: {first}"
    return None


def _exit_text(hist: History) -> str:
    return "exit" if hist.last_exit is None else exit_text(hist.last_exit)


def exit_text(e: ExitStatus) -> str:
    """``exited with code 3``, ``killed by signal 9 (code 137)``, ``OOM-killed (code 137)``."""
    return e.text()


def _pod_of(want: Desired | None, obs: Observed | None) -> dict[str, Any] | None:
    """A pod unit's place: {pod, role, container, labels}; None for a ``kind: Container``."""
    if want is not None and want.pod is not None:
        return {"pod": want.pod.key, "role": want.pod.role.value,
                "container": want.pod.container, "index": want.pod.index,
                "labels": dict(want.container.metadata.labels),
                "annotations": dict(want.pod.annotations),
                "requests": dict(want.pod.requests)}
    annotations = obs.annotations if obs is not None else {}
    if not annotations.get(ANN_POD):
        return None
    return {"pod": annotations[ANN_POD], "role": annotations.get(ANN_POD_ROLE, ""),
            "container": annotations.get(ANN_POD_CONTAINER, ""), "labels": {}}


def status_document(view: ControllerView, clock: PhaseClock) -> dict[str, Any]:
    now = view.taken_at
    desired = view.desired
    specs = desired.specs if desired is not None else {}
    plan = view.plan
    waiting = plan.waiting if plan is not None else {}
    containers: dict[str, Any] = {}
    for name in sorted(set(specs) | set(view.observed) | set(view.history)):
        want, obs = specs.get(name), view.observed.get(name)
        if want is None and obs is None:
            continue
        hist = view.history.get(name, History())
        ph, message = phase(want, obs, hist, busy=view.busy.get(name),
                            waiting=waiting.get(name), now=now)
        message = _manifest_trouble(desired, name, want, obs) or message
        if plan is not None and name in plan.blocked:
            why = plan.blocked[name]
            if why.startswith(("Locked: ", "UpdateFailed: ")):
                ph, _, message = why.partition(": ")  # get's STATUS, then why
            elif ph in ("Pending", "Stopped", "Exited"):
                message = why  # dependsOn: what it waits for, or what failed
        if want is None:
            message = message or "not in any manifest (kept)"
        last = hist.last_exit
        containers[name] = {
            "name": name,
            "instance": obs.id if obs else None,
            "source": want.source if want else (obs.source if obs else None),
            "desiredState": want.container.spec.state.value if want else None,
            "phase": ph,
            "pid": obs.pid if obs else None,
            "restarts": hist.restarts,
            "lastExitCode": last.exit_code if last else None,
            "lastExit": None if last is None else {
                "code": last.code, "signal": last.signal, "oomKilled": last.oom_killed,
                "finishedAt": last.finished_at},
            "specHash": obs.spec_hash if obs else (want.spec_hash if want else None),
            "desiredSpecHash": want.spec_hash if want else None,
            "message": message,
            "since": clock.since(name, ph, now),
            "created": obs.created if obs else None,
            "history": history_to_json(hist),
            "actual": view.actual.get(name),
            "pod": _pod_of(want, obs),
            "addresses": _addresses(view.networks, name, want),
            **_ready(view.readiness.get(name), obs),
        }
    return {
        "daemon": {
            "passes": view.passes,
            "lastPassAt": view.last_pass_at,
            "writtenAt": view.taken_at,  # with resyncSeconds: how stale a reader finds it
            "resyncSeconds": view.resync,
            "pid": os.getpid(),
            "ready": view.ready,
            "stateDir": view.disk,
            "cgroupParent": view.cgroup_parent,
            "source": None if desired is None else {
                "available": desired.available, "reason": desired.reason},
            "sources": {} if desired is None else {
                sid: {"available": sid not in desired.unavailable,
                      "reason": desired.unavailable.get(sid)}
                for sid in sorted(desired.sources)},
            "notes": list(plan.notes) if plan else [],
            "problems": [str(p) for p in desired.problems] if desired else [],
            "brokenSources": sorted(desired.broken_sources) if desired else [],
            "conflicts": dict(desired.conflicts) if desired else {},
        },
        "containers": containers,
        "networks": dict(view.networks),
    }


def _ready(r: Readiness | None, obs: Observed | None) -> dict[str, Any]:
    """READY: what the prober says of this instance; a running one with no prober yet is
    not ready (Kubernetes' start), anything else neither."""
    if r is None or obs is None or r.instance != obs.id or obs.status is not Status.RUNNING:
        return {"ready": False, "readySince": None, "readyMessage": None}
    return {"ready": r.ready, "readySince": r.since, "readyMessage": r.message}


def _addresses(networks: Mapping[str, Any], name: str, want: Desired | None
               ) -> dict[str, list[str]] | None:
    """Network -> the object's addresses (a pod container: its sandbox's)."""
    unit = want.pod.sandbox if want is not None and want.pod is not None else name
    found = {net: entry["attached"][unit]["ips"]
             for net, entry in networks.get("networks", {}).items()
             if unit in entry.get("attached", {})}
    return found or None
