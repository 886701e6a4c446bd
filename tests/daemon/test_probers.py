"""daemon.probes.Probers over the fake runtime, on trio's MockClock (virtual seconds).

Exec probes answer from a script (``Scripted.answers``: an exit code per program, None
for a timeout, or a runtime error); a test moves virtual time to just between two probes
and reads ``Probers.readiness``, the events the probers told the host, and the fake's
recorded operations (a liveness failure stops the instance: the fake's ``stop``).

Each prober probes at 0, period, 2 x period, ... after its start (no initial delay unless
a test sets one): ``at(k + 0.5)`` with a period of 1 s reads the state after k+1 probes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc
import pytest
from trio.testing import MockClock

from reconciler import errors
from reconciler.core.desired import Desired, DesiredState
from reconciler.core.observed import ExecResult, Observed, Status
from reconciler.daemon.probes import Probers, Readiness
from reconciler.manifest import model
from reconciler.runtime.fake import FakeRuntime
from reconciler.runtime.types import Runtime

pytestmark = pytest.mark.anyio

NAME, INSTANCE = "web", "web.1"
Answer = int | None | errors.ReconcilerError


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Scripted(FakeRuntime):
    """exec_probe answers ``answers[argv[0]]`` (default exit 0) and records when."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Answer] = {}
        self.probed: list[tuple[float, str]] = []

    async def exec_probe(self, instance: str, argv: Sequence[str], *, timeout: float
                         ) -> ExecResult | None:
        self._get(instance)
        self.probed.append((anyio.current_time(), argv[0]))
        answer = self.answers.get(argv[0], 0)
        if isinstance(answer, errors.ReconcilerError):
            raise answer
        if answer is None:
            return None
        return ExecResult(exit_code=answer, stdout=f"said {answer}".encode(), stderr=b"")


class Host:
    """What the probers use of the loop: the runtime, events, kicks, an address."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.events: list[tuple[str | None, str, str, bool]] = []
        self.kicks = 0
        self.kicked = anyio.Event()

    def event(self, name: str | None, reason: str, message: str, *,
              warning: bool = False) -> None:
        self.events.append((name, reason, message, warning))

    def kick(self) -> None:
        self.kicks += 1
        self.kicked.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait for kicks (a prober changed readiness) until ``done()``."""
        while not done():
            self.kicked = anyio.Event()
            await self.kicked.wait()

    def probe_address(self, want: Desired) -> str:
        return "127.0.0.1"

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]


def probe(program: str, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": [program]}, "periodSeconds": 1, **fields}


def state_of(*specs: Desired) -> DesiredState:
    return DesiredState(specs={d.name: d for d in specs}, broken_sources=frozenset(),
                        conflicts={}, problems=())


async def up(rt: Scripted, *, generation: int = 1, **spec: Any
             ) -> tuple[DesiredState, dict[str, Observed]]:
    """``web`` with ``spec``'s probes, running on the fake host (made if it is not)."""
    c = model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": NAME},
        "spec": {"rootfs": "/nonexistent/rootfs", "command": ["/bin/serve"],
                 "terminationGracePeriodSeconds": 2, **spec}})
    d = Desired(NAME, c, "/m/web.yaml", model.spec_hash(c))
    if NAME not in rt.containers:
        made = await rt.create(FakeRuntime.spec_for(c, source=d.source, spec_hash=d.spec_hash,
                                                    generation=generation))
        await rt.start(made.id)
    return state_of(d), dict(rt.containers)


class World:
    """One test's fake host, its probers, and virtual time counted from its start."""

    def __init__(self, tg: anyio.abc.TaskGroup, runtime: Scripted) -> None:
        self.rt = runtime
        self.host = Host(runtime)
        self.probers = Probers(self.host)
        self.tg = tg
        self.t0 = anyio.current_time()

    async def start(self, **spec: Any) -> None:
        """``web`` running with ``spec`` (made if it is not), and a pass's sync."""
        await self.sync(*await up(self.rt, **spec))

    async def sync(self, desired: DesiredState, observed: dict[str, Observed]) -> None:
        """``Probers.sync``, and a hundredth of a second: a new prober's first step (its
        first probe, without an initial delay) is done."""
        self.probers.sync(desired, observed, self.tg)
        await anyio.sleep(0.01)

    async def at(self, t: float) -> None:
        """Virtual time ``t`` seconds after the world began."""
        await anyio.sleep(self.t0 + t - anyio.current_time())

    @property
    def now(self) -> Readiness:
        return self.probers.readiness[NAME]

    def programs(self) -> list[str]:
        return [p for _, p in self.rt.probed]


