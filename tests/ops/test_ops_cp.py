"""reconciler cp with real runc: a file and a directory into and out of a running
container as a tar stream, and a read-only root refused with the mounts that can be
written."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.cli import cp

from .conftest import Ops

pytestmark = pytest.mark.runc

SLEEP = ("/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done")


def test_a_file_and_a_directory_in_and_out(ops: Ops, tmp_path: Path) -> None:
    ops.up("box", *SLEEP, mounts=[{"type": "tmpfs", "destination": "/data"}])
    local = tmp_path / "note.txt"
    local.write_text("hello from the host\n")
    assert ops.cli("cp", str(local), "box:/data/") == (0, "", "")
    assert ops.run("exec", "box", "--", "cat", "/data/note.txt").stdout \
        == b"hello from the host\n"
    assert ops.cli("cp", str(local), "box:/data/renamed.txt")[0] == 0
    back = tmp_path / "back.txt"
    assert ops.cli("cp", "box:/data/renamed.txt", str(back)) == (0, "", "")
    assert back.read_text() == "hello from the host\n"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "deep.txt").write_text("deep\n")
    assert ops.cli("cp", str(tree), "box:/data/")[0] == 0
    out = tmp_path / "out"
    out.mkdir()
    assert ops.cli("cp", "box:/data/tree", str(out))[0] == 0
    assert (out / "tree" / "sub" / "deep.txt").read_text() == "deep\n"
    assert not list(out.glob(".reconciler-cp-*"))  # its scratch dir is gone


def test_a_read_only_root_names_the_writable_mounts(ops: Ops, tmp_path: Path) -> None:
    ops.up("box", *SLEEP, readOnlyRootFilesystem=True,
           mounts=[{"type": "tmpfs", "destination": "/data"}])
    local = tmp_path / "f"
    local.write_text("x")
    code, _, err = ops.cli("cp", str(local), "box:/etc/f")
    assert code == 1
    assert err.startswith("error: ") and "root is read-only" in err and "/data" in err
    missing = ops.cli("cp", "box:/nowhere", str(tmp_path / "g"))
    assert missing[0] == 1 and "cannot copy /nowhere out" in missing[2]
    assert ops.cli("cp", str(local), str(tmp_path / "h"))[0] == 2  # no NAME:PATH side


def test_a_missing_container_in_the_shared_words(ops: Ops, tmp_path: Path) -> None:
    """Not runc's ``time="..." level=error msg="exec failed: container does not exist"``:
    the wording exec, logs, stats, inspect and top use for the same fact."""
    local = tmp_path / "f"
    local.write_text("x")
    for args in (["ghost:/x", str(tmp_path / "y")], [str(local), "ghost:/x"]):
        assert ops.cli("cp", *args) == (1, "", 'error: container "ghost" not found\n'), args
        assert ops.cli("exec", "ghost", "--", "true")[2] == 'error: container "ghost" not found\n'
    assert not (tmp_path / "y").exists()


def test_a_stopped_or_paused_container_is_refused_in_words(ops: Ops, tmp_path: Path) -> None:
    ops.up("done", "/bin/sh", "-c", "echo hi > /hi")
    deadline = time.monotonic() + 10
    while _status(ops, "done.1") != "stopped":
        assert time.monotonic() < deadline, "the command never exited"
        time.sleep(0.02)
    local = tmp_path / "f"
    local.write_text("x")
    assert ops.cli("cp", "done:/hi", str(tmp_path / "hi")) == (
        1, "", 'error: container "done": cannot copy from a stopped container\n')
    assert ops.cli("cp", str(local), "done:/tmp/") == (
        1, "", 'error: container "done": cannot copy into a stopped container\n')
    assert not (tmp_path / "hi").exists()

    ops.up("box", *SLEEP)
    subprocess.run(["runc", f"--root={ops.rt.runc_root}", "pause", "box.1"], check=True)
    try:
        assert ops.cli("cp", "box:/etc/passwd", str(tmp_path / "h")) == (
            1, "", 'error: container "box": cannot copy from a paused container\n')
    finally:
        subprocess.run(["runc", f"--root={ops.rt.runc_root}", "resume", "box.1"], check=True)
    assert ops.cli("cp", "box:/etc/passwd", str(tmp_path / "h"))[0] == 0  # running again


def _status(ops: Ops, instance: str) -> str:
    state = subprocess.run(["runc", f"--root={ops.rt.runc_root}", "state", instance],
                           capture_output=True, text=True, check=True)
    return str(json.loads(state.stdout)["status"])


def test_runc_s_log_line_is_said_in_words_and_tar_s_text_kept_whole() -> None:
    """A container that stops between the check and the copy: runc's own message."""
    said = b'time="2026-12-01T11:15:35Z" level=error msg="exec failed: container does not exist"\n'
    assert cp._said(said) == "exec failed: container does not exist"
    tar = b"tar: a: No such file or directory\ntar: b: No such file or directory\n"
    assert cp._said(tar) == tar.decode().strip()
