"""Running runc and friends: every external call has a deadline, and a failure becomes ours.

The one helper the runc adapter uses for subprocesses: ``run`` starts a child with its
output in anonymous in-memory files (memfd) and awaits its exit on a pidfd under a
``fail_after`` scope (on timeout or cancellation it kills and reaps the child). runc's
logfmt stderr (``level=error msg="..."``) is reduced to runc's own words.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import anyio

from reconciler import errors

_MSG_RE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_NOT_FOUND = ("does not exist", "container not found", "not exist")
# systemd's variables are the daemon's, never runc's: with NOTIFY_SOCKET set, runc would try
# to relay the container's own sd_notify and fail to create it.
_SERVICE_ONLY = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                           "LISTEN_PID", "LISTEN_FDNAMES"})


def child_env() -> dict[str, str]:
    """The environment for runc, conmon and helpers: ours, less systemd's service variables."""
    return {k: v for k, v in os.environ.items() if k not in _SERVICE_ONLY}


def runc_message(stderr: bytes) -> str:
    """runc's error in plain words: the ``msg`` fields of its error lines, else the text."""
    text = stderr.decode(errors="replace").strip()
    found = [m.group(1).replace('\\"', '"').replace("\\\\", "\\") for m in _MSG_RE.finditer(text)]
    if found:
        # runc repeats the cause in a final summary line; keep the most specific (last) one.
        return found[-1]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "failed with no message"


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    container: str | None = None,
    input: bytes | None = None,  # noqa: A002 - mirrors subprocess
    check: bool = True,
    pass_fds: Sequence[int] = (),
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to its end within ``timeout`` (killed and reaped past it, or when
    cancelled); a non-zero exit raises with runc's own words unless ``check`` is off.
    ``env`` replaces the environment (default: ``child_env()``)."""
    try:
        spawned = Spawned.start(argv, input=input, pass_fds=pass_fds, cwd=cwd, env=env)
    except OSError as exc:
        raise errors.RuncError(
            f"cannot run {argv[0]}: {exc.strerror or exc}", container=container
        ) from exc
    result = await finish(spawned, timeout=timeout, container=container)
    if check and result.returncode != 0:
        raise error_from(result, container=container)
    return result


_REAP_WAIT = 5.0  # seconds to await a killed child's exit before leaving it to be reaped


def _buffer(name: str) -> IO[bytes]:
    """An anonymous in-memory file (memfd) for a child's output: no disk, so a full or
    read-only /tmp cannot take runc's answer or its error away."""
    return open(os.memfd_create(name, os.MFD_CLOEXEC), "w+b")  # noqa: SIM115 - closed by close()


@dataclass(frozen=True)
class Spawned:
    """A child process, its output in anonymous in-memory files (it never blocks on a full
    pipe, and nothing reads while it runs), its exit awaited on a pidfd by ``finish``.

    Lighter than a subprocess transport of the event loop: no pipes to watch and no
    waiter thread per child, about half the CPU per spawn (0.42 vs 0.97 ms measured for
    ``runc --version``), which counts when a hundred containers start at once. It is also
    what lets the daemon start its first ``runc list`` before its own imports and collect
    it later (``cli.daemon``)."""

    process: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]
    argv: tuple[str, ...]
    input: bytes | None = None

    @classmethod
    def start(cls, argv: Sequence[str], *, input: bytes | None = None,  # noqa: A002
              pass_fds: Sequence[int] = (),
              cwd: str | os.PathLike[str] | None = None,
              env: Mapping[str, str] | None = None) -> Spawned:
        out, err = _buffer("stdout"), _buffer("stderr")
        try:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=out, stderr=err, env=child_env() if env is None else dict(env),
                pass_fds=tuple(pass_fds), cwd=cwd)
        except BaseException:
            out.close()
            err.close()
            raise
        return cls(process, out, err, tuple(argv), input)

    def close(self) -> None:
        for f in (self.out, self.err, self.process.stdin):
            if f is not None:
                f.close()


async def finish(spawned: Spawned, *, timeout: float,
                 container: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """The result of a ``Spawned`` process: its input written, its exit awaited on a pidfd
    (no polling, no thread); killed and reaped if that takes longer than ``timeout`` or is
    cancelled."""
    process = spawned.process
    try:
        with anyio.fail_after(timeout):
            if process.stdin is not None:
                await _feed(process.stdin, spawned.input or b"")
            await _exit_of(process)
        returncode = process.wait()
        spawned.out.seek(0)
        spawned.err.seek(0)
        return subprocess.CompletedProcess(list(spawned.argv), returncode,
                                           spawned.out.read(), spawned.err.read())
    except BaseException as exc:
        await _killed(process)
        if isinstance(exc, TimeoutError):
            raise errors.RuntimeTimeout(
                f"{' '.join(_short(spawned.argv))} did not finish within {timeout:g}s and "
                "was killed", container=container) from exc
        raise
    finally:
        spawned.close()


async def _killed(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, then its exit awaited on a pidfd (shielded, at most ``_REAP_WAIT``): never
    a blocking wait on the loop, which a child stuck in the kernel (a hung FUSE or NFS
    mount) would turn into a frozen daemon. One still there is reaped later by the
    subprocess module."""
    if process.poll() is not None:
        return
    process.kill()
    with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_WAIT):
        await _exit_of(process)
    process.poll()


async def _exit_of(process: subprocess.Popen[bytes]) -> None:
    """Until ``process`` has exited (not reaped)."""
    if process.poll() is None:
        await wait_pid(process.pid)


async def wait_pid(pid: int) -> None:
    """Until process ``pid`` has exited (at once if it is gone): its pidfd readable, no
    polling, no thread."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


async def _feed(stdin: IO[bytes], data: bytes) -> None:
    """All of ``data`` into the child's stdin without blocking the loop, then EOF."""
    fd = stdin.fileno()
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            await anyio.wait_writable(fd)
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return  # it stopped reading: its exit status says why
    finally:
        stdin.close()


def discard(spawned: Spawned) -> None:
    """A ``Spawned`` process whose answer is not wanted: killed, reaped, closed."""
    if spawned.process.poll() is None:
        spawned.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            spawned.process.wait(timeout=_REAP_WAIT)
    spawned.close()


def error_from(
    result: subprocess.CompletedProcess[bytes], *, container: str | None
) -> errors.RuncError:
    message = runc_message(result.stderr)
    cls = errors.ContainerNotFound if any(s in message for s in _NOT_FOUND) else errors.RuncError
    return cls(
        message,
        container=container,
        command=tuple(str(a) for a in result.args),
        returncode=result.returncode,
    )


def _short(argv: Sequence[str]) -> list[str]:
    """The command without global flags, for messages: ``runc create web``."""
    return [a for a in argv if not a.startswith("--root")][:4]
