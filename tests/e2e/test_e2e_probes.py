"""Probes and dependsOn end to end: the real daemon, runc, conmon, and real servers.

Liveness, readiness and startup probes of every kind (exec through ``runc exec``;
httpGet against busybox httpd; tcpSocket; grpc against a real grpcio health server that
joins the container's network namespace) are driven by changing what the container
serves, from inside it (``runc exec``) or by signalling the server; dependsOn by
manifests that wait on each other. Facts are read where they live: PIDs and creation
times from runc, the event log, status.json and ``reconciler get``'s READY column.

Timing bounds are Kubernetes' semantics (a liveness restart within periodSeconds ×
failureThreshold, a readiness flip within a period), each with a stated margin for the
restart and the daemon's pass; nothing else is timed. The daemon runs with networks off
(each container has only its loopback, where a probe connects), except in the last test,
which runs it inside a namespace of its own (``net_e2e``) to show that network probes go
to the object's address.

"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import (
    E2E,
    RESYNC,
    SETTLE,
    SLEEP_LOOP,
    cmdline,
    hold,
    pid_alive,
    skip_without,
    wait_until,
)
from .test_e2e_pods import IMAGE, world  # noqa: F401 (a fixture)

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]

PERIOD = 1  # periodSeconds of every probe here (the smallest Kubernetes allows)
# What a bound allows beyond Kubernetes' own: runc exec's or a socket's probe time, the
# stop and the new instance (liveness), the daemon's pass that publishes status.json.
MARGIN = 0.5


# -- manifests -------------------------------------------------------------------------------


def exec_probe(*argv: str, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": list(argv)}, "periodSeconds": PERIOD, **fields}


def http_probe(path: str, port: int = 80, **fields: Any) -> dict[str, Any]:
    headers = fields.pop("headers", None)
    get: dict[str, Any] = {"path": path, "port": port}
    if headers:
        get["httpHeaders"] = [{"name": k, "value": v} for k, v in headers.items()]
    return {"httpGet": get, "periodSeconds": PERIOD, **fields}


def tcp_probe(port: int, **fields: Any) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": PERIOD, **fields}


def grpc_probe(port: int, service: str, **fields: Any) -> dict[str, Any]:
    return {"grpc": {"port": port, "service": service}, "periodSeconds": PERIOD, **fields}


def needs(*deps: str, condition: str = "Ready") -> list[dict[str, str]]:
    return [{"name": d, "condition": condition} for d in deps]


def httpd(www: str = "/tmp/www", bind: str = "80", *, healthz: bool = True) -> str:
    """busybox httpd serving ``www`` (made if missing; with ``healthz``, a ``/healthz``)
    in the background, then a shell that stops at once on TERM."""
    health = f" echo ok > {www}/healthz;" if healthz else ""
    return (f"trap 'exit 0' TERM; mkdir -p {www};{health} httpd -p {bind} -h {www};"
            " while true; do sleep 0.1; done")


# -- readers ---------------------------------------------------------------------------------


def record_of(e2e: E2E, name: str) -> dict[str, Any]:
    """status.json's record of ``name`` ({} while it has none)."""
    found: dict[str, Any] = (e2e.status().get("containers") or {}).get(name) or {}
    return found


def ready(e2e: E2E, name: str) -> bool | None:
    """status.json's READY of ``name``; None while it has no record."""
    rec = record_of(e2e, name)
    return None if not rec else bool(rec.get("ready"))


def ready_column(e2e: E2E, *args: str) -> dict[str, str]:
    """NAME -> READY of ``reconciler get ARGS`` (the second column)."""
    rows = [line.split() for line in e2e.cli("get", *args).stdout.splitlines()]
    assert rows and rows[0][:2] == ["NAME", "READY"], rows
    return {r[0]: r[1] for r in rows[1:] if r}


def events_of(e2e: E2E, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in e2e.events(name) if e["reason"] == reason]


def messages(e2e: E2E, name: str, reason: str) -> list[str]:
    return [str(e["message"]) for e in events_of(e2e, name, reason)]


def first_time(e2e: E2E, name: str, reason: str) -> float:
    times = [float(e["time"]) for e in events_of(e2e, name, reason)]
    assert times, f"no {reason} event of {name}: {e2e.reasons(name)}"
    return min(times)


def inside(e2e: E2E, name: str, script: str) -> tuple[int, str]:
    """``runc exec`` in ``name``'s current instance: exit code, stdout and stderr."""
    res = subprocess.run(["runc", f"--root={e2e.runc_root}", "exec", e2e.instance(name),
                          "/bin/sh", "-c", script],
                         capture_output=True, text=True, timeout=10, check=False)
    return res.returncode, res.stdout + res.stderr


