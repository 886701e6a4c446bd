"""The real Controller over the fake runtime, fed snapshots through a memory stream.

Each test writes manifest files to a temp dir, loads them with the real loader into a
``Snapshot`` and sends it to a running ``Controller`` (its own task group, cancelled at the
end), then plays the world on the fake runtime: crashes, failing creates, containers
removed or paused by hand. Assertions read the fake (what the "host" holds), the
controller's status.json and events.jsonl (what ``get``/``events`` show).

Time is fake: the tests run on trio's ``MockClock`` (through anyio) with autojump, so
the clock leaps to the next deadline whenever every task waits. Backoffs, grace periods,
resyncs and the status writer's throttle take no real time, and a test that waits "0.35 s"
waits for nothing. The controller and the fake share that clock (``anyio.current_time``),
so an exit is stamped on the time line the planner's backoff is computed on; every wait
is bounded (``until``) so a bug fails a test, never hangs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from trio.testing import MockClock

from reconciler import errors
from reconciler.core.backoff import Backoff
from reconciler.core.instance import InstanceSpec
from reconciler.core.observed import Observed, Status
from reconciler.daemon.loop import Controller
from reconciler.daemon.status import Store
from reconciler.manifest import loader
from reconciler.manifest.model import Container
from reconciler.runtime.fake import FakeRuntime
from reconciler.sources.directory import Snapshot

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """trio with a mock clock that jumps ahead whenever every task is waiting."""
    return "trio", {"clock": MockClock(autojump_threshold=0)}




AT_ONCE = 0.25  # generous bound for "at once" (backoffs below are longer)
FAST = Backoff(initial=0.3, cap=2.0, reset_after=60.0)


class LiveFake(FakeRuntime):
    """The fake runtime on the controller's clock: exits and creates are stamped now."""

    @property
    def clock(self) -> float:
        return anyio.current_time()

    @clock.setter
    def clock(self, value: float) -> None:
        pass  # the base class sets a fixed start time; this one follows the real clock

    def __init__(self) -> None:
        super().__init__()
        self.creates: dict[str, list[float]] = {}  # name -> when each create was called
        self.failing: dict[str, int] = {}  # name -> creates still to fail

    async def create(self, spec: InstanceSpec) -> Observed:
        name = spec.name
        self.creates.setdefault(name, []).append(anyio.current_time())
        if self.failing.get(name):
            self.failing[name] -= 1
            self.calls.append(("create", name))
            raise errors.RootfsError(f"rootfs {spec.container.spec.rootfs} is empty",
                                     container=name)
        return await super().create(spec)


