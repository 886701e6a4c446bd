"""``image:`` manifests resolved into instance specs (``resolve``), from a real image store.

Where an image's config is applied now: ``resolve.spec.build`` looks the image up (never
pulls), unpacks it and fills the manifest's defaults from its config; the ``Resolver``
pulls per ``imagePullPolicy`` first and puts the digest into the spec hash. No runc here:
``test_images_runc`` runs such specs.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import errors
from reconciler.core.desired import Desired
from reconciler.core.instance import ANN_IMAGE_DIGEST, ANN_MANIFEST, InstanceSpec
from reconciler.core.planner import Create
from reconciler.images import store
from reconciler.manifest import model
from reconciler.resolve import spec as specs

from .support import CONF, Built

pytestmark = pytest.mark.anyio


def image_manifest(name: str, image: str, **spec: Any) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
        "spec": {"image": image, **spec},
    })


def desired(c: model.Container) -> Desired:
    return Desired(name=c.name, container=c, source=f"/m/{c.name}.yaml",
                   spec_hash=model.spec_hash(c))


async def build(c: model.Container, images: store.ImageStore) -> InstanceSpec:
    return await specs.build(desired(c), instance=f"{c.name}.1", generation=1, previous=None,
                             spec_hash="v1-given", cgroup_parent="/reconciler-test/p",
                             images=images)


async def test_build_applies_the_image_config(image_store: store.ImageStore,
                                              built: Built) -> None:
    image = await image_store.import_(built.source("conf:1"))
    c = image_manifest("conf", "conf:1", imagePullPolicy="Never",
                       env=[{"name": "GREETING", "value": "manifest"}])
    spec = await build(c, image_store)
    eff = spec.container.spec
    assert spec.entrypoint == tuple(CONF["entrypoint"])  # kept apart from the manifest
    assert eff.command is None and eff.args == CONF["cmd"]  # neither set: the image's Cmd
    assert {e.name: e.value for e in eff.env} == {
        "GREETING": "manifest", "MODE": "image", "PATH": "/bin:/usr/bin"}  # manifest wins
    assert eff.working_dir == "/var/www"
    assert eff.user is not None and (eff.user.uid, eff.user.gid) == (33, 33)  # www-data
    assert spec.stop_signal == eff.stop_signal == "SIGQUIT"  # the manifest says none
    assert spec.lower == str(await image_store.ensure_unpacked(image))
    assert spec.annotations[ANN_IMAGE_DIGEST] == image.digest
    # the manifest as written is what is recorded (and compared); the image fills the rest
    assert spec.annotations[ANN_MANIFEST] == model.canonical_json(c)
    assert spec.base is None


async def test_manifest_fields_win_over_the_image(image_store: store.ImageStore,
                                                  built: Built) -> None:
    await image_store.import_(built.source("conf:1"))
    c = image_manifest("mine", "conf:1", imagePullPolicy="Never", command=["/bin/true"],
                       workingDir="/tmp", stopSignal="SIGTERM", user={"uid": 7, "gid": 8})
    spec = await build(c, image_store)
    eff = spec.container.spec
    assert (eff.command, eff.args) == (["/bin/true"], None)  # the image's Cmd is not used
    assert eff.working_dir == "/tmp" and spec.stop_signal == "SIGTERM"
    assert eff.user is not None and (eff.user.uid, eff.user.gid) == (7, 8)


async def test_build_never_pulls(image_store: store.ImageStore) -> None:
    c = image_manifest("absent", "absent:1", imagePullPolicy="Always")
    with pytest.raises(errors.ImageNotFound, match="not in the image store") as caught:
        await build(c, image_store)
    assert caught.value.container == "absent"
    assert str(caught.value).startswith('container "absent": ')


async def test_resolver_resolves_per_policy_and_hashes_the_digest(
    image_store: store.ImageStore, built: Built
) -> None:
    image = await image_store.import_(built.source())
    resolver = specs.Resolver(image_store, cgroup_parent="/reconciler-test/p", max_age=0)
    c = image_manifest("bb", "busybox", imagePullPolicy="IfNotPresent")  # present: no pull
    want = desired(c)
    spec = await resolver.instance(want, Create("bb.2", 2, "bb.1"))
    assert (spec.id, spec.generation, spec.previous) == ("bb.2", 2, "bb.1")
    assert spec.cgroup_path == "/reconciler-test/p/bb.2"
    # the digest is part of the identity: a tag that moves makes a new instance
    assert spec.spec_hash == model.spec_hash(c, extra={"image": image.digest})
    assert spec.spec_hash != want.spec_hash
    assert resolver.digests.digests == {"busybox": image.digest}

    never = image_manifest("nv", "not-imported:1", imagePullPolicy="Never")
    with pytest.raises(errors.ImageNotFound, match="imagePullPolicy is Never") as caught:
        await resolver.instance(desired(never), Create("nv.1", 1, None))
    assert caught.value.container == "nv"
