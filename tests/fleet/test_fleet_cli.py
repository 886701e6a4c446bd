"""``reconciler fleet`` against a real etcd, as a user types it: what is written, what is
refused (with nothing written), and the words and exit codes. No daemon here; daemons
reporting back are in ``tests/e2e/test_e2e_fleet.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.etcd_cluster import EtcdCluster, free_port

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (etcd-server)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1) as c:
        yield c


def fleet(cluster: EtcdCluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "fleet", *args,
                           "--etcd-endpoints", ",".join(cluster.endpoints)],
                          capture_output=True, text=True, input=stdin, check=False, timeout=30)


def container(name: str, *, rootfs: str = "/srv/rootfs", annotations: str = "") -> str:
    ann = f"\n  annotations: {{{annotations}}}" if annotations else ""
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}{ann}\n"
            f"spec:\n  rootfs: {rootfs}\n  command: [/bin/true]\n")


def keys(cluster: EtcdCluster, prefix: str) -> list[str]:
    out = cluster.etcdctl("get", "--prefix", "--keys-only", prefix)
    return [line for line in out.splitlines() if line.strip()]


def test_apply_writes_one_key_per_object_and_says_what_changed(cluster: EtcdCluster) -> None:
    text = container("a") + "---\n" + container("b")
    first = fleet(cluster, "apply", "--node", "cli1", "-f", "-", stdin=text)
    assert first.returncode == 0, first.stderr
    assert "container/a created (/reconciler/nodes/cli1/container-a)" in first.stdout
    again = fleet(cluster, "apply", "--node", "cli1", "-f", "-",
                  stdin=container("a") + "---\n" + container("b", rootfs="/srv/other"))
    assert "container/a unchanged" in again.stdout
    assert "container/b configured" in again.stdout
    assert keys(cluster, "/reconciler/nodes/cli1/") == [
        "/reconciler/nodes/cli1/container-a", "/reconciler/nodes/cli1/container-b"]
    got = json.loads(fleet(cluster, "get", "--node", "cli1", "-o", "json").stdout)
    assert [(r["kind"], r["name"], r["for"]) for r in got] == [
        ("Container", "a", "node/cli1"), ("Container", "b", "node/cli1")]
    gone = fleet(cluster, "delete", "--node", "cli1", "container/a", "container/nope")
    assert gone.returncode == 1  # one was not there
    assert "container-a deleted" in gone.stdout and "container-nope not found" in gone.stdout
    assert keys(cluster, "/reconciler/nodes/cli1/") == ["/reconciler/nodes/cli1/container-b"]


@pytest.mark.parametrize(("text", "words"), [
    (container("x", annotations="reconciler.io/nodeSelector: 'tier in (edge'"),
     "reconciler.io/nodeSelector"),
    (container("x", rootfs="relative/rootfs"), "relative path"),
    (container("x") + "  bogus: 1\n", "bogus"),
])
def test_apply_refuses_what_a_node_could_not_read_and_writes_nothing(
        cluster: EtcdCluster, text: str, words: str) -> None:
    res = fleet(cluster, "apply", "--fleet", "-f", "-", stdin=text)
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and words in res.stderr
    assert "<stdin>" in res.stderr or "stdin" in res.stderr  # names where it came from
    assert keys(cluster, "/reconciler/fleet/container-x") == []


def test_apply_refuses_an_object_another_key_defines(cluster: EtcdCluster) -> None:
    cluster.etcdctl("put", "/reconciler/fleet/handwritten", container("web"))
    res = fleet(cluster, "apply", "--fleet", "-f", "-", stdin=container("web"))
    assert res.returncode == 1
    assert "container/web is defined by /reconciler/fleet/handwritten" in res.stderr
    assert keys(cluster, "/reconciler/fleet/container-web") == []


def test_unreachable_etcd_is_an_error_naming_the_endpoint(cluster: EtcdCluster) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    res = subprocess.run([sys.executable, "-m", "reconciler", "fleet", "nodes",
                          "--etcd-endpoints", nobody],
                         capture_output=True, text=True, check=False, timeout=30)
    assert res.returncode == 1
    assert res.stderr.startswith(f"error: etcd {nobody}: cannot connect")
    bad = subprocess.run([sys.executable, "-m", "reconciler", "fleet", "get",
                          "--etcd-endpoints", "127.0.0.1:2379"],
                         capture_output=True, text=True, check=False, timeout=30)
    assert bad.returncode == 2 and "not an http:// or https:// URL" in bad.stderr


def pod(namespace: str, name: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            "spec:\n  containers: [{name: c, image: 'busybox:1.36'}]\n")


def test_apply_refuses_two_objects_for_one_key_and_a_key_holding_another(
        cluster: EtcdCluster) -> None:
    both = fleet(cluster, "apply", "--node", "cli2", "-f", "-",
                 stdin=pod("team-a", "web") + "---\n" + pod("team", "a-web"))
    assert both.returncode == 1
    assert "would both be written to /reconciler/nodes/cli2/pod-team-a-web" in both.stderr
    assert fleet(cluster, "apply", "--node", "cli2", "-f", "-",
                 stdin=pod("team-a", "web")).returncode == 0
    other = fleet(cluster, "apply", "--node", "cli2", "-f", "-", stdin=pod("team", "a-web"))
    assert other.returncode == 1
    assert "holds pod/team-a/web, not only pod/team/a-web" in other.stderr
    assert "team-a" in cluster.etcdctl("get", "/reconciler/nodes/cli2/pod-team-a-web")


def test_apply_refuses_a_name_the_other_prefix_defines(cluster: EtcdCluster) -> None:
    cluster.etcdctl("put", "/reconciler/fleet/shared", container("shared"))
    res = fleet(cluster, "apply", "--node", "cli3", "-f", "-", stdin=container("shared"))
    assert res.returncode == 1 and "defined by /reconciler/fleet/shared" in res.stderr
    cluster.etcdctl("put", "/reconciler/nodes/cli3/mine", container("mine"))
    res = fleet(cluster, "apply", "--fleet", "-f", "-", stdin=container("mine"))
    assert res.returncode == 1 and "defined by /reconciler/nodes/cli3/mine" in res.stderr


def test_more_objects_than_one_transaction_takes_is_refused(cluster: EtcdCluster) -> None:
    text = "---\n".join(container(f"many{i}") for i in range(129))
    res = fleet(cluster, "apply", "--node", "cli4", "-f", "-", stdin=text)
    assert res.returncode == 1 and "at most 128 in one transaction" in res.stderr
    assert keys(cluster, "/reconciler/nodes/cli4/") == []
