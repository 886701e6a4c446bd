"""The trusted manifests directory (sshd's StrictModes) on a real filesystem.

Who may write what the daemon reads: root and the configured owner. A directory others
can write (the manifests directory, one in it, a parent of it, one a link in it leads
through) makes the source unavailable; a file others can write, or a link leading out of
the directory, is that file broken. Each test builds the layout with real ``chmod``,
``chown`` and ``ln -s`` under pytest's temp dir (``/tmp/pytest-of-root/...``: 0700, root).
The running-source tests use a long resync, so a change seen proves an inotify event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.daemon import run
from reconciler.sources import directory
from reconciler.sources.directory import ManifestSource, Snapshot, Trust

OTHER = 1000  # a uid that is neither root nor the owner
SETTLE = 0.3
SLOW = 60.0  # a resync that never comes within a test: what happens is event-driven
WITHIN = 3.0

OVERRIDE = "(--insecure-manifests-dir to override)"


def manifest(*names: str) -> str:
    return "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}}}\n"
        f"spec: {{rootfs: /nonexistent/rootfs, command: [/bin/true]}}\n"
        for name in names
    )


def write(path: Path, *names: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest(*names))
    return path


def view(snapshot: Snapshot) -> dict[str, list[str] | str]:
    """File (relative to the configured directory) -> container names, or its finding."""
    out: dict[str, list[str] | str] = {}
    for key, result in snapshot.origins.items():
        rel = os.path.relpath(key, str(snapshot.detail["directory"]))
        out[rel] = ([d.container.name for d in result.documents] if result.ok
                    else "; ".join(f.message for f in result.findings))
    return out


def scan(path: Path, trust: Trust | None = None) -> Snapshot:
    return ManifestSource(path, trust=trust or Trust()).scan_once()


@pytest.fixture
def m(tmp_path: Path) -> Path:
    """A trusted manifests directory with two files: 0755 root, its files 0644 root."""
    d = tmp_path / "m"
    write(d / "a.yaml", "a")
    write(d / "b.yaml", "b")
    return d


# -- the directory and its parents -------------------------------------------------------------


def test_a_trusted_directory_is_read(m: Path) -> None:
    snap = scan(m)
    assert snap.available and view(snap) == {"a.yaml": ["a"], "b.yaml": ["b"]}


@pytest.mark.parametrize(("mode", "why"), [
    (0o777, "writable by everyone (mode 0777)"),
    (0o1777, "writable by everyone (mode 1777)"),  # sticky helps a parent only
    (0o775, "writable by group 0 (mode 0775)"),
])
def test_a_directory_others_can_write_is_unavailable(m: Path, mode: int, why: str) -> None:
    m.chmod(mode)
    snap = scan(m)
    assert not snap.available
    assert snap.reason == f"manifests directory {m} is {why}: refusing it {OVERRIDE}"


def test_a_directory_owned_by_another_user_is_unavailable_unless_it_is_the_owner(
    m: Path,
) -> None:
    os.chown(m, OTHER, -1)
    snap = scan(m)
    assert snap.reason == (f"manifests directory {m} is writable by uid {OTHER}, its owner"
                           f" (mode 0755): refusing it {OVERRIDE}")
    assert scan(m, Trust(owner=OTHER)).available


def test_a_group_writable_parent_is_unavailable(tmp_path: Path) -> None:
    parent = tmp_path / "srv"
    d = parent / "m"
    write(d / "a.yaml", "a")
    parent.chmod(0o775)
    snap = scan(d)
    assert snap.reason == (f"manifests directory {d}: its parent {parent} is writable by"
                           f" group 0 (mode 0775): refusing it {OVERRIDE}")


def test_a_grandparent_owned_by_another_user_is_unavailable(tmp_path: Path) -> None:
    top = tmp_path / "home"
    d = top / "srv" / "m"
    write(d / "a.yaml", "a")
    os.chown(top, OTHER, -1)
    assert f"its parent {top} is writable by uid {OTHER}" in str(scan(d).reason)


def test_a_sticky_parent_like_tmp_is_accepted_when_the_directory_is_ours(
    tmp_path: Path,
) -> None:
    """/tmp: others may add entries there, but not rename or remove ours."""
    sticky = tmp_path / "tmp"
    d = sticky / "m"
    write(d / "a.yaml", "a")
    sticky.chmod(0o1777)
    assert scan(d).available
    os.chown(d, OTHER, -1)  # theirs: they could rename it away and put another in place
    assert f"manifests directory {d} is writable by uid {OTHER}" in str(scan(d).reason)
    os.chown(d, 0, -1)
    sticky.chmod(0o777)  # no sticky bit: anyone can rename ours away
    assert f"its parent {sticky} is writable by everyone (mode 0777)" in str(scan(d).reason)


def test_a_subdirectory_others_can_write_is_unavailable(m: Path) -> None:
    """Others could remove its files, and a file gone is its containers deleted."""
    write(m / "team" / "c.yaml", "c")
    (m / "team").chmod(0o777)
    assert scan(m).reason == (f"manifests directory {m}: {m / 'team'} in it is writable by"
                              f" everyone (mode 0777): refusing it {OVERRIDE}")


# -- files -----------------------------------------------------------------------------------


def test_a_file_owned_by_another_user_is_broken_and_the_others_are_read(m: Path) -> None:
    os.chown(m / "a.yaml", OTHER, -1)
    snap = scan(m)
    assert snap.available
    assert view(snap) == {
        "a.yaml": f"the file is writable by uid {OTHER}, its owner (mode 0644): not read"
                  f" {OVERRIDE}",
        "b.yaml": ["b"],
    }
    assert snap.origins[str(m / "a.yaml")].digest == ""  # never read


def test_a_group_writable_file_is_broken(m: Path) -> None:
    (m / "a.yaml").chmod(0o664)
    assert view(scan(m))["a.yaml"] == (
        f"the file is writable by group 0 (mode 0664): not read {OVERRIDE}")


def test_a_symlink_to_etc_is_broken(m: Path) -> None:
    (m / "passwd.yaml").symlink_to("/etc/passwd")
    (m / "up.yaml").symlink_to("../outside.yaml")
    write(m.parent / "outside.yaml", "o")
    snap = scan(m)
    assert snap.available
    shown = view(snap)
    assert shown["passwd.yaml"] == (
        f"links to /etc/passwd, outside the manifests directory: not read {OVERRIDE}")
    assert shown["up.yaml"] == (f"links to {m.parent / 'outside.yaml'}, outside the manifests"
                                f" directory: not read {OVERRIDE}")
    assert shown["a.yaml"] == ["a"]


def test_a_link_within_the_directory_is_read(m: Path) -> None:
    (m / "alias.yaml").symlink_to("sub/c.yaml")
    write(m / "sub" / "c.yaml", "c")
    assert view(scan(m))["alias.yaml"] == ["c"]


def test_a_linked_subdirectory_outside_breaks_each_of_its_files(m: Path) -> None:
    write(m.parent / "elsewhere" / "c.yaml", "c")
    (m / "team").symlink_to(m.parent / "elsewhere")
    assert view(scan(m))["team/c.yaml"] == (
        f"{m / 'team'} links to {m.parent / 'elsewhere'}, outside the manifests directory:"
        f" not read {OVERRIDE}")


def test_allowed_link_prefixes_let_a_link_out(m: Path, tmp_path: Path) -> None:
    vendor = tmp_path / "vendor"
    write(vendor / "apps" / "v.yaml", "v")
    (m / "v.yaml").symlink_to(vendor / "apps" / "v.yaml")
    assert view(scan(m, Trust(allowed_link_prefixes=(str(vendor),))))["v.yaml"] == ["v"]
    (vendor / "apps" / "v.yaml").chmod(0o666)  # the target is checked as any file
    assert "its target" in str(view(scan(m, Trust(allowed_link_prefixes=(str(vendor),))))[
        "v.yaml"])
    (vendor / "apps" / "v.yaml").chmod(0o644)
    vendor.chmod(0o777)  # a directory on the way: others could remove the target
    snap = scan(m, Trust(allowed_link_prefixes=(str(vendor),)))
    assert snap.reason == (f"manifests directory {m}: {vendor}, where a link in it leads, is"
                           f" writable by everyone (mode 0777): refusing it {OVERRIDE}")


def test_a_link_on_the_way_in_a_directory_others_can_write_is_unavailable(
    m: Path, tmp_path: Path,
) -> None:
    """``x.yaml -> /hop/l -> a.yaml``: the end is ours, but anyone could swap ``l``."""
    hop = tmp_path / "hop"
    hop.mkdir()
    (hop / "l").symlink_to(m / "a.yaml")
    (m / "x.yaml").symlink_to(hop / "l")
    assert scan(m).available  # hop: 0755, root
    hop.chmod(0o777)
    assert f"{hop}, where a link in it leads, is writable by everyone" in str(scan(m).reason)


def test_a_link_owned_by_another_user_is_broken(m: Path) -> None:
    (m / "x.yaml").symlink_to("a.yaml")
    os.lchown(m / "x.yaml", OTHER, -1)
    assert view(scan(m))["x.yaml"] == (
        f"the link {m / 'x.yaml'} is owned by uid {OTHER}: not read {OVERRIDE}")


def test_a_symlink_loop_is_named_and_not_read(m: Path) -> None:
    (m / "l1.yaml").symlink_to("l2.yaml")
    (m / "l2.yaml").symlink_to("l1.yaml")
    loop = "cannot read file: Too many levels of symbolic links"
    assert view(scan(m)) == {"a.yaml": ["a"], "b.yaml": ["b"], "l1.yaml": loop,
                             "l2.yaml": loop}


# -- the layouts of publishers --------------------------------------------------------------


def configmap(d: Path, stamp: str, files: dict[str, str]) -> None:
    """A Kubernetes ConfigMap volume as the kubelet's atomic writer makes and swaps it."""
    d.mkdir(exist_ok=True)
    for key, name in files.items():
        write(d / stamp / key, name)
        if not (d / key).is_symlink():
            (d / key).symlink_to(f"..data/{key}")
    (d / "..data_tmp").symlink_to(stamp)
    (d / "..data_tmp").rename(d / "..data")


