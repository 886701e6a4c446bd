"""planner.plan, table-driven: (desired, observed, history, now) in, ordered actions out.

Each case names the desired specs, what the host shows, the history the controller keeps
and the time, then the expected ``(kind, name)`` list, a substring of each action's reason,
the names held back by a backoff (with when they are due) and substrings of the notes.
No runtime at all: ``Observed`` values are built the way the fake runtime builds them
(with the applied manifest in the annotation, so a recreate can name the changed fields).

The backoff schedule and the pure history transitions (``on_started``, ``on_exit``,
``on_failure``, ``restart_due``) have their own tables below, and one walk-through plays a
crash loop with them the way the controller does.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from reconciler.core import planner
from reconciler.core.backoff import Backoff
from reconciler.core.desired import Desired, DesiredState
from reconciler.core.instance import ANN_MANIFEST, ANN_SOURCE, ANN_SPEC_HASH
from reconciler.core.observed import ExitStatus, Observed, Status
from reconciler.core.planner import History, Kind
from reconciler.manifest import model

NOW = 1000.0
ROOTFS = "/nonexistent/rootfs"




# -- building values ---------------------------------------------------------------------


def want(name: str, *, command: tuple[str, ...] = ("/bin/serve",), state: str = "Running",
         policy: str = "Always", source: str | None = None,
         labels: Mapping[str, str] | None = None,
         annotations: Mapping[str, str] | None = None, **spec: Any) -> Desired:
    """One desired container, as ``desired.build`` makes it from a manifest."""
    c = model.Container.model_validate({
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": name, "labels": dict(labels or {}),
                     "annotations": dict(annotations or {})},
        "spec": {"rootfs": ROOTFS, "command": list(command), "state": state,
                 "restartPolicy": policy, **spec},
    })
    return Desired(name, c, source or f"/m/{name}.yaml", model.spec_hash(c))


def seen(d: Desired, status: Status = Status.RUNNING, *, pid: int | None = 4242) -> Observed:
    """``d`` as the host shows it: the fake runtime's annotations, the applied manifest."""
    manifest = json.dumps(d.container.model_dump(mode="json", exclude_defaults=True),
                          sort_keys=True, separators=(",", ":"))
    return Observed(
        name=d.name, status=status, pid=None if status is Status.STOPPED else pid,
        spec_hash=d.spec_hash, source=d.source, created=NOW - 100,
        annotations={ANN_SOURCE: d.source, ANN_SPEC_HASH: d.spec_hash, ANN_MANIFEST: manifest},
        applied=manifest,
    )


def bare(name: str, status: Status = Status.RUNNING, *, source: str | None = None,
         spec_hash: str | None = "v1-0000") -> Observed:
    """A container without the manifest annotation (an older daemon made it)."""
    return Observed(name, status, None if status is Status.STOPPED else 77, spec_hash,
                    source if source is not None else f"/m/{name}.yaml", NOW - 100)


def exited(code: int | None = 1, *, at: float = NOW - 10, signal: int | None = None,
           oom: bool = False) -> ExitStatus:
    return ExitStatus(code=code, signal=signal, oom_killed=oom, finished_at=at)


def crashed(d: Desired, *, crashes: int = 1, code: int | None = 1, at: float = NOW - 10,
            signal: int | None = None, oom: bool = False) -> History:
    """The history of ``d`` after ``crashes`` consecutive crashes, the last one at ``at``."""
    return History(spec_hash=d.spec_hash, restarts=crashes - 1, crashes=crashes,
                   last_exit=exited(code, at=at, signal=signal, oom=oom), started_at=at - 5)


def failed(d: Desired, *, failures: int = 1, at: float = NOW - 0.5) -> History:
    return History(spec_hash=d.spec_hash, failures=failures, failed_at=at,
                   last_error="runc create: no such file")


def stopped_by_us(d: Desired) -> History:
    return History(spec_hash=d.spec_hash, last_exit=exited(0), started_at=NOW - 50,
                   stopped_by_us=True)


def state_of(specs: tuple[Desired, ...], *, available: bool = True,
             broken: frozenset[str] = frozenset(),
             conflicts: Mapping[str, tuple[str, ...]] | None = None) -> DesiredState:
    return DesiredState(
        specs=types.MappingProxyType({d.name: d for d in specs}),
        broken_sources=broken,
        conflicts=types.MappingProxyType(dict(conflicts or {})),
        problems=(),
        unavailable={} if available else {"directory": "manifests directory /m does not exist"},
    )


