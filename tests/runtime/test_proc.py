"""``reconciler.proc``: every external call's spawn, deadline, input, output and clean-up.

Real child processes (coreutils and the shell), no runc: what the runtime's calls rely on
when runc misbehaves (hangs, floods its output, dies, is not there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from reconciler import errors, proc

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def test_output_status_and_runc_words() -> None:
    done = await proc.run(["sh", "-c", "echo out; echo 'level=error msg=\"it broke\"' >&2; "
                                       "exit 3"], timeout=5, check=False)
    assert (done.returncode, done.stdout, done.args[0]) == (3, b"out\n", "sh")
    with pytest.raises(errors.RuncError) as caught:
        await proc.run(["sh", "-c", "echo 'level=error msg=\"it broke\"' >&2; exit 3"],
                       timeout=5, container="web")
    assert (caught.value.container, caught.value.detail) == ("web", "it broke")


async def test_output_far_beyond_a_pipe_buffer_and_input_too() -> None:
    """Output goes to a file (a full pipe would block the child), input is fed without
    blocking the loop: 1 MiB each way."""
    data = os.urandom(1 << 20)
    done = await proc.run(["cat"], timeout=10, input=data)
    assert done.stdout == data
    big = await proc.run(["head", "-c", str(4 << 20), "/dev/zero"], timeout=10)
    assert len(big.stdout) == 4 << 20


async def test_a_child_past_its_deadline_is_killed_and_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(errors.RuntimeTimeout, match="did not finish within 0.3s"):
        await proc.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert not alive(int(pidfile.read_text()))


async def test_a_cancelled_call_kills_its_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with anyio.move_on_after(0.3):
        await proc.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=30)
    assert not alive(int(pidfile.read_text()))


async def test_a_missing_program_is_an_error_in_words() -> None:
    with pytest.raises(errors.RuncError, match="cannot run /nonexistent/runc"):
        await proc.run(["/nonexistent/runc", "list"], timeout=5)


async def test_a_process_started_early_is_collected_or_discarded(tmp_path: Path) -> None:
    early = proc.Spawned.start(["sh", "-c", "sleep 0.1; echo listed"])
    done = await proc.finish(early, timeout=5)
    assert (done.returncode, done.stdout) == (0, b"listed\n")
    assert early.out.closed and early.err.closed
    pidfile = tmp_path / "pid"
    unwanted = proc.Spawned.start(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"])
    for _ in range(500):  # bounded: 5 s
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await anyio.sleep(0.01)  # noqa: ASYNC110 - a file written by a child: no event
    proc.discard(unwanted)
    assert unwanted.process.returncode is not None
    assert not alive(int(pidfile.read_text()))


async def test_env_replaces_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    done = await proc.run(["/usr/bin/env"], timeout=5, env={"ONLY": "this"})
    assert done.stdout == b"ONLY=this\n"
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("RECONCILER_PROC_TEST", "kept")
    inherited = (await proc.run(["/usr/bin/env"], timeout=5)).stdout.splitlines()
    assert b"RECONCILER_PROC_TEST=kept" in inherited
    assert not [v for v in inherited if v.startswith(b"NOTIFY_SOCKET=")]  # systemd's own