def test_the_configmap_layout_is_read(tmp_path: Path) -> None:
    d = tmp_path / "cm"
    configmap(d, "..2026_01_01_00_00_00.1", {"a.yaml": "a", "b.yaml": "b"})
    assert view(scan(d)) == {"a.yaml": ["a"], "b.yaml": ["b"]}
    (d / "..2026_01_01_00_00_00.1").chmod(0o777)  # the data dir: in it, so strict
    assert "..2026_01_01_00_00_00.1 in it is writable by everyone" in str(scan(d).reason)


def test_the_git_sync_layout_is_read_and_both_paths_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "git"
    write(root / ".worktrees" / "rev1" / "a.yaml", "a")
    (root / "link").symlink_to(".worktrees/rev1")
    assert view(scan(root / "link")) == {"a.yaml": ["a"]}
    (root / ".worktrees" / "rev1").chmod(0o775)
    assert scan(root / "link").reason == (
        f"manifests directory {root / 'link'}: its target {root / '.worktrees' / 'rev1'} is"
        f" writable by group 0 (mode 0775): refusing it {OVERRIDE}")
    (root / ".worktrees" / "rev1").chmod(0o755)
    os.lchown(root / "link", OTHER, -1)  # the configured path itself
    assert scan(root / "link").reason == (
        f"manifests directory {root / 'link'} is owned by uid {OTHER}: refusing it {OVERRIDE}")