async def run(test: Callable[[World], Awaitable[None]], runtime: Scripted | None = None
              ) -> None:
    async with anyio.create_task_group() as tg:
        world = World(tg, runtime or Scripted())
        try:
            await test(world)
        finally:
            world.probers.close()


# -- without probes ---------------------------------------------------------------------------


async def test_without_probes_a_running_instance_is_ready_at_once() -> None:
    async def test(w: World) -> None:
        await w.start()
        assert (w.now.ready, w.now.started, w.now.instance) == (True, True, INSTANCE)
        assert w.host.kicks == 1
        await w.start()  # again: nothing new, no kick
        assert w.host.kicks == 1
        await w.at(5)
        assert w.rt.probed == []

    await run(test)


# -- readiness ---------------------------------------------------------------------------------


async def test_readiness_thresholds() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready", successThreshold=2, failureThreshold=3))
        assert (w.now.ready, w.now.message) == (False, "probes starting")
        await w.at(0.5)
        assert not w.now.ready  # 1 success of 2
        await w.at(1.5)
        assert w.now.ready
        assert w.now.message == "exit code 0: said 0"
        assert ("web", "Ready", "readiness probe: exit code 0: said 0", False) in w.host.events
        w.rt.answers["/ready"] = 1
        await w.at(3.5)
        assert w.now.ready  # 2 failures of 3
        await w.at(4.5)
        assert not w.now.ready
        assert w.now.message == "readiness probe failed: exit code 1: said 1"
        assert w.host.events[-1] == ("web", "NotReady",
                                     "Readiness probe failed 3 times: exit code 1: said 1", True)
        w.rt.answers["/ready"] = 0
        await w.at(5.5)
        assert not w.now.ready  # a success breaks the run of failures, not yet ready
        await w.at(6.5)
        assert w.now.ready
        assert w.programs() == ["/ready"] * 7

    await run(test)


async def test_readiness_that_never_passes_says_why() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/ready"] = 2
        await w.start(readinessProbe=probe("/ready", failureThreshold=2))
        await w.at(0.5)
        assert w.now.message == "probes starting"
        await w.at(1.5)
        assert (w.now.ready, w.now.message) == (
            False, "readiness probe failed: exit code 2: said 2")
        assert "NotReady" not in w.host.reasons()  # it never was ready
        assert w.rt.calls.count(("stop", NAME)) == 0  # readiness stops nothing

    await run(test)


async def test_initial_delay_and_period() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready", initialDelaySeconds=5, periodSeconds=3))
        await w.at(21)
        assert [round(t - w.t0) for t, _ in w.rt.probed] == [5, 8, 11, 14, 17, 20]

    await run(test)


@pytest.mark.parametrize(("answer", "message"), [
    (None, "timed out after 1s"),
    (errors.RuncError("cannot exec in a stopped container", container=INSTANCE),
     "cannot exec in a stopped container"),
])
async def test_a_probe_that_times_out_or_errs_fails(answer: Answer, message: str) -> None:
    async def test(w: World) -> None:
        w.rt.answers["/ready"] = answer
        await w.start(readinessProbe=probe("/ready", failureThreshold=1))
        await w.at(0.5)
        assert not w.now.ready
        assert w.now.message is not None and message in w.now.message

    await run(test)


# -- startup -----------------------------------------------------------------------------------


async def test_startup_holds_liveness_and_readiness() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/started"] = 1
        await w.start(startupProbe=probe("/started", failureThreshold=10),
                      livenessProbe=probe("/alive"), readinessProbe=probe("/ready"))
        assert (w.now.ready, w.now.started) == (False, False)
        await w.at(2.5)
        assert w.programs() == ["/started"] * 3
        assert [e[1] for e in w.host.events] == ["Unhealthy"] * 3
        assert w.host.events[0][2] == "Startup probe failed (1/10): exit code 1: said 1"
        w.rt.answers["/started"] = 0
        await w.at(3.5)
        assert w.now.started
        assert "StartupProbeSucceeded" in w.host.reasons()
        await w.at(5.5)
        got = w.programs()
        assert got.count("/started") == 4  # done for this instance
        assert got.count("/alive") == got.count("/ready") == 3  # at 3, 4 and 5
        assert got.index("/alive") > 3 and got.index("/ready") > 3
        assert w.now.ready

    await run(test)


