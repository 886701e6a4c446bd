"""Running runc and friends: every external call has a deadline, and a failure becomes ours.

The one helper the runc adapter uses for subprocesses (anyio's ``run_process`` under a
``fail_after`` scope: on timeout or cancellation anyio kills and reaps the child). runc's
logfmt stderr (``level=error msg="..."``) is reduced to runc's own words.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence

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
) -> subprocess.CompletedProcess[bytes]:
    try:
        with anyio.fail_after(timeout):
            result = await anyio.run_process(list(argv), input=input, check=False,
                                             env=child_env())
    except TimeoutError as exc:
        raise errors.RuntimeTimeout(
            f"{' '.join(_short(argv))} did not finish within {timeout:g}s and was killed",
            container=container,
        ) from exc
    except OSError as exc:
        raise errors.RuncError(
            f"cannot run {argv[0]}: {exc.strerror or exc}", container=container
        ) from exc
    if check and result.returncode != 0:
        raise error_from(result, container=container)
    return result


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
