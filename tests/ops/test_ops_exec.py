"""``reconciler exec`` on real containers: stdio passed through, the exit code returned,
and with ``-it`` a terminal as a user's: TERM, window size and its changes, no stray bytes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.runtime import runc

from .conftest import Ops, Terminal

pytestmark = pytest.mark.runc

SLEEP = ("/bin/sh", "-c", "sleep 1000")
_SIZE = re.compile(rb"S=(\d+) (\d+)=")  # what `echo "S=$(stty size)="` prints


def test_exit_code_stdin_stdout_and_stderr(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    assert ops.run("exec", "box", "--", "/bin/sh", "-c", "exit 7").returncode == 7
    done = ops.run("exec", "-i", "box", "--", "/bin/sh", "-c", "cat; echo to-err >&2; exit 0",
                   input=b"from our stdin\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"from our stdin\n", b"to-err\n")
    # without -i the command reads nothing (as kubectl's), and does not wait for input
    done = ops.run("exec", "box", "--", "/bin/cat", input=b"not passed\n")
    assert (done.returncode, done.stdout) == (0, b"")
    done = ops.run("exec", "--stdin", "box", "--", "/bin/cat", input=b"passed\n")
    assert done.stdout == b"passed\n"
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
    assert done.stderr == b'error: container "ghost" not found\n'

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
        (["-e", "=x", "box", "--", "/bin/true"], "error: -e needs NAME=VALUE, not '=x'"),
        (["-w", "tmp", "box", "--", "/bin/true"], "error: -w needs an absolute path"),
        (["-u", "nobody", "box", "--", "/bin/true"], "error: the user must be UID[:GID]"),
        (["-u", "1:x", "box", "--", "/bin/true"], "error: the user must be UID[:GID]"),
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


# -- options and a real terminal ---------------------------------------------------------------


def test_env_user_and_workdir(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    ops.up("box", *SLEEP)
    monkeypatch.setenv("OURS", "from-the-caller")  # the subprocess inherits it
    monkeypatch.delenv("NOT_OURS", raising=False)
    done = ops.run("exec", "-e", "A=b", "--env", "B=c=d", "-e", "OURS", "-e", "NOT_OURS",
                   "-u", "1000:1000", "-w", "/tmp", "box", "--", "/bin/sh", "-c",
                   "env; id -u; id -g; pwd")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert {"A=b", "B=c=d", "OURS=from-the-caller"} <= set(lines)
    assert not any(line.startswith(("NOT_OURS", "TERM=")) for line in lines)  # no -t: no TERM
    assert lines[-3:] == ["1000", "1000", "/tmp"]
    # the container's own user and directory otherwise; a user alone, its group 0
    plain = ops.run("exec", "box", "--", "/bin/sh", "-c", "id -u; pwd")
    assert plain.stdout == b"0\n/\n"
    alone = ops.run("exec", "--user", "1000", "--workdir", "/tmp", "box", "--", "id", "-g")
    assert alone.stdout == b"0\n"
    # options after NAME, ended by --, the same
    after = ops.raw("exec", "box", *ops.flags, "-i", "-e", "A=z", "-w", "/tmp", "--",
                    "/bin/sh", "-c", "cat; echo $A; pwd", input=b"in\n")
    assert (after.returncode, after.stdout) == (0, b"in\nz\n/tmp\n"), after.stderr
    # runc's refusal reaches the user, as an exit code
    missing = ops.run("exec", "-w", "/nowhere", "box", "--", "/bin/true")
    assert missing.returncode != 0 and b"/nowhere" in missing.stderr


def test_it_gives_a_shell_our_term_and_window_size_and_follows_resizes(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    term = _on_terminal(ops, "exec", "-it", "box", "--", "/bin/sh", rows=37, cols=101,
                        term="vt220")
    try:
        out = Ops.read_until(term.fd, lambda d: b"# " in d, timeout=15)  # the prompt
        out += _say(term.fd, b'echo "<$TERM>"', until=b"<vt220>")
        out += _say(term.fd, b'echo "S=$(stty size)="', until=b"S=37 101=")
        # the window changes, as a terminal emulator changes it: the kernel sends SIGWINCH
        # to the terminal's foreground process group, runc among it resizes the pty
        fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 50, 0, 0))
        sizes: list[bytes] = []
        deadline = time.monotonic() + 10
        while b"20 50" not in sizes:  # runc resizes asynchronously: ask again until it has
            assert time.monotonic() < deadline, f"never resized: {sizes}, {out!r}"
            got = _say(term.fd, b'echo "S=$(stty size)="', until=_SIZE.search)
            out += got
            sizes.append(b" ".join(_SIZE.findall(got)[-1]))
            time.sleep(0.05)
        os.write(term.fd, b"exit 3\n")
        out += ops.read_until(term.fd, lambda _: False, timeout=10)  # to the end: EOF/EIO
        assert term.wait() == 3  # the command's exit code is the CLI's
    finally:
        _end(term)
    assert b"\x00" not in out and b"^@" not in out, out


def test_t_without_i_passes_no_input_so_no_stray_nul(ops: Ops) -> None:
    """The stray NUL was the terminal's input: an EOF (^D) pending while the terminal is
    still canonical is kept by the kernel as a NUL, runc's switch to raw mode keeps it, and
    the container's pty got it and echoed ``^@``. Without -i runc now reads nothing."""
    ops.up("box", *SLEEP)
    term = _on_terminal(ops, "exec", "-t", "box", "--", "/bin/sh", "-c",
                        "echo ready; sleep 1; echo done; exit 5", rows=24, cols=80,
                        term="")
    try:
        os.write(term.fd, b"\x04")  # pending before runc starts, as `script </dev/null` does
        out = ops.read_until(term.fd, lambda d: b"ready" in d, timeout=15)
        _raw(term.fd)  # so the terminal itself no longer echoes
        os.write(term.fd, b"typed\n")  # after: a terminal in raw mode, not echoed by it
        out += ops.read_until(term.fd, lambda _: False, timeout=10)
        assert term.wait() == 5
    finally:
        _end(term)
    # nothing typed reached the command (CRs aside: runc clears the pty's ONLCR racily)
    assert out.replace(b"\r", b"") == b"ready\ndone\n", out


