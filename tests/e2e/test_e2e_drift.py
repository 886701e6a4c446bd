"""End to end: changes made by hand with runc behind the daemon's back are repaired.

A kill is seen at once (the daemon waits on the init process); a deletion or a pause
made by hand is found by the relist every ``--resync`` seconds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import E2E, RESYNC, SLOW_RESYNC, PidSampler, hold, mounts_under, pid_alive, wait_until

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]


def ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def runc(e2e: E2E, *args: str) -> None:
    subprocess.run(["runc", f"--root={e2e.runc_root}", *args], check=True,
                   capture_output=True, timeout=30)


def test_runc_kill_is_restarted(e2e: E2E, record: Record) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start(resync=SLOW_RESYNC)  # seen by waiting on the process, not by a relist
    pid = e2e.wait_running("a")
    t0 = time.monotonic()
    instance = e2e.instance("a")
    runc(e2e, "kill", instance, "KILL")
    pid2 = e2e.wait_running("a", not_pid=pid, interval=0.01)
    elapsed = time.monotonic() - t0
    record("runc kill KILL -> running again", elapsed)
    assert elapsed < 1.0
    assert not pid_alive(pid)
    assert e2e.instance("a") == instance  # a restart keeps the instance
    c = wait_until(lambda: (c := e2e.get("a")) and c["pid"] == pid2 and c, 5, what="get a")
    assert (c["phase"], c["restarts"], c["lastExitCode"]) == ("Running", 1, 137)
    assert c["lastExit"]["signal"] == 9


def test_runc_delete_is_recreated_eventually(e2e: E2E, record: Record) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start()
    keep = e2e.wait_running("keep")
    pid = e2e.wait_running("a")
    with PidSampler(e2e, "a") as sampler:
        t0 = time.monotonic()
        runc(e2e, "delete", "-f", e2e.instance("a"))
        e2e.wait_running("a", not_pid=pid, timeout=RESYNC + 5, interval=0.01)

        # one container, one monitor, one process tree: no orphan left of a race with
        # runc's own delete (`runc delete -f` kills, polls 100 ms, then destroys the name)
        def single() -> int | None:
            pid = e2e.running_pid("a")
            procs = e2e.cgroup_procs("a")
            ok = pid and len(e2e.monitors("a")) == 1 and pid in procs and all(
                p == pid or ppid(p) == pid for p in procs)
            return pid if ok else None
        pid2 = wait_until(single, RESYNC + 5, what="exactly one a: one conmon, one tree")
        hold(lambda: e2e.running_pid("a") == pid2, 0.5, what="a stays")
    raced = " (after a race with runc's own delete)" if len(sampler.pids()) > 2 else ""
    record(f"runc delete -f -> running again{raced}", sampler.first_seen("running", pid2) - t0)
    assert not pid_alive(pid)
    # one rootfs mount, in one depot: nothing left of the instance deleted by hand
    assert len(mounts_under(e2e.depot("a"))) == 1
    inventory = e2e.inventory()
    assert {k: v.count("a") for k, v in inventory.items()} == {
        "runc": 1, "depots": 1, "overlays": 1, "cgroups": 1}, inventory
    assert e2e.wait_phase("a", "Running")["pid"] == pid2
    assert e2e.running_pid("keep") == keep


def test_runc_pause_is_resumed_at_resync(e2e: E2E, record: Record) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start()
    pid = e2e.wait_running("a")
    t0 = time.monotonic()
    runc(e2e, "pause", e2e.instance("a"))
    assert e2e.freezer("a") == "FROZEN"
    wait_until(lambda: e2e.running_pid("a"), RESYNC + 3, what="a resumed", interval=0.02)
    elapsed = time.monotonic() - t0
    record("runc pause -> resumed", elapsed)
    assert elapsed < RESYNC + 1.5
    assert e2e.running_pid("a") == pid  # resumed, not recreated
    assert e2e.freezer("a") == "THAWED"
    assert e2e.wait_phase("a", "Running")["restarts"] == 0
    assert "Resumed" in e2e.reasons("a")
