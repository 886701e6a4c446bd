"""The CLI's manners, as a kubectl user expects them: one error style, a quiet broken
pipe, honest exit codes for ``diff``, and no empty answer for a state dir no daemon used.

Each runs the real ``reconciler`` command as a subprocess; no container is started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reconciler.daemon.status import Store

COMMAND = [sys.executable, "-m", "reconciler"]


def run(*args: str, shell_tail: str = "") -> subprocess.CompletedProcess[str]:
    if shell_tail:
        line = " ".join(f"'{a}'" for a in [*COMMAND, *args]) + f" | {shell_tail}"
        return subprocess.run(["sh", "-c", line], capture_output=True, text=True,
                              timeout=30, check=False)
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=30,
                          check=False)


def test_a_state_dir_no_daemon_used_is_an_error(tmp_path: Path) -> None:
    for command in (["get"], ["describe", "web"], ["events"]):
        done = run(*command, "--state-dir", str(tmp_path / "nowhere"),
                   "--runc-root", str(tmp_path / "runc"))
        assert done.returncode == 1, command
        assert done.stderr.startswith("error: no reconciler daemon has used the state dir")
        assert done.stdout == ""


def test_errors_have_one_style_without_class_names(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    store.event(None, "Started", "hello")
    (tmp_path / "state" / "status.json").write_text(
        json.dumps({"daemon": {"passes": 1}, "containers": {}}))
    done = run("describe", "nope", "--state-dir", str(tmp_path / "state"),
               "--runc-root", str(tmp_path / "runc"))
    assert (done.returncode, done.stderr) == (1, 'error: container or pod "nope" not found\n')
    usage = run("validate", str(tmp_path / "missing.yaml"))
    assert usage.returncode == 2 and usage.stderr.startswith("error: ")


def test_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    for i in range(3000):
        store.event("web", "Started", f"event {i} " + "x" * 60, now=1000.0 + i)
    (tmp_path / "state" / "status.json").write_text(
        json.dumps({"daemon": {"passes": 1}, "containers": {}}))
    done = run("events", "--state-dir", str(tmp_path / "state"), "--runc-root",
               str(tmp_path / "runc"), shell_tail="head -1")
    assert done.stdout.count("\n") == 1
    assert done.stderr == ""  # no BrokenPipeError traceback


def test_diff_exit_codes(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    base = ["diff", "--state-dir", str(tmp_path / "state"), "--runc-root",
            str(tmp_path / "runc"), "--manifests", str(manifests)]
    assert run(*base).returncode == 0  # nothing desired, nothing there: converged
    (manifests / "web.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
        f"spec: {{rootfs: {tmp_path}, command: [/bin/true]}}\n")
    assert run(*base).returncode == 1  # web to create
    (manifests / "web.yaml").write_text("spec: [\n")
    broken = run(*base)
    assert broken.returncode == 2 and "web.yaml" in broken.stderr
    missing = run(*base[:-1], str(tmp_path / "no-such-dir"))
    assert missing.returncode == 2 and "unavailable" in missing.stderr


def _status(state: Path, *, pid: int | None, written: float, containers: dict[str, Any],
            sources: dict[str, Any] | None = None) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "status.json").write_text(json.dumps({
        "daemon": {"passes": 3, "pid": pid, "writtenAt": written, "resyncSeconds": 30,
                   "sources": sources or {}},
        "containers": containers}))


def _record(name: str) -> dict[str, Any]:
    return {"name": name, "instance": f"{name}.1", "phase": "Running", "pid": 4242,
            "desiredState": "Running", "restarts": 0, "source": "/m/x.yaml", "message": "",
            "created": 1000.0, "since": 1000.0, "history": {}, "actual": None, "pod": None,
            "specHash": "v1-x", "desiredSpecHash": "v1-x", "lastExitCode": None,
            "lastExit": None}


def test_a_dead_daemons_status_is_not_trusted(tmp_path: Path) -> None:
    """status.json says Running, but its daemon is gone: get says so and asks runc."""
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that has exited
    _status(tmp_path / "state", pid=int(gone), written=time.time(),
            containers={"web": _record("web")})
    done = run("get", "-o", "json", "--state-dir", str(tmp_path / "state"), "--runc-root",
               str(tmp_path / "runc"))
    assert done.returncode == 0
    assert f"warning: the daemon (pid {gone}) is not running" in done.stderr
    (web,) = json.loads(done.stdout)
    assert (web["phase"], web["pid"]) == ("Gone", None)  # runc has no web.1 here


def test_stale_status_and_an_unavailable_source_are_said(tmp_path: Path) -> None:
    _status(tmp_path / "state", pid=None, written=time.time() - 3600,  # no pid recorded
            containers={"web": _record("web")},
            sources={"directory": {"available": False, "reason": "no such directory /m"}})
    done = run("get", "--state-dir", str(tmp_path / "state"), "--runc-root",
               str(tmp_path / "runc"))
    assert "warning: manifests source directory is unavailable (no such directory /m)" \
        in done.stderr
    assert "s old (the daemon writes it every 30s)" in done.stderr


def test_a_new_object_does_not_inherit_a_deleted_ones_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    for i, reason in enumerate(["Created", "Exited", "Restarted", "Deleted", "Created"]):
        store.event("web", reason, f"#{i}", now=1000.0 + i)
    store.event("db", "Created", "db", now=1010.0)
    (tmp_path / "state" / "status.json").write_text(
        json.dumps({"daemon": {"passes": 1}, "containers": {}}))
    base = ["--state-dir", str(tmp_path / "state"), "--runc-root", str(tmp_path / "runc")]

    def reasons(*args: str) -> list[str]:
        out = run("events", *args, "-o", "json", *base).stdout
        return [json.loads(line)["reason"] for line in out.splitlines()]

    assert reasons("web") == ["Created"]  # this life only
    assert reasons("web", "--all") == ["Created", "Exited", "Restarted", "Deleted", "Created"]
    assert len(reasons()) == 6  # every event, without a NAME
    store.event("web", "Deleted", "gone again", now=1020.0)
    assert reasons("web") == ["Created", "Deleted"]  # a deleted object: its last life


def test_get_watch_prints_a_row_again_when_it_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _status(state, pid=None, written=time.time(), containers={"web": _record("web")})
    with subprocess.Popen(
            [*COMMAND, "get", "-w", "--state-dir", str(state), "--runc-root",
             str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True) as watcher:
        try:
            _watched(watcher, state)
        finally:
            watcher.kill()
            watcher.wait(5)


def _watched(watcher: subprocess.Popen[str], state: Path) -> None:
    """The header and the row, nothing for the same state written again, a row when the
    state changes."""
    assert watcher.stdout is not None
    assert _readline(watcher, timeout=5).split()[:3] == ["NAME", "READY", "STATUS"]
    assert _readline(watcher, timeout=5).split()[:3] == ["web", "1/1", "Running"]
    time.sleep(0.3)
    _status(state, pid=None, written=time.time(), containers={"web": _record("web")})
    time.sleep(0.3)  # the same state written again: no new row
    crashed = {**_record("web"), "phase": "BackOff", "restarts": 1}
    _status(state, pid=None, written=time.time(), containers={"web": crashed})
    assert _readline(watcher, timeout=5).split()[:3] == ["web", "0/1", "BackOff"]


def _readline(proc: subprocess.Popen[str], *, timeout: float) -> str:
    """The next line of ``proc``'s stdout within ``timeout`` (a thread reads; a blocked
    read never hangs the suite)."""
    import queue
    import threading

    lines: queue.Queue[str] = getattr(proc, "_lines", None) or queue.Queue()
    if not hasattr(proc, "_lines"):
        proc._lines = lines  # type: ignore[attr-defined]
        stdout = proc.stdout
        assert stdout is not None
        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no row within the timeout") from None


def test_an_unknown_option_is_its_subcommands_usage_error() -> None:
    """argparse hands a subparser's leftovers to the top level, whose usage names none of
    the command's options: the error is the subcommand's, as for any other bad option."""
    for command in (["get"], ["image", "ls"], ["config", "view"]):
        done = run(*command, "--bogus")
        prog = " ".join(["reconciler", *command])
        assert done.returncode == 2, command
        assert done.stderr.startswith(f"usage: {prog} [-h]"), done.stderr
        assert done.stderr.endswith(f"{prog}: error: unrecognized arguments: --bogus\n")
    top = run("--bogus", "get")  # before the command: the top level's own
    assert top.returncode == 2
    assert top.stderr.startswith("usage: reconciler [-h] [--version] COMMAND")
    assert top.stderr.endswith("reconciler: error: unrecognized arguments: --bogus\n")


def test_get_watch_with_a_selector_prints_a_changed_row(tmp_path: Path) -> None:
    """``get -w -l app=web``: a ``kind: Container`` object's labels are in its depot, not
    in status.json; the watch reads them again, so the changed row is printed (with them,
    under --show-labels) and another object's change is not."""
    state = tmp_path / "state"
    for name in ("web", "db"):
        applied = state / "containers" / f"{name}.1" / "applied.json"
        applied.parent.mkdir(parents=True)
        applied.write_text(json.dumps({"kind": "Container", "metadata": {
            "name": name, "labels": {"app": name}}}))
    both = {"web": _record("web"), "db": _record("db")}
    _status(state, pid=None, written=time.time(), containers=both)
    with subprocess.Popen(
            [*COMMAND, "get", "-w", "-l", "app=web", "--show-labels", "--state-dir",
             str(state), "--runc-root", str(tmp_path / "r")], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True) as watcher:
        try:
            assert _readline(watcher, timeout=5).split()[0] == "NAME"
            assert _readline(watcher, timeout=5).split()[:3] == ["web", "1/1", "Running"]
            time.sleep(0.3)
            db_crashed = {**_record("db"), "phase": "BackOff", "restarts": 1}
            _status(state, pid=None, written=time.time(), containers={**both, "db": db_crashed})
            time.sleep(0.3)  # db is not selected: no row
            web_crashed = {**_record("web"), "phase": "BackOff", "restarts": 1}
            _status(state, pid=None, written=time.time(),
                    containers={"web": web_crashed, "db": db_crashed})
            row = _readline(watcher, timeout=5).split()
            assert (row[:3], row[-1]) == (["web", "0/1", "BackOff"], "app=web")
        finally:
            watcher.kill()
            watcher.wait(5)
