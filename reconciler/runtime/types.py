"""The ``Runtime`` protocol: the one seam between the daemon and the host.

    daemon worker ─(InstanceSpec, instance ids)─▶ Runtime ─▶ runc + conmon (runc.py)
                                                        └─▶ nothing (fake.py, for tests)

One method per operation the daemon uses, keyed by instance id; failures raise
``errors.RuntimeFailure`` subclasses. Values come back as ``core.observed`` types. Every
default was resolved before the call (``resolve/``): the runtime never reads an image.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.core.instance import InstanceSpec
    from reconciler.core.observed import ExecResult, ExitStatus, Limits, MountInfo, Observed
    from reconciler.core.pods import PodInfo
    from reconciler.manifest.model import Container, Mount, Resources

MountChange = tuple[str, str]  # (event reason, destination): ("MountAdded", "/data")


class Runtime(Protocol):
    async def create(self, spec: InstanceSpec) -> Observed:
        """Build the bundle and create the instance (status ``created``: not started).
        Between this and ``start`` is the place for network setup."""

    async def start(self, instance: str) -> None: ...

    async def list(self) -> Sequence[Observed]:
        """Our instances only (our runc root, our annotation)."""

    async def state(self, instance: str) -> Observed: ...

    async def exec(self, instance: str, argv: Sequence[str], *, stdin: bytes | None = None,
                   timeout: float = 30) -> ExecResult:
        """Run ``argv`` in the running instance (its namespaces, cgroup, capabilities,
        seccomp): a preStop hook."""

    async def exec_probe(self, instance: str, argv: Sequence[str], *, timeout: float
                         ) -> ExecResult | None:
        """An exec probe in the running instance, with the same guarantees as ``exec``;
        None if it ran past ``timeout`` (and was killed)."""

    async def signal(self, instance: str, sig: str, *, every: bool = False) -> None:
        """Send ``sig`` to the init (``every``: to every process); thaws a paused one
        first for a SIGKILL-free stop signal to be seen."""

    async def wait_exit(self, instance: str) -> ExitStatus:
        """Until the init process has exited and its status is recorded (event-driven)."""

    async def exit_status(self, instance: str) -> ExitStatus | None:
        """How it ended, once stopped; None while it runs."""

    async def delete(self, instance: str, *, keep_logs: bool = False,
                     pod_gone: bool = False) -> None:
        """Remove everything: runc state, cgroup, overlay mount, depot dir (``keep_logs``:
        but the logs, for a restart or the next generation; ``pod_gone``: a pod's sandbox,
        its pod's volumes and cgroup too)."""

    async def pause(self, instance: str) -> None: ...

    async def resume(self, instance: str) -> None: ...

    async def update_resources(self, instance: str, resources: Resources) -> Limits: ...

    async def update_mounts(
        self, instance: str, old: Sequence[Mount], new: Sequence[Mount]
    ) -> builtins.list[MountChange]:
        """Change mounts of a running instance in place; the changes made.
        Raises ``errors.LiveUpdateImpossible`` when only a new instance can do it."""

    async def set_applied(self, instance: str, container: Container) -> None:
        """Record the manifest now in force (after a live change)."""

    async def limits(self, instance: str) -> Limits: ...

    async def mounts(self, instance: str, *, pid: int | None = None
                     ) -> builtins.list[MountInfo]: ...

    async def sync_volumes(self, instance: str, pod: PodInfo) -> builtins.list[str]:
        """Write a pod's projected files anew in place (its sandbox ``instance``); the
        volumes that changed."""

    async def gc(self, known: Collection[str] | None = None) -> builtins.list[str]:
        """Remove crash leftovers (depots no instance owns); the ids cleared. ``known``:
        the instance ids a listing just found (None: list them now)."""

    def forget(self, alive: Collection[str]) -> builtins.list[str]:
        """Remove what is left of instances of objects not in ``alive`` (names): logs kept
        by ``gc`` for a next instance that will not come, a depot a crash cut short."""