def test_no_trust_reads_everything(m: Path) -> None:
    m.chmod(0o777)
    os.chown(m / "a.yaml", OTHER, -1)
    (m / "p.yaml").symlink_to("/etc/hostname")
    snap = ManifestSource(m, trust=None).scan_once()
    assert snap.available and view(snap)["a.yaml"] == ["a"]


# -- a running source: every look checks again ------------------------------------------------


class Stream:
    def __init__(self, receive: anyio.abc.ObjectReceiveStream[Snapshot]) -> None:
        self._receive = receive
        self.history: list[Snapshot] = []

    async def next(self, *, within: float = WITHIN) -> Snapshot:
        with anyio.fail_after(within):
            snapshot = await self._receive.receive()
        self.history.append(snapshot)
        return snapshot

    async def until(self, want: dict[str, list[str] | str], *, within: float = WITHIN
                    ) -> Snapshot:
        """The first snapshot that shows ``want`` (a file written within ``FRESH`` of a
        look keeps its old content for that long, so one may come before)."""
        with anyio.fail_after(within):
            while not ((snapshot := await self.next()).available and view(snapshot) == want):
                pass
        return snapshot


@contextlib.asynccontextmanager
async def watching(path: Path, *, poll: bool = False) -> AsyncIterator[Stream]:
    src = ManifestSource(path, settle=SETTLE, resync=SLOW, poll=poll, trust=Trust())
    send, receive = anyio.create_memory_object_stream[Snapshot](100)
    with send, receive:
        async with anyio.create_task_group() as tg:
            await tg.start(src.run, send)
            stream = Stream(receive)
            await stream.next()
            yield stream
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_chmod_makes_it_unavailable_and_a_chmod_back_brings_it_back(m: Path) -> None:
    """inotify reports chmod (IN_ATTRIB): a look at once, not at the next resync."""
    async with watching(m) as stream:
        m.chmod(0o775)
        snap = await stream.next()
        assert not snap.available and "writable by group 0 (mode 0775)" in str(snap.reason)
        m.chmod(0o755)
        await stream.until({"a.yaml": ["a"], "b.yaml": ["b"]})