async def test_startup_alone_then_ready() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/started"] = 1
        await w.start(startupProbe=probe("/started", failureThreshold=10))
        await w.at(1.5)
        assert (w.now.ready, w.now.started) == (False, False)
        w.rt.answers["/started"] = 0
        await w.at(2.5)
        assert (w.now.ready, w.now.started) == (True, True)

    await run(test)


async def test_startup_failure_threshold_stops_the_instance() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/started"] = 1
        await w.start(startupProbe=probe("/started", failureThreshold=3),
                      livenessProbe=probe("/alive"))
        await w.at(5)
        assert w.programs() == ["/started"] * 3  # liveness never ran; the prober ended
        assert w.rt.calls.count(("stop", NAME)) == 1
        assert w.rt.containers[NAME].status is Status.STOPPED
        assert (w.now.ready, w.now.started) == (False, False)
        assert w.now.message == "startup probe failed 3 times: exit code 1: said 1"
        killing = [e for e in w.host.events if e[1] == "Killing"]
        assert killing == [("web", "Killing", "startup probe failed 3 times: exit code 1: "
                            "said 1; stopping it (SIGTERM, 2s grace), its restart policy "
                            "decides what follows", True)]

    await run(test)


# -- liveness ----------------------------------------------------------------------------------


async def test_liveness_failures_in_a_row_stop_the_instance() -> None:
    async def test(w: World) -> None:
        await w.start(livenessProbe=probe("/alive", failureThreshold=3))
        assert w.now.ready  # no readiness probe: ready while running
        await w.at(1.5)
        w.rt.answers["/alive"] = 1
        await w.at(3.5)
        w.rt.answers["/alive"] = 0  # two failures, then a success: the run starts again
        await w.at(4.5)
        w.rt.answers["/alive"] = 1
        await w.at(6.5)
        assert w.rt.calls.count(("stop", NAME)) == 0
        await w.at(7.5)
        assert w.rt.calls.count(("stop", NAME)) == 1
        unhealthy = [e[2] for e in w.host.events if e[1] == "Unhealthy"]
        assert unhealthy == [f"Liveness probe failed ({n}/3): exit code 1: said 1"
                             for n in (1, 2, 1, 2, 3)]
        assert (w.now.ready, w.now.started) == (False, False)
        assert w.now.message == "liveness probe failed 3 times: exit code 1: said 1"
        await w.at(20)
        assert len(w.programs()) == 8  # the prober ended with the instance

    await run(test)


async def test_a_liveness_probes_grace_period_is_used() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/alive"] = 1
        await w.start(livenessProbe=probe("/alive", failureThreshold=1,
                                          terminationGracePeriodSeconds=7),
                      stopSignal="SIGINT")
        await w.at(0.5)
        (killing,) = [e[2] for e in w.host.events if e[1] == "Killing"]
        assert "(SIGINT, 7s grace)" in killing

    await run(test)


class Stubborn(Scripted):
    """An init that ignores its stop signal: only SIGKILL ends it."""

    def __init__(self) -> None:
        super().__init__()
        self.signals: list[str] = []

    async def signal(self, instance: str, sig: str, *, every: bool = False) -> None:
        self.signals.append(sig)
        if sig == "SIGKILL":
            await super().signal(instance, sig, every=every)


async def test_liveness_kill_after_the_grace_period() -> None:
    rt = Stubborn()

    async def test(w: World) -> None:
        rt.answers["/alive"] = 1
        await w.start(livenessProbe=probe("/alive", failureThreshold=1))
        await w.at(1.9)
        assert rt.signals == ["SIGTERM"]
        await w.at(2.1)  # the container's 2 s grace
        assert rt.signals == ["SIGTERM", "SIGKILL"]
        assert rt.containers[NAME].status is Status.STOPPED

    await run(test, rt)


