"""``reconciler inspect`` and ``reconciler top``, checked against runc and /proc."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.core.instance import ANN_SPEC_HASH

if TYPE_CHECKING:
    from .conftest import Ops

pytestmark = pytest.mark.runc

COMMAND = ("/bin/sh", "-c", "sleep 1001 & sleep 1002 & wait")


def runc_json(ops: Ops, *args: str) -> Any:
    out = subprocess.run(["runc", f"--root={ops.rt.runc_root}", *args], check=True,
                         capture_output=True).stdout
    return json.loads(out)


def test_inspect_prints_the_config_runc_runs_with(ops: Ops) -> None:
    ops.up("web", *COMMAND, args=["ignored-by-sh"], env=[{"name": "MODE", "value": "x"}],
           resources={"memory": "32Mi"})
    code, out, err = ops.cli("inspect", "web")
    assert (code, err) == (0, "")
    shown = json.loads(out)
    state = runc_json(ops, "state", "web.1")
    on_disk = json.loads((Path(state["bundle"]) / "config.json").read_text())
    assert shown == on_disk  # the very file runc was given
    assert shown["process"]["args"] == [*COMMAND, "ignored-by-sh"]
    assert "MODE=x" in shown["process"]["env"]
    assert shown["linux"]["resources"]["memory"]["limit"] == 32 << 20
    assert shown["linux"]["cgroupsPath"] == f"{ops.rt.cgroup_parent}/web.1"
    assert shown["annotations"][ANN_SPEC_HASH] == "h1"


def test_top_lists_the_processes_runc_knows(ops: Ops) -> None:
    init = ops.up("web", *COMMAND)
    deadline = time.monotonic() + 5  # the shell forks its two sleeps after it starts
    while len(runc_json(ops, "ps", "--format", "json", "web.1")) < 3:
        assert time.monotonic() < deadline, "the two sleeps never started"
        time.sleep(0.02)
    code, out, err = ops.cli("top", "web")
    assert (code, err) == (0, "")
    head, *rows = out.splitlines()
    assert head.split() == ["PID", "USER", "TIME", "CMD"]
    listed = {int(r.split()[0]): r for r in rows}
    assert set(listed) == set(runc_json(ops, "ps", "--format", "json", "web.1"))
    assert len(listed) == 3 and init in listed
    for pid, row in listed.items():
        _, user, time_, cmd = row.split(maxsplit=3)
        assert user == "root"
        assert re.fullmatch(r"\d\d:\d\d:\d\d", time_)
        assert cmd == Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(
            b"\0", b" ").decode()
    assert sorted(r.split(maxsplit=3)[3] for r in rows) == [
        "/bin/sh -c sleep 1001 & sleep 1002 & wait", "sleep 1001", "sleep 1002"]


def test_missing_containers(ops: Ops) -> None:
    for command in ("inspect", "top"):
        code, out, err = ops.cli(command, "ghost")
        assert (code, out) == (1, ""), command
        assert err == 'error: container "ghost" not found\n'


def test_the_newest_instance_is_the_one_shown(ops: Ops) -> None:
    """Two instances of one object (make-before-break): the commands take the newest."""
    ops.up("web", *COMMAND)
    ops.up("web", "/bin/sh", "-c", "sleep 1003 & wait", generation=2, previous="web.1")
    code, out, _ = ops.cli("inspect", "web")
    assert code == 0
    shown = json.loads(out)
    assert shown["process"]["args"] == ["/bin/sh", "-c", "sleep 1003 & wait"]
    assert shown["annotations"]["io.reconciler.generation"] == "2"
    code, out, _ = ops.cli("top", "web")
    assert code == 0
    assert sorted(r.split(maxsplit=3)[3] for r in out.splitlines()[1:]) == [
        "/bin/sh -c sleep 1003 & wait", "sleep 1003"]
    # an instance id names that instance
    code, out, _ = ops.cli("inspect", "web.1")
    assert code == 0 and json.loads(out)["process"]["args"] == list(COMMAND)