# -- the fixtures of the tables ----------------------------------------------------------

WEB = want("web")
WEB_V2 = want("web", command=("/bin/serve", "--v2"))
WEB_ENV = want("web", env=[{"name": "MODE", "value": "fast"}])
WEB_BIGGER = want("web", resources={"memory": "128Mi"})  # a live field: same hash
WEB_LABELLED = want("web", labels={"tier": "front"})
WEB_MOUNTED = want("web", mounts=[{"type": "tmpfs", "destination": "/tmp"}])
WEB_PAUSED = want("web", state="Paused")
WEB_STOPPED = want("web", state="Stopped")
WEB_STOPPED_V2 = want("web", command=("/bin/serve", "--v2"), state="Stopped")
JOB = want("job", command=("/bin/job",), policy="OnFailure")
ONCE = want("once", command=("/bin/once",), policy="Never")
DB = want("db", command=("/bin/db",))
CACHE = want("cache", command=("/bin/cache",))
OLD = want("old", command=("/bin/old",))  # used only as an observed, no longer desired
OTHER = want("other", command=("/bin/other",))

assert WEB.spec_hash != WEB_V2.spec_hash != WEB_ENV.spec_hash
assert WEB.spec_hash == WEB_BIGGER.spec_hash == WEB_PAUSED.spec_hash == WEB_STOPPED.spec_hash
assert WEB.spec_hash == WEB_LABELLED.spec_hash == WEB_MOUNTED.spec_hash


@dataclass(frozen=True)
class Case:
    id: str
    desired: tuple[Desired, ...] = ()
    observed: tuple[Observed, ...] = ()
    history: Mapping[str, History] = field(default_factory=dict)
    now: float = NOW
    expect: tuple[tuple[Kind, str], ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)  # name -> in its reason
    waiting: Mapping[str, float] = field(default_factory=dict)  # name -> due
    notes: tuple[str, ...] = ()  # each in some note
    available: bool = True
    broken: frozenset[str] = frozenset()
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_empty: bool = False


C, RC, RS, ST, SP, PA, RE, DE, UP = (
    Kind.CREATE, Kind.RECREATE, Kind.RESTART, Kind.START, Kind.STOP, Kind.PAUSE, Kind.RESUME,
    Kind.DELETE, Kind.UPDATE)