# -- sync: one prober per running instance ------------------------------------------------------


async def test_sync_replaces_a_prober_when_the_probes_change() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready"))
        await w.at(1.5)
        assert w.now.ready
        await w.start(readinessProbe=probe("/ready2"))  # same instance, new probe: 1.5
        assert w.now.ready  # kept while the new prober starts on the same instance
        await w.at(3)
        assert w.programs() == ["/ready", "/ready", "/ready2", "/ready2"]  # 0, 1; 1.5, 2.5
        await w.start(readinessProbe=probe("/ready2"))  # unchanged: the same prober
        await w.at(4)
        assert w.programs().count("/ready2") == 3  # 3.5: still every second from 1.5

    await run(test)


async def test_sync_ends_the_prober_of_a_stopped_instance() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready"))
        await w.at(1.5)
        w.rt.crash(NAME, 1)
        await w.start(readinessProbe=probe("/ready"))  # a pass sees it stopped
        assert NAME not in w.probers.readiness
        await w.at(5)
        assert len(w.programs()) == 2

    await run(test)


async def test_sync_ends_the_prober_of_an_object_no_longer_desired() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready"))
        await w.at(1.5)
        await w.sync(state_of(), dict(w.rt.containers))
        await w.at(5)
        assert len(w.programs()) == 2

    await run(test)


async def test_a_new_instance_starts_again_from_not_ready() -> None:
    async def test(w: World) -> None:
        await w.start(readinessProbe=probe("/ready", successThreshold=2))
        await w.at(1.5)
        assert w.now.ready
        await w.rt.delete(INSTANCE)  # a new instance (generation 2) in its place
        await w.sync(*await up(w.rt, generation=2,
                               readinessProbe=probe("/ready", successThreshold=2)))
        assert (w.now.ready, w.now.instance) == (False, "web.2")  # 1 success of 2, at 1.5
        await w.at(3)
        assert w.now.ready  # the second at 2.5

    await run(test)



async def test_readiness_behind_a_startup_probe_says_why_it_fails() -> None:
    async def test(w: World) -> None:
        w.rt.answers["/ready"] = 1
        await w.start(startupProbe=probe("/started"),
                      readinessProbe=probe("/ready", failureThreshold=2))
        await w.at(2.5)
        assert (w.now.ready, w.now.started) == (False, True)
        assert w.now.message == "readiness probe failed: exit code 1: said 1"

    await run(test)


# -- network probes: from the instance's network namespace (here: this process's own) ----------


as_root = pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs root")
real_time = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # threads: no MockClock


@contextlib.contextmanager
def answering(reply: bytes) -> Iterator[int]:
    """127.0.0.1:PORT: one connection answered with ``reply``, then FIN; read to the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = s.accept()
                with conn:
                    conn.settimeout(3)
                    conn.recv(4096)
                    conn.sendall(reply)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(4096):
                        pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield s.getsockname()[1]
        thread.join(3)


async def network_probe(w: World, **spec: Any) -> Readiness:
    """``web`` probed in this process's network namespace until a readiness message."""
    desired, observed = await up(w.rt, **spec)
    observed[NAME] = replace(observed[NAME], pid=os.getpid())
    await w.sync(desired, observed)
    with anyio.fail_after(5):
        await w.host.until(lambda: w.now.message not in (None, "probes starting"))
    return w.now


@as_root
@real_time
async def test_a_tcp_probe_in_the_instances_network_namespace(anyio_backend: str) -> None:
    async def test(w: World) -> None:
        with answering(b"") as port:
            got = await network_probe(w, readinessProbe={"tcpSocket": {"port": port}})
        assert (got.ready, got.message) == (True, f"connected to 127.0.0.1:{port}")

    await run(test)


@as_root
@real_time
async def test_a_malformed_grpc_reply_fails_the_probe(anyio_backend: str) -> None:
    async def test(w: World) -> None:
        with answering(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x") as port:  # DATA, stream 0
            got = await network_probe(w, readinessProbe={"grpc": {"port": port},
                                                         "failureThreshold": 1})
        assert not got.ready
        assert got.message is not None and got.message.startswith("readiness probe failed")

    await run(test)
