"""The status reporter against a real etcd: 1,000 objects changing at once, the lease.

The controller is stood in for by a published ``ControllerView`` of a real desired state
(1,000 ``kind: Container`` objects through the real loader and ``core.desired``); what is
checked is what reaches etcd: how many transactions, how many keys, bound to which lease.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.core import desired
from reconciler.core.desired import SourceSnapshot
from reconciler.daemon import view as view_mod
from reconciler.daemon.fleet import FleetOptions, StatusReporter
from reconciler.manifest import loader
from reconciler.sources import etcdapi
from tests.etcd_cluster import EtcdCluster

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (etcd-server)"),
]

N = 1000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=1) as c:
        yield c


def view_of(command: str) -> view_mod.ControllerView:
    origins = {}
    for i in range(N):  # one key each, as fleet apply writes them
        text = (f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: c{i}}}\n"
                f"spec: {{rootfs: /nonexistent, command: [{command}]}}\n")
        key = f"etcd:/reconciler/fleet/container-c{i}"
        origins[key] = loader.load_bytes(text.encode(), file=key, base_dir=None)
        assert origins[key].ok
    state = desired.build(SourceSnapshot("etcd", True, None, origins), None)
    return view_mod.ControllerView(state, {}, {}, {}, None, {}, 1, time.time(), True, None,
                                   time.time())


class Ctl:
    def __init__(self, view: view_mod.ControllerView) -> None:
        self.view = view


class CountingClient(etcdapi.Client):
    """The real client, counting the transactions and their operations."""

    txns: list[int] = []

    async def txn(self, success: Sequence[dict[str, Any]], *,
                  compare: Sequence[dict[str, Any]] = (),
                  failure: Sequence[dict[str, Any]] = ()) -> tuple[bool, int]:
        CountingClient.txns.append(len(success))
        return await super().txn(success, compare=compare, failure=failure)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    with anyio.fail_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(0.1)


async def objects(cluster: EtcdCluster) -> dict[str, etcdapi.KV]:
    async with etcdapi.Client(etcdapi.Settings(tuple(cluster.endpoints))) as client:
        (kvs,), _ = await client.ranges("/reconciler/status/n1/objects/")
        return {kv.key.rsplit("/", 1)[1]: kv for kv in kvs}


async def test_a_thousand_objects_changing_at_once_are_a_few_batched_writes(
        cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcdapi, "Client", CountingClient)
    CountingClient.txns = []
    opts = FleetOptions(etcdapi.Settings(tuple(cluster.endpoints)), "n1", {"tier": "edge"},
                        lease_ttl=5, report_every=0.2)
    ctl = Ctl(view_of("/bin/true"))
    reporter = StatusReporter(opts, ctl)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.run)
        async def all_written() -> bool:
            return len(await objects(cluster)) == N

        await until(all_written)
        first = list(CountingClient.txns)
        ctl.view = view = view_of("/bin/false")  # every object's desired spec hash changes
        assert view.desired is not None
        hashes = {name: d.spec_hash for name, d in view.desired.specs.items()}

        async def all_changed() -> bool:
            return all(json.loads(kv.value)["desiredSpecHash"] == hashes[name]
                       for name, kv in (await objects(cluster)).items())

        await until(all_changed)
        second = CountingClient.txns[len(first):]
        stored = await objects(cluster)
        tg.cancel_scope.cancel()
    status = [n for n in first if n >= 100]
    print(f"{N} objects: {len(status)} status transactions of {status[:3]}..., then "  # noqa: T201
          f"{len([n for n in second if n >= 100])} for {N} changes")
    assert len(status) == N // opts.max_ops  # 10 transactions of 100, not 1,000 puts
    assert max(first + second) <= opts.max_ops
    assert len([n for n in second if n >= 100]) == N // opts.max_ops
    assert len(stored) == N and all(kv.lease for kv in stored.values())  # bound to the lease
    assert json.loads(stored["c7"].value)["phase"]
    assert await objects(cluster) == {}  # the lease revoked on the way out: keys gone


async def test_the_heartbeat_and_registration_tell_down_from_unreported(
        cluster: EtcdCluster) -> None:
    from reconciler.cli.fleet import fleet_view

    opts = FleetOptions(etcdapi.Settings(tuple(cluster.endpoints)), "n1", {"tier": "edge"},
                        lease_ttl=3, report_every=0.1)
    async with etcdapi.Client(opts.settings) as client:
        await client.txn([etcdapi.put("/reconciler/nodes/n2/x", "{}")])  # n2: never reports
        async with anyio.create_task_group() as tg:
            tg.start_soon(StatusReporter(opts, Ctl(view_of("/bin/true"))).run)
            with anyio.fail_after(10):
                while True:
                    (status, _nodes), _ = await client.ranges("/reconciler/status/",
                                                              "/reconciler/nodes/")
                    view = fleet_view(status, {"n2"})
                    if view.get("n1", {}).get("state") == "Ready" and view["n1"]["objects"]:
                        break
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        assert view["n1"]["record"]["labels"] == {"tier": "edge"}
        assert view["n2"]["state"] == "Unreported"
        (status, _), _ = await client.ranges("/reconciler/status/", "/reconciler/nodes/")
    after = fleet_view(status, {"n2"})
    assert after["n1"]["state"] == "Down" and after["n1"]["objects"] == {}
