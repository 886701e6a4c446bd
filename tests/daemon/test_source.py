"""ManifestSource on a real filesystem, changed by the real tools people use.

Each test runs the source in a task group, changes the directory the way vim, sed, tar,
git-sync or a ConfigMap volume do, and checks the snapshots that come out: what they
hold, and what never showed up in between (a half-written file, a file gone for the blink
of a vim save). Settle windows are short (``SETTLE``) to keep the suite fast; the tests
that check "at once" use a long one (``LONG``) so that being quick proves no settle wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from watchdog.events import FileClosedEvent, FileMovedEvent
from watchdog.utils import BaseThread

from reconciler.sources import directory as source
from reconciler.sources.directory import ManifestSource, Snapshot

pytestmark = pytest.mark.anyio

SETTLE = 0.3
LONG = 3.0  # a settle window the "at once" tests must not wait for
AT_ONCE = 1.0  # generous bound for "at once"


def manifest(*names: str, program: str = "/bin/true") -> str:
    return "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}}}\n"
        f"spec: {{rootfs: /nonexistent/rootfs, command: [{program}]}}\n"
        for name in names
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def view(snapshot: Snapshot) -> dict[str, list[str]]:
    """File (relative to the configured directory) -> container names, or ["!broken"]."""
    out = {}
    for key, result in snapshot.origins.items():
        rel = os.path.relpath(key, str(snapshot.detail["directory"]))
        out[rel] = [d.container.name for d in result.documents] if result.ok else ["!broken"]
    return out


class Stream:
    """The snapshots of a running source, with bounded waits."""

    def __init__(
        self, source: ManifestSource, receive: MemoryObjectReceiveStream[Snapshot]
    ) -> None:
        self.source = source
        self._receive = receive
        self.history: list[Snapshot] = []

    async def next(
        self, want: Callable[[dict[str, list[str]]], bool] = lambda v: True, *, within: float = 5.0
    ) -> Snapshot:
        """The next snapshot whose view satisfies ``want``; fails after ``within`` seconds."""
        with anyio.move_on_after(within):
            while True:
                snapshot = await self._receive.receive()
                self.history.append(snapshot)
                if snapshot.available and want(view(snapshot)):
                    return snapshot
        seen = [self.show(s) for s in self.history]
        pytest.fail(f"no such snapshot within {within}s; got {seen}")

    async def none_for(self, seconds: float) -> None:
        """No snapshot at all for ``seconds``."""
        with anyio.move_on_after(seconds):
            snapshot = await self._receive.receive()
            pytest.fail(f"unexpected snapshot: {self.show(snapshot)}")

    async def unavailable(self, *, within: float = 5.0) -> Snapshot:
        with anyio.fail_after(within):
            while True:
                snapshot = await self._receive.receive()
                self.history.append(snapshot)
                if not snapshot.available:
                    return snapshot

    def since(self, start: int) -> list[dict[str, list[str]]]:
        return [view(s) for s in self.history[start:] if s.available]

    @staticmethod
    def show(snapshot: Snapshot) -> object:
        return view(snapshot) if snapshot.available else snapshot.reason


@contextlib.asynccontextmanager
async def watching(
    directory: Path, *, settle: float = SETTLE, resync: float = 60.0, poll: bool = False
) -> AsyncIterator[Stream]:
    src = ManifestSource(directory, settle=settle, resync=resync, poll=poll)
    send, receive = anyio.create_memory_object_stream[Snapshot](1000)
    with send, receive:
        async with anyio.create_task_group() as tg:
            first = await tg.start(src.run, send)
            stream = Stream(src, receive)
            stream.history.append(await receive.receive())
            assert stream.history == [first]
            yield stream
            tg.cancel_scope.cancel()


async def run(*command: str, cwd: Path | None = None) -> None:
    """Run a real tool to completion, the loop free to take the events it makes meanwhile."""
    await anyio.run_process(list(command), cwd=cwd, check=True, stdin=subprocess.DEVNULL)


# --- what is read ----------------------------------------------------------------------


async def test_first_snapshot_reads_recursively_and_skips_leftovers(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    write(d / "sub" / "b.yml", manifest("b"))
    write(d / "bad.yaml", "spec: [")
    for leftover in ["a.yaml~", ".a.yaml.swp", "4913", ".hidden/c.yaml", "sedAbC123",
                     "a.yaml.dpkg-new", "notes.txt"]:
        write(d / leftover, manifest("leftover"))
    expected = {"a.yaml": ["a"], "bad.yaml": ["!broken"], "sub/b.yml": ["b"]}
    async with watching(d) as stream:
        first = stream.history[0]
        assert view(first) == expected
        assert (first.source, first.available, first.reason) == ("directory", True, None)
        assert first.detail["directory"] == str(d) and first.detail["resolved"] == str(d)
        await stream.none_for(SETTLE)
    once = ManifestSource(d).scan_once()
    assert view(once) == expected


async def test_editor_leftovers_and_same_content_make_no_snapshot(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    async with watching(d) as stream:
        for leftover in ["a.yaml~", ".a.yaml.swp", "4913", "sedXy12Ab", ".a.yaml.Ab12Cd"]:
            write(d / leftover, manifest("leftover"))
        await run("touch", str(d / "a.yaml"))
        os.chmod(d / "a.yaml", 0o600)
        (d / "a.yaml").write_text(manifest("a"))  # the same bytes again
        await stream.none_for(2 * SETTLE)
        write(d / "b.yaml", manifest("b"))  # the source is alive: a real change shows
        assert view(await stream.next()) == {"a.yaml": ["a"], "b.yaml": ["b"]}


# --- at once ---------------------------------------------------------------------------


async def test_a_renamed_in_file_is_taken_at_once(tmp_path: Path) -> None:
    d, staging = tmp_path / "m", tmp_path / "staging"
    d.mkdir()
    write(staging / "a.yaml", manifest("a"))
    async with watching(d, settle=LONG) as stream:
        start = time.monotonic()
        os.rename(staging / "a.yaml", d / "a.yaml")  # from outside the tree
        await stream.next(lambda v: "a.yaml" in v)
        outside = time.monotonic() - start
        write(d / ".b.yaml.tmp", manifest("b"))
        start = time.monotonic()
        os.rename(d / ".b.yaml.tmp", d / "b.yaml")  # the usual atomic write, in the tree
        await stream.next(lambda v: "b.yaml" in v)
        inside = time.monotonic() - start
    print(f"rename -> snapshot: from outside {outside * 1000:.0f} ms, "  # noqa: T201
          f"within the directory {inside * 1000:.0f} ms")
    assert outside < AT_ONCE and inside < AT_ONCE


async def test_a_written_and_closed_file_is_taken_at_once(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    async with watching(d, settle=LONG) as stream:
        start = time.monotonic()
        write(d / "a.yaml", manifest("a"))
        await stream.next(lambda v: v == {"a.yaml": ["a"]})
        assert time.monotonic() - start < AT_ONCE


async def test_sed_in_place(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("old"))
    inode = (d / "a.yaml").stat().st_ino
    async with watching(d, settle=LONG) as stream:
        start = time.monotonic()
        await run("sed", "-i", "s/name: old/name: new/", str(d / "a.yaml"))
        assert (d / "a.yaml").stat().st_ino != inode  # sed renamed a new file over it
        await stream.next(lambda v: v == {"a.yaml": ["new"]})
        assert time.monotonic() - start < AT_ONCE
        assert all(v == {"a.yaml": ["new"]} for v in stream.since(1))


async def test_vim_save_never_drops_the_file(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("old"))
    inode = (d / "a.yaml").stat().st_ino
    async with watching(d, settle=LONG) as stream:
        start = time.monotonic()
        # Default vim, except that backupskip would skip the backup dance under /tmp.
        await run("vim", "-u", "NONE", "-N", "-es", "-c", "set backupskip=",
            "-c", "%s/name: old/name: new/", "-c", "wq", str(d / "a.yaml"))
        assert (d / "a.yaml").stat().st_ino != inode  # vim renamed it away and wrote anew
        await stream.next(lambda v: v == {"a.yaml": ["new"]})
        assert time.monotonic() - start < AT_ONCE
        await stream.none_for(SETTLE)
    assert set(os.listdir(d)) == {"a.yaml"}
    assert all(v == {"a.yaml": ["new"]} for v in stream.since(1))


async def test_a_rename_moves_the_file_at_once(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    async with watching(d, settle=LONG) as stream:
        os.rename(d / "a.yaml", d / "b.yaml")
        await stream.next(lambda v: v == {"b.yaml": ["a"]}, within=AT_ONCE)
        assert stream.since(1) == [{"b.yaml": ["a"]}]  # never both: no passing conflict


# --- settle ----------------------------------------------------------------------------


async def test_a_partial_write_is_never_seen(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "old.yaml", manifest("x"))
    async with watching(d) as stream:
        async with (
            await anyio.open_file(d / "new.yaml", "w") as new,
            await anyio.open_file(d / "old.yaml", "w") as old,
        ):
            for f in (new, old):
                await f.write(manifest("a"))
                await f.flush()
            await anyio.sleep(SETTLE / 2)  # long enough for a look, shorter than settle
            for f in (new, old):
                await f.write(manifest("b"))
        both = {"new.yaml": ["a", "b"], "old.yaml": ["a", "b"]}
        await stream.next(lambda v: v == both)
        await stream.none_for(SETTLE)
    # each file whole or not at all: never "a" without "b". (The two closes are two
    # thread calls; on a busy machine they can be more than QUIET apart, and then old.yaml
    # is taken, whole, a look before new.yaml is.)
    seen = stream.since(1)
    assert seen[-1] == both and len(seen) <= 2, seen
    assert all(v.get(f) in (None, ["x"], ["a", "b"]) for v in seen for f in both), seen


async def test_a_file_left_open_is_taken_once_quiet(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    async with watching(d) as stream:
        async with await anyio.open_file(d / "a.yaml", "w") as f:
            await f.write(manifest("a"))
            await f.flush()
            start = time.monotonic()
            await stream.next(lambda v: v == {"a.yaml": ["a"]})
            waited = time.monotonic() - start
    assert SETTLE <= waited < SETTLE + AT_ONCE


async def test_rm_and_restore_within_settle_changes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    write(d / "b.yaml", manifest("b"))
    async with watching(d) as stream:
        (d / "a.yaml").unlink()
        await anyio.sleep(SETTLE / 3)
        write(d / "a.yaml", manifest("a"))  # the same bytes, a new file
        (d / "b.yaml").unlink()
        await anyio.sleep(SETTLE / 3)
        write(d / "b.yaml", manifest("b2"))  # new content: one snapshot, b never missing
        await stream.next(lambda v: v.get("b.yaml") == ["b2"])
        await stream.none_for(2 * SETTLE)
    assert stream.since(1) == [{"a.yaml": ["a"], "b.yaml": ["b2"]}]


async def test_a_removed_file_goes_after_settle(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    write(d / "b.yaml", manifest("b"))
    async with watching(d) as stream:
        start = time.monotonic()
        (d / "a.yaml").unlink()
        await stream.next(lambda v: v == {"b.yaml": ["b"]})
        waited = time.monotonic() - start
    assert SETTLE <= waited < SETTLE + AT_ONCE
    assert stream.since(1) == [{"b.yaml": ["b"]}]


async def test_tar_of_200_files_arrives_as_one(tmp_path: Path) -> None:
    d, staging = tmp_path / "m", tmp_path / "staging"
    d.mkdir()
    for i in range(200):
        write(staging / f"dir{i % 10}" / f"c{i}.yaml", manifest(f"c{i}"))
    with tarfile.open(tmp_path / "m.tar", "w") as tar:
        tar.add(staging, arcname=".")
    async with watching(d, settle=LONG) as stream:
        start = time.monotonic()
        await run("tar", "-xf", str(tmp_path / "m.tar"), "-C", str(d))
        await stream.next(lambda v: len(v) == 200)
        took = time.monotonic() - start
    print(f"tar -x of 200 files: {len(stream.history) - 1} snapshot(s), "  # noqa: T201
          f"{took * 1000:.0f} ms")
    # Two looks on a quiet machine (one at the first close, one once tar went quiet); a
    # busy machine can pause tar past QUIET a few times. Without batching it is ~100.
    assert len(stream.history) - 1 <= 10 and took < AT_ONCE


# --- the directory itself --------------------------------------------------------------


def worktree(root: Path, rev: str, files: dict[str, str]) -> Path:
    tree = root / ".worktrees" / rev
    for name, text in files.items():
        write(tree / name, text)
    return tree


async def test_git_sync_symlink_swap(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    worktree(root, "rev1", {"a.yaml": manifest("a"), "b.yaml": manifest("b")})
    await run("ln", "-s", ".worktrees/rev1", "link", cwd=root)
    rev2 = worktree(root, "rev2", {"a.yaml": manifest("a", program="/bin/v2"),
                                   "c.yaml": manifest("c")})
    link = root / "link"
    async with watching(link) as stream:
        assert stream.history[0].detail["resolved"] == str(root / ".worktrees" / "rev1")
        await run("ln", "-s", ".worktrees/rev2", "tmp-link", cwd=root)
        await run("mv", "-T", "tmp-link", "link", cwd=root)
        swapped = await stream.next(lambda v: "c.yaml" in v, within=AT_ONCE)
        assert swapped.detail["resolved"] == str(rev2)
        assert sorted(swapped.origins) == [str(link / n) for n in ("a.yaml", "b.yaml", "c.yaml")]
        command = swapped.origins[str(link / "a.yaml")].documents[0].container.spec.command
        assert command == ["/bin/v2"]
        await stream.next(lambda v: v == {"a.yaml": ["a"], "c.yaml": ["c"]})  # b: after settle
        await run("rm", "-rf", ".worktrees/rev1", cwd=root)  # deletes nothing that counts
        write(rev2 / "d.yaml", manifest("d"))  # the new tree is watched
        await stream.next(lambda v: "d.yaml" in v, within=AT_ONCE)
        await stream.none_for(SETTLE)
    assert all("a.yaml" in v and "c.yaml" in v for v in stream.since(1))


async def test_relative_paths_resolve_under_the_link(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    worktree(root, "rev1", {"a.yaml": manifest("a").replace("/nonexistent/rootfs", "./rootfs")})
    await run("ln", "-s", ".worktrees/rev1", "link", cwd=root)
    snapshot = ManifestSource(root / "link").scan_once()
    [result] = snapshot.origins.values()
    assert result.documents[0].container.spec.rootfs == str(root / "link" / "rootfs")


async def test_configmap_data_swap(tmp_path: Path) -> None:
    d = tmp_path / "volume"
    write(d / "..2024_01" / "a.yaml", manifest("a"))
    await run("ln", "-s", "..2024_01", "..data", cwd=d)
    await run("ln", "-s", "..data/a.yaml", "a.yaml", cwd=d)
    async with watching(d, settle=LONG) as stream:
        assert view(stream.history[0]) == {"a.yaml": ["a"]}
        write(d / "..2024_02" / "a.yaml", manifest("a2"))
        await run("ln", "-s", "..2024_02", "..data_tmp", cwd=d)
        await run("mv", "-T", "..data_tmp", "..data", cwd=d)
        await run("rm", "-rf", "..2024_01", cwd=d)
        await stream.next(lambda v: v == {"a.yaml": ["a2"]}, within=AT_ONCE)
        await stream.none_for(SETTLE)
    assert stream.since(1) == [{"a.yaml": ["a2"]}]


async def test_directory_removed_and_recreated(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    async with watching(d) as stream:
        shutil.rmtree(d)
        gone = await stream.unavailable()
        assert gone.reason == f"manifests directory {d} does not exist" and not gone.origins
        write(d / "b.yaml", manifest("b"))
        await stream.next(lambda v: v == {"b.yaml": ["b"]})
        write(d / "c.yaml", manifest("c"))  # the new directory is watched
        await stream.next(lambda v: "c.yaml" in v, within=AT_ONCE)


async def test_directory_renamed_away_and_replaced(tmp_path: Path) -> None:
    d, new, old = tmp_path / "m", tmp_path / "m.new", tmp_path / "m.old"
    write(d / "a.yaml", manifest("a"))
    write(new / "b.yaml", manifest("b"))
    async with watching(d) as stream:
        os.rename(d, old)
        os.rename(new, d)
        await stream.next(lambda v: v == {"b.yaml": ["b"]})
        write(old / "x.yaml", manifest("x"))  # the old directory no longer counts
        await stream.none_for(SETTLE)
        write(d / "c.yaml", manifest("c"))  # the new one is watched
        await stream.next(lambda v: "c.yaml" in v, within=AT_ONCE)
    assert all("x.yaml" not in v for v in stream.since(0))


async def test_missing_directory_is_unavailable_until_it_appears(tmp_path: Path) -> None:
    d = tmp_path / "m"
    once = ManifestSource(d).scan_once()
    assert (once.available, once.reason, once.detail["resolved"], dict(once.origins)) == (
        False, f"manifests directory {d} does not exist", None, {}
    )
    async with watching(d) as stream:
        assert not stream.history[0].available
        write(d / "a.yaml", manifest("a"))
        await stream.next(lambda v: v == {"a.yaml": ["a"]})
    (tmp_path / "f").write_text("")
    assert ManifestSource(tmp_path / "f").scan_once().reason == (
        f"manifests directory {tmp_path / 'f'} is not a directory"
    )


async def test_missing_parent_is_retried(tmp_path: Path) -> None:
    d = tmp_path / "not-yet" / "m"  # nothing to watch at all: looks every HEALTH_EVERY
    async with watching(d) as stream:
        write(d / "a.yaml", manifest("a"))
        start = time.monotonic()
        await stream.next(lambda v: v == {"a.yaml": ["a"]})
        assert time.monotonic() - start < source.HEALTH_EVERY + AT_ONCE
        write(d / "b.yaml", manifest("b"))  # and now it is watched
        await stream.next(lambda v: "b.yaml" in v, within=AT_ONCE)


# --- looking again without events ------------------------------------------------------


def change_unseen(d: Path, outside: Path) -> None:
    """Rewrite d/a.yaml in place through a hard link outside the tree: inotify says nothing."""
    with open(outside, "r+") as f:
        f.truncate()
        f.write(manifest("changed"))


async def test_rescan_and_inotify_overflow_force_a_look(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    os.link(d / "a.yaml", tmp_path / "hardlink")
    async with watching(d) as stream:
        change_unseen(d, tmp_path / "hardlink")
        await stream.none_for(2 * SETTLE)  # no event came: the change is not seen yet
        threading.Thread(target=stream.source.rescan).start()
        await stream.next(lambda v: v == {"a.yaml": ["changed"]}, within=AT_ONCE)
        (tmp_path / "hardlink").write_text(manifest("again"))
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        await stream.next(lambda v: v == {"a.yaml": ["again"]}, within=SETTLE + AT_ONCE)


async def test_resync_finds_what_no_event_told(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    os.link(d / "a.yaml", tmp_path / "hardlink")
    async with watching(d, resync=0.5) as stream:
        change_unseen(d, tmp_path / "hardlink")
        await stream.next(lambda v: v == {"a.yaml": ["changed"]}, within=0.5 + AT_ONCE)


async def test_a_full_bridge_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "_BRIDGE_SIZE", 2)
    d = tmp_path / "m"
    d.mkdir()
    async with watching(d) as stream:
        def burst() -> None:
            for i in range(50):
                write(d / f"c{i}.yaml", manifest(f"c{i}"))

        await anyio.to_thread.run_sync(burst)
        await stream.next(lambda v: len(v) == 50, within=SETTLE + AT_ONCE)


async def test_polling_mode(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    async with watching(d, poll=True, settle=0.1) as stream:
        write(d / "b.yaml", manifest("b"))
        (d / "a.yaml").unlink()
        await stream.next(lambda v: v == {"b.yaml": ["b"]}, within=AT_ONCE)


async def test_no_thread_outlives_the_source(tmp_path: Path) -> None:
    def watchdog_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if isinstance(t, BaseThread) and t.is_alive()}

    before = watchdog_threads()
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    async with watching(d) as stream:
        assert watchdog_threads() - before  # an observer, an emitter per watch, a reader
        write(d / "b.yaml", manifest("b"))
        await stream.next(lambda v: "b.yaml" in v)
    assert watchdog_threads() == before


def test_a_look_at_once_never_reads_a_file_whose_events_are_still_on_their_way(
        tmp_path: Path) -> None:
    """A drop makes a look at once, with no quiet wait. Another file truncated just now,
    whose modify event has not reached the source yet (``cp a b`` over an existing b),
    keeps its previous content until it is FRESH old; the dropped one is taken at once."""
    write(tmp_path / "b.yaml", manifest("b"))
    tracker = source._Tracker(str(tmp_path), settle=SETTLE, max_size=1 << 20)
    target = source._resolve(str(tmp_path))[0]
    first = tracker.look(target, None, time.monotonic(), distrust=False)
    assert sorted(first.files) == [str(tmp_path / "b.yaml")]
    # the close of an earlier write arrives; the truncate that followed it has no event yet
    tracker.note(FileClosedEvent(str(tmp_path / "b.yaml")), time.monotonic())
    (tmp_path / "b.yaml").write_text("")
    write(tmp_path / "staged.yaml", manifest("c"))
    os.rename(tmp_path / "staged.yaml", tmp_path / "c.yaml")
    tracker.note(FileMovedEvent(str(tmp_path / "staged.yaml"),
                                          str(tmp_path / "c.yaml")), time.monotonic())
    look = tracker.look(target, None, time.monotonic(), distrust=False)
    names = {os.path.basename(k): [d.container.name for d in r.documents]
             for k, r in look.files.items()}
    assert names == {"b.yaml": ["b"], "c.yaml": ["c"]}  # b as it was, c at once
    # emptied in place: an empty file defines nothing (its objects would go), so it waits
    # the settle window from its change, not just FRESH
    assert look.due <= time.monotonic() + SETTLE
    assert look.due > time.monotonic() + source.FRESH
    time.sleep(SETTLE + 0.005)
    later = tracker.look(target, None, time.monotonic(), distrust=False)
    assert not {os.path.basename(k): r.documents for k, r in later.files.items()}["b.yaml"]


async def test_a_directory_made_again_file_by_file_loses_nothing_at_first(
        tmp_path: Path) -> None:
    """Back after being missing, a file not there yet gets the settle window from then:
    the first file back is not taken as the whole directory (the rest deleted)."""
    d = tmp_path / "m"
    write(d / "a.yaml", manifest("a"))
    write(d / "b.yaml", manifest("b"))
    async with watching(d) as stream:
        (d / "b.yaml").unlink()  # as rm -r does: the files first, looked at in between
        (d / "a.yaml").unlink()
        await anyio.sleep(SETTLE / 2)
        shutil.rmtree(d)
        await stream.unavailable()
        await anyio.sleep(SETTLE * 2)  # longer than settle since b went
        write(d / "a.yaml", manifest("a"))
        back = await stream.next(lambda v: "a.yaml" in v)
        assert view(back) == {"a.yaml": ["a"], "b.yaml": ["b"]}  # b held, not gone
        await stream.next(lambda v: v == {"a.yaml": ["a"]}, within=5)  # after settle
