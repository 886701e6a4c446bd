"""Helpers of the runtime tests: a manifest, its instance spec, and an instance up.

The runtime takes a fully-resolved ``InstanceSpec`` (``resolve.spec.build`` makes it) and
creates and starts in two calls; ``up`` does what the daemon's worker does for a Create
and a Start step, with generation 1 unless told and the runtime's own cgroup parent.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.core.desired import Desired
from reconciler.core.instance import InstanceSpec, instance_id
from reconciler.core.observed import Observed, Status
from reconciler.images.store import ImageStore
from reconciler.manifest import model
from reconciler.manifest.model import Container
from reconciler.resolve import spec as specs
from reconciler.runtime.runc import RuncRuntime

SLEEPER = ("/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done")


def manifest(name: str, rootfs: Path, *cmd: str, **spec: Any) -> Container:
    doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
           "spec": {"rootfs": str(rootfs), "command": list(cmd), **spec}}
    return Container.model_validate(doc)


async def instance_spec(
    rt: RuncRuntime,
    container: Container,
    *,
    generation: int = 1,
    previous: str | None = None,
    source: str = "s",
    spec_hash: str | None = None,
    images: ImageStore | None = None,
) -> InstanceSpec:
    """The spec of instance ``<name>.<generation>`` of ``container``, as the daemon builds
    it (``spec_hash``: the manifest's own unless told)."""
    hashed = spec_hash if spec_hash is not None else model.spec_hash(container)
    want = Desired(name=container.name, container=container, source=source,
                   spec_hash=hashed)
    return await specs.build(want, instance=instance_id(container.name, generation),
                             generation=generation, previous=previous, spec_hash=hashed,
                             cgroup_parent=rt.cgroup_parent, images=images)


async def up(
    rt: RuncRuntime,
    container: Container,
    *,
    generation: int = 1,
    previous: str | None = None,
    source: str = "s",
    spec_hash: str | None = None,
    images: ImageStore | None = None,
) -> Observed:
    """Create and start an instance of ``container`` (what the old one-call create did);
    what ``create`` reported, now running."""
    spec = await instance_spec(rt, container, generation=generation, previous=previous,
                               source=source, spec_hash=spec_hash, images=images)
    made = await rt.create(spec)
    assert made.status is Status.CREATED
    await rt.start(spec.id)
    return replace(made, status=Status.RUNNING)