def run_inside(e2e: E2E, name: str, script: str) -> str:
    code, out = inside(e2e, name, script)
    assert code == 0, f"{script!r} in {name}: {out}"
    return out


def runc_created(e2e: E2E, name: str) -> float:
    """When runc made ``name``'s current instance (its ``created``), as a Unix time."""
    entry = e2e.runc(name)
    assert entry is not None, f"runc has no {name}"
    stamp = str(entry["created"])
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def cmdline_of(pid: int) -> list[str] | None:
    try:
        return cmdline(pid)
    except OSError:  # gone meanwhile
        return None


def disappearance(e2e: E2E, names: str, timeout: float) -> dict[str, float]:
    """name -> when runc first listed it no more (one ``runc list`` a sample), once all are
    gone. Two gone within one sample count as gone at once."""
    gone_at: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(gone_at) < len(names):
        assert time.monotonic() < deadline, f"not all deleted: {e2e.runc_names()}"
        listed = e2e.runc_names()
        now = time.monotonic()
        gone_at.update({n: now for n in names if n not in listed and n not in gone_at})
        time.sleep(0.02)
    return gone_at


def deleted_times(e2e: E2E, names: str) -> dict[str, float] | None:
    """name -> the time of its Deleted event, once each has one."""
    times = {n: [float(e["time"]) for e in events_of(e2e, n, "Deleted")] for n in names}
    return {n: t[0] for n, t in times.items()} if all(times.values()) else None


def problems(e2e: E2E) -> list[str]:
    return [str(p) for p in (e2e.status().get("daemon") or {}).get("problems") or []]


# -- a gRPC health server in a container's network namespace ----------------------------------

# grpcio's own health servicer on 127.0.0.1:PORT: "" SERVING; "app" NOT_SERVING until
# SIGUSR1 (SERVING), SIGUSR2 sets NOT_SERVING again. Gone after LIFETIME seconds at most.
_GRPC_SERVER = """
import signal, sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
port, lifetime = int(sys.argv[1]), int(sys.argv[2])
signal.alarm(lifetime)
Status = health_pb2.HealthCheckResponse
servicer = health.HealthServicer()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
servicer.set("", Status.SERVING)
servicer.set("app", Status.NOT_SERVING)
signal.signal(signal.SIGUSR1, lambda *_: servicer.set("app", Status.SERVING))
signal.signal(signal.SIGUSR2, lambda *_: servicer.set("app", Status.NOT_SERVING))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("serving", flush=True)
while True:
    signal.pause()
"""


