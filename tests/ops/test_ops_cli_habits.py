"""The CLI's manners, as a kubectl user expects them: one error style, a quiet broken
pipe, honest exit codes for ``diff``, and no empty answer for a state dir no daemon used.

Each runs the real ``reconciler`` command as a subprocess; no container is started.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
