"""runtime.volumes on real files (no runc): subPath checks, hostPath types, the writer.

A container writes into its emptyDir: a link it plants there must never take a later
bind mount (a subPath) out of the volume, and nothing the daemon makes may land outside
it. Projected files are swapped as the kubelet's atomic writer does.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.core.pods import PodVolume, VolumeFile
from reconciler.runtime import volumes


def test_subpath_inside_is_made(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    got = volumes.beneath(str(root), "a/b", create=True, what="volume v", container="c")
    assert got == str(root / "a" / "b") and (root / "a" / "b").is_dir()


@pytest.mark.parametrize("sub", ["evil", "evil/x", "ok/../evil/y", "dir/up/x"])
def test_subpath_through_a_planted_link_is_refused(tmp_path: Path, sub: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "vol"
    (root / "ok").mkdir(parents=True)
    (root / "dir").mkdir()
    (root / "evil").symlink_to("/")
    (root / "dir" / "up").symlink_to(outside)
    with pytest.raises(errors.MountError, match="leads out of the volume"):
        volumes.beneath(str(root), sub, create=True, what="volume v", container="c")
    assert not (outside / "x").exists() and not Path("/x").exists()


def test_a_link_that_stays_inside_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "..data").mkdir(parents=True)
    (root / "..data" / "conf").write_text("x")
    (root / "conf").symlink_to("..data/conf")  # a ConfigMap volume's layout
    got = volumes.beneath(str(root), "conf", create=False, what="volume v", container="c")
    assert got == str((root / "..data" / "conf").resolve())


def test_file_or_create_never_opens_what_is_there(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    v = PodVolume("h", "host", str(fifo), host_type="FileOrCreate")
    with pytest.raises(OSError, match="it is not a file"):
        volumes._check_host(v)  # would block forever if it opened the FIFO for writing
    new = PodVolume("h", "host", str(tmp_path / "sub" / "new"), host_type="FileOrCreate")
    volumes._check_host(new)
    assert stat.S_ISREG((tmp_path / "sub" / "new").stat().st_mode)


def test_atomic_writer_swaps_data_and_keeps_names(tmp_path: Path) -> None:
    path = tmp_path / "cm"
    path.mkdir()
    v1 = PodVolume("cm", "files", str(path), files=(VolumeFile("a", b"1", 0o644),
                                                    VolumeFile("d/b", b"2", 0o600)))
    assert volumes._write_files(v1)
    assert not volumes._write_files(v1)  # the same: nothing written
    first = os.readlink(path / "..data")
    v2 = PodVolume("cm", "files", str(path), files=(VolumeFile("a", b"3", 0o644),))
    assert volumes._write_files(v2)
    assert os.readlink(path / "a") == "..data/a" and (path / "a").read_bytes() == b"3"
    assert not (path / "d").exists() and not (path / first).exists()
