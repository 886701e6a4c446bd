"""The planner's fixpoint, as a property: apply a plan to the fake runtime, plan again, nothing.

Hypothesis draws a desired set (names from a small alphabet; run state, restartPolicy, one
of two commands so hashes differ, one of a few live changes) and what the host holds at
the start (running or paused with the same or another spec, exited with a code or stopped
by us after some crashes, half-made, or names no manifest wants any more).

The plan is applied by the real executor, ``Controller._apply``, on a ``FakeRuntime``,
one action after the other and without the controller's loop: the property is about one
plan, and the loop would hide a plan that needs a second pass by simply making it. The
controller also does the bookkeeping the planner reads next (history, observed), so
nothing here mirrors it. Before planning the controller relists the fake as the daemon
does at start (that records the exits of the exited containers), and again after applying.

Restarts held back by a crash backoff must show up in ``waiting``, never in ``actions``.
A second property runs the whole controller loop on the same worlds and checks that the
daemon settles with the host as the manifests say.
"""

from __future__ import annotations

import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.core import planner
from reconciler.core.backoff import Backoff
from reconciler.core.desired import Desired, DesiredState, SourceSnapshot
from reconciler.core.observed import Observed, Status
from reconciler.core.planner import History, Kind
from reconciler.daemon.loop import Controller
from reconciler.daemon.status import Store, history_to_json
from reconciler.manifest import loader, model
from reconciler.runtime.fake import FakeRuntime

NOW = 1000.0  # the fake runtime's clock and the controller's: one time line
NAMES = ("a", "b", "c", "d")
COMMANDS = (["/bin/serve"], ["/bin/serve", "--v2"])
LIVE: tuple[dict[str, Any], ...] = (  # changes made in place (same hash)
    {},
    {"spec": {"resources": {"pids": 64}}},
    {"metadata": {"labels": {"tier": "front"}}},
    {"spec": {"mounts": [{"type": "tmpfs", "destination": "/tmp"}]}},
)
BACKOFF = Backoff()


def container(name: str, *, command: int, live: int, state: str = "Running",
              policy: str = "Always") -> model.Container:
    extra = LIVE[live]
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": name, **extra.get("metadata", {})},
        "spec": {"rootfs": "/nonexistent/rootfs", "command": COMMANDS[command],
                 "state": state, "restartPolicy": policy, **extra.get("spec", {})},
    })


def source_of(name: str) -> str:
    return f"/m/{name}.yaml"


# -- the worlds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    command: int
    live: int
    state: str
    policy: str


@dataclass(frozen=True)
class Host:
    status: Status
    command: int
    live: int
    policy: str = "Always"
    code: int | None = None  # exited: its code (None: killed by SIGKILL)
    by_us: bool = False  # exited: we stopped it
    crashes: int = 0  # exited: crashes before this exit


@dataclass(frozen=True)
class World:
    desired: Mapping[str, Want]
    host: Mapping[str, Host]
    allow_empty: bool


wants = st.builds(Want, command=st.integers(0, 1), live=st.integers(0, len(LIVE) - 1),
                  state=st.sampled_from(["Running", "Paused", "Stopped"]),
                  policy=st.sampled_from(["Always", "OnFailure", "Never"]))


@st.composite
def slots(draw: st.DrawFn) -> tuple[Want | None, Host | None]:
    """One name: what the manifests want, what the host has (often the same spec)."""
    want = draw(wants) if draw(st.integers(0, 3)) else None
    status = draw(st.sampled_from([None, Status.RUNNING, Status.PAUSED, Status.STOPPED,
                                   Status.STOPPED, Status.CREATED]))
    if status is None:
        return want, None
    if want is not None and draw(st.integers(0, 3)):  # the same spec, live fields maybe not
        command, policy = want.command, want.policy
        live = draw(st.sampled_from([want.live, want.live, draw(st.integers(0, 3))]))
    else:
        command, live = draw(st.integers(0, 1)), draw(st.integers(0, len(LIVE) - 1))
        policy = draw(st.sampled_from(["Always", "OnFailure", "Never"]))
    host = Host(status, command, live, policy)
    if status is Status.STOPPED:
        host = replace(host, code=draw(st.sampled_from([0, 1, 3, None])),
                       by_us=draw(st.booleans()), crashes=draw(st.integers(0, 4)))
    return want, host


@st.composite
def worlds(draw: st.DrawFn) -> World:
    drawn = {name: draw(slots()) for name in NAMES}
    return World(desired={n: w for n, (w, _) in drawn.items() if w is not None},
                 host={n: h for n, (_, h) in drawn.items() if h is not None},
                 allow_empty=draw(st.booleans()))