@pytest.fixture
def grpc_server() -> Iterator[Callable[[int, int], subprocess.Popen[str]]]:
    """``start(pid, port)``: the health server above in the network namespace of ``pid``
    (nsenter: only the network namespace; the venv's Python), serving once it prints so.
    Each is stopped (SIGTERM, then SIGKILL) at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(pid: int, port: int) -> subprocess.Popen[str]:
        p = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c",
                              _GRPC_SERVER, str(port), "60"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        started.append(p)
        assert p.stdout is not None
        line = p.stdout.readline().strip()  # bounded: the alarm ends it within 60 s
        assert line == "serving", f"the gRPC server did not start: {line!r} {p.stderr}"
        return p

    try:
        yield start
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


# -- 1. liveness --------------------------------------------------------------------------------


def test_liveness_failure_restarts_the_container_within_its_bound(
        e2e: E2E, record: Record) -> None:
    threshold = 2
    alive = exec_probe("/bin/sh", "-c", "test -f /tmp/alive || { echo no /tmp/alive; exit 7; }",
                       failureThreshold=threshold)
    e2e.write("web.yaml", e2e.manifest("web", f"touch /tmp/alive; {SLEEP_LOOP}",
                                       livenessProbe=alive, terminationGracePeriodSeconds=5))
    e2e.start()
    pid1 = e2e.wait_running("web")
    # passing, it leaves the container alone (three probes at least)
    e2e.keeps({"web": pid1}, 2.5 * PERIOD, why="while its liveness probe passes")
    assert "Unhealthy" not in e2e.reasons("web")

    run_inside(e2e, "web", "rm /tmp/alive")
    t0 = time.monotonic()
    pid2 = e2e.wait_running("web", 10, not_pid=pid1, interval=0.01)
    latency = time.monotonic() - t0
    record("liveness file removed -> new PID", latency)
    # Kubernetes: the failures come at most a period apart, threshold of them; then a stop
    # (SIGTERM, the trap exits at once) and the restart
    assert latency <= PERIOD * threshold + 1 + MARGIN, latency

    unhealthy = messages(e2e, "web", "Unhealthy")
    assert unhealthy[:threshold] == [
        f"Liveness probe failed ({i}/{threshold}): exit code 7: no /tmp/alive"
        for i in range(1, threshold + 1)], unhealthy
    killing = messages(e2e, "web", "Killing")
    assert len(killing) == 1 and "liveness probe failed 2 times" in killing[0], killing
    assert "exit code 7: no /tmp/alive" in killing[0]
    c = wait_until(lambda: (c := e2e.get("web")) and c["restarts"] == 1 and c, 5,
                   what="restarts == 1")
    assert (c["phase"], c["pid"]) == ("Running", pid2)
    reasons = e2e.reasons("web")
    assert reasons.index("Killing") < reasons.index("Restarted"), reasons
    # the new instance has its file again, so it stays
    e2e.keeps({"web": pid2}, 2.5 * PERIOD, why="its new instance passes its probe")
    assert len(messages(e2e, "web", "Killing")) == 1


def test_liveness_failure_restarts_under_on_failure_after_a_clean_exit(e2e: E2E) -> None:
    e2e.write("web.yaml", e2e.manifest("web", SLEEP_LOOP, restartPolicy="OnFailure",
                                       livenessProbe=exec_probe("false", failureThreshold=1)))
    e2e.start()
    pid = e2e.wait_running("web")
    wait_until(lambda: "Killing" in e2e.reasons("web"), PERIOD + 2, what="web killed")
    e2e.wait_running("web", 1 + MARGIN + 1, not_pid=pid)


# -- 2. readiness ---------------------------------------------------------------------------------


def test_readiness_flips_ready_both_ways_and_never_restarts(
        e2e: E2E, record: Record) -> None:
    e2e.write("web.yaml", e2e.manifest("web", httpd(),
                                       readinessProbe=http_probe("/healthz", failureThreshold=1)))
    e2e.start()
    pid = e2e.wait_running("web")
    wait_until(lambda: ready(e2e, "web"), PERIOD + 2, what="web ready")
    assert ready_column(e2e)["web"] == "1/1"
    assert record_of(e2e, "web")["readyMessage"] == "HTTP 200"

    def flip(present: bool) -> tuple[float, float]:
        """The file back or gone; the latency to status.json's flip, and when it began."""
        action = "echo ok > /tmp/www/healthz" if present else "rm /tmp/www/healthz"
        began = time.time()
        run_inside(e2e, "web", action)
        t0 = time.monotonic()
        wait_until(lambda: ready(e2e, "web") is present, PERIOD + MARGIN + 0.5,
                   what=f"status.json ready == {present}", interval=0.02)
        return time.monotonic() - t0, began

    down, began = flip(False)
    record("readiness 200 -> 404: status.json not ready", down)
    assert ready_column(e2e)["web"] == "0/1"
    rec = record_of(e2e, "web")
    assert rec["phase"] == "Running" and rec["readyMessage"].startswith(
        "readiness probe failed: HTTP 404"), rec
    assert rec["readySince"] >= began  # since the flip
    assert "HTTP 404" in messages(e2e, "web", "NotReady")[-1]
    # not ready is not dead: the container keeps running through more failing probes
    e2e.keeps({"web": pid}, 2.5 * PERIOD, why="while it is not ready")
    assert ready_column(e2e)["web"] == "0/1"

    up, began = flip(True)
    record("readiness 404 -> 200: status.json ready", up)
    assert ready_column(e2e)["web"] == "1/1"
    assert record_of(e2e, "web")["readySince"] >= began
    assert e2e.running_pid("web") == pid
    c = e2e.get("web")
    assert c is not None and c["restarts"] == 0
    reasons = e2e.reasons("web")
    assert "Killing" not in reasons and "Restarted" not in reasons, reasons
    assert reasons.count("NotReady") == 1 and reasons.count("Ready") == 2, reasons


# -- 3. each kind of probe ---------------------------------------------------------------------

_CGI = """#!/bin/sh
echo "X-Probe: $HTTP_X_PROBE" >> /tmp/seen
if [ "$HTTP_X_PROBE" = yes ]; then
  printf 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nwelcome\\n'
else
  printf 'Status: 403 Forbidden\\r\\nContent-Type: text/plain\\r\\n\\r\\nno X-Probe\\n'
fi
"""


