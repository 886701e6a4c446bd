"""The daemon policy (``run --policy FILE|LEVEL``): read at start, then again when it changes.

    FILE ─▶ PolicyWatch (this module) ─set_check(rules for the source) + rescan─▶ sources
                                          ─▶ a violation is a finding on its object's line

A built-in level (``--policy baseline``, the default) is a policy with nothing widened,
and nothing to watch. A file must be root's, as sshd's ``StrictModes`` wants its files:
one that another user could change (it, a link on the way, a directory above it that is
not sticky) is refused like a broken one, since whoever can widen the policy is root.

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
import stat
from collections.abc import Callable, Sequence

import anyio

from reconciler import errors
from reconciler.manifest import loader, policy
from reconciler.sources import Source

log = logging.getLogger(__name__)

POLL = 1.0

Signature = tuple[int, int, int, int, int, int]


class PolicyWatch:
    def __init__(self, path: str, sources: Sequence[Source],
                 event: Callable[[str, str, bool], None] | None = None) -> None:
        self.path = path  # a file, or a level's name
        self.builtin = path in policy.LEVELS
        self.sources = list(sources)
        self.event = event  # (reason, message, warning)
        self.policy: policy.Policy | None = None
        self._seen: Signature | None = None

    def load_first(self) -> None:
        """The policy in force from the start; a policy that does not load is a usage error."""
        self._seen = None if self.builtin else _signature(self.path)
        found, problems = self._load()
        if found is None:
            raise errors.UsageError("--policy: the policy has problems:\n" + "\n".join(
                f"  {p}" for p in problems))
        self._apply(found, rescan=False)
        if self.builtin and found.level == "privileged":  # every start, like the override
            log.warning("--policy privileged: nothing a manifest asks for is refused; whoever"
                        " can write a manifest can run anything as root")
        log.info("policy %s: level %s%s", self.path, found.level,
                 "".join(f", {sid} {rules.level}" for sid, rules in found.sources.items()))

    async def run(self) -> None:
        if self.builtin:
            return
        while True:
            await anyio.sleep(POLL)
            self.check_now()

    def check_now(self, *, force: bool = False) -> None:
        """Read the file again if it changed, or ``force`` (SIGHUP)."""
        if self.builtin:
            return
        seen = _signature(self.path)
        if seen == self._seen and not force:
            return
        self._seen = seen
        found, problems = self._load()
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

    def _load(self) -> tuple[policy.Policy | None, list[loader.Finding]]:
        if not self.builtin and (why := untrusted(self.path)) is not None:
            return None, [loader.Finding(self.path, None, "", f"{why}: not read (the "
                                         "policy must be root's, as its directories)")]
        return loader.policy_from(self.path)

    def _apply(self, found: policy.Policy, *, rescan: bool) -> None:
        self.policy = found
        for source in self.sources:
            source.set_check(policy.checker(found.for_source(source.id)))
            source.set_links(tuple(found.manifest_links))
            if rescan:
                source.rescan()


def untrusted(path: str) -> str | None:
    """Who other than root could change the file at ``path``, in words (None: no one):
    the file, a link to it, or a directory above it (a sticky one, ``/tmp``, is safe: the
    entry below it is root's)."""
    real = os.path.realpath(path)
    entries = [path] if os.path.islink(path) else []
    parts = real.strip("/").split("/")
    entries += ["/" + "/".join(parts[:i]) for i in range(len(parts) + 1)]
    for entry in entries:
        try:
            st = os.lstat(entry)
        except OSError as exc:
            return f"{entry}: {exc.strerror}"
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != 0:
            return f"{entry} is owned by uid {st.st_uid}"
        if stat.S_ISLNK(st.st_mode):
            continue
        if entry != real and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX:
            continue  # others may add entries, but not replace root's next one
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{entry} is writable by {'everyone' if mode & stat.S_IWOTH else 'its group'}" \
                   f" (mode {mode:04o})"
    return None


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # mode and owner too: a chmod back to root's makes a refused file readable
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid)