def desired_state(world: World) -> DesiredState:
    specs = {}
    for name, w in world.desired.items():
        c = container(name, command=w.command, live=w.live, state=w.state, policy=w.policy)
        specs[name] = Desired(name, c, source_of(name), model.spec_hash(c))
    return DesiredState(types.MappingProxyType(specs), frozenset(),
                        types.MappingProxyType({}), ())


async def populate(fake: FakeRuntime, world: World) -> dict[str, History]:
    """Make the host of ``world`` in the fake; the history a daemon would have kept."""
    history: dict[str, History] = {}
    for name, h in sorted(world.host.items()):
        c = container(name, command=h.command, live=h.live, policy=h.policy)
        spec_hash = model.spec_hash(c)
        obs = await fake.create(fake.spec_for(c, source=source_of(name), spec_hash=spec_hash))
        await fake.start(obs.id)
        if h.live == 3:  # the fake only records mounts it was told to make
            await fake.update_mounts(obs.id, [], c.spec.mounts)
        if h.status is Status.PAUSED:
            await fake.pause(obs.id)
        elif h.status is Status.CREATED:
            fake.containers[name] = replace(obs, status=Status.CREATED, pid=None)
        elif h.status is Status.STOPPED:
            fake.crash(name, h.code, signal=9 if h.code is None else None)
            exit_ = fake.exits[name]
            history[name] = History(spec_hash=spec_hash, crashes=h.crashes,
                                    restarts=h.crashes, started_at=NOW - 30,
                                    last_exit=exit_ if h.by_us else None,
                                    stopped_by_us=h.by_us)
    fake.calls.clear()
    return history


def check_host(fake: FakeRuntime, want: DesiredState, world: World,
               waiting: Mapping[str, float]) -> None:
    """The host is as the manifests say, but for what a policy or a backoff leaves."""
    refused = not want.specs and not world.allow_empty and bool(world.host)
    for name in NAMES:
        got = fake.containers.get(name)
        d = want.specs.get(name)
        if d is None:
            assert got is None or refused, (name, got)
            continue
        spec = d.container.spec
        if got is None:
            assert spec.state is model.RunState.STOPPED, name
            continue
        if got.status is Status.STOPPED:
            if spec.state is model.RunState.STOPPED or name in waiting:
                continue
            exit_ = fake.exits[name]
            policy = spec.restart_policy
            assert policy is model.RestartPolicy.NEVER or (
                policy is model.RestartPolicy.ON_FAILURE and not exit_.failed), (name, exit_)
            continue
        assert got.spec_hash == d.spec_hash, name
        assert got.status.value == spec.state.value.lower(), (name, got.status)


# -- worlds worth a name -------------------------------------------------------------------


def _same_hash(w: Want, h: Host) -> bool:
    return w.command == h.command and w.policy == h.policy


def live_change_and_state_change(world: World) -> bool:
    """A live change and a run-state change at once (one plan must do both)."""
    for name, w in world.desired.items():
        h = world.host.get(name)
        if (h is not None and h.status in (Status.RUNNING, Status.PAUSED)
                and _same_hash(w, h) and h.live != w.live
                and h.status.value != w.state.lower()):
            return True
    return False


# -- one plan, applied by the executor, then planned again ----------------------------------


def apply_and_replan(world: World) -> planner.Plan:
    """Plan, apply with the executor, relist, plan again; the first plan."""

    async def main() -> planner.Plan:
        with tempfile.TemporaryDirectory() as tmp:
            fake = FakeRuntime(clock=NOW)
            history = await populate(fake, world)
            ctl = Controller(fake, Store(tmp), backoff=BACKOFF, allow_empty=world.allow_empty,
                             clock=lambda: NOW)
            ctl.history.update(history)
            await ctl._relist()  # as at the daemon's start: exits recorded
            ctl.desired = want = desired_state(world)

            first = planner.plan(want, ctl.observed, ctl.history, NOW,
                                 allow_empty=world.allow_empty, backoff=BACKOFF)
            for action in first.actions:
                await ctl.apply(action)

            mine = planner.plan(want, ctl.observed, ctl.history, NOW,
                                allow_empty=world.allow_empty, backoff=BACKOFF)
            await ctl._relist()
            again = planner.plan(want, ctl.observed, ctl.history, NOW,
                                 allow_empty=world.allow_empty, backoff=BACKOFF)
            assert again == mine  # the controller's view is the host's
            assert again.actions == (), (first.actions, again.actions)
            assert again.waiting == first.waiting
            for name in first.waiting:  # only restarts (and starts) of exited ones wait
                assert fake.containers[name].status is Status.STOPPED
            check_host(fake, want, world, again.waiting)
            return first

    return anyio.run(main, backend="asyncio")


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_planning_after_applying_a_plan_yields_nothing(world: World) -> None:
    first = apply_and_replan(world)
    for kind in sorted({a.kind.value for a in first.actions}):
        event(kind)  # --hypothesis-show-statistics: every kind is exercised
    if first.waiting:
        event("restart waits (backoff)")