def test_each_probe_kind_passes_and_fails(
        e2e: E2E, grpc_server: Callable[[int, int], subprocess.Popen[str]]) -> None:
    www = e2e.tmp / "www"
    (www / "cgi-bin").mkdir(parents=True)
    (www / "index.html").write_text("hello\n")
    (www / "cgi-bin" / "hdr").write_text(_CGI)
    (www / "cgi-bin" / "hdr").chmod(0o755)
    serve = {"mounts": [{"type": "bind", "source": str(www), "destination": "/www"}]}
    site = httpd("/www")
    probes: dict[str, tuple[str, dict[str, Any]]] = {
        "exec-pass": (f"echo inside-exec-pass > /tmp/marker; {SLEEP_LOOP}",
                      exec_probe("cat", "/tmp/marker")),
        "exec-fail": (SLEEP_LOOP, exec_probe("/bin/sh", "-c", "echo not-yet; exit 3")),
        "exec-slow": (SLEEP_LOOP, exec_probe("sleep", "7", timeoutSeconds=1)),
        "http-200": (site, http_probe("/index.html")),
        "http-404": (site, http_probe("/missing")),
        "http-header": (site, http_probe("/cgi-bin/hdr", headers={"X-Probe": "yes"})),
        "http-no-header": (site, http_probe("/cgi-bin/hdr")),
        "tcp-open": (site, tcp_probe(80)),
        "tcp-closed": (site, tcp_probe(81)),
        "grpc": (SLEEP_LOOP, grpc_probe(50051, "app", failureThreshold=1)),
    }
    for name, (script, probe) in probes.items():
        e2e.write(f"{name}.yaml", e2e.manifest(name, script, readinessProbe=probe,
                                               **(serve if script == site else {})))
    e2e.start()
    pids = e2e.wait_all_running(probes, 20)

    def settled() -> dict[str, tuple[bool, str]] | None:
        """name -> (ready, readyMessage) once every probe has run at least once."""
        recs = {n: record_of(e2e, n) for n in probes if n != "grpc"}
        if any(r.get("readyMessage") in (None, "probes starting") for r in recs.values()):
            return None
        return {n: (bool(r["ready"]), str(r["readyMessage"])) for n, r in recs.items()}

    got = wait_until(settled, PERIOD + 5, what="every probe run once")
    ok_404, said_404 = got.pop("http-404")  # its message has busybox's HTML page
    assert not ok_404 and said_404.startswith("readiness probe failed: HTTP 404"), said_404
    assert got == {
        "exec-pass": (True, "exit code 0: inside-exec-pass"),  # run inside the container
        "exec-fail": (False, "readiness probe failed: exit code 3: not-yet"),
        "exec-slow": (False, "readiness probe failed: timed out after 1s"),
        "http-200": (True, "HTTP 200"),
        "http-header": (True, "HTTP 200"),
        "http-no-header": (False, "readiness probe failed: HTTP 403: no X-Probe"),
        "tcp-open": (True, "connected to 127.0.0.1:80"),
        "tcp-closed": (False, "readiness probe failed: Connection refused"),
    }, got
    # a timed-out exec probe's process is killed: at most the one in flight is there, never
    # the pile (one more a period) that leaked ones would make
    sleeps: list[int] = []
    for _ in range(30):
        procs = [p for p in e2e.cgroup_procs("exec-slow") if pid_alive(p)]
        sleeps.append(sum(1 for p in procs if cmdline_of(p) == ["sleep", "7"]))
        time.sleep(0.1)
    assert max(sleeps) <= 1 and sum(sleeps) > 0, sleeps
    # the header reached the server: its CGI saw it on every request of that probe only
    seen = run_inside(e2e, "http-header", "cat /tmp/seen").splitlines()
    assert seen and set(seen) == {"X-Probe: yes"}, seen
    assert set(run_inside(e2e, "http-no-header", "cat /tmp/seen").splitlines()) == {
        "X-Probe: "}
    table = ready_column(e2e)
    got["http-404"] = (ok_404, said_404)
    assert {n: table[n] for n in got} == {n: "1/1" if ok else "0/1" for n, (ok, _) in
                                          got.items()}

    # grpc: nothing listens yet; then NOT_SERVING for "app" ("" is SERVING: the service
    # name is sent); then SERVING; then NOT_SERVING again
    wait_until(lambda: record_of(e2e, "grpc").get("readyMessage")
               == "readiness probe failed: Connection refused", PERIOD + 2,
               what="grpc probe refused")
    server = grpc_server(pids["grpc"], 50051)
    wait_until(lambda: record_of(e2e, "grpc").get("readyMessage")
               == "readiness probe failed: health status NOT_SERVING", PERIOD + 2,
               what="grpc NOT_SERVING seen")
    assert ready(e2e, "grpc") is False
    server.send_signal(signal.SIGUSR1)
    wait_until(lambda: ready(e2e, "grpc"), PERIOD + 2, what="grpc SERVING -> ready")
    assert record_of(e2e, "grpc")["readyMessage"] == "health status SERVING"
    server.send_signal(signal.SIGUSR2)
    wait_until(lambda: ready(e2e, "grpc") is False, PERIOD + 2, what="grpc NOT_SERVING again")
    assert messages(e2e, "grpc", "NotReady") == [
        "Readiness probe failed 1 times: health status NOT_SERVING"]

    # readiness alone never stops anything
    assert e2e.running_pids() == pids
    for name in probes:
        assert "Killing" not in e2e.reasons(name), name


