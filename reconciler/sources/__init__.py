"""Desired-state sources: where manifests come from.

    directory.py (a watched manifests directory; an etcd prefix later)
        ─SourceSnapshot─▶ core.desired.build (merge, keep-last-good, conflicts) ─▶ planner

A source is anything with an ``id`` and an async ``run(send, task_status=...)`` that sends
``core.desired.SourceSnapshot`` values: the first at once (also to ``task_status``), then
one per change. Each snapshot is the whole source (every origin with its documents and
findings) or says the source is unavailable, which makes the planner delete nothing the
source defined. ``rescan()`` asks for a fresh look; ``set_check()`` gives the source the
daemon policy's hook for it (``manifest.policy.checker``), in force from the next look.
"""

from __future__ import annotations

from typing import Protocol

import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from reconciler.core.desired import SourceSnapshot
from reconciler.manifest import policy


class Source(Protocol):
    id: str

    async def run(
        self,
        send: MemoryObjectSendStream[SourceSnapshot],
        *,
        task_status: anyio.abc.TaskStatus[SourceSnapshot] = anyio.TASK_STATUS_IGNORED,
    ) -> None: ...

    def rescan(self) -> None: ...

    def set_check(self, check: policy.Check | None) -> None: ...

    def set_links(self, prefixes: tuple[str, ...]) -> None:
        """Where links in the source may lead beyond it (the policy's manifestLinks)."""
