"""``reconciler logs`` on real containers: conmon's files, restarts, the size cap."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import pytest

from reconciler.runtime.runc import RuncRuntime

if TYPE_CHECKING:
    from .conftest import Ops

pytestmark = pytest.mark.runc

STAMPED = re.compile(rb"^(\S+) (.*)$")


def test_stdout_and_stderr_apart_with_tail_and_timestamps(ops: Ops) -> None:
    ops.up("talk", "/bin/sh", "-c",
           "echo out1; echo out2; echo err1 >&2; printf par; sleep 0.2; echo oops >&2;"
           " echo tial; echo done; sleep 1000")
    ops.wait_log("talk", b"done")
    log = ops.rt.depot("talk.1").log.read_bytes()
    assert b" stdout P par\n" in log  # conmon did cut that line: the CLI joins it

    assert ops.cli("logs", "talk") == (0, "out1\nout2\npartial\ndone\n", "err1\noops\n")
    # --tail counts lines of both streams, in the order written
    assert ops.cli("logs", "talk", "--tail", "3") == (0, "partial\ndone\n", "oops\n")
    assert ops.cli("logs", "talk", "--tail", "0") == (0, "", "")

    code, out, err = ops.cli("logs", "talk", "--timestamps")
    assert code == 0
    now = datetime.now(UTC)
    stamped = [STAMPED.match(ln.encode()) for ln in out.splitlines()]
    assert [m.group(2) for m in stamped if m] == [b"out1", b"out2", b"partial", b"done"]
    for m in stamped:
        assert m is not None
        when = datetime.fromisoformat(m.group(1).decode())
        assert abs((now - when).total_seconds()) < 30
    assert [ln.split(" ", 1)[1] for ln in err.splitlines()] == ["err1", "oops"]


def test_since(ops: Ops) -> None:
    ops.up("slow", "/bin/sh", "-c", "echo early; sleep 2; echo late; sleep 1000")
    ops.wait_log("slow", b"late")  # "early" is 2 s old now, "late" brand new
    assert ops.cli("logs", "slow", "--since", "1s") == (0, "late\n", "")
    assert ops.cli("logs", "slow", "--since", "1h") == (0, "early\nlate\n", "")
    assert ops.cli("logs", "slow", "--since", "1h", "--tail", "1") == (0, "late\n", "")


def test_follow_goes_on_across_a_restart_and_previous_shows_the_old_run(ops: Ops) -> None:
    ops.up("phoenix", "/bin/sh", "-c", "echo run1; sleep 1000")
    ops.wait_log("phoenix", b"run1")
    assert ops.cli("logs", "phoenix", "--previous")[0] == 1  # never restarted yet

    follower = ops.popen("logs", "-f", "phoenix")
    try:
        assert follower.stdout is not None
        fd = follower.stdout.fileno()
        assert ops.read_until(fd, lambda d: b"run1\n" in d, timeout=10) == b"run1\n"
        ops.delete("phoenix", keep_logs=True)  # what the daemon does for a restart
        ops.up("phoenix", "/bin/sh", "-c", "echo run2; echo run2-err >&2; sleep 1000")
        assert ops.read_until(fd, lambda d: b"run2\n" in d, timeout=10) == b"run2\n"
    finally:
        follower.terminate()
        _, err = follower.communicate(timeout=10)
    assert err == b"run2-err\n"

    assert ops.cli("logs", "phoenix", "--previous") == (0, "run1\n", "")
    assert ops.cli("logs", "phoenix") == (0, "run2\n", "run2-err\n")


def test_a_new_generation_is_shown_and_the_old_one_is_its_previous_run(ops: Ops) -> None:
    """A change that needs a new instance: ``logs NAME`` goes to the new one, and the
    replaced instance's last output is its previous run."""
    ops.up("gen", "/bin/sh", "-c", "echo gen1; sleep 1000")
    ops.wait_log("gen", b"gen1")
    ops.delete("gen", keep_logs=True)  # the old instance goes first (break-before-make)
    ops.up("gen", "/bin/sh", "-c", "echo gen2; sleep 1000", generation=2, previous="gen.1")
    assert ops.instance("gen") == "gen.2"
    ops.wait_log("gen", b"gen2")
    assert ops.cli("logs", "gen") == (0, "gen2\n", "")
    assert ops.cli("logs", "gen", "--previous") == (0, "gen1\n", "")


def test_follow_ends_when_the_container_is_deleted_for_good(ops: Ops) -> None:
    ops.up("brief", *("/bin/sh", "-c", "echo hi; sleep 1000"))
    ops.wait_log("brief", b"hi")
    follower = ops.popen("logs", "--follow", "brief")
    try:
        assert follower.stdout is not None
        ops.read_until(follower.stdout.fileno(), lambda d: b"hi\n" in d, timeout=10)
        ops.delete("brief")
        assert follower.wait(timeout=10) == 0
    finally:
        follower.kill()
        follower.communicate()


def test_the_size_cap_cuts_the_file_and_follow_loses_no_line(ops: Ops) -> None:
    capped = RuncRuntime(state_dir=ops.rt.state_dir, runc_root=ops.rt.runc_root,
                         cgroup_parent=ops.rt.cgroup_parent, timeout=10, log_size_max=4096)
    # ~50 bytes a record: some 80 lines a file, a cut about every second
    ops.up("chatty", "/bin/sh", "-c",
           "echo ready; while [ ! -e /go ]; do sleep 0.05; done;"
           " i=0; while [ $i -lt 200 ]; do echo n$i; i=$((i+1)); sleep 0.01; done;"
           " echo end; sleep 1000", rt=capped)
    follower = ops.popen("logs", "-f", "chatty")
    try:
        assert follower.stdout is not None
        fd = follower.stdout.fileno()
        ops.read_until(fd, lambda d: b"ready\n" in d, timeout=10)  # it follows: go
        anyio.run(lambda: capped.exec("chatty.1", ["/bin/touch", "/go"]))
        out = b"ready\n" + ops.read_until(fd, lambda d: b"end\n" in d, timeout=20)
    finally:
        follower.terminate()
        follower.communicate(timeout=10)
    assert out.decode().split() == ["ready", *(f"n{i}" for i in range(200)), "end"]

    code, now, _ = ops.cli("logs", "chatty")  # only what came after the last cut
    assert code == 0
    kept = now.split()
    assert kept[-1] == "end" and 0 < len(kept) < 100
    assert kept == (out.decode().split())[-len(kept):]
    assert ops.rt.depot("chatty.1").log.stat().st_size <= 4096


def test_errors(ops: Ops) -> None:
    code, out, err = ops.cli("logs", "ghost")
    assert (code, out) == (1, "")
    assert err == 'error: container "ghost" not found\n'
    ops.up("quiet", *("/bin/sh", "-c", "sleep 1000"))
    assert ops.cli("logs", "quiet") == (0, "", "")
    code, _, err = ops.cli("logs", "quiet", "--previous")
    assert code == 1 and err.startswith('error: container "quiet": has no previous')
    code, _, err = ops.cli("logs", "quiet", "-f", "--previous")
    assert code == 2 and "do not go together" in err
    for bad in (["--since", "5x"], ["--tail", "-3"], ["--tail", "many"]):
        with pytest.raises(SystemExit) as exc:
            ops.cli("logs", "quiet", *bad)
        assert exc.value.code == 2
