"""Fleets end to end: real daemons, each its own node, fed by a real 3-member etcd cluster.

Each node is an ``E2E`` world of its own (state dir, runc root, cgroup parent) running
``reconciler run --source etcd --node NAME``; the cluster is ``tests/etcd_cluster.py``'s,
on loopback. Objects go in with ``reconciler fleet apply`` as a user would, and come out
as runc containers on the nodes and as ``reconciler fleet status`` rows.
"""

from __future__ import annotations

import datetime
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.sources import etcdapi
from tests.etcd_cluster import EtcdCluster

from .harness import E2E, Daemon, hold, runc_state, skip_without, wait_until

pytestmark = [pytest.mark.runc, skip_without("etcd", "etcdctl", "openssl")]

TTL = 2  # --status-ttl: a killed node shows as down this long after


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=3) as c:
        yield c


def fleet(cluster: EtcdCluster, *args: str, stdin: str | None = None,
          check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "reconciler", "fleet", *args,
                          "--etcd-endpoints", ",".join(cluster.endpoints), *extra],
                         capture_output=True, text=True, input=stdin, check=False, timeout=30)
    if check:
        assert res.returncode == 0, f"fleet {' '.join(args)}: {res.stdout}{res.stderr}"
    return res


def with_selector(text: str, selector: str) -> str:
    return text.replace("metadata:\n", "metadata:\n  annotations:\n"
                        f"    reconciler.io/nodeSelector: {selector}\n", 1)


def start_node(world: E2E, cluster: EtcdCluster, node: str, *labels: str,
               extra: tuple[str, ...] = (), ready: bool = True) -> Daemon:
    return world.start("--source", "etcd", "--node", node,
                       "--etcd-endpoints", ",".join(cluster.endpoints),
                       "--status-ttl", str(TTL),
                       *[a for label in labels for a in ("--node-label", label)], *extra,
                       ready=ready)


def created_at(world: E2E, name: str) -> float:
    entry = world.runc(name)
    assert entry is not None
    text = str(entry["created"])  # RFC 3339 with nanoseconds
    head, _, frac = text.rstrip("Z").partition(".")
    when = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return when.timestamp() + float(f"0.{frac or 0}")


def put(cluster: EtcdCluster, values: dict[str, str]) -> float:
    """One transaction of puts, as ``fleet apply`` makes; the wall time it was made."""
    async def go() -> float:
        async with etcdapi.Client(etcdapi.Settings(tuple(cluster.endpoints))) as client:
            await client.txn([etcdapi.put(k, v) for k, v in values.items()])
            return time.time()
    return float(anyio.run(go))


def etcd_available(world: E2E, *, expect: bool = True) -> bool:
    """Whether the node's etcd source is as ``expect``ed (available by default)."""
    return bool(world.status()["daemon"]["sources"]["etcd"]["available"]) is expect


def status_json(cluster: EtcdCluster) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fleet(cluster, "status", "-o", "json").stdout)
    return data


def test_ten_nodes_converge_on_one_write_and_selectors_move_objects(
        cluster: EtcdCluster, e2e_factory: Callable[[str], E2E],
        record: Callable[[str, float], None]) -> None:
    worlds = [e2e_factory(f"n{i}") for i in range(10)]
    for i, w in enumerate(worlds):
        start_node(w, cluster, f"n{i}", f"group={'a' if i < 5 else 'b'}", ready=False)
    for w in worlds:
        w.wait_ready(w.daemons[0], timeout=30)
    rootfs = worlds[0].rootfs
    base = worlds[0].manifest("base")
    web = with_selector(worlds[0].manifest("web"), "group=a")
    (rootfs.parent / "fleet.yaml").write_text(base + "---\n" + web)

    wrote = put(cluster, {"/reconciler/fleet/container-base": base,
                          "/reconciler/fleet/container-web": web})
    for w in worlds:
        w.wait_running("base", timeout=30)
    took = sorted(created_at(w, "base") - wrote for w in worlds)
    record("one etcd write -> created on each of 10 nodes, p50", statistics.median(took))
    record("one etcd write -> created on each of 10 nodes, max", took[-1])
    for w in worlds[:5]:
        w.wait_running("web")
    assert all(w.running_pid("web") is None for w in worlds[5:])

    # the selector moves web from group a to group b; base stays where it is
    base_pids = {i: w.running_pid("base") for i, w in enumerate(worlds)}
    (rootfs.parent / "fleet.yaml").write_text(base + "---\n" + web.replace("group=a",
                                                                            "group=b"))
    out = fleet(cluster, "apply", "--fleet", "-f", str(rootfs.parent / "fleet.yaml")).stdout
    assert "container/web configured" in out and "container/base unchanged" in out
    for w in worlds[5:]:
        w.wait_running("web", timeout=15)
    for w in worlds[:5]:
        w.wait_gone("web", timeout=15)
    assert {i: w.running_pid("base") for i, w in enumerate(worlds)} == base_pids

    # every node reports; a SIGKILLed one shows as down once its lease is gone
    def reported() -> bool:
        nodes = status_json(cluster)
        return len(nodes) == 10 and all(
            n["state"] == "Ready" and n["objects"].get("base", {}).get("phase") == "Running"
            for n in nodes.values())
    wait_until(reported, 15, what="all 10 nodes reporting base as Running")
    table = fleet(cluster, "status").stdout
    assert len([line for line in table.splitlines() if " base " in line]) == 10
    worlds[9].daemons[0].kill()
    killed = time.monotonic()
    wait_until(lambda: status_json(cluster)["n9"]["state"] == "Down", TTL + 10,
               what="n9 down after its lease expired")
    assert time.monotonic() - killed >= TTL - 1  # the lease, not the kill, took it away
    nodes = fleet(cluster, "nodes").stdout
    assert any(line.split()[:2] == ["n9", "Down"] for line in nodes.splitlines())
    assert sum(line.split()[1] == "Ready" for line in nodes.splitlines()[1:]) == 9


