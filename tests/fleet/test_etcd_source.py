"""The etcd source against a real etcd: what it reads, how it watches, what it does offline.

Each test runs ``EtcdSource`` in a task group against members started by
``tests/etcd_cluster.py`` on loopback and checks the snapshots it sends: which keys and
documents they hold for this node, that a burst is one snapshot, that a compaction or a
lost member changes nothing, and that a daemon that boots with etcd down gets the last
good state from the state dir. No runc here: ``tests/e2e/test_e2e_fleet.py`` runs daemons.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reconciler.core import desired
from reconciler.core.desired import SourceSnapshot
from reconciler.sources import etcd, etcdapi
from reconciler.sources.etcd import EtcdSource
from tests.etcd_cluster import EtcdCluster

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("etcd", "etcdctl")),
                       reason="needs etcd and etcdctl (apt-get install etcd-server etcd-client)"),
]


def container(name: str, *, selector: str | None = None, command: str = "/bin/true") -> str:
    ann = f"\n  annotations: {{reconciler.io/nodeSelector: {selector!r}}}" if selector else ""
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}{ann}\n"
            f"spec:\n  rootfs: /nonexistent/rootfs\n  command: [{command}]\n")


def names(snapshot: SourceSnapshot) -> set[str]:
    return {d.key[1] for r in snapshot.origins.values() for d in r.documents}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=1) as c:
        yield c


def settings(cluster: EtcdCluster) -> etcdapi.Settings:
    return etcdapi.Settings(tuple(cluster.endpoints), timeout=1.0)


async def put(cluster: EtcdCluster, *pairs: tuple[str, str | None],
              skip: int | None = None) -> None:
    """Each key put (or deleted, for None) in its own request, back to back (not through
    member ``skip``)."""
    endpoints = tuple(e for i, e in enumerate(cluster.endpoints) if i != skip)
    async with etcdapi.Client(etcdapi.Settings(endpoints, timeout=2.0)) as client:
        for key, value in pairs:
            op = etcdapi.delete(key) if value is None else etcdapi.put(key, value)
            for attempt in range(5):  # a proposal caught in a change of leader times out
                try:
                    await client.txn([op])
                    break
                except etcdapi.Unavailable:
                    if attempt == 4:
                        raise


class Stream:
    def __init__(self, receive: MemoryObjectReceiveStream[SourceSnapshot]) -> None:
        self._receive = receive
        self.history: list[SourceSnapshot] = []

    async def next(self, want: Callable[[SourceSnapshot], bool], *,
                   within: float = 5.0) -> SourceSnapshot:
        with anyio.fail_after(within):
            while True:
                snapshot = await self._receive.receive()
                self.history.append(snapshot)
                if want(snapshot):
                    return snapshot

    async def none_for(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            snapshot = await self._receive.receive()
            raise AssertionError(f"unexpected snapshot: available={snapshot.available} "
                                 f"reason={snapshot.reason} names={names(snapshot)}")


@contextlib.asynccontextmanager
async def running(source: EtcdSource) -> AsyncIterator[Stream]:
    send, receive = anyio.create_memory_object_stream[SourceSnapshot](100)
    with send, receive:
        async with anyio.create_task_group() as tg:
            await tg.start(source.run, send)
            stream = Stream(receive)
            stream.history.append(await receive.receive())  # the first, also sent
            yield stream
            tg.cancel_scope.cancel()


def source(cluster: EtcdCluster, state: Path, node: str = "n1",
           **labels: str) -> EtcdSource:
    state.mkdir(exist_ok=True)
    return EtcdSource(settings(cluster), node=node, labels=labels, state_dir=str(state))


async def test_first_snapshot_is_this_node_and_the_fleet_objects_it_selects(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    await put(cluster,
              ("/reconciler/nodes/n1/a", container("a")),
              ("/reconciler/nodes/n2/b", container("b")),  # another node's
              ("/reconciler/fleet/all", container("everywhere")),
              ("/reconciler/fleet/edge", container("edge-only", selector="tier=edge")),
              ("/reconciler/fleet/core", container("core-only", selector="tier in (core)")),
              ("/reconciler/other/c", container("c")))  # outside both prefixes
    async with running(source(cluster, tmp_path / "s", tier="edge")) as stream:
        first = stream.history[0]
    assert first.available and first.source == "etcd"
    assert names(first) == {"a", "everywhere", "edge-only"}
    assert "etcd:/reconciler/fleet/core" in first.origins  # read, selected out
    assert int(first.detail["revision"] or 0) >= 6


async def test_changes_arrive_in_order_and_a_burst_is_one_snapshot(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    async with running(source(cluster, tmp_path / "s")) as stream:
        await put(cluster, ("/reconciler/nodes/n1/web", container("web")))
        await stream.next(lambda s: names(s) == {"web"})
        await put(cluster, ("/reconciler/nodes/n1/web", container("web", command="/bin/sh")),
                  ("/reconciler/nodes/n1/web", None))
        await stream.next(lambda s: names(s) == set())
        before = len(stream.history)
        start = time.monotonic()
        await put(cluster, *[(f"/reconciler/fleet/c{i}", container(f"c{i}")) for i in range(100)])
        await stream.next(lambda s: len(names(s)) == 100)
        took = time.monotonic() - start
        snapshots = len(stream.history) - before
    print(f"100 puts back to back: {snapshots} snapshot(s), {took * 1000:.0f} ms")  # noqa: T201
    assert snapshots <= 10  # 100 without batching


async def test_a_broken_value_names_its_key_and_keeps_what_it_defined(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    key = "/reconciler/nodes/n1/web"
    async with running(source(cluster, tmp_path / "s")) as stream:
        await put(cluster, (key, container("web")))
        good = await stream.next(lambda s: names(s) == {"web"})
        state = desired.build(good, None)
        await put(cluster, (key, container("web") + "  bogusField: 1\n"))
        bad = await stream.next(lambda s: not s.origins[etcd.origin(key)].ok)
    finding = bad.origins[etcd.origin(key)].findings[0]
    assert str(finding).startswith(f"etcd:{key}:")
    assert "bogusField" in str(finding)
    after = desired.build(bad, state)
    assert after.specs["web"] == state.specs["web"]  # keep-last-good
    assert etcd.origin(key) in after.broken_sources


async def test_a_name_defined_by_two_keys_applies_neither(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    await put(cluster, ("/reconciler/fleet/web", container("web")),
              ("/reconciler/nodes/n1/web-too", container("web", command="/bin/sh")))
    async with running(source(cluster, tmp_path / "s")) as stream:
        first = stream.history[0]
    state = desired.build(first, None)
    assert "web" not in state.specs
    assert state.conflicts["web"] == ("etcd:/reconciler/fleet/web",
                                      "etcd:/reconciler/nodes/n1/web-too")


async def test_a_bad_node_selector_is_a_finding_on_its_key(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    await put(cluster, ("/reconciler/fleet/x", container("x", selector="tier in (core")))
    async with running(source(cluster, tmp_path / "s")) as stream:
        first = stream.history[0]
    (finding,) = first.origins["etcd:/reconciler/fleet/x"].findings
    assert "reconciler.io/nodeSelector" in str(finding)


class _LateWatch(EtcdSource):
    """Holds its watch back until the test says go: the test compacts meanwhile."""

    go: anyio.Event
    read_done: anyio.Event

    async def _watch(self, client: etcdapi.Client,
                     send: MemoryObjectSendStream[SourceSnapshot]) -> None:
        self.read_done.set()
        await self.go.wait()
        self.go = anyio.Event()
        await super()._watch(client, send)


async def test_a_compaction_before_the_watch_catches_up_reads_again(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    src = _LateWatch(settings(cluster), node="n1", labels={}, state_dir=str(tmp_path))
    src.go, src.read_done = anyio.Event(), anyio.Event()
    await put(cluster, ("/reconciler/nodes/n1/a", container("a")))
    async with running(src) as stream:
        await src.read_done.wait()
        # changes after the read, then history compacted past the watch's start revision
        await put(cluster, ("/reconciler/nodes/n1/b", container("b")),
                  ("/reconciler/nodes/n1/a", None))
        cluster.compact()
        src.read_done = anyio.Event()
        src.go.set()  # the watch from the old revision + 1: ErrCompacted, then a new read
        await stream.next(lambda s: names(s) == {"b"})
        await src.read_done.wait()
        src.go.set()
        await put(cluster, ("/reconciler/nodes/n1/c", container("c")))
        await stream.next(lambda s: names(s) == {"b", "c"})
    assert all(s.available for s in stream.history)


async def test_booting_with_etcd_down_runs_the_last_good_state(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    state = tmp_path / "s"
    await put(cluster, ("/reconciler/nodes/n1/web", container("web")),
              ("/reconciler/fleet/all", container("all")))
    async with running(source(cluster, state)) as stream:
        revision = stream.history[0].detail["revision"]
    assert (state / etcd.CACHE).exists()
    cluster.stop_all()
    async with running(source(cluster, state)) as stream:
        offline = stream.history[0]
        assert not offline.available
        assert f"running last good state from revision {revision}" in str(offline.reason)
        state_now = desired.build(offline, None)
        assert set(state_now.specs) == {"web", "all"}  # runs it ...
        assert not state_now.source_available("etcd")  # ... and deletes nothing
        cluster.start_all()
        await put(cluster, ("/reconciler/nodes/n1/new", container("new")))
        back = await stream.next(lambda s: s.available and "new" in names(s), within=15)
    assert names(back) == {"web", "all", "new"}


async def test_the_offline_copy_of_another_node_is_not_used(
        cluster: EtcdCluster, tmp_path: Path) -> None:
    state = tmp_path / "s"
    await put(cluster, ("/reconciler/nodes/n1/web", container("web")))
    async with running(source(cluster, state, node="n1")):
        pass
    cluster.stop_all()
    async with running(source(cluster, state, node="n2")) as stream:
        first = stream.history[0]
    assert not first.available and names(first) == set()


async def test_losing_one_member_of_three_changes_nothing(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path / "etcd", members=3) as three:
        await put(three, ("/reconciler/nodes/n1/web", container("web")))
        src = source(three, tmp_path / "s")
        async with running(src) as stream:
            three.kill(0)  # the member the source reads and watches first
            await stream.none_for(2.0)
            await put(three, ("/reconciler/nodes/n1/db", container("db")))
            after = await stream.next(lambda s: names(s) == {"web", "db"})
        assert after.available
        assert all(s.available for s in stream.history)


async def test_a_frozen_member_under_the_watch_is_left_for_another(tmp_path: Path) -> None:
    """SIGSTOP, not a kill: the stream stays open and silent, as with a hung host."""
    with EtcdCluster(tmp_path / "etcd", members=3) as three:
        await put(three, ("/reconciler/nodes/n1/web", container("web")))
        src = source(three, tmp_path / "s")
        src.liveness = 0.5
        async with running(src) as stream:
            three.freeze(0)  # the member the source reads and watches first
            try:
                await put(three, ("/reconciler/nodes/n1/db", container("db")), skip=0)
                start = time.monotonic()
                after = await stream.next(lambda s: names(s) == {"web", "db"}, within=10)
                took = time.monotonic() - start
            finally:
                three.thaw(0)
        print(f"frozen member: the change arrived after {took * 1000:.0f} ms")  # noqa: T201
        assert after.available and all(s.available for s in stream.history)
