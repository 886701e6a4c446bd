"""What `reconciler get` shows: each container's phase and message, from the controller's view.

Pure functions of (desired, observed, history, busy, plan); the controller writes their
result to status.json after every pass and action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.manifest.model import RestartPolicy, RunState
from reconciler.planner import History, Kind
from reconciler.runtime.types import ExitStatus, Status

if TYPE_CHECKING:
    from reconciler.daemon.controller import Controller
    from reconciler.daemon.desired import Desired, DesiredState
    from reconciler.runtime.types import Observed

PHASES = ("Pending", "Creating", "Running", "Paused", "Stopped", "Exited", "BackOff",
          "Failed", "Terminating")


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
    if e.oom_killed:
        return f"OOM-killed (code {e.exit_code})"
    if e.signal:
        return f"killed by signal {e.signal} (code {e.exit_code})"
    return f"exited with code {e.code}"


def status_document(ctl: Controller) -> dict[str, Any]:
    now = ctl.clock()
    desired = ctl.desired
    specs = desired.specs if desired is not None else {}
    plan = ctl.last_plan
    waiting = plan.waiting if plan is not None else {}
    since = ctl.phase_since
    containers: dict[str, Any] = {}
    for name in sorted(set(specs) | set(ctl.observed) | set(ctl.history)):
        want, obs = specs.get(name), ctl.observed.get(name)
        if want is None and obs is None:
            continue
        hist = ctl.history.get(name, History())
        ph, message = phase(want, obs, hist, busy=ctl.busy.get(name),
                            waiting=waiting.get(name), now=now)
        message = _manifest_trouble(desired, name, want, obs) or message
        if want is None:
            message = message or "not in any manifest (kept)"
        if name in since and since[name][0] == ph:
            ph_since = since[name][1]
        else:
            ph_since = now
            since[name] = (ph, now)
        last = hist.last_exit
        containers[name] = {
            "name": name,
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
            "since": ph_since,
            "created": obs.created if obs else None,
            "history": ctl.history_json(name),
            "actual": ctl.actual.get(name),
        }
    return {
        "daemon": {
            "passes": ctl.passes,
            "lastPassAt": ctl.last_pass_at,
            "ready": ctl.ready.is_set(),
            "source": None if desired is None else {
                "available": desired.available, "reason": desired.reason},
            "notes": list(plan.notes) if plan else [],
            "problems": [str(p) for p in desired.problems] if desired else [],
            "brokenSources": sorted(desired.broken_sources) if desired else [],
            "conflicts": dict(desired.conflicts) if desired else {},
        },
        "containers": containers,
    }
