"""``reconciler exec`` on real containers: stdio passed through, the exit code returned."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .conftest import Ops

pytestmark = pytest.mark.runc

SLEEP = ("/bin/sh", "-c", "sleep 1000")


def test_exit_code_stdin_stdout_and_stderr(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    assert ops.run("exec", "box", "--", "/bin/sh", "-c", "exit 7").returncode == 7
    done = ops.run("exec", "box", "--", "/bin/sh", "-c", "cat; echo to-err >&2; exit 0",
                   input=b"from our stdin\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"from our stdin\n", b"to-err\n")
    # a command killed by a signal: the shell's 128 + n
    assert ops.run("exec", "box", "--", "/bin/sh", "-c", "kill -9 $$").returncode == 137
    # the command's own `--` and dashes are left alone
    echo = ops.run("exec", "box", "--", "/bin/echo", "--", "-n", "x")
    assert echo.stdout == b"-- -n x\n"


def test_options_may_come_after_the_name_when_ended_by_a_double_dash(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    done = ops.raw("exec", "box", *ops.flags, "--", "/bin/sh", "-c", "exit 3")
    assert done.returncode == 3, done.stderr
    done = ops.raw("exec", "-t", *ops.flags, "box", "--", "/bin/true")  # options first
    assert done.returncode == 2 and b"-t needs a terminal" in done.stderr


def test_a_terminal_with_t(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    term = ops.on_terminal("exec", "-t", "box", "--", "/bin/sh", "-c",
                           "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; exit 4")
    out = ops.read_until(term.fd, lambda d: b"both-ttys" in d, timeout=15)
    assert b"/dev/pts/" in out
    assert term.wait() == 4
    # without a terminal, -t is refused before runc is asked
    done = ops.run("exec", "-t", "box", "--", "/bin/true")
    assert done.returncode == 2
    assert done.stderr == b"error: -t needs a terminal, and stdin is not one\n"


def test_paused_and_missing_containers_are_clear_errors(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    done = ops.run("exec", "ghost", "--", "/bin/true")
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr == b'error: container "ghost": container does not exist\n'

    subprocess.run(["runc", f"--root={ops.rt.runc_root}", "pause", "box.1"], check=True)
    paused = ops.run("exec", "box", "--", "/bin/true")
    subprocess.run(["runc", f"--root={ops.rt.runc_root}", "resume", "box.1"], check=True)
    assert ops.run("exec", "box", "--", "/bin/true").returncode == 0
    assert (paused.returncode, paused.stdout) == (1, b"")
    # the container as the operator named it (as ``logs`` and ``stats`` do), not its
    # instance id
    assert paused.stderr == b'error: container "box": cannot exec in a paused container\n'


def test_usage_errors(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    for args, message in [
        (["box"], "error: exec needs a command"),
        (["box", "--"], "error: exec needs a command"),
        (["box", "--tty", "/bin/true"], "error: end the options with --"),
    ]:
        code, out, err = ops.cli("exec", *args)
        assert (code, out) == (2, ""), args
        assert err.startswith(message), err
    with pytest.raises(SystemExit) as exc:  # argparse's own error: usage, exit 2
        ops.cli("exec", "box", "--bogus", "--", "/bin/true")
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in ops.capsys.readouterr().err


def test_exec_runs_in_the_newest_instance(ops: Ops) -> None:
    ops.up("box", "/bin/sh", "-c", "echo one > /gen; exec sleep 1000")
    ops.up("box", "/bin/sh", "-c", "echo two > /gen; echo ready; exec sleep 1000",
           generation=2, previous="box.1")
    ops.wait_log("box", b"ready")  # box.2's log
    done = ops.run("exec", "box", "--", "/bin/cat", "/gen")
    assert (done.returncode, done.stdout) == (0, b"two\n")
