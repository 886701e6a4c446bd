"""End to end: metrics, health and systemd's notify protocol of the real daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import E2E, wait_until

pytestmark = pytest.mark.runc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_match_get_and_health(e2e: E2E) -> None:
    port = free_port()
    e2e.write("a.yaml", e2e.manifest("a", resources={"memory": "32Mi", "pids": 20}))
    e2e.write("b.yaml", e2e.manifest("b", "sleep 0.3; exit 3", restartPolicy="OnFailure"))
    e2e.start("--metrics-addr", f"127.0.0.1:{port}", "--backoff-initial", "30")
    base = f"http://127.0.0.1:{port}"
    e2e.wait_running("a")
    wait_until(lambda: (e2e.get("b") or {}).get("restarts", 0) >= 1, 10,
               what="b restarted once")
    wait_until(lambda: e2e.phase("b") == "BackOff", 10, what="b backing off")
    got = e2e.get_all()
    m = samples(fetch(f"{base}/metrics")[1])
    for name, c in got.items():
        key = (("name", name),)
        assert m[("reconciler_container_restarts", key)] == c["restarts"]
        assert m[("reconciler_container_up", key)] == (1.0 if c["phase"] == "Running" else 0.0)
        if c["lastExitCode"] is not None:
            assert m[("reconciler_container_last_exit_code", key)] == c["lastExitCode"]
    assert m[("reconciler_container_memory_limit_bytes", (("name", "a"),))] == 32 << 20
    assert m[("reconciler_container_pids_limit", (("name", "a"),))] == 20
    assert m[("reconciler_container_memory_bytes", (("name", "a"),))] > 0
    assert m[("reconciler_source_available", ())] == 1.0
    assert m[("reconciler_actions_total", (("kind", "create"), ("outcome", "success")))] >= 2
    assert m[("reconciler_reconcile_passes_total", ())] >= 1
    assert m[("reconciler_queue_depth", ())] >= 1  # b's retry is waiting
    assert fetch(f"{base}/healthz")[0] == 200
    assert fetch(f"{base}/readyz")[0] == 200

    # a broken manifest shows as a manifest error, the source as available
    e2e.write("bad.yaml", "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: X}\n")
    wait_until(lambda: samples(fetch(f"{base}/metrics")[1])[
        ("reconciler_manifest_errors", ())] >= 1, 5, what="manifest error counted")


def test_notify_ready_only_after_first_pass(e2e: E2E, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(15)
    try:
        for i in range(3):
            e2e.write(f"c{i}.yaml", e2e.manifest(f"c{i}"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        d = e2e.start(ready=False)
        message = sock.recv(4096).decode()
        assert "READY=1" in message
        # when READY=1 arrives, the first pass is done and its containers run
        status = json.loads((e2e.state_dir / "status.json").read_text())
        assert status["daemon"]["passes"] >= 1 and status["daemon"]["ready"] is True
        for i in range(3):
            assert e2e.running_pid(f"c{i}") is not None
        assert sock.recv(4096).decode() == "WATCHDOG=1"
        d.stop()
        while (last := sock.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert last == "STOPPING=1"
    finally:
        sock.close()


def test_second_daemon_and_metrics_port_errors(e2e: E2E) -> None:
    e2e.start()
    res = subprocess.run(e2e.daemons[0].argv, capture_output=True, text=True, timeout=15)
    assert res.returncode == 1
    assert "error: another reconciler daemon" in res.stderr
    assert "Traceback" not in res.stderr
    t0 = time.monotonic()
    res = e2e.cli("get", "-o", "json")
    assert time.monotonic() - t0 < 5 and json.loads(res.stdout) == []


def test_an_unavailable_source_is_a_warning_a_failing_readyz_get_and_diff(e2e: E2E) -> None:
    """The manifests directory gone: WARN in the log, /readyz 503, a warning on top of
    get, diff exit 2; the container keeps running; all back when it returns."""
    e2e.write("a.yaml", e2e.manifest("a"))
    port = free_port()
    d = e2e.start("--metrics-addr", f"127.0.0.1:{port}")
    pid = e2e.wait_running("a")
    base = f"http://127.0.0.1:{port}"
    assert fetch(f"{base}/readyz")[0] == 200
    moved = e2e.tmp / "moved-away"
    e2e.manifests.rename(moved)
    wait_until(lambda: fetch(f"{base}/readyz")[0] == 503, 10, what="/readyz failing")
    code, body = fetch(f"{base}/readyz")
    assert "unavailable" in body, body
    assert "WARNING manifests source unavailable" in d.log()
    shown = e2e.cli("get")
    assert shown.stderr.startswith("warning: manifests source directory is unavailable"), \
        shown.stderr
    assert "a " in shown.stdout  # and the containers below it
    diff = e2e.cli("diff", "--manifests", str(e2e.manifests), check=False)
    assert diff.returncode == 2, (diff.stdout, diff.stderr)
    assert e2e.running_pid("a") == pid
    moved.rename(e2e.manifests)
    wait_until(lambda: fetch(f"{base}/readyz")[0] == 200, 10, what="/readyz ready again")
    assert e2e.running_pid("a") == pid