def test_t_sizes_the_terminal_before_a_one_shot_command_starts(ops: Ops) -> None:
    """runc 1.1.5 sizes the pty from ours only once the command runs, so a command as short
    as ``stty size`` could see 0 0 (busybox says ``stty: standard input``); the size now
    goes in the process.json (``consoleSize``) and runc's init sets it before the exec."""
    ops.up("box", *SLEEP)
    sizes = [(37, 101), (20, 50), (50, 132), (24, 80), (61, 203), (33, 99), (25, 81), (40, 120)]
    seen = []
    for i, (rows, cols) in enumerate(sizes):
        flags = ["-it"] if i % 2 else ["-t"]
        term = _on_terminal(ops, "exec", *flags, "box", "--", "stty", "size", rows=rows,
                            cols=cols, term="xterm")
        try:
            out = ops.read_until(term.fd, lambda _: False, timeout=10)
            assert term.wait() == 0, out
        finally:
            _end(term)
        seen.append(out.strip())
    assert seen == [f"{rows} {cols}".encode() for rows, cols in sizes]


def test_t_passes_xterm_when_we_have_no_term(ops: Ops) -> None:
    ops.up("box", *SLEEP)
    term = _on_terminal(ops, "exec", "-t", "-e", "X=y", "box", "--", "/bin/sh", "-c",
                        'echo "<$TERM:$X>"', rows=24, cols=80, term=None)
    try:
        out = ops.read_until(term.fd, lambda _: False, timeout=10)
        assert term.wait() == 0
    finally:
        _end(term)
    assert out.rstrip(b"\r\n") == b"<xterm:y>", out  # runc's own CR/LF start-up race


def test_the_exec_runs_as_the_container_s_own_process(ops: Ops) -> None:
    """runc is given a process.json built from the container's config.json: the command
    gets the init's capabilities, no-new-privileges, seccomp filter and rlimits, as
    ``runc exec`` with flags gave it."""
    init = ops.up("box", *SLEEP, capabilities={"drop": ["NET_RAW"]})
    fields = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")

    def status(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln.startswith(tuple(f + ":" for f in fields))]

    own = Path(f"/proc/{init}/status").read_text()
    for flags in ([], ["-u", "0"]):
        done = ops.run("exec", *flags, "box", "--", "/bin/cat", "/proc/self/status",
                       "/proc/self/limits")
        assert done.returncode == 0, done.stderr
        out = done.stdout.decode()
        assert status(out) == status(own) and len(status(own)) == len(fields), out
        limits = out[out.index("Limit "):]
        assert limits == Path(f"/proc/{init}/limits").read_text()


