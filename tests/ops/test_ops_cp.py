"""reconciler cp with real runc: a file and a directory into and out of a running
container as a tar stream, and a read-only root refused with the mounts that can be
written."""

from __future__ import annotations

from pathlib import Path

from .conftest import Ops

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