@pytest.mark.anyio
async def test_a_chmod_of_the_parent_is_seen_at_once(m: Path) -> None:
    async with watching(m) as stream:
        m.parent.chmod(0o777)
        snap = await stream.next()
        assert f"its parent {m.parent} is writable by everyone" in str(snap.reason)
        m.parent.chmod(0o700)
        assert (await stream.next()).available


@pytest.mark.anyio
async def test_a_chown_of_a_file_breaks_it_and_a_chown_back_reads_it_again(m: Path) -> None:
    """The cache is keyed by (dev, ino, size, mtime): a refusal is never cached."""
    async with watching(m) as stream:
        os.chown(m / "a.yaml", OTHER, -1)
        snap = await stream.next()
        assert "writable by uid 1000" in str(view(snap)["a.yaml"])
        assert view(snap)["b.yaml"] == ["b"]
        os.chown(m / "a.yaml", 0, -1)
        await stream.until({"a.yaml": ["a"], "b.yaml": ["b"]})


@pytest.mark.anyio
async def test_a_git_sync_swap_to_a_tree_others_can_write_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "git"
    write(root / ".worktrees" / "rev1" / "a.yaml", "a")
    write(root / ".worktrees" / "rev2" / "a.yaml", "a", "b")
    (root / ".worktrees" / "rev2").chmod(0o777)
    (root / "link").symlink_to(".worktrees/rev1")
    async with watching(root / "link") as stream:
        (root / "tmp-link").symlink_to(".worktrees/rev2")
        (root / "tmp-link").rename(root / "link")
        snap = await stream.next()
        assert not snap.available and "its target" in str(snap.reason)
        (root / ".worktrees" / "rev2").chmod(0o755)
        await stream.until({"a.yaml": ["a", "b"]})


@pytest.mark.anyio
async def test_a_configmap_swap_is_read(tmp_path: Path) -> None:
    d = tmp_path / "cm"
    configmap(d, "..2026_01_01_00_00_00.1", {"a.yaml": "a"})
    async with watching(d) as stream:
        configmap(d, "..2026_01_01_00_00_01.2", {"a.yaml": "a2"})
        shutil.rmtree(d / "..2026_01_01_00_00_00.1")
        await stream.until({"a.yaml": ["a2"]})


@pytest.mark.anyio
async def test_polling_checks_too(m: Path) -> None:
    async with watching(m, poll=True) as stream:
        m.chmod(0o777)
        assert not (await stream.next()).available


# -- the daemon's options ------------------------------------------------------------------


def test_the_daemon_checks_by_default_and_warns_at_every_start_when_told_not_to(
    m: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    opts = run.Options(manifests=str(m), state_dir="/nonexistent", runc_root="/nonexistent",
                       manifests_owner=OTHER)
    with caplog.at_level(logging.WARNING):
        (source,) = run._sources(opts)
    assert isinstance(source, ManifestSource) and source.trust == Trust(owner=OTHER)
    assert not caplog.records
    opts = run.Options(manifests=str(m), state_dir="/nonexistent", runc_root="/nonexistent",
                       insecure_manifests_dir=True)
    with caplog.at_level(logging.WARNING):
        (source,) = run._sources(opts)
    assert isinstance(source, ManifestSource) and source.trust is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage().startswith(f"--insecure-manifests-dir: {m} is read")


def test_the_checks_are_cheap_no_syscall_more_per_plain_file(
    m: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain file costs the one stat a look took anyway (an lstat now); each directory
    and each parent costs one lstat a look."""
    for i in range(50):
        write(m / f"team{i % 5}" / f"c{i}.yaml", f"c{i}")
    calls: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def counting(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def call(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> os.stat_result:
            calls.append(os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "stat", counting(real_stat))
    monkeypatch.setattr(os, "lstat", counting(real_lstat))
    counts = []
    for trust in (None, Trust()):
        tracker = directory._Tracker(str(m), settle=SETTLE, max_size=1 << 20, trust=trust)
        directory._look(tracker, None, False)  # the first look reads every file
        calls.clear()
        directory._look(tracker, None, False)
        counts.append(len(calls))
    directories = 5 + len(m.parts)  # team0..4, and / to m
    assert counts[1] - counts[0] <= directories
