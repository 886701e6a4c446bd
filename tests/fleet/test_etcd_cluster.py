"""The etcd test helper against real etcd: health, failures of members, compaction, TLS, auth."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import ssl
import urllib.request
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster, EtcdClusterError

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("etcd", "etcdctl", "openssl")),
    reason="needs etcd, etcdctl and openssl (apt-get install -y etcd-server etcd-client openssl)",
)

# Quick to fail when nothing answers (etcdctl's defaults are a 2 s dial and a 5 s command).
QUICK = ("--dial-timeout=500ms", "--command-timeout=500ms")


def _get(cluster: EtcdCluster, key: str, *flags: str) -> str:
    return cluster.etcdctl("get", key, "--print-value-only", *flags).strip()


def _healthy(cluster: EtcdCluster) -> set[str]:
    """The endpoints that commit a read through their leader (``endpoint health``)."""
    health = json.loads(cluster.etcdctl("endpoint", "health", "-w", "json"))
    return {h["endpoint"] for h in health if h["health"]}


def _members_running(token: str) -> list[int]:
    """The pids of processes whose command line has this cluster's token: its members."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and token.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


def _serializable_get(endpoint: str, key: str) -> str:
    """A read answered by this one member from its own store (grpc-gateway, no quorum)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "serializable": True})
    request = urllib.request.Request(endpoint + "/v3/kv/range", data=body.encode())
    with _open(request) as response:
        kvs = json.load(response).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else ""


def test_three_members_answer_and_close_reaps_them(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path) as cluster:
        assert len(cluster.endpoints) == 3
        assert all(e.startswith("http://127.0.0.1:") for e in cluster.endpoints)
        assert _healthy(cluster) == set(cluster.endpoints)
        status = json.loads(cluster.etcdctl("endpoint", "status", "-w", "json"))
        assert len({s["Status"]["header"]["member_id"] for s in status}) == 3
        cluster.etcdctl("put", "/fleet/a", "1")
        assert _get(cluster, "/fleet/a") == "1"
        assert len(_members_running(cluster.token)) == 3
    assert _members_running(cluster.token) == []
    cluster.close()  # idempotent


def test_a_get_answers_with_one_member_killed_and_it_restarts(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path) as cluster:
        cluster.etcdctl("put", "/fleet/a", "1")
        cluster.kill(0)  # the first endpoint: etcdctl must fail over to the others
        assert cluster.etcdctl("get", "--prefix", "/fleet/") == "/fleet/a\n1\n"
        cluster.etcdctl("put", "/fleet/b", "2")
        cluster.restart(0)
        assert _healthy(cluster) == set(cluster.endpoints)
        assert _serializable_get(cluster.endpoints[0], "/fleet/b") == "2"  # caught up


def test_stop_all_then_start_all_keeps_the_data(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path) as cluster:
        cluster.etcdctl("put", "/fleet/a", "kept")
        cluster.stop_all()
        with pytest.raises(EtcdClusterError):
            cluster.etcdctl("get", "/fleet/a", *QUICK)
        cluster.start_all()
        assert _get(cluster, "/fleet/a") == "kept"


def test_compact_returns_the_revision_it_compacted_to(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path, members=1) as cluster:
        for value in ("1", "2", "3"):
            cluster.etcdctl("put", "/fleet/a", value)
        revision = cluster.compact()
        assert revision == 4  # the store starts at revision 1; three puts
        assert cluster.compact() == revision  # nothing written since: already compacted
        with pytest.raises(EtcdClusterError, match="required revision has been compacted"):
            cluster.etcdctl("get", "/fleet/a", f"--rev={revision - 1}")
        assert _get(cluster, "/fleet/a", f"--rev={revision}") == "3"


def test_enable_auth_makes_root_the_default_and_checks_passwords(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path, members=1) as cluster:
        password = cluster.enable_auth()
        assert cluster.root_password == password
        cluster.etcdctl("put", "/fleet/a", "1")
        assert _get(cluster, "/fleet/a") == "1"
        assert cluster.etcdctl("get", "/fleet/a", user=f"root:{password}") == "/fleet/a\n1\n"
        with pytest.raises(EtcdClusterError, match="authentication failed"):
            cluster.etcdctl("get", "/fleet/a", user="root:wrong")


def test_tls_needs_https_and_a_client_cert_signed_by_the_ca(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path, tls=True) as cluster:
        assert cluster.ca and cluster.client_cert and cluster.client_key
        assert all(e.startswith("https://127.0.0.1:") for e in cluster.endpoints)
        cluster.etcdctl("put", "/fleet/a", "1")
        assert _get(cluster, "/fleet/a") == "1"

        endpoint = cluster.endpoints[0]
        with pytest.raises(OSError):  # plain http to the TLS port: 400 from Go's server
            _open(endpoint.replace("https:", "http:") + "/health")
        anonymous = ssl.create_default_context(cafile=cluster.ca)
        with pytest.raises(OSError):  # TLS without a client cert
            _health(endpoint, anonymous)

        cert, key = cluster.make_client_cert("node-1")
        node = ssl.create_default_context(cafile=cluster.ca)
        node.load_cert_chain(cert, key)
        assert _health(endpoint, node) == {"health": "true"}


def _health(endpoint: str, context: ssl.SSLContext) -> object:
    with _open(endpoint + "/health", context=context) as response:
        return json.load(response)


def _open(request: str | urllib.request.Request, *,
          context: ssl.SSLContext | None = None) -> http.client.HTTPResponse:
    """urlopen straight to 127.0.0.1, whatever http_proxy says."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    response: http.client.HTTPResponse = opener.open(request, timeout=5)
    return response
