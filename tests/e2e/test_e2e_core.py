"""End to end, the core guarantees of instance identity and of the controller:

- two daemons on one host (their own state dirs, runc roots and manifests, both on the
  default cgroup parent) never touch each other's containers or cgroups, and the CLI of
  each shows only its own;
- deleting many containers that ignore SIGTERM waits out their grace periods together,
  not one after another;
- a daemon SIGKILLed in the middle of those deletes is replaced by one that is ready at
  once (the slow stops do not hold its first pass), then converges to the files;
- a burst of files makes each container exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest

from .harness import E2E, RESYNC, SETTLE, wait_until

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]

# sh as PID 1 without a trap: SIGTERM does nothing, only the SIGKILL after the grace ends it
IGNORES_TERM = "while true; do sleep 0.1; done"
GRACE = 10
# long sleeps, no churn: the cgroup's process list stays the same while nothing happens
QUIET = "trap 'exit 0' TERM; while true; do sleep 3600 & wait $!; done"
A_SCRIPT = "trap 'exit 0' TERM; sleep 3600 & wait"  # sh + 1 sleep
B_SCRIPT = "trap 'exit 0' TERM; sleep 3600 & sleep 3601 & wait"  # sh + 2 sleeps


def recorded_parent(w: E2E) -> str:
    """The cgroup parent the daemon of ``w`` recorded in daemon.json."""
    parent = wait_until(lambda: w.daemon_json().get("cgroupParent"), 2,
                        what=f"cgroupParent in {w.state_dir / 'daemon.json'}")
    assert isinstance(parent, str) and parent.startswith("/reconciler-"), parent
    return parent


def top_pids(w: E2E, name: str) -> set[int]:
    lines = w.cli("top", name).stdout.splitlines()
    assert lines and lines[0].split()[0] == "PID", lines
    return {int(line.split()[0]) for line in lines[1:] if line.strip()}


def check_cli(w: E2E, other: E2E, script: str, memory: int) -> None:
    """``top``, ``stats`` and ``inspect`` of ``web`` in ``w`` show ``w``'s own container."""
    own, theirs = set(w.cgroup_procs("web")), set(other.cgroup_procs("web"))
    assert own and not own & theirs

    assert top_pids(w, "web") == own  # A's top: A's cgroup, nothing of B's

    rows = json.loads(w.cli("stats", "web", "--no-stream", "-o", "json").stdout)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["name"] in ("web", w.instance("web")), row
    assert (row["memoryLimit"], row["pids"]) == (memory, len(own)), row

    config = json.loads(w.cli("inspect", "web").stdout)
    assert config["process"]["args"][-1] == script
    assert config["linux"]["resources"]["memory"]["limit"] == memory
    assert config["linux"]["cgroupsPath"] == w.cgroup_path("web")
    assert config["linux"]["cgroupsPath"] != other.cgroup_path("web")


def test_two_daemons_on_default_parents_stay_apart(e2e: E2E, second_e2e: E2E) -> None:
    a, b = e2e, second_e2e
    a.write("web.yaml", a.manifest("web", A_SCRIPT, resources={"memory": "16Mi"}))
    b.write("web.yaml", b.manifest("web", B_SCRIPT, resources={"memory": "32Mi"}))
    a.start("--allow-empty", cgroup_parent=None)
    parent_a = recorded_parent(a)
    b.start(cgroup_parent=None)
    parent_b = recorded_parent(b)
    assert parent_a != parent_b

    for w, parent, procs in ((a, parent_a, 2), (b, parent_b, 3)):
        w.wait_running("web")
        wait_until(lambda: len(w.cgroup_procs("web")) == procs, 5,  # noqa: B023 - called here
                   what=f"web's {procs} processes started in {w.state_dir}")
        assert w.cgroup_path("web") == f"{parent}/{w.instance('web')}"
    check_cli(a, b, A_SCRIPT, 16 << 20)
    check_cli(b, a, B_SCRIPT, 32 << 20)

    def b_web() -> tuple[int | None, str | None, list[int]]:
        return b.running_pid("web"), b.cgroup_path("web"), b.cgroup_procs("web")

    before = b_web()

    def b_untouched(step: str) -> None:
        assert b_web() == before, f"B's web changed after {step}"

    # 1. A's container is SIGKILLed: restarted, same instance
    instance = a.instance("web")
    pid = a.running_pid("web")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    pid = a.wait_running("web", not_pid=pid)
    assert a.instance("web") == instance
    wait_until(lambda: "Restarted" in a.reasons("web"), 5, what="A's web Restarted")
    b_untouched("A's container was killed and restarted")

    # 2. daemon A restarts: it adopts its own container, the same parent
    assert a.daemons[-1].stop() < 5
    b_untouched("daemon A stopped")
    a.start("--allow-empty", cgroup_parent=None)
    assert recorded_parent(a) == parent_a
    assert a.running_pid("web") == pid
    b_untouched("daemon A restarted")

    # 3. drift: A's instance deleted by hand, A makes it again
    subprocess.run(["runc", f"--root={a.runc_root}", "delete", "-f", a.instance("web")],
                   check=True, capture_output=True, timeout=30)
    a.wait_running("web", not_pid=pid, timeout=RESYNC + 5)
    path = a.cgroup_path("web")
    assert path == f"{parent_a}/{a.instance('web')}", path
    b_untouched("A's container was deleted by hand and made again")

    # 4. A's manifest deleted: nothing left of A's web, B's as it was
    (a.manifests / "web.yaml").unlink()
    a.wait_gone("web", timeout=10)
    b_untouched("A's manifest was deleted")
    assert b.runc_names() == ["web"] and a.runc_names() == []
    assert top_pids(b, "web") == set(before[2])