class GatedFake(LiveFake):
    """Creates wait at a gate per name; counts creates in flight, per name and in all."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, anyio.Event] = {}
        self.in_flight: dict[str, int] = {}
        self.most_per_name = 0
        self.most_at_once = 0

    async def create(self, spec: InstanceSpec) -> Observed:
        name = spec.name
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        self.most_per_name = max(self.most_per_name, self.in_flight[name])
        self.most_at_once = max(self.most_at_once, sum(self.in_flight.values()))
        try:
            gate = self.gates.get(name)
            if gate is not None:
                await gate.wait()
            return await super().create(spec)
        finally:
            self.in_flight[name] -= 1


class StallingFake(LiveFake):
    """``state`` waits while ``stall`` is set: a slow ``runc state`` after an action."""

    def __init__(self) -> None:
        super().__init__()
        self.stall: anyio.Event | None = None
        self.stalled = anyio.Event()

    async def state(self, name: str) -> Observed:
        stall = self.stall
        if stall is not None:
            self.stalled.set()
            await stall.wait()
        return await super().state(name)


# -- the daemon under test -------------------------------------------------------------------


def manifest(name: str, *, command: Sequence[str] = ("/bin/serve",), state: str = "Running",
             policy: str = "Always") -> str:
    return (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n"
        f"  rootfs: /nonexistent/rootfs\n  command: {list(command)!r}\n"
        f"  state: {state}\n  restartPolicy: {policy}\n"
    ).replace("'", '"')


@dataclass
class Daemon:
    ctl: Controller
    fake: LiveFake
    store: Store
    manifests: Path
    send: MemoryObjectSendStream[Snapshot]
    generation: int = 0

    def write(self, name: str, file: str | None = None, **spec: Any) -> Path:
        path = self.manifests / (file or f"{name}.yaml")
        path.write_text(manifest(name, **spec))
        return path

    async def scan(self) -> None:
        """Send a snapshot of the manifests directory as it is now; return once taken."""
        files = {str(p): loader.load_file(p) for p in sorted(self.manifests.glob("*.yaml"))}
        await self._send(Snapshot(source="directory", available=True, reason=None,
                                  origins=files))

    async def unavailable(self) -> None:
        await self._send(Snapshot(
            source="directory", available=False,
            reason=f"manifests directory {self.manifests} does not exist", origins={}))

    async def _send(self, snap: Snapshot) -> None:
        self.generation += 1
        before = self.ctl.desired
        await self.send.send(snap)
        await until(lambda: self.ctl.desired is not before)  # built into a new state

    def status(self) -> dict[str, Any]:
        return self.store.read_status()

    def phase(self, name: str) -> str | None:
        record = self.status().get("containers", {}).get(name)
        return None if record is None else str(record["phase"])

    def events(self, name: str | None = None) -> list[str]:
        return [e["reason"] for e in self.store.events(name)]

    def pid(self, name: str) -> int | None:
        obs = self.fake.containers.get(name)
        return None if obs is None else obs.pid

    async def settled(self) -> None:
        """A pass from now on found nothing to do, and nothing is being done."""
        before = self.ctl.passes
        self.ctl.kick()
        await until(lambda: self.ctl.passes > before and not self.ctl.busy
                    and self.ctl.last_plan is not None and not self.ctl.last_plan.actions
                    and self.ctl.status_pass == self.ctl.passes)  # status.json written


async def until(check: Callable[[], object], *, within: float = 3.0) -> None:
    """Poll ``check`` from outside (the controller has no event to wait on), bounded."""
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, fake: LiveFake | None = None, *,
                 backoff: Backoff = FAST, **options: Any) -> AsyncIterator[Daemon]:
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    store = Store(tmp_path / "state")
    fake = fake if fake is not None else LiveFake()
    ctl = Controller(fake, store, backoff=backoff, clock=anyio.current_time, **options)
    send, receive = anyio.create_memory_object_stream[Snapshot](8)
    async with send, anyio.create_task_group() as tg:
        await tg.start(ctl.run, receive)
        try:
            yield Daemon(ctl, fake, store, manifests, send)
        finally:
            tg.cancel_scope.cancel()


def running(d: Daemon, name: str) -> bool:
    obs = d.fake.containers.get(name)
    return obs is not None and obs.status is Status.RUNNING


async def crash(d: Daemon, name: str, code: int = 1) -> int:
    """Crash the running ``name``; once the controller saw the exit, the pid it had."""
    pid = d.pid(name)
    assert pid is not None and running(d, name)
    d.fake.crash(name, code)
    await until(lambda: d.ctl.observed.get(name) is None or d.ctl.observed[name].pid != pid)
    return pid


async def restarted(d: Daemon, name: str, pid: int) -> None:
    """Until ``name`` runs again, as another process than ``pid``."""
    await until(lambda: running(d, name) and d.pid(name) != pid)


async def crash_until_restarted(d: Daemon, name: str, code: int = 1) -> float:
    """Crash the running ``name``; the seconds until it ran again."""
    crashed_at = anyio.current_time()
    await restarted(d, name, await crash(d, name, code))
    return anyio.current_time() - crashed_at


# -- creating --------------------------------------------------------------------------------


async def test_first_snapshot_creates_every_container(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        d.write("db", command=["/bin/db"])
        await d.scan()
        await until(lambda: {"web", "db"} <= set(d.fake.containers))
        await d.settled()
        assert {o.status for o in d.fake.containers.values()} == {Status.RUNNING}
        assert d.ctl.ready.is_set()
        assert d.phase("web") == d.phase("db") == "Running"
        assert d.events("web") == ["Created"] and d.events("db") == ["Created"]
        record = d.status()["containers"]["web"]
        assert record["source"] == str(d.manifests / "web.yaml")
        assert record["specHash"] == record["desiredSpecHash"]
        assert record["restarts"] == 0


async def test_nothing_happens_before_the_first_snapshot(tmp_path: Path) -> None:
    fake = LiveFake()
    async with daemon(tmp_path, fake) as d:
        await anyio.sleep(0.1)
        assert d.ctl.passes == 0 and d.fake.calls == [("list", "")]


# -- crashes and restartPolicy ---------------------------------------------------------------


async def test_crash_restarts_at_once_then_waits_the_backoff(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))

        assert await crash_until_restarted(d, "web") < AT_ONCE  # the first restart: at once
        await until(lambda: d.status().get("containers", {}).get("web", {}).get("restarts") == 1)

        crashed_at = anyio.current_time()
        second = await crash(d, "web", 2)
        await until(lambda: d.phase("web") == "BackOff")
        message = d.status()["containers"]["web"]["message"]
        assert "retry in" in message and "exited with code 2" in message
        await restarted(d, "web", second)
        assert anyio.current_time() - crashed_at >= FAST.initial - 0.01
        await until(lambda: d.phase("web") == "Running")
        record = d.status()["containers"]["web"]
        assert record["restarts"] == 2 and record["lastExitCode"] == 2
        assert d.events("web") == ["Created", "Exited", "Restarted", "Exited", "Restarted"]


async def test_backoff_doubles_up_to_the_cap(tmp_path: Path) -> None:
    async with daemon(tmp_path, backoff=Backoff(initial=0.3, cap=0.6, reset_after=60)) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        waits = [await crash_until_restarted(d, "web") for _ in range(4)]
        assert waits[0] < AT_ONCE, waits  # at once
        for got, want in zip(waits[1:], (0.3, 0.6, 0.6), strict=True):
            assert want - 0.01 <= got < want + AT_ONCE, waits


async def test_a_long_run_resets_the_backoff(tmp_path: Path) -> None:
    async with daemon(tmp_path, backoff=Backoff(initial=2.0, reset_after=0.3)) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        await crash_until_restarted(d, "web")  # crash 1: at once
        await anyio.sleep(0.35)  # runs longer than reset_after
        assert await crash_until_restarted(d, "web") < AT_ONCE  # not the 2 s of crash 2


async def test_a_spec_change_supersedes_a_pending_restart_and_resets_the_backoff(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path, backoff=Backoff(initial=10.0)) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        await crash_until_restarted(d, "web")
        await crash(d, "web")
        await until(lambda: d.phase("web") == "BackOff")  # 10 s to go

        old_hash = d.fake.containers["web"].spec_hash
        changed_at = anyio.current_time()
        d.write("web", command=["/bin/serve", "--v2"])
        await d.scan()
        await until(lambda: d.fake.containers.get("web") is not None
                    and d.fake.containers["web"].spec_hash != old_hash
                    and d.fake.containers["web"].status is Status.RUNNING)
        assert anyio.current_time() - changed_at < AT_ONCE
        assert "Recreated" in d.events("web")

        # the new revision's first crash: at once again
        assert await crash_until_restarted(d, "web") < AT_ONCE


async def test_a_spec_change_resets_the_backoff_even_if_its_first_create_fails(
    tmp_path: Path,
) -> None:
    fake = LiveFake()
    async with daemon(tmp_path, fake, backoff=Backoff(initial=0.3, reset_after=60)) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        for _ in range(2):  # crash-looping: 2 crashes counted (3 creates)
            await crash_until_restarted(d, "web")
        fake.failing["web"] = 1  # the new revision's first create fails (rootfs not there)
        d.write("web", command=["/bin/serve", "--fixed"])
        await d.scan()
        await until(lambda: len(fake.creates["web"]) == 5 and d.pid("web"))

        # the new revision's first crash: at once
        assert await crash_until_restarted(d, "web") < AT_ONCE


async def test_a_changed_spec_desired_stopped_is_never_started(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        d.write("web", command=["/bin/serve", "--v2"], state="Stopped")
        await d.scan()
        await d.settled()
        assert len(d.fake.creates["web"]) == 1  # the new spec never ran
        assert d.phase("web") == "Stopped"


async def test_on_failure_uses_the_real_exit_code(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("clean", policy="OnFailure")
        d.write("failing", policy="OnFailure")
        await d.scan()
        await until(lambda: d.pid("clean") and d.pid("failing"))
        failing = d.pid("failing")
        d.fake.crash("clean", 0)
        d.fake.crash("failing", 3)
        await until(lambda: d.pid("failing") not in (None, failing))
        await until(lambda: d.phase("clean") == "Exited")
        await anyio.sleep(0.1)
        assert len(d.fake.creates["clean"]) == 1
        assert d.fake.containers["clean"].status is Status.STOPPED
        record = d.status()["containers"]["clean"]
        assert record["lastExitCode"] == 0
        assert record["message"] == "exited with code 0 (restartPolicy OnFailure)"
        assert d.status()["containers"]["failing"]["restarts"] == 1


async def test_never_leaves_an_exited_container_reported_as_exited(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("once", policy="Never")
        await d.scan()
        await until(lambda: d.pid("once"))
        d.fake.crash("once", 1)
        await until(lambda: d.phase("once") == "Exited")
        await anyio.sleep(0.1)
        await d.settled()
        assert d.phase("once") == "Exited"
        assert len(d.fake.creates["once"]) == 1
        record = d.status()["containers"]["once"]
        assert record["lastExitCode"] == 1 and record["restarts"] == 0
        assert record["message"] == "exited with code 1 (restartPolicy Never)"


async def test_an_exit_during_a_resume_keeps_its_exit_code(tmp_path: Path) -> None:
    """OnFailure, and the job exits 0 right after it was resumed (before the worker read
    its state back): it must stay exited with code 0, not be restarted as "unknown"."""
    fake = StallingFake()
    async with daemon(tmp_path, fake) as d:
        d.write("job", state="Paused", policy="OnFailure")
        await d.scan()
        await until(lambda: d.ctl.observed.get("job") is not None
                    and d.ctl.observed["job"].status is Status.PAUSED)
        await d.settled()
        fake.stall = anyio.Event()
        d.write("job", state="Running", policy="OnFailure")
        await d.scan()
        await until(fake.stalled.is_set)  # resumed; the worker waits on `runc state`
        fake.crash("job", 0)
        await anyio.sleep(0.05)  # the watcher wakes up while the worker is busy
        fake.stall.set()
        fake.stall = None
        await d.settled()
        assert len(fake.creates["job"]) == 1, d.events("job")
        record = d.status()["containers"]["job"]
        assert record["phase"] == "Exited" and record["lastExitCode"] == 0


# -- failing actions -------------------------------------------------------------------------


async def test_a_failing_create_is_retried_with_backoff(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.fake.fail_next("create", errors.RootfsError("rootfs is empty", container="web"))
        d.write("web")
        await d.scan()
        await until(lambda: d.phase("web") == "BackOff")
        assert "rootfs is empty" in d.status()["containers"]["web"]["message"]
        assert "web" not in d.fake.containers
        await until(lambda: d.pid("web"))
        first, retry = d.fake.creates["web"]
        assert retry - first >= FAST.initial
        await until(lambda: d.phase("web") == "Running")
        assert d.events("web") == ["Failed", "Created"]
        assert d.status()["containers"]["web"]["history"]["failures"] == 0


async def test_a_failing_container_never_blocks_the_others(tmp_path: Path) -> None:
    fake = LiveFake()
    fake.failing["bad"] = 2
    async with daemon(tmp_path, fake, backoff=Backoff(initial=0.2)) as d:
        for name in ("bad", "good", "other"):
            d.write(name)
        await d.scan()
        await until(lambda: d.pid("good") and d.pid("other"))
        assert "bad" not in fake.containers  # the good ones did not wait for it
        await until(lambda: d.pid("bad"), within=3)
        t0, t1, t2 = fake.creates["bad"]
        assert t1 - t0 >= 0.2 and t2 - t1 >= 0.4  # 0.2 s, then 0.4 s
        assert fake.creates["good"][0] - t0 < AT_ONCE
        assert len(fake.creates["good"]) == len(fake.creates["other"]) == 1
        assert d.events("bad") == ["Failed", "Failed", "Created"]


async def test_a_newer_revision_supersedes_a_pending_retry_at_once(tmp_path: Path) -> None:
    fake = LiveFake()
    fake.failing["web"] = 1
    async with daemon(tmp_path, fake, backoff=Backoff(initial=10.0)) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.phase("web") == "BackOff")  # 10 s to go
        d.write("web", command=["/bin/serve", "--fixed"])
        changed_at = anyio.current_time()
        await d.scan()
        await until(lambda: d.pid("web"))
        assert anyio.current_time() - changed_at < AT_ONCE
        want = d.ctl.desired.specs["web"] if d.ctl.desired else None
        assert want is not None and fake.containers["web"].spec_hash == want.spec_hash


async def test_one_worker_per_name_many_names_in_parallel_bounded(tmp_path: Path) -> None:
    fake = GatedFake()
    names = ("a", "b", "c", "d")
    for name in names:
        fake.gates[name] = anyio.Event()
    async with daemon(tmp_path, fake, concurrency=2) as d:
        for name in names:
            d.write(name)
        await d.scan()
        await until(lambda: sum(fake.in_flight.values()) == 2)
        await anyio.sleep(0.05)
        assert fake.most_at_once == 2  # bounded

        busy = next(n for n in names if fake.in_flight.get(n))
        d.write(busy, command=["/bin/serve", "--v2"])  # a new revision while it works
        passes = d.ctl.passes
        await d.scan()
        await until(lambda: d.ctl.passes > passes)
        assert [c for c in fake.calls if c[1] == busy] == []  # nothing else on it yet

        for gate in fake.gates.values():
            gate.set()
        await until(lambda: all(d.pid(n) for n in names))
        await d.settled()
        assert fake.most_per_name == 1  # never two operations on one name at once
        want = d.ctl.desired.specs[busy] if d.ctl.desired else None
        assert want is not None and fake.containers[busy].spec_hash == want.spec_hash


# -- what the manifests directory says -------------------------------------------------------


async def test_a_container_is_deleted_when_its_manifest_is_gone(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        gone = d.write("db")
        await d.scan()
        await until(lambda: d.pid("web") and d.pid("db"))
        web = d.pid("web")
        gone.unlink()
        await d.scan()
        await until(lambda: "db" not in d.fake.containers)
        assert d.pid("web") == web
        assert ("stop", "db") in d.fake.calls and ("delete", "db") in d.fake.calls
        assert d.events("db")[-1] == "Deleted"
        await d.settled()
        assert "db" not in d.status()["containers"]


async def test_a_broken_file_keeps_its_container(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        path = d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        web = d.pid("web")
        path.write_text(manifest("web").replace("command:", "comand:"))
        await d.scan()
        await d.settled()
        daemon_status = d.status()["daemon"]
        assert daemon_status["brokenSources"] == [str(path)]
        assert any("comand" in p for p in daemon_status["problems"])
        assert "ManifestError" in d.events("web")  # on the object the file defines
        assert d.pid("web") == web and d.phase("web") == "Running"
        assert d.fake.calls.count(("create", "web")) == 1
        path.write_text(manifest("web"))  # fixed: an event says so, nothing is made again
        await d.scan()
        await d.settled()
        assert d.events("web")[-1] == "ManifestFixed"
        assert d.fake.calls.count(("create", "web")) == 1


async def test_a_broken_file_at_start_keeps_its_container(tmp_path: Path) -> None:
    """The daemon restarts while web.yaml is broken: web stays as the host has it."""
    fake = LiveFake()
    async with daemon(tmp_path, fake) as d:
        path = d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
    web = fake.containers["web"].pid
    path.write_text("spec: [")
    async with daemon(tmp_path, fake) as d:  # a new daemon, the same host and state dir
        await d.scan()
        await d.settled()
        assert d.pid("web") == web
        assert d.ctl.last_plan is not None
        assert any("web: kept" in n and "has errors" in n for n in d.ctl.last_plan.notes)


async def test_a_name_defined_twice_keeps_the_running_one(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        web, spec_hash = d.pid("web"), d.fake.containers["web"].spec_hash
        d.write("web", file="copy.yaml", command=["/bin/other"])
        await d.scan()
        await d.settled()
        assert d.pid("web") == web and d.fake.containers["web"].spec_hash == spec_hash
        assert d.status()["daemon"]["conflicts"] == {
            "web": [str(d.manifests / "copy.yaml"), str(d.manifests / "web.yaml")]}


async def test_an_unavailable_source_deletes_nothing(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        web = d.pid("web")
        await d.unavailable()
        await until(lambda: (d.status().get("daemon", {}).get("source") or {})
                    .get("available") is False)
        await d.settled()
        assert d.pid("web") == web
        assert "SourceUnavailable" in d.events()


async def test_an_unavailable_source_at_start_deletes_nothing(tmp_path: Path) -> None:
    fake = LiveFake()
    web = await fake.create(fake.spec_for(_container("web"), source="/gone/web.yaml",
                                          spec_hash="v1-x"))
    async with daemon(tmp_path, fake) as d:
        await d.unavailable()
        await d.settled()
        assert d.pid("web") == web.pid
        assert any("source unavailable" in n for n in d.status()["daemon"]["notes"])


@pytest.mark.parametrize("allow_empty", [False, True])
async def test_an_empty_directory(tmp_path: Path, allow_empty: bool) -> None:
    async with daemon(tmp_path, allow_empty=allow_empty) as d:
        paths = [d.write("web"), d.write("db")]
        await d.scan()
        await until(lambda: d.pid("web") and d.pid("db"))
        for path in paths:
            path.unlink()
        await d.scan()
        if allow_empty:
            await until(lambda: not d.fake.containers)
            await d.settled()
        else:
            await d.settled()
            assert set(d.fake.containers) == {"web", "db"}
            assert any("refusing to delete all 2" in n for n in d.status()["daemon"]["notes"])


# -- drift -----------------------------------------------------------------------------------


async def test_a_container_gone_behind_our_back_is_recreated_on_relist(tmp_path: Path) -> None:
    async with daemon(tmp_path, resync=0.1) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        web = d.pid("web")
        del d.fake.containers["web"]  # runc's state gone; no exit event to tell
        await until(lambda: d.pid("web") not in (None, web))
        assert "Vanished" in d.events("web")
        assert d.fake.containers["web"].status is Status.RUNNING


async def test_a_container_deleted_by_hand_is_recreated(tmp_path: Path) -> None:
    async with daemon(tmp_path, resync=5.0) as d:  # the exit event alone, no relist
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        await d.settled()  # its watcher waits on it now (the fake's wait_exit, started
        web = d.pid("web")  # after a delete, would wait forever: runc's fails at once)
        await d.fake.delete(d.fake.containers["web"].id)
        await until(lambda: d.pid("web") not in (None, web))


async def test_a_container_paused_by_hand_is_resumed_on_relist(tmp_path: Path) -> None:
    async with daemon(tmp_path, resync=0.1) as d:
        d.write("web")
        await d.scan()
        await until(lambda: d.pid("web"))
        await d.fake.pause(d.fake.containers["web"].id)
        await until(lambda: ("resume", "web") in d.fake.calls)
        assert d.fake.containers["web"].status is Status.RUNNING


# -- status.json -----------------------------------------------------------------------------


async def test_status_phases(tmp_path: Path) -> None:
    async with daemon(tmp_path, backoff=Backoff(initial=30.0)) as d:
        d.write("run")
        d.write("paused", state="Paused")
        d.write("stopped", state="Stopped")
        d.write("halted")
        d.write("once", policy="Never")
        d.write("loop")
        await d.scan()
        await until(lambda: all(d.pid(n) for n in ("run", "paused", "halted", "once", "loop")))
        d.write("halted", state="Stopped")
        await d.scan()
        await crash(d, "once", 1)
        await crash_until_restarted(d, "loop")
        await crash(d, "loop")
        await until(lambda: d.phase("loop") == "BackOff" and d.phase("halted") == "Stopped"
                    and d.phase("once") == "Exited")
        await d.settled()
        phases = {n: c["phase"] for n, c in d.status()["containers"].items()}
        assert phases == {"run": "Running", "paused": "Paused", "stopped": "Stopped",
                          "halted": "Stopped", "once": "Exited", "loop": "BackOff"}
        containers = d.status()["containers"]
        assert containers["halted"]["message"] == "stopped as desired"
        assert containers["stopped"]["message"] == "desired state Stopped"
        assert containers["stopped"]["pid"] is None
        assert containers["loop"]["message"].startswith("retry in ")
        assert "stopped" not in d.fake.containers
        assert d.fake.containers["paused"].status is Status.PAUSED


def _container(name: str) -> Container:
    return Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
        "spec": {"rootfs": "/nonexistent/rootfs", "command": ["/bin/serve"]}})
