"""Which files a directory scan reads: the name filter, symlinks, loops, ordering."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.manifest import files, loader

Write = Callable[[str, str | bytes], Path]

MANIFEST = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web}
spec: {rootfs: rootfs}
"""

# One name per leftover rule, each of which would otherwise be read: either it ends in a
# manifest suffix, or (below) it is used as a directory holding a manifest.
LEFTOVER_NAMES = [
    ".web.yaml",  # hidden
    "web.yaml~",  # vim/emacs backup
    ".web.yaml.swp", ".web.yaml.swo", "web.yaml.swx",  # vim swap
    "4913",  # vim's probe
    "#web.yaml#",  # emacs auto-save
    ".#web.yaml",  # emacs lock
    "web.yaml.tmp", "web.yaml.bak",
    "web.yaml.dpkg-new", "web.dpkg-old.yaml", "web.yaml.dpkg-dist",
    "web.yaml.rpmnew", "web.yaml.rpmsave", "web.yaml.rpmorig",
    ".ansible_tmp12ab.yaml",
    "web.puppettmp_1234.yaml", "web.yaml.puppettmp",
    "sedAb12Cd", "sed0x9YzQ",  # sed -i
    ".web.yaml.Ab12Cd",  # rsync
]

ACCEPTED_NAMES = [
    "web.yaml", "web.yml", "web.json", "WEB.YAML", "a~b.yaml", "4913.yaml", "sedentary.yaml",
    "backup.yaml", "tmp.yaml", "web.bak.yaml", "sedAb12C.yaml", "#web.yaml", "web#.yaml",
]


@pytest.mark.parametrize("name", LEFTOVER_NAMES)
def test_leftover_names_are_not_manifests(name: str) -> None:
    assert files.is_leftover(name)
    assert not files.is_manifest_name(name)


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_manifest_names(name: str) -> None:
    assert files.is_manifest_name(name)


@pytest.mark.parametrize("name", ["web", "web.txt", "web.yaml.txt", "README.md", "yaml"])
def test_other_suffixes_are_not_manifests(name: str) -> None:
    assert not files.is_leftover(name)
    assert not files.is_manifest_name(name)


def test_scan_skips_leftover_files(write: Write, tmp_path: Path) -> None:
    for name in LEFTOVER_NAMES:
        write(f"m/{name}", MANIFEST)
    write("m/web.yaml", MANIFEST)
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "web.yaml"]


@pytest.mark.parametrize("name", [*LEFTOVER_NAMES, "m.bak", "m.tmp", "m~", ".~tmp~", "x.dpkg-old"])
def test_scan_does_not_enter_leftover_directories(write: Write, tmp_path: Path, name: str) -> None:
    write(f"m/{name}/inner.yaml", MANIFEST)
    write("m/sub/web.yaml", MANIFEST)
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "sub" / "web.yaml"]


def test_scan_is_recursive_and_sorted(write: Write, tmp_path: Path) -> None:
    for name in ["z.yaml", "a.json", "b/c.yml", "b/a/d.yaml", "B.YAML", "notes.txt"]:
        write(f"m/{name}", MANIFEST)
    root = tmp_path / "m"
    assert files.scan(root) == [
        root / "B.YAML", root / "a.json", root / "b" / "a" / "d.yaml", root / "b" / "c.yml",
        root / "z.yaml",
    ]