# -- 4. startup probes ---------------------------------------------------------------------------


def test_startup_probe_holds_liveness_and_kills_when_it_never_passes(
        e2e: E2E, record: Record) -> None:
    started = exec_probe("test", "-f", "/tmp/started", failureThreshold=10)
    alive = exec_probe("test", "-f", "/tmp/started", failureThreshold=1)
    # slow: up after 3 s; a liveness probe that ran before would kill it at the first try
    e2e.write("slow.yaml", e2e.manifest(
        "slow", f"sleep 3; touch /tmp/started; {SLEEP_LOOP}",
        startupProbe=started, livenessProbe=alive))
    never = exec_probe("/bin/sh", "-c", "echo still booting; exit 1", failureThreshold=2)
    e2e.write("never.yaml", e2e.manifest(
        "never", SLEEP_LOOP, startupProbe=never, livenessProbe=alive,
        terminationGracePeriodSeconds=5))
    e2e.start()
    pids = e2e.wait_all_running(["slow", "never"], 10)
    made = runc_created(e2e, "never")
    assert ready(e2e, "slow") is False  # well within its 3 s: its startup probe fails

    # never: killed after failureThreshold failures of its startup probe, then restarted
    e2e.wait_running("never", 10, not_pid=pids["never"], interval=0.01)
    latency = time.time() - made
    record("startup probe never passes: created -> new PID", latency)
    # Kubernetes: the first probe at once (no initialDelaySeconds), the second a period
    # later; then the stop and the restart (+ the time to start the first instance)
    assert latency <= PERIOD * 2 + 1 + MARGIN, latency
    c = e2e.get("never")
    assert c is not None and c["restarts"] >= 1, c
    unhealthy = messages(e2e, "never", "Unhealthy")
    assert unhealthy[:2] == [f"Startup probe failed ({i}/2): exit code 1: still booting"
                             for i in (1, 2)], unhealthy
    assert not [m for m in unhealthy if m.startswith("Liveness")]  # held all along
    assert "startup probe failed 2 times" in messages(e2e, "never", "Killing")[0]
    assert ready(e2e, "never") is False
    # the new process starts over with its startup probe
    restarted = first_time(e2e, "never", "Restarted")
    wait_until(lambda: [e for e in events_of(e2e, "never", "Unhealthy") if e["time"] > restarted
                        and e["message"].startswith("Startup probe failed (1/2)")],
               PERIOD + 2, what="never's startup probe run again")

    # slow: not killed while its startup probe fails; once it passes, live and ready
    wait_until(lambda: "StartupProbeSucceeded" in e2e.reasons("slow"), 3 + PERIOD + 2,
               what="slow's startup probe passing")
    wait_until(lambda: ready(e2e, "slow"), 2, what="slow ready once started")
    e2e.keeps({"slow": pids["slow"]}, 2 * PERIOD, why="its liveness probe passes")
    failed = messages(e2e, "slow", "Unhealthy")
    assert failed and all(m.startswith("Startup probe failed") for m in failed), failed
    reasons = e2e.reasons("slow")
    assert "Killing" not in reasons and "Restarted" not in reasons, reasons
    c = e2e.get("slow")
    assert c is not None and c["restarts"] == 0


# -- 5. a dependsOn chain ----------------------------------------------------------------------


