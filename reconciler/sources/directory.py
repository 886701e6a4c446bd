"""The manifests directory as a ``Source``: a stream of snapshots of its files.

    directory source (this module) ─SourceSnapshot─▶ core.desired → planner → workers

File events only say "look again": every snapshot comes from a full scan of the directory
the configured path resolves to at that moment. Between looks the source keeps a cache of
what it read, keyed by ``(dev, ino, size, mtime_ns)`` (an unchanged file is not read
again), and holds back two kinds of change:

- a file being written (a create or modify event, no close yet) keeps its previous content,
  or stays out if it is new, until it is closed or has been quiet for ``settle`` seconds;
- a file gone from the scan keeps its previous content until it has stayed away for
  ``settle`` seconds (vim's save renames it away for a moment; ``rm`` and restore), unless
  the same bytes turned up under another name: that is a rename, taken at once.

A look whose content equals the last snapshot's (``touch``, ``chmod``, the same bytes
rewritten, a symlink swap that changes no manifest) yields no snapshot.

Watching, with watchdog's inotify observer (see the notes on watching directories):

- a recursive watch on the *resolved* directory, and a flat one on the configured path's
  parent, which sees a symlink renamed over the path (git-sync ``--link``) and the
  directory removed, recreated or renamed away; every look resolves the path again and
  re-arms a watch whose target changed (by device and inode) or whose emitter died;
- events that leave no file open for writing (a rename into place, a close, a delete)
  make a look at once; while a file is being written, or events kept coming while the
  last look ran (``tar -x`` of many files), a burst of events is one look, once no event
  came for ``QUIET`` seconds (at most ``BATCH_MAX`` after the first);
  content events on names that are no manifest (a vim swap file, ``sed``'s temporary
  file) are dropped on the observer thread;
- a look also happens every ``resync`` seconds, at once on ``rescan()`` (SIGHUP), when
  events were lost (the bridge into the loop was full, or inotify's own queue overflowed,
  which watchdog only logs), and every ``HEALTH_EVERY`` seconds while a watch is not armed
  (the directory is missing, or inotify refuses more watches). After lost events a changed
  file is taken only once its stat held still for ``settle``, as in polling mode.

``poll=True`` uses no inotify (NFS, SMB, FUSE): a look every ``settle`` seconds, and a
changed file is taken once its stat held still for one interval.

Trust (sshd's ``StrictModes``; ``trust=None`` turns it off, ``--insecure-manifests-dir``):
whoever can write a manifest can run anything as root, so with a ``Trust`` every look
checks who can write what it reads, from the stat results the scan takes anyway:

- the directory, every directory the scan enters or a link leads through, and every
  parent up to ``/`` of the configured path and of the one it resolves to (git-sync's
  link) must be owned by root or ``Trust.owner`` and not writable by group or others;
  a parent that is writable but sticky (``/tmp``) passes, since the entry below it must
  itself be owned by root or the owner, so no one else can rename or remove it. A
  directory that fails makes the source unavailable (others could remove files from it,
  and a file gone means its containers deleted);
- a file that fails the same rule (or a link that leads to one, or a link owned by
  someone else) is broken with a finding naming why: it is not read, and what it defined
  is kept; a link that leads outside the directory, other than under
  ``Trust.allowed_link_prefixes``, is broken too. Links within it (a ConfigMap volume's
  ``key -> ..data/key``) are checked along their whole way.

Events for ``chmod`` and ``chown`` (inotify's IN_ATTRIB) on the directory, on a directory or
a manifest in it, on the configured path and on its parent make a look at once; a change
higher up is seen at the next resync.

Limits, on purpose: a subdirectory that cannot be read makes the whole source unavailable
(its files are not "gone"); a symlink to somewhere outside the directory (allowed with
no ``Trust``, or under an allowed prefix) is read but not watched, so a change there shows
at the next resync (ConfigMap links into ``..data`` are inside, and ``..data`` itself is
watched).

Threads meet the loop at one point: the observer's handler forwards each event with
``anyio.from_thread.run_sync(send_nowait)`` and never blocks; when the bridge is full it
sets a flag instead. Scans run in a worker thread, one at a time; the observer is stopped
and joined, shielded, when ``run`` ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from watchdog import events as fs
from watchdog.observers.api import ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from reconciler.core.desired import SourceSnapshot
from reconciler.manifest import files, loader, policy

log = logging.getLogger(__name__)

QUIET = 0.01  # a burst of events is over when none came for this long (tar: < 1 ms apart)
FRESH = 0.01  # a file changed this recently, with no close seen since, waits this long
BATCH_MAX = 0.5  # ... or this long after its first event, whichever comes first
HEALTH_EVERY = 1.0  # how often a missing or dead watch is retried
_BRIDGE_SIZE = 4096
_ATTEMPTS = 3  # scans of a directory that keeps being swapped before settling for one

_TREE_EVENTS: list[type[fs.FileSystemEvent]] = [
    fs.FileCreatedEvent, fs.FileModifiedEvent, fs.FileClosedEvent, fs.FileDeletedEvent,
    fs.FileMovedEvent, fs.DirCreatedEvent, fs.DirDeletedEvent, fs.DirMovedEvent,
]
_PARENT_EVENTS: list[type[fs.FileSystemEvent]] = [
    fs.FileCreatedEvent, fs.FileDeletedEvent, fs.FileMovedEvent,
    fs.DirCreatedEvent, fs.DirDeletedEvent, fs.DirMovedEvent,
]
# events about one file's bytes or mode: of no interest for a name that is no manifest
_CONTENT_EVENTS = (fs.FileCreatedEvent, fs.FileModifiedEvent, fs.FileClosedEvent,
                   fs.FileAttribEvent)
# chmod and chown (IN_ATTRIB). watchdog 7.1 builds the inotify mask from the filter and
# knows no Attrib class there: IN_ATTRIB comes with FileModifiedEvent (the parent's
# handler drops those).
_ATTRIB_EVENTS: list[type[fs.FileSystemEvent]] = [
    fs.FileAttribEvent, fs.DirAttribEvent, fs.FileModifiedEvent,
]

Signature = tuple[int, int, int, int]  # dev, ino, size, mtime_ns
_Item = fs.FileSystemEvent | None  # None: "look again", from rescan() or lost events


# A snapshot of the directory: ``origins`` keyed by each file's path under the configured
# directory (``directory/relpath``), so keys stay the same across symlink swaps;
# ``detail`` names the directory configured and the one that was scanned ("resolved").
Snapshot = SourceSnapshot


class ManifestSource:
    """Snapshots of one manifests directory: once (``scan_once``) or as they change (``run``).

    A ``sources.Source``: ``id`` names it in every object it defines.
    """

    id = "directory"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        settle: float = 1.0,
        resync: float = 30.0,
        max_size: int = loader.MAX_SIZE,
        poll: bool = False,
        trust: Trust | None = None,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self._settle = settle
        self._resync = resync
        self._max_size = max_size
        self._poll = poll
        if trust is not None:  # compared with real paths
            prefixes = tuple(os.path.realpath(p) for p in trust.allowed_link_prefixes)
            trust = replace(trust, allowed_link_prefixes=prefixes)
        self.trust = trust
        self._tracker = _Tracker(self.directory, settle=settle, max_size=max_size, trust=trust)
        self._check: policy.Check | None = None
        self._rescan = threading.Event()
        self._lost = threading.Event()
        self._bridge: _Bridge | None = None
        self._last: Snapshot | None = None
        self._looked_at = -math.inf
        self._due = math.inf

    def scan_once(self) -> Snapshot:
        """The directory as it is now, every file read; no settle rules."""
        tracker = _Tracker(self.directory, settle=self._settle, max_size=self._max_size,
                           trust=self.trust)
        tracker.check = self._check
        return self._snapshot(_look(tracker, None, distrust=False))

    def set_check(self, check: policy.Check | None) -> None:
        """The daemon policy's hook for this source (None: none): every file is read with
        it from the next look on (``rescan`` asks for one). Set between looks, in the
        event loop, so the look thread never sees it change under it."""
        self._check = check

    def set_links(self, prefixes: tuple[str, ...]) -> None:
        """The policy's ``manifestLinks``: where a link in the directory may lead, from the
        next look on; set between looks, as ``set_check``. Without trust checks
        (``--insecure-manifests-dir``) links lead anywhere already."""
        if self.trust is not None:
            real = tuple(os.path.realpath(p) for p in prefixes)
            self.trust = replace(self.trust, allowed_link_prefixes=real)
            self._tracker.trust = self.trust

    def rescan(self) -> None:
        """Ask ``run`` for a full look now: from any thread, or a task such as a SIGHUP receiver."""
        self._rescan.set()
        bridge = self._bridge
        if bridge is not None:
            bridge.send(None)

    async def run(
        self,
        send: MemoryObjectSendStream[Snapshot],
        *,
        task_status: anyio.abc.TaskStatus[Snapshot] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send the first snapshot (also given to ``task_status.started``), then each change."""
        bridge_send, bridge_receive = anyio.create_memory_object_stream[_Item](_BRIDGE_SIZE)
        self._bridge = _Bridge(bridge_send, anyio.lowlevel.current_token(), self._lost)
        watches = None if self._poll else _Watches(self.directory, self._bridge,
                                                   attrib=self.trust is not None)
        try:
            with bridge_send, bridge_receive:
                first = await self._next(watches)
                assert first is not None  # the first look always makes a snapshot
                task_status.started(first)
                await send.send(first)
                while True:
                    await self._wait(bridge_receive, watches)
                    snapshot = await self._next(watches)
                    if snapshot is not None:
                        await send.send(snapshot)
        finally:
            self._bridge = None
            if watches is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(watches.close)

    async def _next(self, watches: _Watches | None) -> Snapshot | None:
        """Look at the directory; a new snapshot if what it holds changed."""
        self._rescan.clear()
        self._tracker.check = self._check
        distrust = self._poll or self._lost.is_set()
        self._lost.clear()
        started = time.perf_counter()
        look = await anyio.to_thread.run_sync(_look, self._tracker, watches, distrust)
        self._looked_at, self._due = time.monotonic(), look.due
        last = self._last
        if last is not None and (last.available, last.reason, last.origins) == (
            look.target is not None, look.reason, look.files
        ):
            return None
        self._last = self._snapshot(look)
        log.debug("snapshot of %d files in %.1f ms", len(look.files),
                  (time.perf_counter() - started) * 1000, extra={"stage": "snapshot"})
        return self._last

    async def _wait(
        self, events: MemoryObjectReceiveStream[_Item], watches: _Watches | None
    ) -> None:
        """Return when a look is due: a burst went quiet, a deadline passed, or one was asked."""
        every = self._settle if self._poll else self._resync
        while not (self._rescan.is_set() or self._lost.is_set()):
            now = time.monotonic()
            due = min(self._due, self._looked_at + every)
            if watches is not None and not watches.healthy():
                due = min(due, self._looked_at + HEALTH_EVERY)
            if now >= due:
                return
            wake = due if watches is None else min(due, now + HEALTH_EVERY)
            if await self._burst(events, until=wake):
                return

    async def _burst(self, events: MemoryObjectReceiveStream[_Item], *, until: float) -> bool:
        """Wait until ``until`` for an event, then take events until they pause; True if any.

        When the events so far leave no file open for writing (a rename into place, a
        close after writing, a delete), the look is at once: an atomic drop waits for
        nothing. Otherwise (a file being written), or when events came while the last look
        ran (a ``tar -x`` or ``cp`` of many files under way), the burst ends once no event
        came for ``QUIET``. Either way the look is a full scan, so a burst split in two
        is two correct looks, not a lost change."""
        received = continuing = False
        try:  # queued while the last look ran: a burst that look cut into, not a new one
            self._note(events.receive_nowait())
            received = continuing = True
        except anyio.WouldBlock:
            with anyio.move_on_after(until - time.monotonic()):
                self._note(await events.receive())
                received = True
        if not received:
            return False
        log.debug("event", extra={"stage": "event"})
        give_up = time.monotonic() + BATCH_MAX
        while (left := give_up - time.monotonic()) > 0:
            while True:  # what is queued already, without waiting
                try:
                    self._note(events.receive_nowait())
                except anyio.WouldBlock:
                    break
            if not (continuing or self._tracker.open_for_writing()):
                break
            with anyio.move_on_after(min(QUIET, left)) as pause:
                self._note(await events.receive())
            if pause.cancelled_caught:
                break
        return True

    def _note(self, item: _Item) -> None:
        if item is not None:
            self._tracker.note(item, time.monotonic())

    def _snapshot(self, look: _Look) -> Snapshot:
        return SourceSnapshot(
            source=self.id,
            available=look.target is not None,
            reason=look.reason,
            origins=types.MappingProxyType(dict(sorted(look.files.items()))),
            detail={"directory": self.directory,
                    "resolved": look.target.path if look.target is not None else None},
        )


