"""What the host reports about our instances, in runtime-neutral words.

    runtime (runc adapter, fake) ─produces─▶ these values ─read by─▶ planner, daemon, cli

Frozen values only. ``Status`` uses the OCI runtime spec's state names (runc's too), which
are the runtime-neutral vocabulary for a container's life cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """The OCI runtime spec's states of a container."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Observed:
    """One instance of one of our objects, as the host sees it now.

    ``name`` is the logical object (the manifest's name); ``instance`` the runtime's id of
    this incarnation (``web.3``). ``applied`` is the manifest in force now (JSON, live
    changes included): the adapter always fills it.
    """

    name: str
    status: Status
    pid: int | None
    spec_hash: str | None
    source: str | None
    created: float  # unix time the instance was created
    annotations: Mapping[str, str] = field(default_factory=dict)
    applied: str | None = None
    instance: str = ""  # the runtime's id; "" means the same as ``name`` (wave-one records)
    generation: int = 0
    source_id: str | None = None  # which desired-state source defined it

    @property
    def id(self) -> str:
        return self.instance or self.name


@dataclass(frozen=True)
class ExitStatus:
    """How an instance's init process ended."""

    code: int | None  # exit code, when it exited
    signal: int | None  # the signal that killed it, when killed
    oom_killed: bool = False
    finished_at: float | None = None
    unhealthy: bool = False  # stopped for a failed liveness or startup probe

    @property
    def exit_code(self) -> int:
        """Shell convention: the code, or 128 + signal."""
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)

    @property
    def failed(self) -> bool:
        """A failure for the restart policy: a non-zero code, or a probe's stop (the
        kubelet's rule: a liveness kill restarts under OnFailure too)."""
        return self.exit_code != 0 or self.unhealthy

    def text(self) -> str:
        """``exited with code 3``, ``killed by signal 9 (code 137)``, ``OOM-killed (code 137)``."""
        if self.unhealthy:
            return f"stopped for a failed probe (code {self.exit_code})"
        if self.oom_killed:
            return f"OOM-killed (code {self.exit_code})"
        if self.signal:
            return f"killed by signal {self.signal} (code {self.exit_code})"
        return f"exited with code {self.code}"


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
    """Resource limits read back from the instance's cgroup (None: unlimited)."""

    memory_bytes: int | None
    cpu_quota_us: int | None
    cpu_period_us: int | None
    pids: int | None