def test_depends_on_ready_chain_starts_in_order_and_deletes_in_reverse(e2e: E2E) -> None:
    # a is ready 2 s after it starts; b waits for a ready, c for b ready
    e2e.write("a.yaml", e2e.manifest("a", f"sleep 2; touch /tmp/ready; {SLEEP_LOOP}",
                                     readinessProbe=exec_probe("test", "-f", "/tmp/ready")))
    e2e.write("b.yaml", e2e.manifest("b", dependsOn=needs("a")))
    e2e.write("c.yaml", e2e.manifest("c", dependsOn=needs("b")))
    e2e.start("--allow-empty")  # the three files will go at once
    e2e.wait_running("a")
    # a cannot be ready within 2 s of its start: b and c wait, saying so, and are not made
    wait_until(lambda: record_of(e2e, "b").get("message") == "waits for a to be ready", 1,
               what="b waiting for a")
    assert record_of(e2e, "c")["message"] == "waits for b to start"
    assert e2e.runc_names() == ["a"] and ready(e2e, "a") is False
    e2e.wait_all_running(["a", "b", "c"], 10)
    # on the host: runc made them in order, b only after a was ready
    a_ready = record_of(e2e, "a")["readySince"]
    created = {n: runc_created(e2e, n) for n in "abc"}
    assert created["a"] < a_ready <= created["b"] < created["c"], (created, a_ready)
    # and the event log says the same
    assert first_time(e2e, "a", "Ready") <= first_time(e2e, "b", "Created") \
        <= first_time(e2e, "c", "Created")

    # all three files go at once (``rm c.yaml b.yaml a.yaml``): c goes before b before a.
    # (Removed the other way round, the source may take the absences a moment apart and b
    # go first: see test_dependency_outlived_by_its_dependent_file_is_not_deleted_first.)
    for n in "cba":
        (e2e.manifests / f"{n}.yaml").unlink()
    gone_at = disappearance(e2e, "abc", 20)
    # runc never lists one after one it depends on is gone (the events show the strict order)
    assert gone_at["c"] <= gone_at["b"] <= gone_at["a"], gone_at
    e2e.wait_all_gone(["a", "b", "c"], 10)  # the event follows the depot's removal
    deleted = wait_until(lambda: deleted_times(e2e, "abc"), 2, what="three Deleted events")
    assert deleted["c"] < deleted["b"] < deleted["a"], deleted