CASES = [
    # -- nothing to do
    Case("nothing desired, nothing there"),
    Case("in sync, running", (WEB,), (seen(WEB),)),
    Case("in sync, paused", (WEB_PAUSED,), (seen(WEB, Status.PAUSED),)),
    Case("in sync, stopped by us", (WEB_STOPPED,), (seen(WEB, Status.STOPPED),),
         {"web": stopped_by_us(WEB)}),
    # -- create
    Case("create: desired, not on the host", (WEB,), expect=((C, "web"),),
         reasons={"web": "in the manifests, not on the host"}),
    Case("create: desired Paused is created too", (WEB_PAUSED,), expect=((C, "web"),)),
    Case("create: not when desired Stopped", (WEB_STOPPED,)),
    Case("create: a failure of an older revision does not delay a new one",
         (WEB_V2,), history={"web": failed(WEB, failures=6)}, expect=((C, "web"),)),
    # -- recreate
    Case("recreate: the command changed, named in the reason", (WEB_V2,), (seen(WEB),),
         expect=((RC, "web"),), reasons={"web": "spec changed: command"}),
    Case("recreate: env changed", (WEB_ENV,), (seen(WEB),), expect=((RC, "web"),),
         reasons={"web": "spec changed: env"}),
    Case("recreate: two fields changed, both named", (want("web", command=("/x",),
                                                           env=[{"name": "A"}]),),
         (seen(WEB),), expect=((RC, "web"),), reasons={"web": "spec changed: command, env"}),
    Case("recreate: restartPolicy is part of the identity", (want("web", policy="Never"),),
         (seen(WEB),), expect=((RC, "web"),), reasons={"web": "restartPolicy"}),
    Case("recreate: no applied manifest, the hashes are named", (WEB,), (bare("web"),),
         expect=((RC, "web"),), reasons={"web": f"spec hash v1-0000 -> {WEB.spec_hash}"}),
    Case("recreate: an exited container of the old spec", (WEB_V2,),
         (seen(WEB, Status.STOPPED),), {"web": crashed(WEB, crashes=9, at=NOW)},
         expect=((RC, "web"),)),
    Case("recreate: a half-made container (created)", (WEB,), (seen(WEB, Status.CREATED),),
         expect=((RC, "web"),), reasons={"web": "half-made (created)"}),
    Case("recreate: a half-made container (creating)", (WEB,),
         (seen(WEB, Status.CREATING),), expect=((RC, "web"),),
         reasons={"web": "half-made (creating)"}),
    Case("recreate: not while desired Stopped and stopped (done when started)",
         (WEB_STOPPED_V2,), (seen(WEB, Status.STOPPED),), {"web": stopped_by_us(WEB)}),
    Case("recreate: a spec change supersedes a pending crash backoff", (WEB_V2,),
         (seen(WEB, Status.STOPPED),), {"web": crashed(WEB, crashes=12, at=NOW)},
         expect=((RC, "web"),)),
    Case("recreate: a spec change supersedes a pending retry of the old one", (WEB_V2,),
         (seen(WEB),), {"web": failed(WEB, failures=5, at=NOW)}, expect=((RC, "web"),)),
    # -- live changes: same container, same init PID
    Case("update: resources changed, no recreate", (WEB_BIGGER,), (seen(WEB),),
         expect=((UP, "web"),), reasons={"web": "live change: resources"}),
    Case("update: a label changed", (WEB_LABELLED,), (seen(WEB),),
         expect=((UP, "web"),), reasons={"web": "live change: metadata"}),
    Case("update: a mount added", (WEB_MOUNTED,), (seen(WEB),),
         expect=((UP, "web"),), reasons={"web": "live change: mounts"}),
    Case("update: a paused one too", (want("web", state="Paused", resources={"pids": 9}),),
         (seen(WEB, Status.PAUSED),), expect=((UP, "web"),)),
    Case("update: not an exited one (its restart takes the new spec)", (WEB_BIGGER,),
         (seen(WEB, Status.STOPPED),), {"web": crashed(WEB, code=0, at=NOW)},
         expect=((RS, "web"),)),
    Case("update: not with the hashes alone (no applied manifest)", (WEB,),
         (bare("web", spec_hash=WEB.spec_hash),)),
    Case("update: a recreate carries the live change with it", (want("web", command=("/x",),
                                                                     resources={"pids": 9}),),
         (seen(WEB),), expect=((RC, "web"),), reasons={"web": "command, resources"}),
    # -- run state
    Case("pause: desired Paused, running", (WEB_PAUSED,), (seen(WEB),),
         expect=((PA, "web"),), reasons={"web": "desired state Paused"}),
    Case("resume: desired Running, paused", (WEB,), (seen(WEB, Status.PAUSED),),
         expect=((RE, "web"),), reasons={"web": "desired state Running"}),
    Case("stop: desired Stopped, running", (WEB_STOPPED,), (seen(WEB),),
         expect=((SP, "web"),), reasons={"web": "desired state Stopped"}),
    Case("stop: desired Stopped, paused", (WEB_STOPPED,), (seen(WEB, Status.PAUSED),),
         expect=((SP, "web"),)),
    Case("stop: desired Stopped, exited on its own: nothing", (WEB_STOPPED,),
         (seen(WEB, Status.STOPPED),), {"web": crashed(WEB)}),
    Case("start: stopped by us, desired Running again", (WEB,), (seen(WEB, Status.STOPPED),),
         {"web": stopped_by_us(WEB)}, expect=((ST, "web"),),
         reasons={"web": "desired state Running"}),
    Case("start: stopped by us, desired Paused", (WEB_PAUSED,),
         (seen(WEB, Status.STOPPED),), {"web": stopped_by_us(WEB)}, expect=((ST, "web"),)),
    Case("start: a pending failure of the same revision waits", (WEB,),
         (seen(WEB, Status.STOPPED),),
         {"web": replace(stopped_by_us(WEB), failures=2, failed_at=NOW - 1)},
         waiting={"web": NOW + 1}, notes=("web: start waits 1.0s (backoff)",)),
    # -- restart per restartPolicy
    Case("restart: Always, exit 0, first crash at once", (WEB,), (seen(WEB, Status.STOPPED),),
         {"web": crashed(WEB, code=0, at=NOW)}, expect=((RS, "web"),),
         reasons={"web": "exited (code 0); restartPolicy Always"}),
    Case("restart: OnFailure, exit 0: stays exited", (JOB,), (seen(JOB, Status.STOPPED),),
         {"job": crashed(JOB, code=0)}),
    Case("restart: OnFailure, exit 3", (JOB,), (seen(JOB, Status.STOPPED),),
         {"job": crashed(JOB, code=3)}, expect=((RS, "job"),),
         reasons={"job": "exited (code 3); restartPolicy OnFailure"}),
    Case("restart: OnFailure, killed by a signal", (JOB,), (seen(JOB, Status.STOPPED),),
         {"job": crashed(JOB, code=None, signal=9)}, expect=((RS, "job"),),
         reasons={"job": "exited (signal 9)"}),
    Case("restart: OnFailure, OOM-killed", (JOB,), (seen(JOB, Status.STOPPED),),
         {"job": crashed(JOB, code=None, signal=9, oom=True)}, expect=((RS, "job"),),
         reasons={"job": "OOM-killed, code 137"}),
    Case("restart: OnFailure, exit unknown: restarted", (JOB,), (seen(JOB, Status.STOPPED),),
         expect=((RS, "job"),), reasons={"job": "exited (unknown status)"}),
    Case("restart: Never, exit 1: stays exited", (ONCE,), (seen(ONCE, Status.STOPPED),),
         {"once": crashed(ONCE)}),
    Case("restart: Never, exit 0: stays exited", (ONCE,), (seen(ONCE, Status.STOPPED),),
         {"once": crashed(ONCE, code=0)}),
    Case("restart: Always, desired Paused", (WEB_PAUSED,), (seen(WEB, Status.STOPPED),),
         {"web": crashed(WEB)}, expect=((RS, "web"),)),
    Case("restart: second crash waits 1 s", (WEB,), (seen(WEB, Status.STOPPED),),
         {"web": crashed(WEB, crashes=2, at=NOW - 0.25)}, waiting={"web": NOW + 0.75},
         notes=("web: restart waits 0.8s (backoff)",)),
    Case("restart: second crash, 1 s later", (WEB,), (seen(WEB, Status.STOPPED),),
         {"web": crashed(WEB, crashes=2, at=NOW - 1)}, expect=((RS, "web"),)),
    Case("restart: a failed restart waits for the later of both backoffs", (WEB,),
         (seen(WEB, Status.STOPPED),),
         {"web": replace(crashed(WEB, crashes=2, at=NOW - 1), failures=3, failed_at=NOW)},
         waiting={"web": NOW + 4}),
    Case("restart: the crash backoff is later than the failure one", (WEB,),
         (seen(WEB, Status.STOPPED),),
         {"web": replace(crashed(WEB, crashes=5, at=NOW), failures=1, failed_at=NOW)},
         waiting={"web": NOW + 8}),
    # -- failed actions
    Case("retry: a failed create waits 1 s", (WEB,), history={"web": failed(WEB, at=NOW)},
         waiting={"web": NOW + 1}, notes=("web: create waits 1.0s (backoff)",)),
    Case("retry: the third failure waits 4 s", (WEB,),
         history={"web": failed(WEB, failures=3, at=NOW - 3.5)}, waiting={"web": NOW + 0.5}),
    Case("retry: due", (WEB,), history={"web": failed(WEB, failures=3, at=NOW - 4)},
         expect=((C, "web"),)),
    Case("retry: a failed pause waits too", (WEB_PAUSED,), (seen(WEB),),
         {"web": failed(WEB, at=NOW)}, waiting={"web": NOW + 1}),
    # -- delete
    Case("delete: ours, in no manifest", (WEB,), (seen(WEB), seen(OLD)),
         expect=((DE, "old"),), reasons={"old": "no longer in any manifest"}),
    Case("delete: exited, paused and crash-looping ones too", (WEB,),
         (seen(WEB), seen(OLD, Status.STOPPED), seen(OTHER, Status.PAUSED)),
         {"old": crashed(OLD, crashes=12, at=NOW), "other": failed(OTHER, failures=4)},
         expect=((DE, "old"), (DE, "other"))),
    Case("delete: not while the source is unavailable", (WEB,), (seen(WEB), seen(OLD)),
         available=False, notes=("old: kept: manifests source unavailable",)),
    Case("delete: not what a broken file defined", (WEB,), (seen(WEB), seen(OLD)),
         broken=frozenset({"/m/old.yaml"}), notes=("/m/old.yaml has errors",)),
    Case("delete: a broken file keeps only its own", (WEB,),
         (seen(WEB), seen(OLD), seen(OTHER)), broken=frozenset({"/m/old.yaml"}),
         expect=((DE, "other"),)),
    Case("delete: not a name defined twice (never applied)", (WEB,), (seen(WEB), seen(OLD)),
         conflicts={"old": ("/m/a.yaml", "/m/b.yaml")},
         notes=("old: kept: defined in several files: /m/a.yaml, /m/b.yaml",)),
    Case("delete: not all of them when the directory defines none", (),
         (seen(WEB), seen(OLD)),
         notes=("refusing to delete all 2 containers", "--allow-empty")),
    Case("delete: all of them with allow_empty", (), (seen(WEB), seen(OLD)),
         expect=((DE, "old"), (DE, "web")), allow_empty=True),
    Case("delete: the last one when other names are still desired", (WEB_STOPPED,),
         (seen(OLD),), expect=((DE, "old"),)),
    Case("delete: an empty directory, unavailable: nothing, for both reasons", (),
         (seen(WEB),), available=False, notes=("source unavailable",)),
    # -- several names: sorted, each on its own
    Case("several names, sorted, a failing one does not hold the others",
         (WEB, DB, CACHE, JOB), (seen(DB, Status.STOPPED), seen(JOB, Status.PAUSED),
                                 seen(OLD)),
         {"web": failed(WEB, failures=2, at=NOW), "db": crashed(DB, crashes=3, at=NOW)},
         expect=((C, "cache"), (RE, "job"), (DE, "old")),
         waiting={"web": NOW + 2, "db": NOW + 2}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    desired = state_of(case.desired, available=case.available, broken=case.broken,
                       conflicts=case.conflicts)
    got = planner.plan(desired, {o.name: o for o in case.observed}, case.history, case.now,
                       allow_empty=case.allow_empty)
    assert [(a.kind, a.name) for a in got.actions] == list(case.expect), got
    for action in got.actions:
        assert action.reason, action
        if action.name in case.reasons:
            assert case.reasons[action.name] in action.reason
        if action.kind is Kind.UPDATE:  # the live operations only, never the run state
            assert action.patch
            assert not any(op["path"].startswith("/spec/state") for op in action.patch)
        else:
            assert action.patch == ()
        if action.kind is Kind.DELETE:
            assert action.desired is None
        else:  # the executor needs the spec it acts on, of the revision that is desired
            assert action.desired is not None
            assert action.desired == next(d for d in case.desired if d.name == action.name)
    assert set(case.reasons) <= {a.name for a in got.actions}
    assert dict(got.waiting) == pytest.approx(dict(case.waiting))
    assert got.wake_at == (min(case.waiting.values()) if case.waiting else None)
    for note in case.notes:
        assert any(note in n for n in got.notes), got.notes


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_is_pure(case: Case) -> None:
    """The same inputs give the same plan, and the inputs are left as they were."""
    desired = state_of(case.desired, available=case.available, broken=case.broken,
                       conflicts=case.conflicts)
    observed = {o.name: o for o in case.observed}
    history = dict(case.history)
    first = planner.plan(desired, observed, history, case.now, allow_empty=case.allow_empty)
    again = planner.plan(desired, observed, history, case.now, allow_empty=case.allow_empty)
    assert first == again
    assert observed == {o.name: o for o in case.observed}
    assert history == dict(case.history)


def test_action_str_carries_the_reason() -> None:
    got = planner.plan(state_of((WEB,)), {}, {}, NOW)
    assert [str(a) for a in got.actions] == ["create web: in the manifests, not on the host"]


# -- fixed bugs ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.RUNNING, Status.PAUSED, Status.CREATED])
def test_desired_stopped_with_a_changed_or_half_made_container_is_stopped(
    status: Status,
) -> None:
    """Desired Stopped never makes a running container: the old one is stopped, and the
    recreate happens when the state goes back to Running ("recreated when it is started
    again"). The executor's create leaves a container running, so a RECREATE here breaks
    "planning again yields nothing" (the next pass stops what this one started)."""
    target = WEB_STOPPED if status is Status.CREATED else WEB_STOPPED_V2
    got = planner.plan(state_of((target,)), {"web": seen(WEB, status)}, {}, NOW)
    assert [(a.kind, a.name) for a in got.actions] == [(Kind.STOP, "web")]


# -- the backoff schedule -----------------------------------------------------------------

SCHEDULE = [(1, 0.0), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 32.0),
            (8, 64.0), (9, 128.0), (10, 256.0), (11, 300.0), (12, 300.0), (40, 300.0)]


def test_backoff_delays() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(-1, 13)] == [
        0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert Backoff(initial=0.05, cap=0.3).delay(4) == 0.3
    assert b.reset_after == 600


@pytest.mark.parametrize(("crashes", "delay"), SCHEDULE, ids=[f"crash{n}" for n, _ in SCHEDULE])
def test_restart_backoff_schedule(crashes: int, delay: float) -> None:
    """The first restart at once, then 1 s, 2 s, 4 s ... capped at 5 min."""
    hist = crashed(WEB, crashes=crashes, at=NOW)
    observed = {"web": seen(WEB, Status.STOPPED)}
    assert planner.restart_due(hist, Backoff()) == NOW + delay
    if delay:
        early = planner.plan(state_of((WEB,)), observed, {"web": hist}, NOW + delay - 0.01)
        assert early.actions == ()
        assert early.waiting == {"web": NOW + delay}
        assert early.wake_at == NOW + delay
    due = planner.plan(state_of((WEB,)), observed, {"web": hist}, NOW + delay)
    assert [(a.kind, a.name) for a in due.actions] == [(Kind.RESTART, "web")]
    assert due.wake_at is None


@pytest.mark.parametrize(("failures", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0),
                                                 (10, 300.0), (30, 300.0)])