def test_scan_accepts_str_and_keeps_the_given_prefix(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/web.yaml", MANIFEST)
    monkeypatch.chdir(tmp_path)
    assert files.scan("m") == [Path("m/web.yaml")]


def configmap_volume(root: Path, content: dict[str, str]) -> None:
    """The layout kubelet's atomic writer makes: key -> ..data/key, ..data -> ..<ts>."""
    stamp = root / "..2024_05_01_10_00_00.123"
    stamp.mkdir(parents=True)
    for key, text in content.items():
        (stamp / key).write_text(text)
    (root / "..data").symlink_to(stamp.name)
    for key in content:
        (root / key).symlink_to(f"..data/{key}")


def test_configmap_volume_symlinks_are_followed_once(tmp_path: Path) -> None:
    root = tmp_path / "cm"
    configmap_volume(root, {"web.yaml": MANIFEST, "ticker.yml": MANIFEST.replace("web", "ticker")})
    found = files.scan(root)
    assert found == [root / "ticker.yml", root / "web.yaml"]
    results = [loader.load_file(p) for p in found]
    assert [d.container.name for r in results for d in r.documents] == ["ticker", "web"]
    # Relative paths resolve next to the visible link, not inside ..data.
    assert results[1].documents[0].container.spec.rootfs == str(root / "rootfs")


def test_git_sync_style_root_link_is_followed(write: Write, tmp_path: Path) -> None:
    write(".worktrees/abc123/web.yaml", MANIFEST)
    (tmp_path / "link").symlink_to(tmp_path / ".worktrees" / "abc123")
    assert files.scan(tmp_path / "link") == [tmp_path / "link" / "web.yaml"]


def test_visible_directory_symlink_is_followed(write: Write, tmp_path: Path) -> None:
    write("shared/db.yaml", MANIFEST)
    write("m/web.yaml", MANIFEST)
    (tmp_path / "m" / "shared").symlink_to(tmp_path / "shared")
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "shared" / "db.yaml",
                                          tmp_path / "m" / "web.yaml"]


def test_hidden_symlink_is_not_followed(write: Write, tmp_path: Path) -> None:
    write("shared/db.yaml", MANIFEST)
    write("m/web.yaml", MANIFEST)
    (tmp_path / "m" / ".shared").symlink_to(tmp_path / "shared")
    (tmp_path / "m" / ".db.yaml").symlink_to(tmp_path / "shared" / "db.yaml")
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "web.yaml"]


def test_symlink_loops_are_guarded(write: Write, tmp_path: Path) -> None:
    write("m/web.yaml", MANIFEST)
    write("m/sub/db.yaml", MANIFEST)
    (tmp_path / "m" / "self").symlink_to(".")
    (tmp_path / "m" / "sub" / "up").symlink_to("..")
    (tmp_path / "m" / "sub" / "again").symlink_to(tmp_path / "m" / "sub")
    (tmp_path / "m" / "a").symlink_to("b")
    (tmp_path / "m" / "b").symlink_to("a")  # a loop of links: dangling for stat
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "sub" / "db.yaml",
                                          tmp_path / "m" / "web.yaml"]


def test_dangling_symlink_is_skipped(write: Write, tmp_path: Path) -> None:
    write("m/web.yaml", MANIFEST)
    (tmp_path / "m" / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    assert files.scan(tmp_path / "m") == [tmp_path / "m" / "web.yaml"]


def test_special_files_are_listed_for_the_loader_to_refuse(write: Write, tmp_path: Path) -> None:
    m = tmp_path / "m"
    write("m/web.yaml", MANIFEST)
    os.mkfifo(m / "pipe.yaml")
    os.mkfifo(m / "pipe.txt")  # not a manifest name: not listed
    (m / "loop-a.yaml").symlink_to("loop-b.yaml")
    (m / "loop-b.yaml").symlink_to("loop-a.yaml")
    (m / "gone.yaml").symlink_to("nowhere.yaml")  # dangling: skipped (a ConfigMap's swap)
    assert files.scan(m) == [m / "loop-a.yaml", m / "loop-b.yaml", m / "pipe.yaml",
                             m / "web.yaml"]
    assert [str(f) for f in loader.load_file(m / "pipe.yaml").findings] == [
        f"{m / 'pipe.yaml'}: not a regular file"]
    assert "symbolic links" in str(loader.load_file(m / "loop-a.yaml").findings[0])


def test_scan_of_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.scan(tmp_path / "missing")


def test_scan_of_a_file_raises(write: Write) -> None:
    with pytest.raises(NotADirectoryError):
        files.scan(write("web.yaml", MANIFEST))


def test_empty_directory(tmp_path: Path) -> None:
    assert files.scan(tmp_path) == []
