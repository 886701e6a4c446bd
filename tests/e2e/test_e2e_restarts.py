"""End to end: restart policies with real exit codes, restart latency, crash-loop backoff.

A container here waits for a trigger file on a bind-mounted host directory, then removes
it and exits with the code under test: the test decides the moment of the crash, and a
restarted container waits again instead of crashing in a loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import E2E, RESYNC, SLOW_RESYNC, hold, pid_alive, wait_until

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]


def crash_on_trigger(code: int) -> str:
    return ("trap 'exit 0' TERM; while [ ! -e /ctl/crash ]; do sleep 0.02; done; "
            f"rm -f /ctl/crash; exit {code}")


def trigger_container(e2e: E2E, name: str, policy: str, code: int) -> Path:
    ctl = e2e.tmp / "ctl"
    ctl.mkdir()
    e2e.write(f"{name}.yaml", e2e.manifest(
        name, crash_on_trigger(code), restartPolicy=policy,
        mounts=[{"type": "bind", "source": str(ctl), "destination": "/ctl"}]))
    return ctl / "crash"


@pytest.mark.parametrize(("policy", "code"), [("Always", 0), ("OnFailure", 3)])
def test_restarted_after_exit(e2e: E2E, record: Record, policy: str, code: int) -> None:
    trigger = trigger_container(e2e, "r", policy, code)
    e2e.start(resync=SLOW_RESYNC)  # the exit is seen by waiting on the process, not a relist
    pid1 = e2e.wait_running("r")
    t0 = time.monotonic()
    trigger.touch()
    pid2 = e2e.wait_running("r", not_pid=pid1, interval=0.01)
    elapsed = time.monotonic() - t0
    record(f"exit {code} -> running again ({policy})", elapsed)
    assert elapsed < 1.0, "the first restart after a crash waits for no backoff"
    assert not trigger.exists() and not pid_alive(pid1)
    c = e2e.wait_phase("r", "Running")
    assert (c["pid"], c["restarts"], c["lastExitCode"]) == (pid2, 1, code)
    # the counter keeps counting
    trigger.touch()
    pid3 = e2e.wait_running("r", not_pid=pid2)
    c = wait_until(lambda: (c := e2e.get("r")) and c["restarts"] == 2 and c, 5,
                   what="restarts == 2")
    assert c["pid"] == pid3 and c["phase"] == "Running"
    assert e2e.reasons("r") == ["Created", "Exited", "Restarted", "Exited", "Restarted"]


@pytest.mark.parametrize(("policy", "code"), [("OnFailure", 0), ("Never", 3), ("Never", 0)])
def test_not_restarted_after_exit(e2e: E2E, policy: str, code: int) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    trigger = trigger_container(e2e, "r", policy, code)
    e2e.start()
    pid = e2e.wait_running("r")
    trigger.touch()
    wait_until(lambda: (st := e2e.runc("r")) is not None and st["status"] == "stopped", 5,
               what="r stopped in runc")
    c = e2e.wait_phase("r", "Exited")
    assert (c["lastExitCode"], c["restarts"]) == (code, 0)
    assert f"exited with code {code}" in c["message"] and policy in c["message"]
    # stays exited (kept on the host, for its logs and status), through a resync
    hold(lambda: (st := e2e.runc("r")) is not None and st["status"] == "stopped",
         RESYNC + 0.5, what="r stays stopped")
    assert not pid_alive(pid)
    assert e2e.get("r")["restarts"] == 0  # type: ignore[index]
    assert "Restarted" not in e2e.reasons("r")


def test_crash_loop_backs_off(e2e: E2E, record: Record) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.write("loop.yaml", e2e.manifest("loop", "sleep 0.3; exit 1", restartPolicy="Always"))
    e2e.start("--backoff-initial", "0.2", "--backoff-max", "5", resync=SLOW_RESYNC)
    saw_backoff = wait_until(lambda: (c := e2e.get("loop")) and c["phase"] == "BackOff" and c,
                             10, what="loop in BackOff")
    assert "retry in" in saw_backoff["message"]

    def restarted_times() -> list[float] | None:
        times = [e["time"] for e in e2e.events("loop") if e["reason"] == "Restarted"]
        return times if len(times) >= 4 else None
    times = wait_until(restarted_times, 15, what="4 restarts")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][:3]
    for i, gap in enumerate(gaps):
        record(f"gap before restart {i + 2}", gap)
    # each run lasts 0.3 s, then waits 0, 0.2, 0.4, 0.8 s: every gap longer than the last
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert 0.3 + 0.2 <= gaps[0] and 0.3 + 0.8 <= gaps[2] < 3, gaps
    c = e2e.get("loop")
    assert c is not None and c["restarts"] >= 4 and c["lastExitCode"] == 1


def test_immediate_exit_is_seen_at_once(e2e: E2E) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.write("bad.yaml", e2e.manifest("bad", "exit 1", restartPolicy="Always"))
    e2e.start(resync=SLOW_RESYNC)
    t0 = time.monotonic()
    wait_until(lambda: "Restarted" in e2e.reasons("bad"), 10, what="bad restarted")
    assert time.monotonic() - t0 < 2, "restarted only by the resync relist"
