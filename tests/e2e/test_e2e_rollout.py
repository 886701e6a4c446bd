"""Make-before-break updates end to end: real runc, real CNI plugins, a real HTTP client.

The daemon runs inside a network namespace the ``net_e2e`` fixture makes; the client is a
bounded loop of HTTP requests (at most ``MAX_REQUESTS``, each with a 1 s timeout, for at
most ``LOOP_SECONDS``) to the published port on that namespace's loopback, run with
``nsenter --net`` so no packet goes anywhere else. A ``MakeBeforeBreak`` update of the
server shows zero failed requests; the same update with ``Recreate`` shows the gap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .harness import E2E, wait_until

CNI = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.runc,
    pytest.mark.skipif(not (CNI / "bridge").exists(), reason=f"needs the CNI plugins in {CNI}"),
]

PORT = 8080
MAX_REQUESTS = 4000
LOOP_SECONDS = 20.0

# Requests until told to stop (a line on stdin) or the bounds; one JSON line per answer.
_CLIENT = """
import json, select, socket, sys, time
port, limit, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
told = len(sys.argv) > 4  # a line on stdin stops it
end = time.monotonic() + seconds
for i in range(limit):
    if time.monotonic() > end or (told and select.select([sys.stdin], [], [], 0)[0]):
        break
    t = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\\r\\n\\r\\n")
        ok = head.startswith("HTTP/1.") and " 200 " in head.split("\\r\\n", 1)[0]
        print(json.dumps({"t": t, "ok": ok, "body": body.strip()}), flush=True)
    except OSError as exc:
        print(json.dumps({"t": t, "ok": False, "error": str(exc)}), flush=True)
    time.sleep(0.005)
"""


def server(version: str, *, strategy: str = "MakeBeforeBreak", ready: bool = True,
           deadline: int = 600) -> dict[str, Any]:
    """busybox httpd answering ``version``; ready once /www/ready exists (``ready``:
    touched at start)."""
    script = (f"trap 'exit 0' TERM; mkdir -p /www; echo {version} > /www/index.html;"
              + (" touch /www/ready;" if ready else "")
              + " httpd -f -p 80 -h /www & wait")
    return {
        "script": script,
        "ports": [{"containerPort": 80, "hostPort": PORT}],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/www/ready"]},
                           "periodSeconds": 1},
        "updateStrategy": {"type": strategy, "progressDeadlineSeconds": deadline},
        "terminationGracePeriodSeconds": 2,
    }


def write(e2e: E2E, spec: dict[str, Any]) -> None:
    spec = dict(spec)
    script = spec.pop("script")
    e2e.write("web.yaml", e2e.manifest("web", script, **spec))


class Client:
    """The bounded request loop in the test's namespace."""

    def __init__(self, e2e: E2E) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{e2e.netns}", sys.executable, "-c", _CLIENT,
             str(PORT), str(MAX_REQUESTS), str(LOOP_SECONDS), "until-told"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        out, _ = self.proc.communicate(timeout=LOOP_SECONDS + 5)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def serves(e2e: E2E, body: str) -> bool:
    res = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{e2e.netns}", sys.executable, "-c", _CLIENT,
         str(PORT), "1", "2"], capture_output=True, text=True, timeout=10, check=False)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    return bool(lines) and lines[0].get("body") == body


def update(e2e: E2E, strategy: str, record: Any) -> tuple[list[dict[str, Any]], float]:
    """v1 running, the client started, v2 written: every answer until v2 answers a while."""
    write(e2e, server("one", strategy=strategy))
    e2e.start()
    e2e.wait_running("web", 20)
    wait_until(lambda: serves(e2e, "one"), 15, what="v1 answering on the published port")
    client = Client(e2e)
    time.sleep(1.0)
    written = time.monotonic()
    write(e2e, server("two", strategy=strategy))
    wait_until(lambda: e2e.find_instance("web") == "web.2" and serves(e2e, "two"), 30,
               what="v2 answering")
    time.sleep(1.5)  # the old instance stopped and deleted meanwhile
    answers = client.stop()
    first_two = min((a["t"] for a in answers if a.get("body") == "two"), default=None)
    assert first_two is not None, answers[-5:]
    switch = first_two - written
    failed = [a for a in answers if not a["ok"]]
    record(f"{strategy}: {len(answers)} requests, {len(failed)} failed; v2 answered"
           f" {switch:.2f} s after its manifest", switch)
    return answers, switch


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    def put(text: str, value: float) -> None:
        request.node.user_properties.append((text, value))
        print(text)  # noqa: T201 - shown with -s and in the report
    return put


