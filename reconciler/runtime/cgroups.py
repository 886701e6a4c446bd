"""Reading a container's cgroup: limits, usage, OOM kills, freezer state; v1, hybrid or v2.

runc creates and writes the cgroup (``linux.cgroupsPath``); this module only reads it back
(so status shows what the kernel enforces, not what we asked for) and removes what runc
leaves behind (the empty parent).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.observed import Limits, Stats

CGROUP_ROOT = Path("/sys/fs/cgroup")
# v1 hierarchies runc may create a container's dir in; "unified" is the v2 tree of a hybrid host
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "cpuset", "devices",
                   "net_cls", "net_prio", "perf_event", "hugetlb", "systemd", "rdma", "misc",
                   "unified")


@functools.cache
def unified() -> bool:
    """True on a pure cgroup v2 host (hybrid hosts use the v1 controllers); asked once,
    since a host does not change its cgroup mode while it runs."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def swap_accounting() -> bool:
    """Whether memory+swap can be limited (v1 needs ``memory.memsw.*``: swapaccount=1)."""
    if unified():
        return True
    return (CGROUP_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists()


@dataclass(frozen=True)
class Cgroup:
    path: str  # the cgroupsPath, e.g. /reconciler/web

    def _file(self, controller: str, name: str) -> Path:
        rel = self.path.lstrip("/")
        if unified():
            return CGROUP_ROOT / rel / name
        return CGROUP_ROOT / controller / rel / name

    def _read(self, controller: str, name: str) -> str | None:
        try:
            return self._file(controller, name).read_text().strip()
        except OSError:
            return None

    def _int(self, controller: str, name: str) -> int | None:
        text = self._read(controller, name)
        if text is None or text == "max":
            return None
        try:
            return int(text.split()[0])
        except ValueError:
            return None

    def limits(self) -> Limits:
        if unified():
            cpu = (self._read("cpu", "cpu.max") or "max 100000").split()
            quota = None if cpu[0] == "max" else int(cpu[0])
            return Limits(
                memory_bytes=self._int("memory", "memory.max"),
                cpu_quota_us=quota,
                cpu_period_us=int(cpu[1]) if len(cpu) > 1 else None,
                pids=self._int("pids", "pids.max"),
            )
        memory = self._int("memory", "memory.limit_in_bytes")
        if memory is not None and memory >= 2**62:  # v1 spells "unlimited" as a huge number
            memory = None
        quota = self._int("cpu", "cpu.cfs_quota_us")
        return Limits(
            memory_bytes=memory,
            cpu_quota_us=None if quota is None or quota < 0 else quota,
            cpu_period_us=self._int("cpu", "cpu.cfs_period_us"),
            pids=self._int("pids", "pids.max"),
        )

    def stats(self) -> Stats:
        limits = self.limits()
        if unified():
            usage_usec = 0
            for line in (self._read("cpu", "cpu.stat") or "").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    usage_usec = int(value)
            return Stats(
                cpu_usage_ns=usage_usec * 1000,
                memory_usage=self._int("memory", "memory.current") or 0,
                memory_limit=limits.memory_bytes,
                memory_max_usage=self._int("memory", "memory.peak"),
                pids_current=self._int("pids", "pids.current") or 0,
                pids_limit=limits.pids,
            )
        return Stats(
            cpu_usage_ns=self._int("cpuacct", "cpuacct.usage") or 0,
            memory_usage=self._int("memory", "memory.usage_in_bytes") or 0,
            memory_limit=limits.memory_bytes,
            memory_max_usage=self._int("memory", "memory.max_usage_in_bytes"),
            pids_current=self._int("pids", "pids.current") or 0,
            pids_limit=limits.pids,
        )

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup (0 if unknown)."""
        name = "memory.events" if unified() else "memory.oom_control"
        for line in (self._read("memory", name) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def frozen(self) -> bool | None:
        if unified():
            text = self._read("freezer", "cgroup.freeze")
            return None if text is None else text == "1"
        text = self._read("freezer", "freezer.state")
        return None if text is None else text == "FROZEN"

    def procs(self) -> list[int]:
        """PIDs in the container's cgroup (the pids controller's view; the v2 tree on v2)."""
        text = self._read("pids", "cgroup.procs") or ""
        return [int(p) for p in text.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process left in this cgroup (one runc no longer knows); the PIDs."""
        pids = self.procs()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def exists(self) -> bool:
        return self._file("memory", "").exists() or self._file("pids", "").exists()

    def remove(self, *, parents: bool = False) -> None:
        """Remove the leaf if runc left it (and, with ``parents``, each empty parent)."""
        parts = self.path.strip("/").split("/")
        roots = [CGROUP_ROOT] if unified() else [CGROUP_ROOT / c for c in _V1_CONTROLLERS]
        lowest = 1 if parents else len(parts)
        for base in roots:
            if not base.is_dir():
                continue
            for depth in range(len(parts), lowest - 1, -1):
                with contextlib.suppress(OSError):
                    os.rmdir(base.joinpath(*parts[:depth]))


def remove_parent(parent: str) -> None:
    """Remove an empty cgroup parent such as ``/reconciler`` (tests' private parents)."""
    Cgroup(parent.rstrip("/") or "/").remove(parents=True)