def test_failed_action_backoff_schedule(failures: int, delay: float) -> None:
    hist = failed(WEB, failures=failures, at=NOW)
    early = planner.plan(state_of((WEB,)), {}, {"web": hist}, NOW + delay - 0.01)
    assert early.actions == () and early.wake_at == NOW + delay
    due = planner.plan(state_of((WEB,)), {}, {"web": hist}, NOW + delay)
    assert [(a.kind, a.name) for a in due.actions] == [(Kind.CREATE, "web")]


def test_custom_backoff_is_used() -> None:
    fast = Backoff(initial=0.05, cap=0.2)
    hist = crashed(WEB, crashes=3, at=NOW)
    got = planner.plan(state_of((WEB,)), {"web": seen(WEB, Status.STOPPED)}, {"web": hist},
                       NOW, backoff=fast)
    assert got.wake_at == pytest.approx(NOW + 0.1)


def test_wake_at_is_the_earliest_due() -> None:
    specs = (WEB, DB, CACHE)
    observed = {d.name: seen(d, Status.STOPPED) for d in specs}
    history = {"web": crashed(WEB, crashes=4, at=NOW), "db": crashed(DB, crashes=2, at=NOW),
               "cache": failed(CACHE, failures=3, at=NOW)}
    got = planner.plan(state_of(specs), observed, history, NOW)
    assert got.actions == ()
    assert got.waiting == {"web": NOW + 4, "db": NOW + 1, "cache": NOW + 4}
    assert got.wake_at == NOW + 1
    assert planner.plan(state_of(specs), observed, {}, NOW).wake_at is None