@pytest.mark.parametrize(("given", "want"), [
    # the container's own, with the command's args, env after its own, no terminal
    ({}, {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": False}),
    # a terminal of our size from the start; a size the base had is not ours
    ({"tty": True, "size": (37, 101)},
     {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": True,
      "consoleSize": {"height": 37, "width": 101}}),
    ({"tty": True, "size": (0, 0)},  # a terminal with no size yet: runc's resize alone
     {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": True}),
    ({"size": (37, 101)},  # no terminal, no size
     {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": False}),
    # a user alone keeps the container's group and supplementary groups (runc's --user)
    ({"user": "1000", "cwd": "/tmp"},
     {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": False, "cwd": "/tmp",
      "user": {"uid": 1000, "gid": 5, "additionalGids": [7]}}),
    ({"user": "1000:1001"},
     {"args": ["ls", "-l"], "env": ["PATH=/bin", "A=b"], "terminal": False,
      "user": {"uid": 1000, "gid": 1001, "additionalGids": [7]}}),
])
def test_exec_process_is_the_container_s_with_our_changes(given: dict[str, Any],
                                                         want: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "args": ["/init"], "env": ["PATH=/bin"], "cwd": "/", "terminal": True,
        "consoleSize": {"height": 1, "width": 1},
        "user": {"uid": 0, "gid": 5, "additionalGids": [7]},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True, "apparmorProfile": "reconciler-default",
        "selinuxLabel": "system_u:system_r:container_t:s0", "oomScoreAdj": 100}
    kept = json.loads(json.dumps(base))
    got = runc.exec_process(base, ["ls", "-l"], tty=given.pop("tty", False), env=["A=b"],
                            **given)
    assert base == kept  # not changed in place
    expected = {k: v for k, v in base.items() if k != "consoleSize"} | want
    assert got == expected


@pytest.mark.parametrize("user", ["nobody", "1:x", ":1", "1:", "", "-1", "4294967296"])
def test_exec_process_takes_numeric_users_only(user: str) -> None:
    with pytest.raises(errors.UsageError, match=r"UID\[:GID\] in numbers"):
        runc.exec_process({}, ["true"], tty=False, user=user)


def _on_terminal(ops: Ops, command: str, *args: str, rows: int, cols: int,
                 term: str | None) -> Terminal:
    """``reconciler COMMAND ...`` on a new pseudo-terminal of ``rows`` x ``cols``, with
    ``TERM=term`` (none when None)."""
    argv = [sys.executable, "-m", "reconciler", command, *ops.flags, *args]
    env = {k: v for k, v in os.environ.items() if k != "TERM"}
    if term is not None:
        env["TERM"] = term
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its stdio and controlling terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return Terminal(pid=pid, fd=fd)


def _say(fd: int, line: bytes, *, until: bytes | Callable[[bytes], object],
         timeout: float = 15) -> bytes:
    """Type ``line`` and read the terminal until ``until`` shows in what comes back (a
    command's output, not its echo: the tests' commands print what they do not contain)."""
    os.write(fd, line + b"\n")
    done = (lambda d: until in d) if isinstance(until, bytes) else until
    return Ops.read_until(fd, lambda d: bool(done(d)), timeout=timeout)


def _raw(fd: int, timeout: float = 15) -> None:
    """Until runc has put the terminal in raw mode (a pty's two ends share one termios)."""
    deadline = time.monotonic() + timeout
    while termios.tcgetattr(fd)[3] & termios.ICANON:
        assert time.monotonic() < deadline, "runc never put the terminal in raw mode"
        time.sleep(0.02)


def _end(term: Terminal) -> None:
    """Kill the command if a failed test left it running, and close the terminal."""
    try:
        pid, _ = os.waitpid(term.pid, os.WNOHANG)
    except ChildProcessError:  # Terminal.wait() reaped it and closed the terminal
        return
    if pid == 0:
        os.kill(term.pid, 9)
        os.waitpid(term.pid, 0)
    os.close(term.fd)