# --- one look: resolve, arm, scan ------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A directory by path and identity: the same path may name a new directory."""

    path: str
    dev: int
    ino: int


@dataclass(frozen=True)
class _Look:
    target: _Target | None  # None: unavailable, and ``reason`` says why
    reason: str | None
    files: Mapping[str, loader.FileResult]
    due: float  # when a held-back change is to be looked at again (inf: none)


def _resolve(path: str) -> tuple[_Target | None, str | None]:
    """The directory ``path`` names now, or why there is none to read."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return None, f"manifests directory {path} does not exist"
    except OSError as exc:
        return None, f"cannot read manifests directory {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return None, f"manifests directory {path} is not a directory"
    if not os.access(real, os.R_OK | os.X_OK):
        return None, f"cannot read manifests directory {path}: permission denied"
    return _Target(real, info.st_dev, info.st_ino), None


def _look(tracker: _Tracker, watches: _Watches | None, distrust: bool) -> _Look:
    """Resolve, re-arm the watches, scan; again if the path was swapped during the scan.

    Runs in a worker thread. Watches are armed before the scan, so that a change during
    the scan makes an event and so another look.
    """
    look = _Look(None, f"manifests directory {tracker.directory} could not be read", {}, math.inf)
    for _ in range(_ATTEMPTS):
        target, reason = _resolve(tracker.directory)
        if watches is not None:
            watches.arm(target)
        try:
            look = tracker.look(target, reason, time.monotonic(), distrust=distrust)
        except OSError as exc:  # removed or made unreadable during the scan
            why = f"cannot read manifests directory {tracker.directory}: {exc.strerror or exc}"
            look = _Look(None, why, {}, math.inf)
            tracker.was_missing = True
            continue
        except _Refused as exc:  # others can write a directory it depends on
            look = _Look(None, str(exc), {}, math.inf)
            tracker.was_missing = True
        if target is None or _resolve(tracker.directory)[0] == target:
            break
    return look


@dataclass(frozen=True)
class _Seen:
    signature: Signature | None  # None: could not stat; read again on every look
    result: loader.FileResult
    check: policy.Check | None = None  # the policy hook it was read with


class _Tracker:
    """What the source knows between looks; used by one thread at a time.

    Keys are paths under the configured directory; event paths, which are under the
    resolved target, are mapped onto them.
    """

    def __init__(
        self, directory: str, *, settle: float, max_size: int, trust: Trust | None = None
    ) -> None:
        self.directory = directory
        self.settle = settle
        self.max_size = max_size
        self.trust = trust
        self.seen: dict[str, _Seen] = {}  # what the last look applied
        self.observed: dict[str, Signature | None] = {}  # what it saw, applied or not
        self.writing: dict[str, float] = {}  # last sign of a write not yet closed
        self.created: dict[str, float] = {}  # created, not yet written to or closed
        self.absent_since: dict[str, float] = {}
        self.complete: dict[str, float] = {}  # wall time a close or rename-in was seen
        self.target: _Target | None = None
        self.looked = False
        self.check: policy.Check | None = None  # the daemon policy's hook, for every read
        self.was_missing = False  # the last look found no directory

    def note(self, event: fs.FileSystemEvent, now: float) -> None:
        """Follow writes: a create or modify opens one, a close, move or delete ends it.

        A create alone holds a file back only while it is empty: watchdog also reports
        files it finds in a directory just created (``tar -x``), whose writes and close
        it never saw.
        """
        if isinstance(event, fs.FileMovedEvent):
            self._ended(event.src_path)
            self._ended(event.dest_path, complete=True)
        elif isinstance(event, fs.FileCreatedEvent | fs.FileModifiedEvent):
            key = self._key(event.src_path)
            if key is not None:
                kind = self.created if isinstance(event, fs.FileCreatedEvent) else self.writing
                kind[key] = now
        elif isinstance(event, fs.FileClosedEvent | fs.FileDeletedEvent):
            self._ended(event.src_path)

    def open_for_writing(self) -> bool:
        """Whether an event left a file created or written to and not closed yet."""
        return bool(self.writing or self.created)

    def look(
        self, target: _Target | None, reason: str | None, now: float, *, distrust: bool
    ) -> _Look:
        """One full scan with the settle rules; raises OSError if the directory fails,
        ``_Refused`` if others can write a directory it depends on."""
        if target is None:  # keep everything for when it is back
            self.was_missing = True
            return _Look(None, reason, {}, math.inf)
        if self.was_missing:
            # back (made again file by file, say): a file still missing gets the settle
            # window from now, not from when it went, or the first file back alone would
            # be taken as the whole directory and the rest deleted
            self.absent_since, self.was_missing = {}, False
        if target != self.target:
            self.target, self.writing, self.created = target, {}, {}
        checker = None if self.trust is None else _Checker(self.trust, self.directory, target)
        present: dict[str, _Seen] = {}
        found: set[str] = set()
        due = math.inf
        for path in files.scan(target.path):
            key = self._key(os.fspath(path))
            if key is None:
                continue
            refused: str | None = None
            try:
                if checker is None:
                    signature: Signature | None = _signature(os.stat(key))
                else:
                    info, refused = checker.file(os.fspath(path), key)
                    signature = _signature(info)
            except FileNotFoundError:  # gone since the scan listed it: an absence
                continue
            except OSError as exc:
                signature = None  # the loader will say what is wrong with it
                if checker is not None and exc.errno != errno.ELOOP:  # a loop: unreadable
                    refused = f"cannot check who can write it: {exc.strerror or exc}"
            found.add(key)
            held_until = self._held_until(key, signature, now, distrust=distrust)
            if refused is not None:  # not read; never cached, so a chmod back re-reads it
                present[key] = _Seen(None, _untrusted(key, refused))
            elif held_until is None:
                present[key] = self._read(key, signature)
            else:
                due = min(due, held_until)
                if key in self.seen:
                    present[key] = self.seen[key]
        due = min(due, self._keep_absent(present, found, now))
        self._forget(found, now)
        self.seen, self.looked = present, True
        return _Look(target, None, {k: s.result for k, s in present.items()}, due)

    def _held_until(
        self, key: str, signature: Signature | None, now: float, *, distrust: bool
    ) -> float | None:
        """When a file still being written may be read; None if it may be read now."""
        if distrust and self.looked and self.observed.get(key, ()) != signature:
            self.writing[key] = now  # no events to tell: wait until its stat holds still
        self.observed[key] = signature
        since = self.writing.get(key)
        if since is None and signature is not None and signature[2] == 0:
            since = self.created.get(key)
            old = self.seen.get(key)
            if since is None and old is not None and old.signature is not None \
                    and old.signature[2] > 0:
                # emptied in place (a truncate before a write, its events unseen while a
                # look was busy): an empty file is valid YAML that defines nothing, so it
                # waits the settle window from its change before it may delete anything
                since = now - max(0.0, time.time() - signature[3] / 1e9)
        if since is None:
            return self._fresh_until(key, signature, now, distrust=distrust)
        if now - since >= self.settle:
            self.writing.pop(key, None)
            self.created.pop(key, None)
            return None
        return since + self.settle

    def _fresh_until(
        self, key: str, signature: Signature | None, now: float, *, distrust: bool
    ) -> float | None:
        """A look at once (no quiet wait) must not read a file a writer has just touched
        but whose events are still on their way (``cp a b`` over an existing b, ``rsync
        --inplace``, a truncate right after an earlier close): a file changed within
        ``FRESH`` of now waits until it is ``FRESH`` old, unless it was renamed into place
        after that change (an atomic drop, git-sync, a ConfigMap swap: taken at once). A
        close proves nothing here, since the next write's events may still be on their way,
        so a file written in place waits ``FRESH`` after its last write, as the quiet
        window had it wait before. Not on the first look (no events yet: everything there
        counts) nor when events are distrusted (the stat-stability rule holds them)."""
        if distrust or not self.looked or signature is None:
            return None
        old = self.seen.get(key)
        if old is not None and old.signature == signature:
            return None  # unchanged: nothing to read
        mtime = signature[3] / 1e9
        if self.complete.get(key, -math.inf) >= mtime:
            return None
        age = time.time() - mtime
        return None if age >= FRESH else now + (FRESH - age)

    def _read(self, key: str, signature: Signature | None) -> _Seen:
        old = self.seen.get(key)
        if (old is not None and signature is not None and old.signature == signature
                and old.check is self.check):
            return old
        # Read through the configured path: relative host paths in the manifest then
        # resolve under it, and stay the same when a symlinked directory is swapped.
        return _Seen(signature, loader.load_file(key, max_size=self.max_size,
                                                 check=self.check), self.check)

    def _keep_absent(self, present: dict[str, _Seen], found: set[str], now: float) -> float:
        """Keep files that left the scan until they stayed away for ``settle``; the next due."""
        due = math.inf
        here = {present[k].result.digest for k in found if k in present}
        for key, old in self.seen.items():
            if key in found:
                continue
            since = self.absent_since.setdefault(key, now)
            renamed = bool(old.result.digest) and old.result.digest in here
            if now - since < self.settle and not renamed:
                present[key] = old
                due = min(due, since + self.settle)
        self.absent_since = {
            k: t for k, t in self.absent_since.items() if k in present and k not in found
        }
        return due

    def _forget(self, found: set[str], now: float) -> None:
        self.observed = {k: s for k, s in self.observed.items() if k in found}
        self.complete = {k: t for k, t in self.complete.items() if k in found}
        self.writing, self.created = (
            {k: t for k, t in kind.items() if k in found or now - t < self.settle}
            for kind in (self.writing, self.created)
        )

    def _ended(self, path: bytes | str, *, complete: bool = False) -> None:
        key = self._key(path)
        if key is not None:
            self.writing.pop(key, None)
            self.created.pop(key, None)
            if complete:  # renamed into place: whole as it was then
                self.complete[key] = time.time()

    def _key(self, path: bytes | str) -> str | None:
        """``path`` under the target as a key under the configured directory."""
        text = os.fsdecode(path)
        if self.target is None or not text.startswith(self.target.path + os.sep):
            return None
        return os.path.join(self.directory, text[len(self.target.path) + 1 :])


def _signature(info: os.stat_result) -> Signature:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


# --- trust: who can write what a look reads ---------------------------------------------

OVERRIDE = "--insecure-manifests-dir to override"
_MAX_LINKS = 40  # links followed in one path, as the kernel's ELOOP


@dataclass(frozen=True)
class Trust:
    """Who may write the manifests: root and ``owner`` (a uid: ``--manifests-owner``).

    ``allowed_link_prefixes``: directories outside the manifests directory that a symlink
    in it may lead into (none by default: the daemon policy names them); compared with
    the real path a link leads to.
    """

    owner: int = 0
    allowed_link_prefixes: tuple[str, ...] = ()


class _Refused(Exception):
    """Others can write a directory the manifests depend on: the source is unavailable."""


_Entry = tuple[str, os.stat_result]  # a path and its lstat


@dataclass(frozen=True)
class _Place:
    """A directory the scan entered: where it really is, or why its files are refused."""

    real: str
    refused: str | None = None


class _Checker:
    """The trust checks of one look (see the module's docstring); what it learns of
    directories is kept for that look only, so every look sees each chmod."""

    def __init__(self, trust: Trust, directory: str, target: _Target) -> None:
        self.trust = trust
        self.directory = directory
        self.root = target.path
        self._places = {target.path: _Place(target.path)}
        self._dirs: dict[tuple[str, str], tuple[str, list[_Entry]]] = {}
        self._passed: set[tuple[str, bool]] = set()  # directories judged safe
        if self._chain(directory) != target.path:  # swapped since: the look is redone
            self._chain(target.path)

    def file(self, path: str, key: str) -> tuple[os.stat_result, str | None]:
        """The stat of the file the scan found at ``path`` (``key`` through the configured
        path; a link's target), and why it must not be read, if it must not."""
        info = os.lstat(key)
        place = self.place(os.path.dirname(path))
        if place.refused is not None:
            return info, place.refused
        if not stat.S_ISLNK(info.st_mode):  # the common case: no syscall beyond the lstat
            why = _writable(info, self.trust)
            return info, None if why is None else f"the file is {why}"
        end, seen = self._walk(place.real, os.path.basename(path), first=info)
        return seen[-1][1], self._judge(end, seen, name=key)

    def place(self, path: str) -> _Place:
        """Where the directory ``path`` (as the scan reached it, under the target) is."""
        place = self._places.get(path)
        if place is None:
            parent = self.place(os.path.dirname(path))
            if parent.refused is not None:
                place = parent
            else:
                end, seen = self._walk(parent.real, os.path.basename(path))
                place = _Place(end, self._judge(end, seen, name=path, listed=True))
            self._places[path] = place
        return place

    def _chain(self, path: str) -> str:
        """Check ``path`` and every entry on the way to it from ``/``; where it leads."""
        end, seen = self._walk("/", path)
        for entry, info in [("/", os.lstat("/")), *seen]:
            why = _writable(info, self.trust, passed=entry != end)
            if why is not None:
                raise _Refused(self._refusal(entry, why))
        return end

    def _walk(
        self, start: str, rest: str, *, first: os.stat_result | None = None, depth: int = 0
    ) -> tuple[str, list[_Entry]]:
        """``rest`` resolved from the real directory ``start`` as the kernel would (an
        absolute ``rest`` from ``/``): the real path it leads to, and each entry looked at
        on the way with its ``lstat`` (``first``: the first one's, known already), every
        link and what it leads through, the end last.

        ``os.path.realpath`` gives the end alone, but a link on the way (``/a/l ->
        /b/l2``) is only as safe as the directory that holds it (``/b``). The directory
        part of a link's target is resolved once a look (a ConfigMap's thousand
        ``key -> ..data/key`` go through ``..data`` once), so following a link costs a
        ``readlink`` and the ``lstat`` of its target.
        """
        if depth > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), start)
        todo = _names(rest)  # a stack: the next name last
        current = "/" if rest.startswith("/") else start
        seen: list[_Entry] = []
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":  # ``current`` is real, so its parent is its dirname
                current = os.path.dirname(current)
                continue
            path = f"{current}/{name}" if current != "/" else f"/{name}"
            info, first = (os.lstat(path), None) if first is None else (first, None)
            seen.append((path, info))
            if not stat.S_ISLNK(info.st_mode):
                current = path
                continue
            depth += 1
            target = os.readlink(path)
            if target.startswith("/"):
                current = "/"
            head, _, tail = target.rpartition("/")
            if head.strip("/"):
                resolved = self._dirs.get((current, head))
                if resolved is None:
                    resolved = self._walk(current, head, depth=depth)
                    self._dirs[current, head] = resolved
                current, through = resolved
                seen.extend(through)
                target = tail
            todo.extend(_names(target))
            if depth > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        return current, seen

    def _judge(
        self, end: str, seen: list[_Entry], *, name: str, listed: bool = False
    ) -> str | None:
        """Why what ``name`` leads to (``end``, through ``seen``) must not be read; None if
        it may be. ``listed``: ``name`` is a directory whose entries the scan reads, and
        the words are for each file in it."""
        if not self._allowed(end):
            who = f"{self._shown(name)} " if listed else ""
            return f"{who}links to {end}, outside the manifests directory"
        for entry, info in seen:
            if stat.S_ISDIR(info.st_mode):
                read = listed and entry == end
                if (entry, read) in self._passed:  # ``..data``'s target, once a look
                    continue
                passed = not (read or self._inside(entry))
                if (why := _writable(info, self.trust, passed=passed)) is not None:
                    raise _Refused(self._refusal(entry, why))
                self._passed.add((entry, read))
            elif (why := _writable(info, self.trust)) is not None:
                who = f"{self._shown(name)}: " if listed else ""
                what = "the link" if stat.S_ISLNK(info.st_mode) else "its target"
                return f"{who}{what} {self._shown(entry)} is {why}"
        return None

    def _allowed(self, end: str) -> bool:
        return self._inside(end) or any(_under(end, p) for p in self.trust.allowed_link_prefixes)

    def _inside(self, path: str) -> bool:
        return _under(path, self.root)

    def _refusal(self, entry: str, why: str) -> str:
        if entry == self.directory:
            subject = f"manifests directory {entry}"
        else:
            if entry == self.root:
                what = f"its target {entry}"
            elif _under(self.directory, entry) or _under(self.root, entry):
                what = f"its parent {entry}"
            elif self._inside(entry):
                what = f"{self._shown(entry)} in it"
            else:
                what = f"{entry}, where a link in it leads,"
            subject = f"manifests directory {self.directory}: {what}"
        return f"{subject} is {why}: refusing it ({OVERRIDE})"

    def _shown(self, path: str) -> str:
        """A path under the target as it is under the configured path (as keys are)."""
        if path != self.root and self._inside(path):
            return os.path.join(self.directory, os.path.relpath(path, self.root))
        return path


