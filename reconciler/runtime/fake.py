"""An in-memory runtime with the ``Runtime`` interface, for planner and controller tests.

It keeps one instance per object in a dict keyed by the object's name (operations take
instance ids, as the real one does) and lets a test play the world: ``crash(name, code)``
ends an object's instance, ``fail_next(op, error)`` makes the next call of an operation
fail.
Real runc proves the product end to end; this only stands in for unit tests.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from reconciler import errors
from reconciler.core.instance import (
    ANN_GENERATION,
    ANN_MANAGED_BY,
    ANN_MANIFEST,
    ANN_NAME,
    ANN_SOURCE,
    ANN_SOURCE_ID,
    ANN_SPEC_HASH,
    MANAGED_BY,
    InstanceSpec,
    instance_id,
    split_id,
)
from reconciler.core.observed import (
    ExecResult,
    ExitStatus,
    Limits,
    MountInfo,
    Observed,
    Stats,
    Status,
)
from reconciler.manifest import model
from reconciler.runtime.types import MountChange

if TYPE_CHECKING:
    from reconciler.core.pods import PodInfo
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
        self.execs: builtins.list[tuple[str, tuple[str, ...]]] = []  # (instance, argv)
        self.volumes: dict[str, PodInfo] = {}  # a pod sandbox's volumes, as last written

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

    def _get(self, instance: str) -> Observed:
        obs = self.containers.get(split_id(instance)[0])
        if obs is None or obs.id != instance:
            raise errors.ContainerNotFound("container does not exist", container=instance)
        return obs

    @staticmethod
    def spec_for(container: Container, *, source: str, spec_hash: str,
                 generation: int = 1) -> InstanceSpec:
        """An instance spec as ``resolve`` makes one (for tests that seed the host)."""
        sp = container.spec
        return InstanceSpec(
            id=instance_id(container.name, generation), name=container.name,
            generation=generation, container=container, lower=sp.rootfs or "/",
            cgroup_path=f"/fake/{container.name}.{generation}",
            annotations={ANN_MANIFEST: model.canonical_json(container)},
            spec_hash=spec_hash, source=source, stop_signal=sp.stop_signal,
            grace=float(sp.termination_grace_period_seconds))

    # -- the Runtime interface ---------------------------------------------------------------

    async def create(self, spec: InstanceSpec) -> Observed:
        name = spec.name
        self._op("create", name)
        if name in self.containers:
            raise errors.RuncError("a container with this name already exists",
                                   container=spec.id)
        self._next_pid += 1
        manifest = model.canonical_json(spec.container)
        obs = Observed(
            name=name, status=Status.CREATED, pid=self._next_pid,
            spec_hash=spec.spec_hash, source=spec.source, created=self.clock,
            annotations={**spec.annotations, ANN_MANAGED_BY: MANAGED_BY, ANN_SOURCE: spec.source,
                         ANN_SPEC_HASH: spec.spec_hash, ANN_MANIFEST: manifest,
                         ANN_NAME: name, ANN_GENERATION: str(spec.generation)},
            applied=manifest, instance=spec.id, generation=spec.generation,
            source_id=spec.annotations.get(ANN_SOURCE_ID),
        )
        self.containers[name] = obs
        if spec.pod is not None:
            self.volumes[spec.id] = spec.pod
        self.exits.pop(name, None)
        self._exited[name] = anyio.Event()
        res = spec.container.spec.resources
        self.limits_[name] = Limits(res.memory_bytes, None, None, res.pids)
        return obs

    async def start(self, instance: str) -> None:
        obs = self._get(instance)
        self.containers[obs.name] = replace(obs, status=Status.RUNNING)

    async def list(self) -> Sequence[Observed]:
        self.calls.append(("list", ""))
        return sorted(self.containers.values(), key=lambda o: o.name)

    async def state(self, instance: str) -> Observed:
        return self._get(instance)

    async def signal(self, instance: str, sig: str, *, every: bool = False) -> None:
        """Every process obeys at once: a stop signal ends the init with code 0."""
        name = self._get(instance).name
        self._op("stop", name)
        if self.containers[name].status is not Status.STOPPED:
            self.crash(name, code=0)

    async def delete(self, instance: str, *, keep_logs: bool = False,
                     pod_gone: bool = False) -> None:
        name = split_id(instance)[0]
        self._op("delete", name)
        if name in self.containers and self.containers[name].id == instance:
            self.containers.pop(name, None)
        self.exits.pop(name, None)
        event = self._exited.pop(name, None)
        if event is not None:
            event.set()

    async def pause(self, instance: str) -> None:
        name = self._get(instance).name
        self._op("pause", name)
        self.containers[name] = replace(self.containers[name], status=Status.PAUSED)

    async def resume(self, instance: str) -> None:
        name = self._get(instance).name
        self._op("resume", name)
        self.containers[name] = replace(self.containers[name], status=Status.RUNNING)

    async def update_resources(self, instance: str, resources: Resources) -> Limits:
        name = self._get(instance).name
        self._op("update", name)
        self.limits_[name] = Limits(resources.memory_bytes, None, None, resources.pids)
        return self.limits_[name]

    async def update_mounts(self, instance: str, old: Sequence[Mount], new: Sequence[Mount]
                            ) -> builtins.list[MountChange]:
        name = self._get(instance).name
        self._op("update_mounts", name)
        before = {m.destination: m for m in old}
        after = {m.destination: m for m in new}
        said = [("MountRemoved", d) for d in sorted(before.keys() - after.keys())]
        said += [("MountChanged" if d in before else "MountAdded", d)
                 for d in sorted(after) if before.get(d) != after[d]]
        self.mounts_[name] = [MountInfo(m.destination, m.type, getattr(m, "source", "tmpfs"),
                                        m.read_only) for m in new]
        return said

    async def mounts(self, instance: str, *, pid: int | None = None
                     ) -> builtins.list[MountInfo]:
        name = self._get(instance).name
        return list(self.mounts_.get(name, []))

    async def set_applied(self, instance: str, container: Container) -> None:
        obs = self._get(instance)
        self.containers[obs.name] = replace(obs, applied=model.canonical_json(container))

    async def limits(self, instance: str) -> Limits:
        name = self._get(instance).name
        return self.limits_.get(name, Limits(None, None, None, None))

    async def pids(self, name: str) -> builtins.list[int]:
        obs = self._get(name)
        return [obs.pid] if obs.pid else []

    async def stats(self, name: str) -> Stats:
        self._get(name)
        return Stats(0, 0, None, None, 1, None)

    async def exit_status(self, instance: str) -> ExitStatus | None:
        return self.exits.get(split_id(instance)[0])

    async def wait_exit(self, instance: str) -> ExitStatus:
        name = self._get(instance).name  # like runc: a container that is gone fails at once
        event = self._exited.setdefault(name, anyio.Event())
        await event.wait()
        if name not in self.exits:
            raise errors.ContainerNotFound("container does not exist", container=name)
        return self.exits[name]

    async def exec(self, instance: str, argv: Sequence[str], *, stdin: bytes | None = None,
                   timeout: float = 30) -> ExecResult:
        self._op("exec", instance)
        self.execs.append((instance, tuple(argv)))
        if self._get(instance).status is not Status.RUNNING:
            raise errors.RuncError("cannot exec in a stopped container", container=instance)
        return ExecResult(exit_code=0, stdout=b"", stderr=b"")

    async def exec_probe(self, instance: str, argv: Sequence[str], *, timeout: float
                         ) -> ExecResult | None:
        return await self.exec(instance, argv, timeout=timeout)

    async def sync_volumes(self, instance: str, pod: PodInfo) -> builtins.list[str]:
        self._op("sync_volumes", instance)
        self._get(instance)
        self.volumes[instance] = pod
        return [v.name for v in pod.volumes if v.kind == "files"]

    async def gc(self, known: Collection[str] | None = None) -> builtins.list[str]:
        return []

    def forget(self, alive: Collection[str]) -> builtins.list[str]:
        return []