# -- history transitions ------------------------------------------------------------------

B = Backoff()
H0 = History()


@dataclass(frozen=True)
class Step:
    id: str
    before: History
    apply: Any  # History -> History
    after: History


STEPS = [
    Step("first start: counters of this revision", H0,
         lambda h: planner.on_started(h, "v1", 10.0, restart=False),
         History(spec_hash="v1", started_at=10.0)),
    Step("restart: counted, crashes kept for the backoff",
         History(spec_hash="v1", restarts=2, crashes=3, started_at=1.0),
         lambda h: planner.on_started(h, "v1", 20.0, restart=True),
         History(spec_hash="v1", restarts=3, crashes=3, started_at=20.0)),
    Step("a start clears failures and the stopped-by-us mark",
         History(spec_hash="v1", stopped_by_us=True, failures=2, failed_at=5.0,
                 last_error="boom"),
         lambda h: planner.on_started(h, "v1", 20.0, restart=False),
         History(spec_hash="v1", started_at=20.0)),
    Step("a new revision starts its crashes afresh (restarts shown stay)",
         History(spec_hash="v1", restarts=4, crashes=5, started_at=1.0),
         lambda h: planner.on_started(h, "v2", 30.0, restart=False),
         History(spec_hash="v2", restarts=4, crashes=0, started_at=30.0)),
    Step("a crash counts", History(spec_hash="v1", crashes=1, started_at=100.0),
         lambda h: planner.on_exit(h, exited(1, at=101.0), by_us=False, backoff=B),
         History(spec_hash="v1", crashes=2, started_at=100.0, last_exit=exited(1, at=101.0))),
    Step("a clean exit counts too (for Always)", History(spec_hash="v1", started_at=100.0),
         lambda h: planner.on_exit(h, exited(0, at=101.0), by_us=False, backoff=B),
         History(spec_hash="v1", crashes=1, started_at=100.0, last_exit=exited(0, at=101.0))),
    Step("a stop by us does not count", History(spec_hash="v1", crashes=2, started_at=100.0),
         lambda h: planner.on_exit(h, exited(0, at=101.0), by_us=True, backoff=B),
         History(spec_hash="v1", crashes=2, started_at=100.0, last_exit=exited(0, at=101.0),
                 stopped_by_us=True)),
    Step("a run of 10 min forgets earlier crashes",
         History(spec_hash="v1", crashes=9, started_at=100.0),
         lambda h: planner.on_exit(h, exited(1, at=700.0), by_us=False, backoff=B),
         History(spec_hash="v1", crashes=1, started_at=100.0, last_exit=exited(1, at=700.0))),
    Step("a run just short of 10 min does not",
         History(spec_hash="v1", crashes=9, started_at=100.0),
         lambda h: planner.on_exit(h, exited(1, at=699.9), by_us=False, backoff=B),
         History(spec_hash="v1", crashes=10, started_at=100.0,
                 last_exit=exited(1, at=699.9))),
    Step("an exit of unknown time counts",
         History(spec_hash="v1", crashes=9, started_at=100.0),
         lambda h: planner.on_exit(h, ExitStatus(1, None), by_us=False, backoff=B),
         History(spec_hash="v1", crashes=10, started_at=100.0,
                 last_exit=ExitStatus(1, None))),
    Step("a failure counts for its revision",
         History(spec_hash="v1", failures=1, failed_at=1.0, last_error="a"),
         lambda h: planner.on_failure(h, "v1", "b", 5.0),
         History(spec_hash="v1", failures=2, failed_at=5.0, last_error="b")),
    Step("a failure of a new revision starts at one",
         History(spec_hash="v1", failures=7, failed_at=1.0, last_error="a"),
         lambda h: planner.on_failure(h, "v2", "b", 5.0),
         History(spec_hash="v2", failures=1, failed_at=5.0, last_error="b")),
]


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_history_transition(step: Step) -> None:
    assert step.apply(step.before) == step.after


