"""An in-memory runtime with the ``Runtime`` interface, for planner and controller tests.

It keeps containers in a dict and lets a test play the world: ``crash(name, code)``
ends a container, ``fail_next(op, error)`` makes the next call of an operation fail.
Real runc proves the product end to end; this only stands in for unit tests.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from reconciler import errors
from reconciler.runtime.types import (
    ANN_MANAGED_BY,
    ANN_MANIFEST,
    ANN_SOURCE,
    ANN_SPEC_HASH,
    MANAGED_BY,
    ExecResult,
    ExitStatus,
    Limits,
    MountInfo,
    Observed,
    Stats,
    Status,
)

if TYPE_CHECKING:
    from reconciler.manifest.model import Container, Mount, Resources


class FakeRuntime:
    def __init__(self, *, clock: float = 1000.0) -> None:
        self.containers: dict[str, Observed] = {}
        self.exits: dict[str, ExitStatus] = {}
        self.limits_: dict[str, Limits] = {}
        self.mounts_: dict[str, list[MountInfo]] = {}
        self.calls: builtins.list[tuple[str, str]] = []
        self.clock = clock
        self._next_pid = 100
        self._failures: dict[str, errors.ReconcilerError] = {}
        self._exited: dict[str, anyio.Event] = {}

    # -- test controls -----------------------------------------------------------------------

    def fail_next(self, op: str, error: errors.ReconcilerError) -> None:
        self._failures[op] = error

    def crash(self, name: str, code: int | None = 1, *, signal: int | None = None,
              oom: bool = False) -> None:
        obs = self.containers[name]
        self.containers[name] = replace(obs, status=Status.STOPPED, pid=None)
        self.exits[name] = ExitStatus(code=None if signal else code, signal=signal,
                                      oom_killed=oom, finished_at=self.clock)
        self._exited.setdefault(name, anyio.Event()).set()

    def _op(self, op: str, name: str) -> None:
        self.calls.append((op, name))
        error = self._failures.pop(op, None)
        if error is not None:
            raise error

    def _get(self, name: str) -> Observed:
        try:
            return self.containers[name]
        except KeyError:
            raise errors.ContainerNotFound("container does not exist", container=name) from None

    # -- the Runtime interface ---------------------------------------------------------------

    async def create(self, container: Container, *, source: str, spec_hash: str) -> Observed:
        self._op("create", container.name)
        if container.name in self.containers:
            raise errors.RuncError("a container with this name already exists",
                                   container=container.name)
        self._next_pid += 1
        manifest = json.dumps(container.model_dump(mode="json", exclude_defaults=True),
                              sort_keys=True, separators=(",", ":"))
        obs = Observed(
            name=container.name, status=Status.RUNNING, pid=self._next_pid,
            spec_hash=spec_hash, source=source, created=self.clock,
            annotations={ANN_MANAGED_BY: MANAGED_BY, ANN_SOURCE: source,
                         ANN_SPEC_HASH: spec_hash, ANN_MANIFEST: manifest},
            applied=manifest,
        )
        self.containers[container.name] = obs
        self.exits.pop(container.name, None)
        self._exited[container.name] = anyio.Event()
        res = container.spec.resources
        self.limits_[container.name] = Limits(res.memory_bytes, None, None, res.pids)
        return obs

    async def list(self) -> Sequence[Observed]:
        self.calls.append(("list", ""))
        return sorted(self.containers.values(), key=lambda o: o.name)

    async def state(self, name: str) -> Observed:
        return self._get(name)

    async def kill(self, name: str, sig: str = "SIGTERM") -> None:
        self._op("kill", name)
        self._get(name)
        self.crash(name, signal=15 if sig.endswith("TERM") else 9)

    async def stop(self, name: str, *, sig: str, grace: float) -> ExitStatus:
        self._op("stop", name)
        obs = self._get(name)
        if obs.status is not Status.STOPPED:
            self.crash(name, code=0)
        return self.exits[name]

    async def delete(self, name: str, *, keep_logs: bool = False) -> None:
        self._op("delete", name)
        self.containers.pop(name, None)
        self.exits.pop(name, None)
        event = self._exited.pop(name, None)
        if event is not None:
            event.set()

    async def pause(self, name: str) -> None:
        self._op("pause", name)
        self.containers[name] = replace(self._get(name), status=Status.PAUSED)

    async def resume(self, name: str) -> None:
        self._op("resume", name)
        self.containers[name] = replace(self._get(name), status=Status.RUNNING)

    async def update_resources(self, name: str, resources: Resources) -> Limits:
        self._op("update", name)
        self._get(name)
        self.limits_[name] = Limits(resources.memory_bytes, None, None, resources.pids)
        return self.limits_[name]

    async def update_mounts(self, name: str, old: Sequence[Mount], new: Sequence[Mount]
                            ) -> builtins.list[str]:
        self._op("update_mounts", name)
        self._get(name)
        before = {m.destination: m for m in old}
        after = {m.destination: m for m in new}
        said = [f"MountRemoved {d}" for d in sorted(before.keys() - after.keys())]
        said += [f"{'MountChanged' if d in before else 'MountAdded'} {d}"
                 for d in sorted(after) if before.get(d) != after[d]]
        self.mounts_[name] = [MountInfo(m.destination, m.type, getattr(m, "source", "tmpfs"),
                                        m.read_only) for m in new]
        return said

    async def mounts(self, name: str, *, pid: int | None = None) -> builtins.list[MountInfo]:
        self._get(name)
        return list(self.mounts_.get(name, []))

    async def set_applied(self, name: str, container: Container) -> None:
        manifest = json.dumps(container.model_dump(mode="json", exclude_defaults=True),
                              sort_keys=True, separators=(",", ":"))
        self.containers[name] = replace(self._get(name), applied=manifest)

    async def limits(self, name: str) -> Limits:
        self._get(name)
        return self.limits_.get(name, Limits(None, None, None, None))

    async def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
                   timeout: float = 30) -> ExecResult:
        self._op("exec", name)
        return ExecResult(exit_code=0, stdout=b"", stderr=b"")

    async def pids(self, name: str) -> builtins.list[int]:
        obs = self._get(name)
        return [obs.pid] if obs.pid else []

    async def stats(self, name: str) -> Stats:
        self._get(name)
        return Stats(0, 0, None, None, 1, None)

    async def exit_status(self, name: str) -> ExitStatus | None:
        return self.exits.get(name)

    async def wait_exit(self, name: str) -> ExitStatus:
        self._get(name)  # like runc: a container that is gone fails at once
        event = self._exited.setdefault(name, anyio.Event())
        await event.wait()
        if name not in self.exits:
            raise errors.ContainerNotFound("container does not exist", container=name)
        return self.exits[name]

    async def gc(self) -> builtins.list[str]:
        return []
