"""Status back to etcd: each object's status and the node's heartbeat, bound to a lease.

    loop (publishes a ControllerView) ─▶ StatusReporter (this module) ─etcdapi─▶ etcd

Keys, all under ``/reconciler/status/NODE/`` (``sources/etcd.py`` has the layout):

    node               the heartbeat: labels, time, source state; bound to the lease,
                       so it is gone ``lease TTL`` after the daemon dies
    registered         the same without a lease, refreshed with each heartbeat: a node
                       whose ``node`` key is gone but ``registered`` is not is *down*
    objects/NAME       one object's status (phase, ready, restarts, message, spec hash
                       applied and desired, last exit, since); bound to the lease

Rate: at most one flush every ``report_every`` seconds, of what changed since the last
one, in transactions of at most ``max_ops`` operations (etcd refuses more than 128 by
default) and at most ``max_txns`` of them a flush; 1,000 containers changing at once
are reported over a few flushes, not in a thousand writes.

Failures change nothing but the log (one line a spell). A passing one (a timeout, a
member gone) keeps the lease and tries again at the next flush; when the lease is gone
(expired, refused, or not renewed for its whole TTL) a new session starts with a new
lease and every key rewritten, sessions that fail at once backing off from 0.5 s to 5 s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from reconciler import __version__
from reconciler.daemon import view as view_mod
from reconciler.sources import etcdapi
from reconciler.sources.etcd import status_prefix

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # between sessions that failed, doubling


@dataclass(frozen=True)
class FleetOptions:
    settings: etcdapi.Settings
    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    lease_ttl: int = 15
    report_every: float = 0.5
    max_ops: int = 100
    max_txns: int = 4


class _Viewed(Protocol):
    @property
    def view(self) -> view_mod.ControllerView: ...


def object_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a node reports of one object (a row of status.json's ``containers``)."""
    return {
        "phase": row["phase"],
        "ready": row["phase"] == "Running",
        "restarts": row["restarts"],
        "message": row["message"],
        "specHash": row["specHash"],
        "desiredSpecHash": row["desiredSpecHash"],
        "lastExit": row["lastExit"],
        "source": row["source"],
        "since": row["since"],
        "pod": (row.get("pod") or {}).get("pod"),  # a pod's unit: its pod's key
    }


class StatusReporter:
    def __init__(self, opts: FleetOptions, ctl: _Viewed) -> None:
        self.opts = opts
        self.ctl = ctl
        self.prefix = status_prefix(opts.node)
        self._clock = view_mod.PhaseClock()
        self._written: dict[str, str] = {}  # key -> value as etcd has it under the lease
        self._started = time.time()
        self.flushes = 0  # transactions of object status written (for tests and metrics)
        self._down = False  # a failure was logged; the next success says so

    async def run(self) -> None:
        retry = RETRY_FIRST
        async with etcdapi.Client(self.opts.settings) as client:
            while True:
                began, lease = time.monotonic(), 0
                try:
                    lease = await client.grant(self.opts.lease_ttl)
                    await self._session(client, lease)
                except etcdapi.EtcdError as exc:
                    self._trouble(f"etcd: cannot report status: {exc}")
                finally:
                    if lease:
                        await _revoke(client, lease)
                if time.monotonic() - began > self._beat_every:
                    retry = RETRY_FIRST  # that session worked for a while: not a loop
                await anyio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

    @property
    def _beat_every(self) -> float:
        return max(self.opts.lease_ttl / 3, 0.2)

    def _trouble(self, message: str) -> None:
        if not self._down:  # once per spell, not once a retry
            log.warning("%s", message)
        self._down = True

    async def _session(self, client: etcdapi.Client, lease: int) -> None:
        """Everything written again under a new lease, then changes and heartbeats. A
        passing failure (a timeout, a member gone) keeps the lease and tries again; the
        session ends when the lease is gone (expired, or unrenewed for its whole TTL)."""
        self._written = {}
        next_beat = 0.0
        renewed = time.monotonic()
        while True:
            now = time.monotonic()
            try:
                if now >= next_beat:
                    if next_beat and await client.keepalive(lease) <= 0:
                        log.warning("etcd: the status lease expired; writing everything again")
                        return
                    renewed = now
                    await self._heartbeat(client, lease)
                    next_beat = now + self._beat_every
                await self._flush(client, lease)
            except etcdapi.Unavailable as exc:
                if now - renewed > self.opts.lease_ttl:
                    raise  # the lease cannot have outlived that: start over
                self._trouble(f"etcd: cannot report status now: {exc}")
            else:
                if self._down:
                    log.info("etcd: reporting status again (lease %x)", lease)
                    self._down = False
            await anyio.sleep(self.opts.report_every)

    async def _heartbeat(self, client: etcdapi.Client, lease: int) -> None:
        view = self.ctl.view
        desired = view.desired
        doc = {"node": self.opts.node, "labels": dict(self.opts.labels),
               "heartbeatAt": time.time(), "startedAt": self._started,
               "leaseTTL": self.opts.lease_ttl, "version": __version__,
               "ready": view.ready, "objects": len(view.observed),
               "sources": {} if desired is None else {
                   sid: {"available": sid not in desired.unavailable,
                         "reason": desired.unavailable.get(sid)}
                   for sid in sorted(desired.sources)}}
        text = json.dumps(doc, sort_keys=True)
        await client.txn([etcdapi.put(self.prefix + "node", text, lease=lease),
                          etcdapi.put(self.prefix + "registered", text)])

    async def _flush(self, client: etcdapi.Client, lease: int) -> None:
        view = self.ctl.view
        if not view.passes:
            return
        rows = view_mod.status_document(view, self._clock)["containers"]
        want = {self.prefix + "objects/" + name: json.dumps(object_status(row), sort_keys=True)
                for name, row in rows.items()}
        ops: list[tuple[str, str | None]] = [(k, v) for k, v in sorted(want.items())
                                             if self._written.get(k) != v]
        ops += [(k, None) for k in sorted(self._written) if k not in want]
        for start in range(0, min(len(ops), self.opts.max_ops * self.opts.max_txns),
                           self.opts.max_ops):
            chunk = ops[start:start + self.opts.max_ops]
            await client.txn([etcdapi.delete(k) if v is None else etcdapi.put(k, v, lease=lease)
                              for k, v in chunk])
            self.flushes += 1
            for k, v in chunk:
                if v is None:
                    self._written.pop(k, None)
                else:
                    self._written[k] = v


async def _revoke(client: etcdapi.Client, lease: int) -> None:
    """On the way out (or before a new lease): the node's leased keys go at once."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
        try:
            await client.revoke(lease)
        except etcdapi.EtcdError:
            pass  # it expires by itself