def test_spec_change_resets_crashes_even_after_a_failed_first_attempt() -> None:
    """v1 crash-looped (5 crashes); v2's first create fails, its retry succeeds: v2 must
    start with no crashes, so its first crash restarts at once, not after 16 s."""
    hist = History(spec_hash="v1", crashes=5, started_at=0.0, last_exit=exited(1, at=1.0))
    hist = planner.on_failure(hist, "v2", "runc create failed", 10.0)
    hist = planner.on_started(hist, "v2", 12.0, restart=False)
    assert hist.crashes == 0
    hist = planner.on_exit(hist, exited(1, at=13.0), by_us=False, backoff=B)
    assert planner.restart_due(hist, B) == 13.0


def test_crash_loop_walkthrough() -> None:
    """The controller's bookkeeping over a crash loop: start, crash, plan, restart ...
    The waits are 0, 1, 2, 4, 8 s; a 10-min run resets them; a spec change resets them."""
    desired = state_of((WEB,))
    hist = planner.on_started(History(), WEB.spec_hash, 0.0, restart=False)
    t = 0.0
    waits = []
    for _ in range(5):
        t += 0.5  # runs half a second, then crashes
        hist = planner.on_exit(hist, exited(1, at=t), by_us=False, backoff=B)
        got = planner.plan(desired, {"web": seen(WEB, Status.STOPPED)}, {"web": hist}, t)
        due = t if got.actions else got.wake_at
        assert due is not None
        assert [a.kind for a in planner.plan(desired, {"web": seen(WEB, Status.STOPPED)},
                                             {"web": hist}, due).actions] == [Kind.RESTART]
        waits.append(due - t)
        t = due
        hist = planner.on_started(hist, WEB.spec_hash, t, restart=True)
    assert waits == [0, 1, 2, 4, 8]
    assert hist.restarts == 5

    # a long run: the next crash restarts at once
    t += 600
    hist = planner.on_exit(hist, exited(1, at=t), by_us=False, backoff=B)
    assert planner.restart_due(hist, B) == t
    hist = planner.on_started(hist, WEB.spec_hash, t, restart=True)
    t += 1
    hist = planner.on_exit(hist, exited(1, at=t), by_us=False, backoff=B)
    assert planner.restart_due(hist, B) == t + 1  # counting again from there

    # a spec change: recreated at once, and its first crash restarts at once
    got = planner.plan(state_of((WEB_V2,)), {"web": seen(WEB, Status.STOPPED)},
                       {"web": hist}, t)
    assert [a.kind for a in got.actions] == [Kind.RECREATE]
    hist = planner.on_started(hist, WEB_V2.spec_hash, t, restart=False)
    t += 0.5
    hist = planner.on_exit(hist, exited(1, at=t), by_us=False, backoff=B)
    assert planner.restart_due(hist, B) == t


