"""The daemon policy file (``run --policy FILE``): read at start, then again when it changes.

    FILE ─▶ PolicyWatch (this module) ─set_check(rules for the source) + rescan─▶ sources
                                          ─▶ a violation is a finding on its object's line

At start a policy that does not load refuses the start (there is no good one to keep).
Later, each change of the file (its inode, size or mtime, looked at every ``POLL``
seconds, and at once on SIGHUP) is read again: a good one is in force from the sources'
next look, and an object that now violates it is reported, not killed (its origin is
broken, so keep-last-good leaves the running revision alone); a broken one is logged and
an event, and the last good policy stays in force.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import anyio

from reconciler import errors
from reconciler.manifest import loader, policy
from reconciler.sources import Source

log = logging.getLogger(__name__)

POLL = 1.0

Signature = tuple[int, int, int, int]


class PolicyWatch:
    def __init__(self, path: str, sources: Sequence[Source],
                 event: Callable[[str, str, bool], None] | None = None) -> None:
        self.path = path
        self.sources = list(sources)
        self.event = event  # (reason, message, warning)
        self.policy: policy.Policy | None = None
        self._seen: Signature | None = None

    def load_first(self) -> None:
        """The policy in force from the start; a policy that does not load is a usage error."""
        self._seen = _signature(self.path)
        found, problems = loader.load_policy(self.path)
        if found is None:
            raise errors.UsageError("--policy: the policy has problems:\n" + "\n".join(
                f"  {p}" for p in problems))
        self._apply(found, rescan=False)
        log.info("policy %s: level %s%s", self.path, found.level,
                 "".join(f", {sid} {rules.level}" for sid, rules in found.sources.items()))

    async def run(self) -> None:
        while True:
            await anyio.sleep(POLL)
            self.check_now()

    def check_now(self) -> None:
        """Read the file again if it changed (SIGHUP calls this too)."""
        seen = _signature(self.path)
        if seen == self._seen:
            return
        self._seen = seen
        found, problems = loader.load_policy(self.path)
        if found is None:
            words = "; ".join(str(p) for p in problems)
            log.warning("policy %s has problems; the last good one stays in force: %s",
                        self.path, words)
            if self.event is not None:
                self.event("PolicyError", f"{words} (the last good policy stays in force)",
                           True)
            return
        self._apply(found, rescan=True)
        log.info("policy %s read again: level %s", self.path, found.level)
        if self.event is not None:
            self.event("PolicyLoaded", f"{self.path}: level {found.level}", False)

    def _apply(self, found: policy.Policy, *, rescan: bool) -> None:
        self.policy = found
        for source in self.sources:
            source.set_check(policy.checker(found.for_source(source.id)))
            if rescan:
                source.rescan()


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
