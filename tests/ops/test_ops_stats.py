"""``reconciler stats`` on real containers: numbers read from the cgroup, and moving."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from reconciler.runtime import cgroups

if TYPE_CHECKING:
    from .conftest import Ops

pytestmark = pytest.mark.runc

MiB = 1 << 20
SLEEPERS = ("/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait")


def stats_json(ops: Ops, *args: str) -> list[dict[str, Any]]:
    code, out, err = ops.cli("stats", "--no-stream", "-o", "json", *args)
    assert (code, err) == (0, "")
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def memory_usage_file(ops: Ops, name: str) -> Path:
    cg = ops.rt.cgroup(ops.instance(name))  # as the instance's config.json records it
    assert cg is not None and cg.path == f"{ops.rt.cgroup_parent}/{name}.1"
    rel = cg.path.lstrip("/")
    if cgroups.unified():
        return cgroups.CGROUP_ROOT / rel / "memory.current"
    return cgroups.CGROUP_ROOT / "memory" / rel / "memory.usage_in_bytes"


def test_memory_moves_when_the_container_fills_a_tmpfs(ops: Ops) -> None:
    ops.up("hog", *SLEEPERS, resources={"memory": "128Mi", "pids": 50})
    [before] = stats_json(ops, "hog")
    assert before["name"] == "hog"
    assert before["memoryLimit"] == 128 * MiB and before["pidsLimit"] == 50
    assert before["pids"] == 3  # sh and its two sleeps
    assert before["memoryUsage"] < 16 * MiB

    fill = anyio.run(lambda: ops.rt.exec(
        "hog.1", ["/bin/dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=20"]))
    assert fill.exit_code == 0, fill.stderr
    [after] = stats_json(ops, "hog")
    assert after["memoryUsage"] >= before["memoryUsage"] + 19 * MiB  # tmpfs pages stay
    assert after["memoryPercent"] == round(after["memoryUsage"] / (128 * MiB) * 100, 2)
    # the kernel's own counter agrees (within what the idle sleepers may change)
    host = int(memory_usage_file(ops, "hog").read_text())
    assert abs(host - after["memoryUsage"]) < 2 * MiB


def test_cpu_of_a_busy_and_an_idle_container_and_all_listed(ops: Ops) -> None:
    ops.up("busy", "/bin/sh", "-c", "while :; do :; done")
    ops.up("idle", *SLEEPERS)
    daemon_was_here(ops)  # every container: only of a daemon's state dir, as ``get``
    rows = {r["name"]: r for r in stats_json(ops)}  # no name: every running container
    assert set(rows) == {"busy", "idle"}
    # a shell spinning on one core: up to 100 % (less on a loaded host), never more
    # than all the cores; sleeping processes use next to nothing
    assert 5 < rows["busy"]["cpuPercent"] <= 105
    assert rows["idle"]["cpuPercent"] < 1
    assert rows["idle"]["pids"] == 3 and rows["busy"]["pids"] == 1
    # no memory limit: docker's habit of the host's memory as the limit, for the percent
    assert rows["idle"]["memoryLimit"] is None
    total = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0]) * 1024
    assert rows["idle"]["memoryPercent"] == round(rows["idle"]["memoryUsage"] / total * 100, 2)


def test_the_table_printed_once_when_not_a_terminal(ops: Ops) -> None:
    ops.up("web", *SLEEPERS, resources={"memory": "64Mi"})
    code, out, err = ops.cli("stats", "web")  # capsys is no terminal: once, no escapes
    assert (code, err) == (0, "")
    head, row = out.splitlines()
    assert head.split() == ["NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%", "PIDS"]
    assert re.fullmatch(r"web\s+\d+\.\d\d%\s+\d+(\.\d\d)?(B|KiB|MiB) / 64\.00MiB\s+"
                        r"\d+\.\d\d%\s+3", row), row
    assert "\x1b" not in out


def test_on_a_terminal_the_table_refreshes_in_place(ops: Ops) -> None:
    ops.up("web", *SLEEPERS)
    term = ops.on_terminal("stats", "web")
    try:
        out = ops.read_until(term.fd, lambda d: d.count(b"\x1b[2J\x1b[H") >= 2, timeout=15)
    finally:
        term.kill()
    assert out.count(b"NAME") >= 2 and b"web" in out


def test_stats_of_a_missing_container(ops: Ops) -> None:
    code, out, err = ops.cli("stats", "--no-stream", "ghost")
    assert (code, out) == (1, "")
    assert err == 'error: container "ghost" not found\n'


def test_every_container_of_a_state_dir_no_daemon_used_is_an_error(ops: Ops) -> None:
    """As ``get``, ``describe`` and ``events``: a mistyped --state-dir must not look like
    a host with no containers (it was an empty table, exit 0)."""
    said = (f"error: no reconciler daemon has used the state dir {ops.rt.state_dir}"
            " (give the daemon's --state-dir)\n")
    for args in (["--no-stream"], ["--no-stream", "-o", "json"], ["-o", "json"], []):
        assert ops.cli("stats", *args) == (1, "", said), args
    assert ops.cli("get") == (1, "", said)  # the same words
    # once a daemon has used it: the table, empty while nothing runs
    daemon_was_here(ops)
    code, out, err = ops.cli("stats", "--no-stream")
    assert (code, out.split(), err) == (
        0, ["NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%", "PIDS"], "")
    assert ops.cli("stats", "--no-stream", "-o", "json") == (0, "[]\n", "")


def daemon_was_here(ops: Ops) -> None:
    """``<state-dir>/daemon.json``, which a daemon writes at its start with its cgroup
    parent (``Store.claim_cgroup_parent``): the CLI then takes the dir as a daemon's."""
    ops.rt.state_dir.mkdir(parents=True, exist_ok=True)
    (ops.rt.state_dir / "daemon.json").write_text(
        json.dumps({"cgroupParent": ops.rt.cgroup_parent}))



def test_a_stopped_container_shows_its_own_limit(ops: Ops) -> None:
    """Not the host's memory: nothing runs, but its limit is still what it was made with."""
    ops.up("done", "/bin/true", resources={"memory": "48Mi"})
    deadline = time.monotonic() + 5
    while ops.rt.cgroup("done.1") is not None and _running(ops, "done.1"):
        assert time.monotonic() < deadline, "/bin/true never exited"
        time.sleep(0.02)
    code, out, err = ops.cli("stats", "done", "-o", "json")
    assert (code, err) == (0, "")
    (row,) = json.loads(out)
    assert row["memoryLimit"] == 48 << 20 and row["memoryUsage"] == 0


def _running(ops: Ops, instance: str) -> bool:
    state = subprocess.run(["runc", f"--root={ops.rt.runc_root}", "state", instance],
                           capture_output=True, text=True, check=False)
    return '"status": "running"' in state.stdout