def test_a_stop_by_us_is_started_not_restarted_and_not_backed_off() -> None:
    """A container we stopped after crashes is started at once when wanted again."""
    hist = crashed(WEB, crashes=6, at=NOW)
    hist = planner.on_exit(hist, exited(0, at=NOW + 1), by_us=True, backoff=B)
    got = planner.plan(state_of((WEB,)), {"web": seen(WEB, Status.STOPPED)}, {"web": hist},
                       NOW + 1)
    assert [(a.kind, a.name) for a in got.actions] == [(Kind.START, "web")]


def test_status_json_roundtrip_keeps_the_backoff() -> None:
    """History survives a daemon restart through status.json with the same plan."""
    from reconciler.daemon.status import history_from_json, history_to_json

    hist = replace(crashed(WEB, crashes=3, at=NOW), failures=1, failed_at=NOW,
                   last_error="x")
    doc = history_to_json(hist)
    assert all("_" not in key for key in doc), doc  # camelCase, as the rest of the JSON
    assert {"failedAt", "lastError", "lastExit"} <= doc.keys()
    back = history_from_json(json.loads(json.dumps(doc)))
    assert back == hist
    observed = {"web": seen(WEB, Status.STOPPED)}
    assert planner.plan(state_of((WEB,)), observed, {"web": back}, NOW) == planner.plan(
        state_of((WEB,)), observed, {"web": hist}, NOW)