# -- the whole controller loop, from a snapshot, until it settles ----------------------------


def snapshot(world: World) -> SourceSnapshot:
    files = {}
    for name, w in world.desired.items():
        c = container(name, command=w.command, live=w.live, state=w.state, policy=w.policy)
        key = source_of(name)
        files[key] = loader.FileResult(key, f"digest-{name}",
                                       (loader.Loaded(c, key, 1, 0),), ())
    return SourceSnapshot(source="directory", available=True, reason=None, origins=files)


def settles(world: World) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            fake = FakeRuntime(clock=NOW)
            history = await populate(fake, world)
            store = Store(tmp)  # the history of the daemon before, through status.json
            store.write_status({"containers": {
                n: {"history": history_to_json(h)} for n, h in history.items()}})
            ctl = Controller(fake, store, backoff=BACKOFF, allow_empty=world.allow_empty,
                             clock=lambda: NOW)
            send, receive = anyio.create_memory_object_stream[SourceSnapshot](1)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg, send:
                    await tg.start(ctl.run, receive)
                    await send.send(snapshot(world))
                    # polled from outside: the controller has no event to wait on
                    while ctl.last_plan is None or ctl.last_plan.actions or ctl.busy:  # noqa: ASYNC110
                        await anyio.sleep(0.001)
                    tg.cancel_scope.cancel()
            assert ctl.desired is not None and ctl.last_plan is not None
            check_host(fake, ctl.desired, world, ctl.last_plan.waiting)

    anyio.run(main, backend="asyncio")


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_the_controller_settles_as_the_manifests_say(world: World) -> None:
    settles(world)


def test_a_crash_looping_container_no_longer_wanted_is_deleted_at_once() -> None:
    """A delete is never held back by the backoff of the container it deletes."""
    world = World({}, {"a": Host(Status.STOPPED, 0, 0, code=1, crashes=4)}, allow_empty=True)
    first = apply_and_replan(world)
    assert [(a.kind, a.name) for a in first.actions] == [(Kind.DELETE, "a")]


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_is_reachable(kind: Kind) -> None:
    """The worlds above can make every kind of action (else the property proves little)."""
    examples = {
        Kind.CREATE: World({"a": Want(0, 0, "Running", "Always")}, {}, False),
        Kind.RECREATE: World({"a": Want(1, 0, "Running", "Always")},
                             {"a": Host(Status.RUNNING, 0, 0)}, False),
        Kind.RESTART: World({"a": Want(0, 0, "Running", "Always")},
                            {"a": Host(Status.STOPPED, 0, 0, code=1)}, False),
        Kind.START: World({"a": Want(0, 0, "Running", "Always")},
                          {"a": Host(Status.STOPPED, 0, 0, code=0, by_us=True)}, False),
        Kind.STOP: World({"a": Want(0, 0, "Stopped", "Always")},
                         {"a": Host(Status.RUNNING, 0, 0)}, False),
        Kind.PAUSE: World({"a": Want(0, 0, "Paused", "Always")},
                          {"a": Host(Status.RUNNING, 0, 0)}, False),
        Kind.RESUME: World({"a": Want(0, 0, "Running", "Always")},
                           {"a": Host(Status.PAUSED, 0, 0)}, False),
        Kind.DELETE: World({"b": Want(0, 0, "Running", "Always")},
                           {"a": Host(Status.RUNNING, 0, 0)}, False),
        Kind.UPDATE: World({"a": Want(0, 1, "Running", "Always")},
                           {"a": Host(Status.RUNNING, 0, 0)}, False),
    }
    world = examples[kind]
    observed, history = anyio.run(_host, world, backend="asyncio")
    got = planner.plan(desired_state(world), observed, history, NOW)
    assert kind in {a.kind for a in got.actions}
    apply_and_replan(world)


async def _host(world: World) -> tuple[dict[str, Observed], dict[str, History]]:
    fake = FakeRuntime(clock=NOW)
    history = await populate(fake, world)
    return {o.name: o for o in await fake.list()}, history


@pytest.mark.parametrize(("host", "state"), [(Status.RUNNING, "Paused"),
                                             (Status.PAUSED, "Running")])
def test_a_live_change_and_a_state_change_take_one_plan(host: Status, state: str) -> None:
    world = World({"a": Want(0, 1, state, "Always")}, {"a": Host(host, 0, 0)}, False)
    assert live_change_and_state_change(world)
    apply_and_replan(world)