def test_dependency_outlived_by_its_dependent_file_is_not_deleted_first(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.write("b.yaml", e2e.manifest("b", dependsOn=needs("a", condition="Started")))
    e2e.write("c.yaml", e2e.manifest("c", dependsOn=needs("b", condition="Started")))
    e2e.start("--allow-empty")
    e2e.wait_all_running(["a", "b", "c"], 10)
    # rm a.yaml b.yaml; rm c.yaml: 0.1 s apart, well inside the 0.3 s settle window
    (e2e.manifests / "a.yaml").unlink()
    (e2e.manifests / "b.yaml").unlink()
    time.sleep(0.1)
    (e2e.manifests / "c.yaml").unlink()
    gone_at = disappearance(e2e, "abc", 10)
    assert gone_at["c"] <= gone_at["b"] <= gone_at["a"], gone_at


def test_depends_on_restart_true_restarts_the_dependent(e2e: E2E) -> None:
    e2e.write("db.yaml", e2e.manifest("db"))
    e2e.write("app.yaml", e2e.manifest("app", dependsOn=[
        {"name": "db", "condition": "Started", "restart": True}]))
    e2e.write("tool.yaml", e2e.manifest("tool", dependsOn=needs("db", condition="Started")))
    e2e.start()
    pids = e2e.wait_all_running(["db", "app", "tool"], 10)
    assert runc_created(e2e, "db") < runc_created(e2e, "app")

    # db dies (SIGKILL from the host) and its restart policy starts it again
    subprocess.run(["kill", "-KILL", str(pids["db"])], check=True)
    db2 = e2e.wait_running("db", 10, not_pid=pids["db"])
    app2 = e2e.wait_running("app", 10, not_pid=pids["app"])
    restarted = messages(e2e, "app", "Restarted")
    assert restarted and "its dependency db was started again" in restarted[-1], restarted
    assert runc_created(e2e, "db") <= first_time(e2e, "app", "Restarted")
    # without restart: true, tool keeps running as it was
    e2e.keeps({"db": db2, "app": app2, "tool": pids["tool"]}, RESYNC + SETTLE,
              why="after one restart each")
    assert "Restarted" not in e2e.reasons("tool")


# -- 6. a failed dependency ----------------------------------------------------------------------


def test_failed_dependency_leaves_its_dependent_pending_with_the_reason(e2e: E2E) -> None:
    # three ways to fail, each before its condition is ever met: runc cannot start it; it
    # exits 1 where it should complete; it crash-loops without ever passing its readiness
    e2e.write("broken.yaml", e2e.manifest("broken", command=["/no/such/program"]))
    e2e.write("fails.yaml", e2e.manifest("fails", "echo boom; exit 1", restartPolicy="Never"))
    e2e.write("loop.yaml", e2e.manifest("loop", "exit 2", restartPolicy="OnFailure",
                                        readinessProbe=exec_probe("false")))
    e2e.write("job.yaml", e2e.manifest("job", "exit 0", restartPolicy="OnFailure"))
    e2e.write("after-broken.yaml", e2e.manifest("after-broken", dependsOn=needs(
        "broken", condition="Started")))
    e2e.write("after-fails.yaml", e2e.manifest("after-fails", dependsOn=needs(
        "fails", condition="Completed")))
    e2e.write("after-loop.yaml", e2e.manifest("after-loop", dependsOn=needs("loop")))
    e2e.write("after-job.yaml", e2e.manifest("after-job", dependsOn=needs(
        "job", condition="Completed")))
    e2e.start("--backoff-initial", "0.2", "--backoff-max", "1")
    # the control: a dependency that completes lets its dependent start
    e2e.wait_running("after-job", 10)

    final = {
        "after-broken": "dependency broken failed to start: ",
        "after-fails": "dependency fails failed to complete (exit code 1)",
        "after-loop": "dependency loop failed to start: it exits (code 2)",
    }

    def why() -> dict[str, str]:
        return {n: str(record_of(e2e, n).get("message")) for n in final}

    def told() -> dict[str, str] | None:
        got = why()
        return got if all(got[n].startswith(m) for n, m in final.items()) else None

    found = wait_until(told, 10, what="each dependent saying why it waits")
    assert "/no/such/program" in found["after-broken"], found
    # they stay so through resyncs while loop crash-loops: never made, never restarted (a
    # pass that sees loop running in between says it waits for loop to be ready)
    also = {"after-loop": "waits for loop to be ready"}

    def still() -> bool:
        names = e2e.runc_names()
        got = why()
        return not [n for n in final if n in names] and all(
            got[n].startswith(m) or got[n] == also.get(n) for n, m in final.items())
    hold(still, 2 * RESYNC + 1, what="the dependents stay pending, saying why")
    loop = e2e.get("loop")
    assert loop is not None and loop["restarts"] >= 2, loop
    for n in final:
        c = e2e.get(n)
        assert c is not None and (c["phase"], c["restarts"]) == ("Pending", 0), c
        assert not [r for r in e2e.reasons(n) if r in ("Created", "Restarted", "Failed")]


def test_dependency_that_exits_at_once_holds_its_dependent(e2e: E2E) -> None:
    e2e.write("once.yaml", e2e.manifest("once", "echo boom; exit 1", restartPolicy="Never"))
    e2e.write("loop.yaml", e2e.manifest("loop", "exit 2", restartPolicy="OnFailure"))
    e2e.write("after-once.yaml", e2e.manifest("after-once", dependsOn=needs(
        "once", condition="Started")))
    e2e.write("after-loop.yaml", e2e.manifest("after-loop", dependsOn=needs("loop")))
    e2e.start("--backoff-initial", "0.2", "--backoff-max", "1")
    wait_until(lambda: e2e.phase("once") == "Exited", 5, what="once exited")
    hold(lambda: not {"after-once", "after-loop"} & set(e2e.runc_names()), 2,
         what="the dependents of failed dependencies not made")
    assert record_of(e2e, "after-once")["message"] == \
        "dependency once failed to start: it exits (code 1)"
    assert "dependency loop" in record_of(e2e, "after-loop")["message"]


# -- 7. cycles and unknown names -----------------------------------------------------------------


def test_cycle_and_unknown_dependency_are_problems_naming_the_files(e2e: E2E) -> None:
    x = e2e.write("x.yaml", e2e.manifest("x", dependsOn=needs("y", condition="Started")))
    y = e2e.write("y.yaml", e2e.manifest("y", dependsOn=needs("x", condition="Started")))
    z = e2e.write("z.yaml", e2e.manifest("z", dependsOn=needs("ghost")))
    e2e.write("free.yaml", e2e.manifest("free"))
    e2e.start()
    e2e.wait_running("free")

    def found() -> list[str] | None:
        got = problems(e2e)
        return got if len(got) >= 3 else None

    got = wait_until(found, 5, what="three problems")
    cycle = [p for p in got if "dependsOn: a cycle" in p]
    assert sorted(p.split(":", 1)[0] for p in cycle) == [str(x), str(y)], got
    for p in cycle:
        assert f"files: {x}, {y}" in p, p
    unknown = [p for p in got if "'ghost' is not defined" in p]
    assert len(unknown) == 1 and unknown[0].startswith(f"{z}:"), got
    assert "spec.dependsOn[0].name" in unknown[0]
    hold(lambda: e2e.runc_names() == ["free"], RESYNC + SETTLE,
         what="none of x, y, z made, through a resync")
    # never made, so the daemon's own events carry the findings
    told = [e["message"] for e in e2e.events() if e["reason"] == "ManifestError"]
    assert {m.split(":", 1)[0] for m in told} >= {str(x), str(y), str(z)}, told

    # the cycle broken: y first, then x; the problems of x and y go
    e2e.write("y.yaml", e2e.manifest("y"))
    e2e.wait_all_running(["x", "y"], 10)
    assert runc_created(e2e, "y") < runc_created(e2e, "x")
    wait_until(lambda: not [p for p in problems(e2e) if "dependsOn: a cycle" in p], 5,
               what="the cycle's problems gone")
    assert "z" not in e2e.runc_names()


# -- 8. a v1 Pod -------------------------------------------------------------------------------


@skip_without("umoci", "skopeo", "catatonit")
def test_pod_readiness_shows_in_get_pods(world: E2E) -> None:  # noqa: F811 (the fixture)
    e2e = world
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", httpd(bind="8080", healthz=False)],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                               "periodSeconds": PERIOD, "failureThreshold": 1},
        }]},
    }
    e2e.write("web.yaml", yaml.safe_dump(pod, sort_keys=False))
    e2e.start("--allow-empty")

    def pod_row() -> list[str] | None:
        rows = [line.split() for line in e2e.cli("get", "pods").stdout.splitlines()]
        return next((r for r in rows if r[0] == "web"), None)

    wait_until(lambda: e2e.running_pid("default_web_server"), 30, what="the server running")
    row = wait_until(pod_row, 5, what="web in get pods")
    assert row[1:3] == ["0/1", "Running"], row  # no /healthz yet: running, not ready
    # the probe reaches httpd on the named port, which answers 404: not ready, and it stays so
    wait_until(lambda: str(record_of(e2e, "default_web_server").get("readyMessage"))
               .startswith("readiness probe failed: HTTP 404"), PERIOD + 2,
               what="the probe answered 404")
    hold(lambda: (r := pod_row()) and r[1:3] == ["0/1", "Running"], 2 * PERIOD,
         what="web 0/1 Running while /healthz is missing")
    run_inside(e2e, "default_web_server", "echo ok > /tmp/www/healthz")
    wait_until(lambda: (r := pod_row()) and r[1] == "1/1", PERIOD + 3, what="web 1/1")
    assert ready(e2e, "default_web_server") is True
    listed = json.loads(e2e.cli("get", "pods", "-o", "json").stdout)
    pods = listed if isinstance(listed, list) else [listed]
    assert [p["ready"] for p in pods if p.get("name") == "web"] == ["1/1"], listed

    run_inside(e2e, "default_web_server", "rm /tmp/www/healthz")
    wait_until(lambda: (r := pod_row()) and r[1] == "0/1", PERIOD + 3, what="web 0/1 again")
    last = pod_row()
    assert last is not None and last[2:4] == ["Running", "0"], last  # never restarted