# -- instances: ids, generations and the steps that make them ------------------------------


def test_steps_of_a_create_a_recreate_and_a_restart() -> None:
    """A new revision makes the next generation and takes over the old one's logs; a
    restart keeps the id; a create after a failed one names the last instance made."""
    from reconciler.core.planner import Create, Delete, Start, Stop

    def steps(have: Observed | None, hist: History, want: Desired = WEB) -> tuple[object, ...]:
        plan = planner.plan(state_of((want,)), {"web": have} if have else {}, {"web": hist},
                            NOW)
        [action] = plan.actions
        return action.steps

    running = replace(seen(WEB), instance="web.2", generation=2)
    assert steps(running, History(generation=2), WEB_V2) == (
        Stop("web.2", "SIGTERM", 10.0), Delete("web.2", keep_logs=True),
        Create("web.3", 3, "web.2"), Start("web.3"))
    exited_ = replace(seen(WEB, Status.STOPPED), instance="web.2", generation=2)
    assert steps(exited_, crashed(WEB, at=NOW - 100)) == (
        Delete("web.2", keep_logs=True), Create("web.2", 2, "web.2"), Start("web.2"))
    assert steps(None, History(generation=2)) == (Create("web.3", 3, "web.2"), Start("web.3"))
    assert steps(None, History()) == (Create("web.1", 1, None), Start("web.1"))


def test_a_refused_prune_is_a_warning() -> None:
    web, db = want("web"), want("db")
    state = DesiredState(specs={}, broken_sources=frozenset(), conflicts={}, problems=(),
                         sources=frozenset({"directory"}), defined={"directory": 0})
    got = planner.plan(state, {"web": seen(web), "db": seen(db)}, {}, NOW)
    assert got.actions == ()
    (warning,) = got.warnings
    assert warning.startswith("refusing to delete all 2 containers") and warning in got.notes


def test_a_restart_annotation_makes_a_new_instance_other_annotations_are_live() -> None:
    before = want("web", annotations={"note": "a"})
    restarted = want("web", annotations={"note": "a", model.RESTARTED_AT: "2026-12-01T09:00Z"})
    noted = want("web", annotations={"note": "b"})
    assert noted.spec_hash == before.spec_hash  # an annotation is live
    got = planner.plan(state_of((restarted,)), {"web": seen(before)}, {}, NOW)
    (action,) = got.actions
    assert action.kind is Kind.RECREATE
    assert action.reason == f"restarted on request ({model.RESTARTED_AT} 2026-12-01T09:00Z)"