def test_losing_a_member_then_quorum_keeps_containers_and_catches_up(
        cluster: EtcdCluster, e2e_factory: Callable[[str], E2E]) -> None:
    a, b = e2e_factory("a"), e2e_factory("b")
    start_node(a, cluster, "a")
    start_node(b, cluster, "b")
    fleet(cluster, "apply", "--fleet", "-f", "-", stdin=a.manifest("web") + "---\n"
          + a.manifest("db"))
    pids_a, pids_b = (w.wait_all_running(["web", "db"]) for w in (a, b))

    cluster.kill(0)  # one member of three: nothing changes
    for w, pids in ((a, pids_a), (b, pids_b)):
        w.keeps(pids, 1.5, why="with one etcd member killed")
        assert "SourceUnavailable" not in w.reasons()

    cluster.stop_all()  # quorum lost: containers keep running, nothing deleted
    for w, pids in ((a, pids_a), (b, pids_b)):
        wait_until(functools.partial(etcd_available, w, expect=False), 15,
                   what="the etcd source reported unavailable")
        w.keeps(pids, 1.0, why="with etcd down")
    # b restarts during the outage, and its db is deleted behind its back: it runs the
    # last good state from its state dir, so db comes back
    b.daemons[0].stop()
    subprocess.run(["runc", f"--root={b.runc_root}", "delete", "-f", b.instance("db")],
                   check=True)
    start_node(b, cluster, "b")
    new_db = b.wait_running("db", timeout=15)
    assert new_db != pids_b["db"]
    reason = b.status()["daemon"]["sources"]["etcd"]["reason"]
    assert "running last good state from revision" in reason
    assert b.running_pid("web") == pids_b["web"]

    cluster.start_all()  # back: both catch up with a change made after
    fleet(cluster, "apply", "--fleet", "-f", "-", stdin=a.manifest("cache"))
    for w in (a, b):
        w.wait_running("cache", timeout=20)
        assert etcd_available(w)
    assert a.running_pid("web") == pids_a["web"]


def test_a_broken_value_keeps_the_last_good_spec_and_names_the_key(
        cluster: EtcdCluster, e2e: E2E) -> None:
    start_node(e2e, cluster, "n1")
    fleet(cluster, "apply", "--node", "n1", "-f", "-", stdin=e2e.manifest("web"))
    pid = e2e.wait_running("web")
    key = "/reconciler/nodes/n1/container-web"
    cluster.etcdctl("put", key, e2e.manifest("web") + "  bogus: 1\n")
    wait_until(lambda: "bogus" in (e2e.get("web") or {}).get("message", ""), 10,
               what="the error on web")
    message = (e2e.get("web") or {})["message"]
    assert f"etcd:{key}:" in message
    e2e.keeps({"web": pid}, 1.0, why="with a broken value")
    cluster.compact()  # history gone under the daemon's watch: the fix still arrives
    cluster.etcdctl("put", key, e2e.manifest("web", "trap 'exit 0' TERM; sleep 1000 & wait"))
    e2e.wait_running("web", not_pid=pid)
    assert "bogus" not in (e2e.get("web") or {}).get("message", "")
    # fleet apply checks locally and writes nothing broken
    res = fleet(cluster, "apply", "--node", "n1", "-f", "-",
                stdin=e2e.manifest("web") + "  bogus: 1\n", check=False)
    assert res.returncode == 1 and "bogus" in res.stderr