# -- 9. networks on: probes go to the object's address -------------------------------------------


@pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="needs the CNI plugins")
def test_network_probes_connect_to_the_objects_address(net_e2e: E2E) -> None:
    e2e = net_e2e
    on_eth0 = ("ip=$(ip -o -4 addr show eth0 | awk '{print $4}' | cut -d/ -f1);"
               " mkdir -p /tmp/www; echo ok > /tmp/www/healthz; httpd -p $ip:80 -h /tmp/www;")
    on_lo = httpd(bind="127.0.0.1:80")
    e2e.write("addr.yaml", e2e.manifest("addr", f"{on_eth0} {SLEEP_LOOP}",
                                        readinessProbe=http_probe("/healthz")))
    e2e.write("lo.yaml", e2e.manifest("lo", on_lo, readinessProbe=tcp_probe(80)))
    lo_host = http_probe("/healthz")
    lo_host["httpGet"]["host"] = "127.0.0.1"
    e2e.write("lo-host.yaml", e2e.manifest("lo-host", on_lo, readinessProbe=lo_host))
    e2e.start()
    e2e.wait_all_running(["addr", "lo", "lo-host"], 20)
    ip = wait_until(lambda: ((record_of(e2e, "addr").get("addresses") or {}).get("default")
                             or [None])[0], 5, what="addr's address")
    ip = str(ip).split("/")[0]
    wait_until(lambda: ready(e2e, "addr"), PERIOD + 3, what="addr ready on its address")
    wait_until(lambda: ready(e2e, "lo-host"), PERIOD + 3, what="lo-host ready (host given)")
    wait_until(lambda: "Connection refused" in str(record_of(e2e, "lo").get("readyMessage")),
               PERIOD + 3, what="lo's probe refused on its address")
    lo_ip = str(record_of(e2e, "lo")["addresses"]["default"][0]).split("/")[0]
    assert ready(e2e, "lo") is False and lo_ip != ip
    # the server of addr listens on its address alone: that is where the probe went
    assert f"{ip}:80" in run_inside(e2e, "addr", "netstat -ltn")
