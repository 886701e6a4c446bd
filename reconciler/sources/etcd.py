"""An etcd cluster as a ``Source``: this node's keys and the fleet's, as snapshots.

    etcd ─etcdapi─▶ etcd source (this module) ─SourceSnapshot─▶ core.desired → planner

The key layout (``docs/fleet.md``)::

    /reconciler/nodes/NODE/<anything>    objects for one node
    /reconciler/fleet/<anything>         objects for every node whose labels match the
                                         object's ``reconciler.io/nodeSelector`` annotation
                                         (a Kubernetes label selector; none: every node)
    /reconciler/status/NODE/...          what the node reports back (``daemon/fleet.py``)

Each key holds YAML or JSON documents, exactly as a file in the manifests directory, and
is an *origin* like a file: its errors name the key (``etcd:/reconciler/fleet/web:3:``),
a broken value keeps what the key defined before, a name defined by two keys applies
neither (``core.desired``).

Watching: one transaction reads both prefixes at one revision, then a watch on each
prefix starts from that revision + 1, so no change is missed and none applied twice.
Events only say "read again" (a read of both prefixes at one revision, so a transaction
that moves an object between them is never half seen): the first after a quiet spell
reads at once (a ``fleet apply`` is one transaction, one watch message per prefix); when
more came while that read ran (a script of puts), the source waits until ``QUIET``
passes with none (at most ``BATCH_MAX``) and reads once for all. The watched member is
asked every ``LIVENESS`` seconds whether it still answers. A compacted revision
(``Compacted``) or a broken stream starts over from a new read; an unreachable cluster
makes the source unavailable (nothing it defined is deleted) and it retries with backoff.

Offline: every snapshot's keys are written to ``etcd-cache.json`` in the state dir
(atomically, before the snapshot is sent). A daemon that starts while etcd cannot be
reached sends that copy as an unavailable snapshot, which ``core.desired`` runs as the
last good state; nothing is deleted until etcd answers again.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import types
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

from reconciler import atomic
from reconciler.core.desired import SourceSnapshot
from reconciler.manifest import loader, policy, selectors
from reconciler.sources import etcdapi

log = logging.getLogger(__name__)

ROOT = "/reconciler/"
FLEET = ROOT + "fleet/"
NODE_SELECTOR = "reconciler.io/nodeSelector"
QUIET = 0.02  # a burst of watch events is over when none came for this long
BATCH_MAX = 0.5  # ... or this long after its first event
RETRY_FIRST, RETRY_MAX = 0.25, 5.0  # reconnect backoff while etcd cannot be reached
WATCH_RETRY = 0.2  # after a watch ended, before reading again
LIVENESS = 5.0  # how often the watched member is asked whether it still answers
CACHE = "etcd-cache.json"


def node_prefix(node: str) -> str:
    return f"{ROOT}nodes/{node}/"


def status_prefix(node: str) -> str:
    return f"{ROOT}status/{node}/"


def origin(key: str) -> str:
    """How an etcd key is named as an origin (in findings, ``get``, events)."""
    return "etcd:" + key


class EtcdSource:
    """Snapshots of one node's part of an etcd keyspace. A ``sources.Source``."""

    id = "etcd"

    def __init__(self, settings: etcdapi.Settings, *, node: str, labels: Mapping[str, str],
                 state_dir: str) -> None:
        self.settings = settings
        self.node = node
        self.labels = dict(labels)
        self.prefixes = (node_prefix(node), FLEET)
        self._cache_path = Path(state_dir) / CACHE
        self._kvs: dict[str, etcdapi.KV] = {}
        self._revision = 0
        self._parsed: dict[tuple[str, int], loader.FileResult] = {}
        self._check: policy.Check | None = None
        self._rescan = anyio.Event()
        self._last: SourceSnapshot | None = None
        self.liveness = LIVENESS

    def set_check(self, check: policy.Check | None) -> None:
        """The policy's hook for this source (None: no policy); in force from the next
        read, which ``rescan`` asks for."""
        self._check = check
        self._parsed = {}

    def set_links(self, prefixes: tuple[str, ...]) -> None:
        """Keys have no links."""

    def rescan(self) -> None:
        """SIGHUP: read everything again."""
        self._rescan.set()

    async def run(
        self,
        send: MemoryObjectSendStream[SourceSnapshot],
        *,
        task_status: anyio.abc.TaskStatus[SourceSnapshot] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        retry = RETRY_FIRST
        async with etcdapi.Client(self.settings) as client:
            while True:
                snapshot = await self._read(client)
                if not started:
                    started = True
                    task_status.started(snapshot)
                await self._send(send, snapshot)
                if not snapshot.available:
                    with anyio.move_on_after(retry):
                        await self._rescan.wait()
                    retry = min(retry * 2, RETRY_MAX)
                    self._rescan = anyio.Event()
                    continue
                retry = RETRY_FIRST
                try:
                    await self._watch(client, send)
                except etcdapi.Compacted as exc:
                    log.warning("etcd: %s; reading every key again", exc)
                except etcdapi.EtcdError as exc:
                    # a member gone, frozen or without a leader: read again (from the next
                    # endpoint); only when no member answers is the source unavailable
                    log.warning("etcd watch ended: %s; reading again", exc)
                    await anyio.sleep(WATCH_RETRY)

    async def _read(self, client: etcdapi.Client) -> SourceSnapshot:
        """Both prefixes at one revision (one transaction): the snapshot, or unavailable."""
        try:
            kvs, revision = await client.ranges(*self.prefixes)
        except etcdapi.EtcdError as exc:
            return self._unavailable(exc)
        self._kvs = {kv.key: kv for group in kvs for kv in group}
        self._revision = revision
        return await self._publish()

    async def _watch(self, client: etcdapi.Client,
                     send: MemoryObjectSendStream[SourceSnapshot]) -> None:
        """Watch both prefixes on one member from the read's revision + 1, until a rescan
        or an error. Events only say "read again": each burst ends in a read of both
        prefixes at one revision, so a transaction that moves an object from one prefix to
        the other (its events on two streams, in no set order) is never seen half done."""
        url = client.endpoint
        events_in, events_out = anyio.create_memory_object_stream[int](256)
        failure: list[BaseException] = []

        def fail(exc: BaseException, scope: anyio.CancelScope) -> None:
            failure.append(exc)
            scope.cancel()

        async def watch(prefix: str, scope: anyio.CancelScope) -> None:
            try:
                async for batch in client.watch(prefix, self._revision + 1, url=url):
                    await events_in.send(max(e.mod_revision for e in batch))
            except etcdapi.EtcdError as exc:
                fail(exc, scope)

        async def alive(scope: anyio.CancelScope) -> None:
            # a member that froze or vanished without a reset keeps a stream open and
            # silent: ask it, on its own, every LIVENESS seconds
            while True:
                await anyio.sleep(self.liveness)
                try:
                    await client.ping(url)
                except etcdapi.EtcdError as exc:
                    fail(etcdapi.Unavailable(f"etcd {url} stopped answering ({exc})"), scope)

        with events_in, events_out:
            async with anyio.create_task_group() as tg:
                for prefix in self.prefixes:
                    tg.start_soon(watch, prefix, tg.cancel_scope)
                tg.start_soon(alive, tg.cancel_scope)
                tg.start_soon(self._wait_rescan, tg.cancel_scope)
                while True:
                    try:  # queued while the last read ran: a burst under way
                        revision, burst = events_out.receive_nowait(), True
                    except anyio.WouldBlock:
                        revision, burst = await events_out.receive(), False
                    if revision <= self._revision:
                        continue  # already in the last read
                    give_up = time.monotonic() + BATCH_MAX
                    while burst and (left := give_up - time.monotonic()) > 0:
                        with anyio.move_on_after(min(QUIET, left)) as pause:
                            await events_out.receive()
                        if pause.cancelled_caught:
                            break
                    snapshot = await self._read(client)
                    if not snapshot.available:
                        fail(etcdapi.Unavailable(str(snapshot.reason)), tg.cancel_scope)
                        break
                    await self._send(send, snapshot)
        if failure:
            raise failure[0]

    async def _wait_rescan(self, scope: anyio.CancelScope) -> None:
        await self._rescan.wait()
        self._rescan = anyio.Event()
        scope.cancel()

    async def _send(self, send: MemoryObjectSendStream[SourceSnapshot],
                    snapshot: SourceSnapshot) -> None:
        if self._last is not None and _same(self._last, snapshot):
            return
        await send.send(snapshot)
        self._last = snapshot  # only once sent: a cancelled send is sent again next time

    # --- snapshots ----------------------------------------------------------------------

    async def _publish(self) -> SourceSnapshot:
        """The snapshot of what was read, after keeping a copy of it for offline starts
        (written and synced in a worker thread: a large fleet's copy is not small)."""
        try:
            await anyio.to_thread.run_sync(self._save)
        except OSError as exc:
            log.warning("cannot keep etcd's state for an offline start in %s: %s",
                        self._cache_path, exc.strerror or exc)
        return SourceSnapshot(
            source=self.id, available=True, reason=None, origins=self._origins(),
            detail={"endpoints": self.settings.describe(), "node": self.node,
                    "revision": str(self._revision)})

    def _unavailable(self, exc: etcdapi.EtcdError) -> SourceSnapshot:
        """Unavailable; carrying the last good keys (in memory, else the offline copy)."""
        if not self._kvs:
            self._load()
        why = f"etcd unreachable ({exc.message})"
        if isinstance(exc, etcdapi.Denied):
            why = f"etcd refused this node ({exc.message})"
        if self._revision:
            why += f"; running last good state from revision {self._revision}"
        return SourceSnapshot(
            source=self.id, available=False, reason=why, origins=self._origins(),
            detail={"endpoints": self.settings.describe(), "node": self.node,
                    "revision": str(self._revision) if self._revision else None})

    def _origins(self) -> Mapping[str, loader.FileResult]:
        out: dict[str, loader.FileResult] = {}
        parsed: dict[tuple[str, int], loader.FileResult] = {}
        for key in sorted(self._kvs):
            kv = self._kvs[key]
            memo = (key, kv.mod_revision)
            result = self._parsed.get(memo) or loader.load_bytes(
                kv.value, file=origin(key), base_dir=None, check=self._check)
            parsed[memo] = result
            if key.startswith(FLEET):
                result = select(result, self.labels)
            out[origin(key)] = result
        self._parsed = parsed
        return types.MappingProxyType(out)

    def _save(self) -> None:
        doc = {"revision": self._revision, "node": self.node,
               "endpoints": list(self.settings.endpoints), "savedAt": time.time(),
               "keys": {k: {"value": base64.b64encode(kv.value).decode(),
                            "modRevision": kv.mod_revision}
                        for k, kv in sorted(self._kvs.items())}}
        atomic.write(self._cache_path, json.dumps(doc, indent=1).encode(), sync_dir=True)

    def _load(self) -> None:
        """The offline copy, if it is this node's and whole; else nothing (logged)."""
        try:
            doc = json.loads(self._cache_path.read_bytes())
            if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
                raise ValueError("not an offline copy")
            if doc.get("node") != self.node:
                log.warning("etcd's offline copy %s is of node %r, not %r: not used",
                            self._cache_path, doc.get("node"), self.node)
                return
            kvs = {str(k): etcdapi.KV(str(k), base64.b64decode(v["value"]),
                                      int(v["modRevision"]))
                   for k, v in doc["keys"].items()}
            revision = int(doc["revision"])
        except FileNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001 - a bad copy is logged, never fatal
            log.warning("etcd's offline copy %s cannot be read: %s", self._cache_path, exc)
            return
        self._kvs, self._revision = kvs, revision


def select(result: loader.FileResult, labels: Mapping[str, str]) -> loader.FileResult:
    """A fleet key's documents for a node with ``labels``: those whose node selector
    matches; a selector that does not parse is a finding on the key."""
    if not result.ok:
        return result
    kept: list[loader.Loaded] = []
    findings: list[loader.Finding] = []
    for doc in result.documents:
        text = doc.document.metadata.annotations.get(NODE_SELECTOR)
        if text is None:
            kept.append(doc)
            continue
        try:
            wanted = selectors.parse(text)
        except selectors.SelectorError as exc:
            findings.append(loader.Finding(result.file, doc.line,
                                           f"metadata.annotations.{NODE_SELECTOR}", str(exc)))
            continue
        if wanted.matches(labels):
            kept.append(doc)
    if findings:
        return loader.FileResult(result.file, result.digest, (), tuple(findings))
    return loader.FileResult(result.file, result.digest, tuple(kept), ())


def _same(a: SourceSnapshot, b: SourceSnapshot) -> bool:
    return (a.available, a.reason, dict(a.origins)) == (b.available, b.reason, dict(b.origins))