def test_prune_to_zero_needs_allow_empty(cluster: EtcdCluster, e2e: E2E) -> None:
    start_node(e2e, cluster, "n1")
    fleet(cluster, "apply", "--node", "n1", "-f", "-", stdin=e2e.manifest("web"))
    pid = e2e.wait_running("web")
    out = fleet(cluster, "delete", "--node", "n1", "container/web").stdout
    assert "deleted" in out
    e2e.keeps({"web": pid}, 1.5, why="the last object deleted without --allow-empty")


def test_tls_and_auth_give_each_node_only_its_own_keys(
        tmp_path: Path, e2e_factory: Callable[[str], E2E]) -> None:
    with EtcdCluster(tmp_path / "etcd", members=1, tls=True) as c:
        assert c.ca is not None and c.client_cert is not None and c.client_key is not None
        tls = ("--etcd-cacert", str(c.ca), "--etcd-cert", str(c.client_cert),
               "--etcd-key", str(c.client_key))
        root = c.enable_auth()
        (tmp_path / "root.pw").write_text(root)
        for node in ("n1", "n2"):  # the roles docs/fleet.md gives
            c.etcdctl("role", "add", node)
            c.etcdctl("role", "grant-permission", node, "--prefix=true", "read",
                      f"/reconciler/nodes/{node}/")
            c.etcdctl("role", "grant-permission", node, "--prefix=true", "read",
                      "/reconciler/fleet/")
            c.etcdctl("role", "grant-permission", node, "--prefix=true", "readwrite",
                      f"/reconciler/status/{node}/")
            c.etcdctl("user", "add", f"{node}:pw-{node}")
            c.etcdctl("user", "grant-role", node, node)
            (tmp_path / f"{node}.pw").write_text(f"pw-{node}")
        world = e2e_factory("n1")
        d = world.start("--source", "etcd", "--node", "n1", "--etcd-endpoints",
                        ",".join(c.endpoints), *tls, "--etcd-user", "n1",
                        "--etcd-password-file", str(tmp_path / "n1.pw"))
        admin = ("--etcd-endpoints", ",".join(c.endpoints), *tls, "--etcd-user", "root",
                 "--etcd-password-file", str(tmp_path / "root.pw"))
        res = subprocess.run([sys.executable, "-m", "reconciler", "fleet", "apply", "--fleet",
                              "-f", "-", *admin], input=world.manifest("web"),
                             capture_output=True, text=True, check=False, timeout=30)
        assert res.returncode == 0, res.stderr
        world.wait_running("web")
        assert d.alive()
        # n1 can write its own status, and nothing of n2's nor the fleet's
        c.etcdctl("put", "/reconciler/status/n1/probe", "x", user="n1:pw-n1")
        for key in ("/reconciler/status/n2/objects/web", "/reconciler/fleet/evil",
                    "/reconciler/nodes/n1/evil"):
            with pytest.raises(Exception, match="permission denied"):
                c.etcdctl("put", key, "x", user="n1:pw-n1")
        # ... and the fleet CLI with n1's user is refused, in etcd's words
        res = subprocess.run([sys.executable, "-m", "reconciler", "fleet", "apply", "--fleet",
                              "-f", "-", "--etcd-endpoints", ",".join(c.endpoints), *tls,
                              "--etcd-user", "n1", "--etcd-password-file",
                              str(tmp_path / "n1.pw")], input=world.manifest("evil"),
                             capture_output=True, text=True, check=False, timeout=30)
        assert res.returncode == 1 and "permission denied" in res.stderr
        # without the client certificate etcd does not talk at all
        res = subprocess.run([sys.executable, "-m", "reconciler", "fleet", "get",
                              "--etcd-endpoints", ",".join(c.endpoints), "--etcd-cacert",
                              str(c.ca)], capture_output=True, text=True, check=False,
                             timeout=30)
        assert res.returncode == 1 and res.stderr.startswith("error: ")
        assert "client certificate" in res.stderr, res.stderr
        hold(d.alive, 0.5, what="the n1 daemon keeps running")
        assert runc_state(world.runc_root, world.instance("web")) is not None
        d.stop()
