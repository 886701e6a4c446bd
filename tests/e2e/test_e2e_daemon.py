"""End to end: the daemon's own life — adoption after a crash, stopping, the state dir lock —
and run states (Running, Paused, Stopped) driven through manifest edits.

Containers outlive the daemon (conmon keeps them): a daemon that crashes or stops changes
nothing on the host, and the next one adopts what it finds in its own runc root only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import E2E, RESYNC, SETTLE, cmdline, hold, pid_alive, runc_state, wait_until

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]


def test_adoption_after_sigkill(e2e: E2E, record: Record) -> None:
    names = ("a", "b", "c", "d")
    for n in names:
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    d1 = e2e.start()
    pids = {n: e2e.wait_running(n) for n in names}
    # a has a history worth keeping: one restart
    runc(e2e, "kill", e2e.instance("a"), "KILL")
    pids["a"] = e2e.wait_running("a", not_pid=pids["a"])
    wait_until(lambda: (c := e2e.get("a")) is not None and c["restarts"] == 1, 5,
               what="a restarted once")
    monitors = {n: e2e.monitors(n) for n in names}
    d1.kill()
    assert {n: e2e.running_pid(n) for n in names} == pids  # conmon keeps them
    seen = len(e2e.events())

    # nothing changed while it was down: the next daemon restarts nothing
    t0 = time.monotonic()
    d2 = e2e.start()
    record("daemon start -> first pass", time.monotonic() - t0)
    e2e.keeps(pids, RESYNC + SETTLE, why="after the restart, through a resync")
    got = e2e.get_all()
    assert {n: (c["pid"], c["restarts"], c["phase"]) for n, c in got.items()} == {
        n: (pids[n], 1 if n == "a" else 0, "Running") for n in names}
    assert {n: e2e.monitors(n) for n in names} == monitors
    assert e2e.events()[seen:] == []

    # while it was down: b changed, c removed, d exited: applied as soon as it starts
    d2.kill()
    subprocess.run(["sed", "-i", "s/sleep 0.1/sleep 0.2/", str(e2e.manifests / "b.yaml")],
                   check=True)
    (e2e.manifests / "c.yaml").unlink()
    runc(e2e, "kill", e2e.instance("d"), "KILL")
    wait_until(lambda: (st := e2e.runc("d")) is not None and st["status"] == "stopped", 5,
               what="d stopped")
    e2e.start()
    pb = e2e.wait_running("b", not_pid=pids["b"])
    assert "sleep 0.2" in cmdline(pb)[-1]
    e2e.wait_gone("c")
    assert not pid_alive(pids["c"])
    pd = e2e.wait_running("d", not_pid=pids["d"])
    c = wait_until(lambda: (c := e2e.get("d")) is not None and c["pid"] == pd and c, 5,
                   what="d restarted in get")
    assert (c["restarts"], c["lastExitCode"]) == (1, 137)
    e2e.keeps({"a": pids["a"]}, SETTLE, why="a untouched")
    assert e2e.get("a")["restarts"] == 1  # type: ignore[index]
    assert e2e.reasons("a") == ["Created", "Exited", "Restarted"]
    assert sorted(e2e.get_all()) == ["a", "b", "d"]


def runc(e2e: E2E, *args: str) -> None:
    subprocess.run(["runc", f"--root={e2e.runc_root}", *args], check=True,
                   capture_output=True, timeout=30)


def test_other_runc_root_is_never_touched(e2e: E2E, foreign_runc: Callable[[str], Path]
                                          ) -> None:
    # same id as ours, our annotations, our cgroup parent: only the runc root tells it apart
    root = foreign_runc("a.1")
    foreign = runc_state(root, "a.1")
    assert foreign is not None and foreign["status"] == "running"
    e2e.write("b.yaml", e2e.manifest("b"))
    d = e2e.start()
    e2e.wait_running("b")
    e2e.write("a.yaml", e2e.manifest("a"))  # ours, of the same name
    ours = e2e.wait_running("a")
    assert ours != foreign["pid"]
    assert e2e.instance("a") == "a.1"  # the foreign one's id, in our root
    (e2e.manifests / "a.yaml").unlink()
    wait_until(lambda: e2e.runc("a") is None, 5, what="our a deleted")
    d.kill()
    e2e.start()
    hold(lambda: e2e.running_pid("b"), RESYNC + SETTLE, what="b runs, through a resync")
    st = runc_state(root, "a.1")
    assert st is not None and (st["status"], st["pid"]) == ("running", foreign["pid"])
    assert sorted(e2e.get_all()) == ["b"]


def test_sigterm_stops_promptly_and_leaves_containers(e2e: E2E, record: Record) -> None:
    for n in ("a", "b"):
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    d = e2e.start("--log-format", "json")
    pids = {n: e2e.wait_running(n) for n in "ab"}
    monitors = {n: e2e.monitors(n) for n in "ab"}
    elapsed = d.stop(timeout=5)
    record("SIGTERM -> daemon exited", elapsed)
    assert d.proc.returncode == 0, d.log()
    assert elapsed < 2
    logs = [json.loads(line) for line in d.log().splitlines()]  # every line is JSON
    assert any("containers keep running" in rec["message"] for rec in logs), logs
    hold(lambda: {n: e2e.running_pid(n) for n in "ab"} == pids, 1.0, what="containers run")
    assert {n: e2e.monitors(n) for n in "ab"} == monitors


def test_second_daemon_on_the_state_dir_fails_at_once(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    d1 = e2e.start()
    pid = e2e.wait_running("a")
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "--manifests", str(e2e.manifests),
         "--state-dir", str(e2e.state_dir), "--runc-root", str(e2e.runc_root),
         "--cgroup-parent", e2e.sandbox.cgroup_parent, "--settle", "0.3"],
        capture_output=True, text=True, timeout=20, check=False)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1 and elapsed < 3, (res.returncode, elapsed, res.stderr)
    assert "Traceback" not in res.stderr
    msg = res.stderr.strip()
    assert msg.startswith("error: "), msg
    assert f"pid {d1.pid}" in msg and str(e2e.state_dir) in msg, msg
    assert d1.alive() and e2e.running_pid("a") == pid


def test_run_states_through_manifest_edits(e2e: E2E) -> None:
    path = e2e.write("a.yaml", e2e.manifest("a"))
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.start()
    pid = e2e.wait_running("a")

    def set_state(state: str) -> None:
        path.write_text(e2e.manifest("a", state=state))

    set_state("Paused")
    c = e2e.wait_phase("a", "Paused")
    assert c["pid"] == pid and c["desiredState"] == "Paused"
    assert e2e.freezer("a") == "FROZEN" and e2e.runc("a")["status"] == "paused"  # type: ignore[index]

    set_state("Running")
    wait_until(lambda: e2e.running_pid("a") == pid, 5, what="a resumed, same PID")
    assert e2e.freezer("a") == "THAWED"
    assert e2e.wait_phase("a", "Running")["pid"] == pid

    set_state("Stopped")
    c = e2e.wait_phase("a", "Stopped")
    assert not pid_alive(pid)
    assert e2e.runc("a")["status"] == "stopped"  # type: ignore[index]
    assert c["restarts"] == 0 and c["desiredState"] == "Stopped"
    hold(lambda: e2e.runc("a")["status"] == "stopped", RESYNC + SETTLE,  # type: ignore[index]
         what="a stays stopped (no restart policy applies), through a resync")

    set_state("Paused")  # from Stopped: started, then frozen
    c = e2e.wait_phase("a", "Paused")
    pid2 = c["pid"]
    assert pid2 != pid and pid_alive(pid2) and e2e.freezer("a") == "FROZEN"

    set_state("Running")
    wait_until(lambda: e2e.running_pid("a") == pid2, 5, what="a resumed")
    assert e2e.freezer("a") == "THAWED"
    assert e2e.wait_phase("a", "Running")["restarts"] == 0
    assert [r for r in e2e.reasons("a") if r != "Exited"] == [
        "Created", "Paused", "Resumed", "Stopped", "Started", "Resumed"]


def test_json_log_lines_name_the_container_and_action_of_failures(e2e: E2E) -> None:
    """A log shipper filters on ``container``: failures and manifest errors carry it too."""
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.write("b.yaml", e2e.manifest("b").replace(str(e2e.rootfs), "/nonexistent/rootfs"))
    d = e2e.start("--log-format", "json")
    e2e.wait_running("a")
    e2e.write("a.yaml", e2e.manifest("a") + "  bogus: 1\n")

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in d.log().splitlines()]

    def found() -> bool:
        recs = lines()
        return (any(r.get("container") == "b" and r.get("action") == "create"
                    and r["level"] == "warning" for r in recs)
                and any(r.get("container") == "a" and r.get("action") == "manifest-error"
                        for r in recs))
    wait_until(found, 10, what="failure lines naming b and a")
