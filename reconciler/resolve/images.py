"""Image digests for the daemon: what each ``image:`` tag names now, and its pulls.

    daemon loop ─refresh/with_digests─▶ (this module) ─resolve/get/gc─▶ images.store

The digest an image tag resolves to is part of a container's spec hash, so a tag that
moves recreates its containers. Local tags are re-read on every snapshot and resync;
``imagePullPolicy: Always`` tags are re-pulled at each resync (at most every ``max_age``
seconds); every create pulls per its policy first. No store, no images: all no-ops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.core.instance import ANN_IMAGE_DIGEST
from reconciler.manifest import model
from reconciler.manifest.model import PullPolicy

if TYPE_CHECKING:
    from reconciler.core.desired import Desired, DesiredState
    from reconciler.core.observed import Observed
    from reconciler.images.store import ImageStore

log = logging.getLogger("reconciler")


class ImageDigests:
    def __init__(self, store: ImageStore | None, *, max_age: float) -> None:
        self.store = store
        self.max_age = max_age
        self.digests: dict[str, str] = {}  # image ref -> digest in the local store
        self._hashes: dict[tuple[str, str], str] = {}

    async def refresh(self, desired: DesiredState, *, pull: bool) -> None:
        """Learn the digest each tag names now: from the local store, and for a tag some
        container wants ``Always`` (with ``pull``) from its registry."""
        if self.store is None:
            return
        refs: dict[str, PullPolicy] = {}
        for d in desired.specs.values():
            ref = d.container.spec.image
            if ref and refs.get(ref) is not PullPolicy.ALWAYS:  # one Always is enough
                refs[ref] = d.container.spec.image_pull_policy
        for ref, policy in sorted(refs.items()):
            always = pull and policy is PullPolicy.ALWAYS
            try:
                if always:
                    image = await self.store.resolve(ref, policy, max_age=self.max_age)
                else:
                    image = await self.store.get(ref)
            except errors.ReconcilerError as exc:
                if always:
                    log.warning("image %s: %s", ref, exc)
                self.digests.pop(ref, None)
                continue
            self.digests[ref] = image.digest

    def with_digests(self, state: DesiredState) -> DesiredState:
        """The desired state with each image container's hash covering its image digest."""
        specs = dict(state.specs)
        changed = False
        for name, want in state.specs.items():
            ref = want.container.spec.image
            digest = self.digests.get(ref) if ref else None
            if digest is None:
                continue
            specs[name] = replace(want, spec_hash=self._hash(want, digest))
            changed = True
        return replace(state, specs=specs) if changed else state

    async def resolve(self, want: Desired) -> str:
        """Pull per ``imagePullPolicy`` before a create; the spec hash with its digest."""
        spec = want.container.spec
        if self.store is None or spec.image is None:
            return want.spec_hash
        try:
            image = await self.store.resolve(spec.image, spec.image_pull_policy,
                                             max_age=self.max_age)
        except errors.RuntimeFailure as exc:
            if exc.container is not None:
                raise
            raise exc.for_container(want.name) from exc
        self.digests[spec.image] = image.digest
        return self._hash(want, image.digest)

    async def gc(self, observed: Iterable[Observed]) -> None:
        """Remove unpacked trees no desired tag and no container uses."""
        if self.store is None:
            return
        used = set(self.digests.values())
        used |= {o.annotations[ANN_IMAGE_DIGEST] for o in observed
                 if ANN_IMAGE_DIGEST in o.annotations}
        try:
            for tree in await self.store.gc_unpacked(used):
                log.info("removed the unpacked tree of %s (no image, no container)", tree)
        except (errors.ReconcilerError, OSError) as exc:
            log.warning("image garbage collection: %s", exc)

    def _hash(self, want: Desired, digest: str) -> str:
        key = (want.spec_hash, digest)
        if key not in self._hashes:
            extra = {"image": digest}
            if want.pod is not None:  # a pod unit's hash also covers its pod's identity
                extra.update(want.pod.hash_extra())
            self._hashes[key] = model.spec_hash(want.container, extra=extra)
        return self._hashes[key]
