"""Update locks end to end: a real container's own file holds a recreate back.

The lock is written and removed inside the container (``runc exec``), as an app would;
the daemon reads it through ``/proc/<init>/root``. Each wait is bounded.
"""

from __future__ import annotations

import subprocess

import pytest

from .harness import E2E, hold, wait_until

pytestmark = pytest.mark.runc

LOCK = "/tmp/updates.lock"


def spec(version: str, **extra: object) -> dict[str, object]:
    return {"updateLock": {"path": LOCK, **extra}, "terminationGracePeriodSeconds": 2,
            "env": [{"name": "VERSION", "value": version}]}


def inside(e2e: E2E, script: str) -> None:
    subprocess.run(["runc", f"--root={e2e.runc_root}", "exec", e2e.instance("w"), "/bin/sh",
                    "-c", script], check=True, capture_output=True, timeout=10)


def phase(e2e: E2E) -> tuple[str | None, str]:
    record = e2e.get("w") or {}
    return record.get("phase"), str(record.get("message") or "")


def test_a_held_lock_delays_a_recreate_until_released(e2e: E2E) -> None:
    e2e.write("w.yaml", e2e.manifest("w", **spec("1")))
    e2e.start()
    pid = e2e.wait_running("w")
    inside(e2e, f"touch {LOCK}")
    e2e.write("w.yaml", e2e.manifest("w", **spec("2")))
    wait_until(lambda: phase(e2e)[0] == "Locked", 5, what="w Locked")
    assert LOCK in phase(e2e)[1] and "held since" in phase(e2e)[1]
    table = e2e.cli("get", "w").stdout
    assert "Locked" in table, table
    hold(lambda: e2e.running_pid("w") == pid, 2.0, what="w untouched while locked")
    inside(e2e, f"rm {LOCK}")
    e2e.wait_running("w", 10, not_pid=pid)
    assert e2e.instance("w") == "w.2"


def test_force_overrides_a_lock_and_says_so(e2e: E2E) -> None:
    e2e.write("w.yaml", e2e.manifest("w", **spec("1")))
    e2e.start()
    pid = e2e.wait_running("w")
    inside(e2e, f"touch {LOCK}")
    e2e.write("w.yaml", e2e.manifest("w", **spec("2")))
    wait_until(lambda: phase(e2e)[0] == "Locked", 5, what="w Locked")
    refused = e2e.cli("unlock", "w", check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    e2e.cli("unlock", "w", "--force")
    e2e.wait_running("w", 10, not_pid=pid)
    assert "LockOverridden" in e2e.reasons("w")


def test_a_stale_pid_lock_is_broken(e2e: E2E) -> None:
    e2e.write("w.yaml", e2e.manifest("w", **spec("1")))
    e2e.start()
    pid = e2e.wait_running("w")
    inside(e2e, f"echo 99999 > {LOCK}")  # no such process in the container
    e2e.write("w.yaml", e2e.manifest("w", **spec("2")))
    e2e.wait_running("w", 10, not_pid=pid)
    broken = [e["message"] for e in e2e.events("w") if e["reason"] == "LockBroken"]
    assert broken and "PID 99999 no longer runs" in broken[0], broken


def test_a_live_pid_lock_holds_and_timeout_overrides(e2e: E2E) -> None:
    e2e.write("w.yaml", e2e.manifest("w", **spec("1", timeoutSeconds=3)))
    e2e.start()
    pid = e2e.wait_running("w")
    inside(e2e, f"sleep 60 >/dev/null 2>&1 </dev/null & echo $! > {LOCK}")
    e2e.write("w.yaml", e2e.manifest("w", **spec("2", timeoutSeconds=3)))
    wait_until(lambda: phase(e2e)[0] == "Locked", 5, what="w Locked")
    assert "by PID" in phase(e2e)[1]
    e2e.wait_running("w", 10, not_pid=pid)  # the timeout lets it through
    assert "LockTimedOut" in e2e.reasons("w")