def _names(path: str) -> list[str]:
    """The names in ``path``, last first (a stack to pop)."""
    return path.split("/")[::-1] if "/" in path else [path]


def _under(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or in it (both real, absolute, normalised)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _writable(info: os.stat_result, trust: Trust, *, passed: bool = False) -> str | None:
    """Who other than root and the owner can change this entry, in words; None: no one.

    ``passed``: a directory only passed through on the way (a parent, not one whose
    entries are read). Writable by others but sticky (``/tmp``), it is safe: they may add
    entries but not rename or remove one they do not own, and the next entry on the way
    is checked to be owned by root or the owner.
    """
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):  # a link has no mode of its own; only its owner counts
        return None if info.st_uid in (0, trust.owner) else f"owned by uid {info.st_uid}"
    if info.st_uid not in (0, trust.owner):
        return f"writable by uid {info.st_uid}, its owner (mode {mode:04o})"
    if passed and stat.S_ISDIR(info.st_mode) and mode & stat.S_ISVTX:
        return None
    if mode & stat.S_IWOTH:
        return f"writable by everyone (mode {mode:04o})"
    if mode & stat.S_IWGRP:
        return f"writable by group {info.st_gid} (mode {mode:04o})"
    return None


def _untrusted(key: str, why: str) -> loader.FileResult:
    finding = loader.Finding(key, None, "", f"{why}: not read ({OVERRIDE})")
    return loader.FileResult(key, "", (), (finding,))