def test_make_before_break_serves_every_request(net_e2e: E2E, record: Any) -> None:
    answers, _ = update(net_e2e, "MakeBeforeBreak", record)
    failed = [a for a in answers if not a["ok"]]
    assert len(answers) >= 100, len(answers)
    assert failed == [], failed[:5]
    bodies = [a["body"] for a in answers]
    assert bodies[0] == "one" and bodies[-1] == "two"
    events = net_e2e.reasons("web")
    assert "HandedOver" in events and "Recreated" in events, events
    assert net_e2e.runc_names() == ["web"]  # the old instance is gone


def test_recreate_shows_the_gap(net_e2e: E2E, record: Any) -> None:
    answers, _ = update(net_e2e, "Recreate", record)
    failed = [a for a in answers if not a["ok"]]
    assert failed, "Recreate stops the old instance before the new one runs: a gap"


def test_a_revision_that_never_gets_ready_is_rolled_back(net_e2e: E2E) -> None:
    e2e = net_e2e
    write(e2e, server("one"))
    e2e.start()
    pid = e2e.wait_running("web", 20)
    wait_until(lambda: serves(e2e, "one"), 15, what="v1 answering")
    write(e2e, server("two", ready=False, deadline=3))
    wait_until(lambda: "UpdateFailed" in e2e.reasons("web"), 20, what="UpdateFailed")
    record = e2e.get("web")
    assert record is not None
    assert e2e.running_pid("web") == pid  # the old instance, untouched
    assert serves(e2e, "one")
    wait_until(lambda: (e2e.get("web") or {}).get("phase") == "UpdateFailed", 5,
               what="phase UpdateFailed")
    assert "not ready within progressDeadlineSeconds (3s)" in (e2e.get("web") or {})["message"]
    time.sleep(2)  # not tried again while the manifest says the same
    assert e2e.reasons("web").count("UpdateFailed") == 1
    assert e2e.runc_names() == ["web"]
    # a new manifest tries again, and this one gets ready
    write(e2e, server("three"))
    wait_until(lambda: serves(e2e, "three"), 30, what="v3 answering")


def test_a_daemon_killed_during_an_update_leaves_one_serving_instance(net_e2e: E2E) -> None:
    e2e = net_e2e
    write(e2e, server("one"))
    daemon = e2e.start()
    e2e.wait_running("web", 20)
    wait_until(lambda: serves(e2e, "one"), 15, what="v1 answering")
    # v2 gets ready only after 3 s: the daemon dies while both instances run
    spec = server("two", ready=False)
    spec["script"] = spec["script"].replace("httpd -f", "(sleep 3; touch /www/ready) & httpd -f")
    write(e2e, spec)
    wait_until(lambda: len(e2e.runc_names()) == 2, 15, what="both instances running")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait(5)
    assert len(e2e.runc_names()) == 2
    e2e.start()
    # exactly one instance serves after the restart (then the update is made again)
    wait_until(lambda: serves(e2e, "two"), 40, what="v2 answering after the restart")
    wait_until(lambda: e2e.runc_names() == ["web"], 15, what="one instance left")
    status = e2e.status()["networks"]["ports"]
    assert list(status) == ["web"], status


def test_a_newer_manifest_supersedes_an_update(net_e2e: E2E) -> None:
    e2e = net_e2e
    write(e2e, server("one"))
    e2e.start()
    pid = e2e.wait_running("web", 20)
    wait_until(lambda: serves(e2e, "one"), 15, what="v1 answering")
    write(e2e, server("two", ready=False))  # never ready: its update waits
    wait_until(lambda: len(e2e.runc_names()) == 2, 15, what="v2 beside v1")
    write(e2e, server("three"))
    wait_until(lambda: "UpdateSuperseded" in e2e.reasons("web"), 15, what="UpdateSuperseded")
    wait_until(lambda: serves(e2e, "three"), 30, what="v3 answering")
    wait_until(lambda: e2e.runc_names() == ["web"], 15, what="one instance left")
    assert e2e.running_pid("web") != pid
    assert "UpdateFailed" not in e2e.reasons("web")
