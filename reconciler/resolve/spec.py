"""Build the ``InstanceSpec`` of one instance: where its files come from, its effective
manifest (an image's config applied by Kubernetes' rules), its annotations and cgroup.

    daemon worker (a Create step) ─▶ spec.build (this module) ─▶ runtime.create
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors
from reconciler.core import pods
from reconciler.core.instance import (
    ANN_IMAGE_DIGEST,
    ANN_MANIFEST,
    ANN_POD,
    ANN_POD_CONTAINER,
    ANN_POD_ROLE,
    ANN_POD_SPEC,
    ANN_SANDBOX,
    ANN_SOURCE,
    ANN_SOURCE_ID,
    InstanceSpec,
)
from reconciler.images.apply import apply_image_config
from reconciler.manifest import model
from reconciler.resolve.images import ImageDigests

if TYPE_CHECKING:
    from reconciler.core.desired import Desired
    from reconciler.core.planner import Create
    from reconciler.images.store import ImageStore


class Resolver:
    """Image digests kept current, and instance specs built on demand (one per daemon)."""

    def __init__(self, images: ImageStore | None, *, cgroup_parent: str,
                 max_age: float) -> None:
        self.images = images
        self.cgroup_parent = cgroup_parent
        self.digests = ImageDigests(images, max_age=max_age)

    async def instance(self, want: Desired, step: Create) -> InstanceSpec:
        """Pull per ``imagePullPolicy``, then the spec of the instance ``step`` makes."""
        spec_hash = await self.digests.resolve(want)
        made = await build(want, instance=step.instance, generation=step.generation,
                           previous=step.previous, spec_hash=spec_hash,
                           cgroup_parent=self.cgroup_parent, images=self.images)
        if want.pod is None:
            return made
        return in_pod(made, want.pod, join=step.join, cgroup_parent=self.cgroup_parent)


def in_pod(spec: InstanceSpec, info: pods.PodInfo, *, join: tuple[str, int] | None,
           cgroup_parent: str) -> InstanceSpec:
    """A pod unit's spec: its pod's annotations and cgroup, the sandbox's namespaces."""
    annotations = {**spec.annotations, ANN_POD: info.key, ANN_POD_ROLE: info.role.value,
                   ANN_POD_CONTAINER: info.container, ANN_POD_SPEC: info.identity_doc}
    pid = None
    if info.role is not pods.Role.SANDBOX:
        if join is None:
            raise errors.RuntimeFailure("its pod sandbox is not running",
                                        container=spec.name)
        annotations[ANN_SANDBOX] = f"{join[0]}@{join[1]}"
        pid = join[1]
    return replace(
        spec, annotations=annotations, namespaces=info.namespaces(pid),
        cgroup_path=f"{cgroup_parent.rstrip('/')}/{info.cgroup}/{spec.id}", pod=info,
        run_as_non_root=info.run_as_non_root,
        runtime_class=info.runtime_class if info.role is not pods.Role.SANDBOX else None,
    )


async def build(
    want: Desired,
    *,
    instance: str,
    generation: int,
    previous: str | None,
    spec_hash: str,
    cgroup_parent: str,
    images: ImageStore | None,
) -> InstanceSpec:
    """The spec for ``instance`` of ``want`` (``spec_hash``: with its image digest)."""
    container = want.container
    spec = container.spec
    annotations = {
        ANN_SOURCE: want.source,
        ANN_SOURCE_ID: want.source_id,
        ANN_MANIFEST: model.canonical_json(container),
    }
    base: dict[str, Any] | None = None
    entrypoint: tuple[str, ...] = ()
    effective = container
    if spec.rootfs is not None:
        lower = Path(spec.rootfs)  # the runtime checks it is there when it mounts it
    elif spec.bundle is not None:
        bundle = Path(spec.bundle)
        try:
            base = json.loads((bundle / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise errors.RootfsError(
                f"bundle {bundle}: cannot read config.json: {exc}", container=want.name
            ) from exc
        assert base is not None
        lower = bundle / (base.get("root") or {}).get("path", "rootfs")
        if not lower.is_dir():
            raise errors.RootfsError(f"bundle {bundle}: root {lower} is not a directory",
                                     container=want.name)
    else:
        assert spec.image is not None
        if images is None:
            raise errors.RootfsError(f"image {spec.image}: this daemon has no image store",
                                     container=want.name)
        try:  # pulled per imagePullPolicy just before (resolve.images): only looked up here
            image = await images.get(spec.image)
            lower = await images.ensure_unpacked(image)
            effective, ep = apply_image_config(container, image.config, rootfs=lower)
        except errors.RuntimeFailure as exc:
            if exc.container is not None:
                raise
            raise exc.for_container(want.name) from exc
        entrypoint = tuple(ep)
        annotations[ANN_IMAGE_DIGEST] = image.digest
    eff = effective.spec
    return InstanceSpec(
        id=instance,
        name=want.name,
        generation=generation,
        container=effective,
        lower=str(lower),
        cgroup_path=f"{cgroup_parent.rstrip('/')}/{instance}",
        annotations=annotations,
        spec_hash=spec_hash,
        source=want.source,
        stop_signal=eff.stop_signal,
        grace=float(eff.termination_grace_period_seconds),
        entrypoint=entrypoint,
        base=base,
        previous=previous,
    )