# --- the watches and the bridge into the loop -----------------------------------------


class _Bridge:
    """Where watchdog's threads hand over to the loop: never blocks, never raises."""

    def __init__(
        self,
        send: MemoryObjectSendStream[_Item],
        token: anyio.lowlevel.EventLoopToken,
        lost: threading.Event,
    ) -> None:
        self._send = send
        self._token = token
        self._lost = lost
        self._loop_thread = threading.get_ident()

    def send(self, item: _Item) -> None:
        try:
            if threading.get_ident() == self._loop_thread:
                self._send.send_nowait(item)
            else:
                anyio.from_thread.run_sync(self._send.send_nowait, item, token=self._token)
        except anyio.WouldBlock:  # the loop is behind; it wakes up to a full stream anyway
            if item is not None:
                self._lost.set()
        except (anyio.RunFinishedError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # shutting down

    def lose(self) -> None:
        """Events were lost elsewhere: ask for a distrustful look."""
        self._lost.set()
        self.send(None)


class _Forward(fs.FileSystemEventHandler):
    """The observer thread's whole job: filter by name, hand over."""

    def __init__(self, bridge: _Bridge, relevant: Callable[[fs.FileSystemEvent], bool]) -> None:
        self._bridge = bridge
        self._relevant = relevant

    def dispatch(self, event: fs.FileSystemEvent) -> None:
        if self._relevant(event):
            self._bridge.send(event)


def _in_tree(event: fs.FileSystemEvent) -> bool:
    """Writes to names that are no manifest (swap files, temporaries) never matter;
    structural events always may (``..data`` renamed in a ConfigMap)."""
    if isinstance(event, _CONTENT_EVENTS):
        return files.is_manifest_name(os.path.basename(os.fsdecode(event.src_path)))
    return True


class _OverflowAlarm(logging.Handler):
    """watchdog 7 only logs an inotify queue overflow; this turns that log into a rescan."""

    def __init__(self, bridge: _Bridge) -> None:
        super().__init__(logging.WARNING)
        self._bridge = bridge

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage():
            self._bridge.lose()


_Armed = tuple[_Target, ObservedWatch]


class _Watches:
    """The recursive watch on the target and the flat one on the configured path's parent.

    ``arm`` runs at every look, in its worker thread; ``healthy`` in the loop between looks.
    """

    _LOGGER = "watchdog.observers"

    def __init__(self, directory: str, bridge: _Bridge, *, attrib: bool = False) -> None:
        self._directory = directory
        self._name = os.path.basename(directory)
        self._bridge = bridge
        self._attrib = attrib  # chmod and chown make a look (the trust checks)
        self._observer: InotifyObserver | None = None
        self._tree: _Armed | None = None
        self._parent: _Armed | None = None
        self._alarm = _OverflowAlarm(bridge)
        logging.getLogger(self._LOGGER).addHandler(self._alarm)

    def arm(self, target: _Target | None) -> None:
        if self._observer is None or not self._observer.is_alive():
            self._restart()
        parent, _ = _resolve(os.path.dirname(self._directory))
        self._parent = self._rearm(self._parent, parent, recursive=False)
        self._tree = self._rearm(self._tree, target, recursive=True)

    def healthy(self) -> bool:
        observer = self._observer
        return (
            observer is not None
            and observer.is_alive()
            and all(w is not None and self._alive(w[1]) for w in (self._tree, self._parent))
        )

    def close(self) -> None:
        logging.getLogger(self._LOGGER).removeHandler(self._alarm)
        if self._observer is not None:
            _stop(self._observer)
            self._observer = None

    def _restart(self) -> None:
        if self._observer is not None:
            log.warning("the file watcher thread died; starting a new one")
            _stop(self._observer)
        self._observer = None
        self._tree = self._parent = None
        try:
            observer = InotifyObserver(generate_full_events=True)
            observer.start()
        except OSError as exc:
            log.warning("cannot watch for changes (%s); looking every %ss", exc, HEALTH_EVERY)
            return
        self._observer = observer

    def _rearm(
        self, current: _Armed | None, target: _Target | None, *, recursive: bool
    ) -> _Armed | None:
        observer = self._observer
        if observer is None:
            return None
        if current is not None and (current[0] != target or not self._alive(current[1])):
            with contextlib.suppress(KeyError):
                observer.unschedule(current[1])
            current = None
        if current is not None or target is None:
            return current
        parent = target.path

        def names_us(event: fs.FileSystemEvent) -> bool:
            # and the parent's own chmod, so that a chmod g+w there is seen at once
            if isinstance(event, fs.FileModifiedEvent):  # the mask's price, see _ATTRIB_EVENTS
                return False
            return self._names_us(event) or (
                isinstance(event, fs.DirAttribEvent) and os.fsdecode(event.src_path) == parent)

        relevant = _in_tree if recursive else names_us
        handler = _Forward(self._bridge, relevant)
        kinds = _TREE_EVENTS if recursive else _PARENT_EVENTS
        if self._attrib:
            kinds = kinds + _ATTRIB_EVENTS
        try:
            watch = observer.schedule(handler, target.path, recursive=recursive, event_filter=kinds)
        except OSError as exc:
            log.warning("cannot watch %s (%s); looking every %ss", target.path, exc, HEALTH_EVERY)
            return None
        return target, watch

    def _alive(self, watch: ObservedWatch) -> bool:
        observer = self._observer
        return observer is not None and any(
            e.watch == watch and e.is_alive() and not e.stopped_event.is_set()
            for e in list(observer.emitters)
        )

    def _names_us(self, event: fs.FileSystemEvent) -> bool:
        paths = (event.src_path, event.dest_path)
        return any(os.path.basename(os.fsdecode(p)) == self._name for p in paths if p)


def _stop(observer: InotifyObserver) -> None:
    observer.stop()
    if observer.ident is not None:  # join() refuses a thread that never started
        observer.join()