def forty_that_ignore_term(e2e: E2E) -> tuple[list[str], dict[str, int]]:
    """40 running containers whose PID 1 ignores SIGTERM (grace 10 s), and ``keep``."""
    names = [f"t{i:02d}" for i in range(40)]
    e2e.write("keep.yaml", e2e.manifest("keep", QUIET))
    for n in names:
        e2e.write(f"{n}.yaml", e2e.manifest(n, IGNORES_TERM,
                                            terminationGracePeriodSeconds=GRACE))
    d = e2e.start(ready=False)
    pids = e2e.wait_all_running([*names, "keep"], timeout=60)
    e2e.wait_ready(d, timeout=30)
    return names, pids


def test_deleting_forty_slow_stoppers_waits_out_their_grace_together(
        e2e: E2E, record: Record) -> None:
    names, pids = forty_that_ignore_term(e2e)
    t0 = time.monotonic()
    for n in names:
        (e2e.manifests / f"{n}.yaml").unlink()
    e2e.wait_all_gone(names, timeout=13 - (time.monotonic() - t0))
    elapsed = time.monotonic() - t0
    record("40 deleted, SIGTERM ignored, grace 10 s -> all gone", elapsed)
    assert elapsed <= 13
    assert elapsed >= GRACE - 0.5, "gone before the grace period: SIGTERM was not ignored?"
    assert e2e.runc_names() == ["keep"]
    assert e2e.running_pid("keep") == pids["keep"]


def test_daemon_killed_during_slow_deletes_is_ready_at_once(
        e2e: E2E, record: Record) -> None:
    names, pids = forty_that_ignore_term(e2e)
    for n in names:
        (e2e.manifests / f"{n}.yaml").unlink()
    time.sleep(1.0)  # the settle window is over: 40 stops are waiting out their grace
    e2e.daemons[-1].kill()
    d = e2e.start(ready=False)

    def ready_at() -> float | None:
        assert d.alive(), f"daemon exited with {d.proc.returncode}:\n{d.log()}"
        daemon = e2e.status().get("daemon") or {}
        fresh = daemon.get("ready") is True and (daemon.get("lastPassAt") or 0) >= d.started_wall
        return time.time() if fresh else None

    try:
        seen = wait_until(ready_at, 10, what="the new daemon ready", interval=0.02)
    except AssertionError as exc:
        raise AssertionError(f"not ready within 10 s of its start (bound: 2 s): {exc}") from None
    elapsed = seen - d.started_wall
    record("daemon start during 40 slow deletes -> ready", elapsed)
    assert elapsed <= 2.0

    e2e.wait_all_gone(names, timeout=20)
    assert e2e.runc_names() == ["keep"]
    assert e2e.running_pid("keep") == pids["keep"]
    # status.json follows within its write interval (50 ms while changes go on)
    wait_until(lambda: sorted(e2e.get_all()) == ["keep"], 2, what="status without the 40")


def test_hundred_files_dropped_at_once_make_each_container_once(
        e2e: E2E, record: Record) -> None:
    names = [f"b{i:03d}" for i in range(100)]
    e2e.write("keep.yaml", e2e.manifest("keep", QUIET))
    e2e.start(resync=1.0)
    staging = e2e.tmp / "staging"  # the same filesystem: a rename is atomic
    staging.mkdir()
    for n in names:
        (staging / f"{n}.yaml").write_text(e2e.manifest(n, QUIET))
    t0 = time.monotonic()
    for n in names:
        os.rename(staging / f"{n}.yaml", e2e.manifests / f"{n}.yaml")
    pids = e2e.wait_all_running(names, timeout=60, interval=0.2)
    record("100 files renamed in -> all running", time.monotonic() - t0)
    e2e.keeps(pids, RESYNC + SETTLE, why="through a resync")

    ours = set(names)
    events = [e for e in e2e.events() if e.get("name") in ours]
    created = Counter(e["name"] for e in events if e["reason"] == "Created")
    assert sum(created.values()) == 100 and set(created) == ours, created
    again = [e for e in events if e["reason"] in ("Recreated", "Deleted")]
    assert again == [], again
