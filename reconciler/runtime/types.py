"""Values the runtime layer returns, and the ``Runtime`` protocol every adapter implements.

Above this layer nothing knows about runc: the daemon and the planner see only these
frozen values. Annotations on each container's ``config.json`` make it self-describing.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.manifest.model import Container, Mount, Resources

# Annotations written into every config.json we generate.
ANN_MANAGED_BY = "io.reconciler.managed-by"
ANN_SOURCE = "io.reconciler.source"
ANN_SPEC_HASH = "io.reconciler.spec-hash"
ANN_MANIFEST = "io.reconciler.manifest"  # the applied manifest, JSON (for live diffs)
ANN_IMAGE_DIGEST = "io.reconciler.image-digest"  # manifest digest of an image: container
ANN_STOP_SIGNAL = "io.reconciler.stop-signal"  # the effective one (an image may set it)
MANAGED_BY = "reconciler"


class Status(str, enum.Enum):
    """runc's own words for a container's state."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Observed:
    """One of our containers as the host sees it now."""

    name: str
    status: Status
    pid: int | None
    spec_hash: str | None
    source: str | None
    created: float  # unix time the container was created
    annotations: Mapping[str, str] = field(default_factory=dict)
    applied: str | None = None  # the manifest as applied now (JSON), live changes included


@dataclass(frozen=True)
class ExitStatus:
    """How a container's init process ended."""

    code: int | None  # exit code, when it exited
    signal: int | None  # the signal that killed it, when killed
    oom_killed: bool = False
    finished_at: float | None = None

    @property
    def exit_code(self) -> int:
        """Shell convention: the code, or 128 + signal."""
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Stats:
    cpu_usage_ns: int
    memory_usage: int
    memory_limit: int | None
    memory_max_usage: int | None
    pids_current: int
    pids_limit: int | None


@dataclass(frozen=True)
class MountInfo:
    """A mount as the container sees it (read back from /proc/PID/mountinfo)."""

    destination: str
    fstype: str
    source: str
    read_only: bool


@dataclass(frozen=True)
class Limits:
    """Resource limits read back from the container's cgroup (None: unlimited)."""

    memory_bytes: int | None
    cpu_quota_us: int | None
    cpu_period_us: int | None
    pids: int | None


class Runtime(Protocol):
    """One method per operation; failures raise ``errors.RuntimeFailure`` subclasses."""

    async def create(self, container: Container, *, source: str, spec_hash: str) -> Observed:
        """Build the bundle and start the container (created and started)."""

    async def list(self) -> Sequence[Observed]:
        """Our containers only (our runc root, our annotation)."""

    async def state(self, name: str) -> Observed: ...

    async def kill(self, name: str, sig: str = "SIGTERM") -> None: ...

    async def stop(self, name: str, *, sig: str, grace: float) -> ExitStatus:
        """stopSignal, wait up to ``grace`` seconds, then SIGKILL (thaws a paused one)."""

    async def delete(self, name: str, *, keep_logs: bool = False) -> None:
        """Remove everything: runc state, cgroup, overlay mount, depot dir (``keep_logs``:
        but the logs, for a restart of the same name)."""

    async def pause(self, name: str) -> None: ...

    async def resume(self, name: str) -> None: ...

    async def update_resources(self, name: str, resources: Resources) -> Limits: ...

    async def update_mounts(
        self, name: str, old: Sequence[Mount], new: Sequence[Mount]
    ) -> builtins.list[str]:
        """Change mounts of a running container in place; the changes made, in words.
        Raises ``errors.LiveUpdateImpossible`` when only a recreate can do it."""

    async def mounts(self, name: str, *, pid: int | None = None) -> builtins.list[MountInfo]: ...

    async def set_applied(self, name: str, container: Container) -> None:
        """Record the manifest now in force (after a live change)."""

    async def limits(self, name: str) -> Limits: ...

    async def exec(
        self, name: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 30
    ) -> ExecResult: ...

    async def pids(self, name: str) -> builtins.list[int]: ...

    async def stats(self, name: str) -> Stats: ...

    async def exit_status(self, name: str) -> ExitStatus | None:
        """How it ended, once stopped; None while it runs."""

    async def wait_exit(self, name: str) -> ExitStatus:
        """Block until the container's init process has exited (event-driven)."""

    async def gc(self) -> builtins.list[str]:
        """Remove crash leftovers (depots no container owns); the names cleared."""
