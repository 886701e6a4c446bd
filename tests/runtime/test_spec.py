"""``resolve.spec.build``: a desired object becomes the ``InstanceSpec`` the runtime takes.

Pure (files only, no runc): where the instance's files come from (a rootfs dir, a bundle),
its annotations, cgroup path and stop settings, and the errors of an unusable bundle or
image source. Images resolved from a real store are tested in ``tests/images``; the
runtime's own check of the lower dir is in ``test_runc``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.core.desired import Desired
from reconciler.core.instance import (
    ANN_IMAGE_DIGEST,
    ANN_MANIFEST,
    ANN_SOURCE,
    ANN_SOURCE_ID,
    InstanceSpec,
    instance_id,
    split_id,
)
from reconciler.images.store import ImageStore
from reconciler.manifest import model
from reconciler.resolve import spec as specs

pytestmark = pytest.mark.anyio


def container(name: str = "web", **spec: Any) -> model.Container:
    return model.Container.model_validate(
        {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
         "spec": spec})


async def build(c: model.Container, *, generation: int = 1, previous: str | None = None,
                cgroup_parent: str = "/reconciler-test/p", images: ImageStore | None = None,
                source_id: str = "directory") -> InstanceSpec:
    want = Desired(name=c.name, container=c, source=f"/m/{c.name}.yaml",
                   spec_hash=model.spec_hash(c), source_id=source_id)
    return await specs.build(want, instance=instance_id(c.name, generation),
                             generation=generation, previous=previous,
                             spec_hash="v1-given", cgroup_parent=cgroup_parent, images=images)


def test_instance_ids_split_back() -> None:
    assert instance_id("web", 3) == "web.3"
    assert split_id("web.3") == ("web", 3)
    assert split_id("web") == ("web", 0)  # a wave-one id: no generation
    assert split_id("web.x") == ("web.x", 0)


async def test_rootfs_spec_is_fully_resolved(tmp_path: Path) -> None:
    c = container(rootfs=str(tmp_path), command=["/bin/true"])
    spec = await build(c, generation=3, previous="web.2", cgroup_parent="/reconciler-test/p/")
    assert (spec.id, spec.name, spec.generation, spec.previous) == ("web.3", "web", 3, "web.2")
    assert spec.container == c  # nothing to fill in
    assert spec.lower == str(tmp_path)
    assert spec.cgroup_path == "/reconciler-test/p/web.3"
    assert (spec.spec_hash, spec.source) == ("v1-given", "/m/web.yaml")
    assert (spec.stop_signal, spec.grace) == ("SIGTERM", 10.0)  # the defaults
    assert spec.entrypoint == () and spec.base is None
    assert dict(spec.annotations) == {ANN_SOURCE: "/m/web.yaml", ANN_SOURCE_ID: "directory",
                                      ANN_MANIFEST: model.canonical_json(c)}


async def test_stop_settings_and_source_id_come_from_the_manifest(tmp_path: Path) -> None:
    c = container(rootfs=str(tmp_path), command=["/bin/true"], stopSignal="SIGUSR1",
                  terminationGracePeriodSeconds=3)
    spec = await build(c, source_id="etcd")
    assert (spec.stop_signal, spec.grace) == ("SIGUSR1", 3.0)
    assert spec.annotations[ANN_SOURCE_ID] == "etcd"
    assert ANN_IMAGE_DIGEST not in spec.annotations


async def test_a_missing_rootfs_is_the_runtimes_to_find(tmp_path: Path) -> None:
    # it may be filled in before the instance is made: build does not look
    spec = await build(container(rootfs=str(tmp_path / "later"), command=["/bin/true"]))
    assert spec.lower == str(tmp_path / "later")


def make_bundle(base: Path, config: dict[str, Any] | None, *, root: str = "rootfs") -> Path:
    bundle = base / "bundle"
    (bundle / root).mkdir(parents=True)
    if config is not None:
        (bundle / "config.json").write_text(json.dumps(config))
    return bundle


async def test_bundle_config_is_the_base_and_its_root_the_lower_dir(tmp_path: Path) -> None:
    config = {"ociVersion": "1.0.2", "root": {"path": "myroot"},
              "process": {"args": ["/bin/sh"]}}
    bundle = make_bundle(tmp_path, config, root="myroot")
    spec = await build(container(bundle=str(bundle)))
    assert spec.base == config
    assert spec.lower == str(bundle / "myroot")
    default = make_bundle(tmp_path / "other", {"ociVersion": "1.0.2"})
    assert (await build(container(bundle=str(default)))).lower == str(default / "rootfs")


@pytest.mark.parametrize(
    ("config_text", "message"),
    [(None, "cannot read config.json"), ("{not json", "cannot read config.json")],
    ids=["missing", "not-json"],
)
async def test_unreadable_bundle_config(tmp_path: Path, config_text: str | None,
                                        message: str) -> None:
    bundle = make_bundle(tmp_path, None)
    if config_text is not None:
        (bundle / "config.json").write_text(config_text)
    with pytest.raises(errors.RootfsError, match=message) as caught:
        await build(container("b", bundle=str(bundle)))
    assert caught.value.container == "b"
    assert str(caught.value).startswith(f'container "b": bundle {bundle}: ')


async def test_bundle_root_not_a_directory(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {"root": {"path": "elsewhere"}})
    with pytest.raises(errors.RootfsError) as caught:
        await build(container("b", bundle=str(bundle)))
    assert str(caught.value) == (f'container "b": bundle {bundle}: root {bundle / "elsewhere"}'
                                 " is not a directory")


async def test_image_without_a_store(tmp_path: Path) -> None:
    with pytest.raises(errors.RootfsError, match="this daemon has no image store") as caught:
        await build(container("i", image="busybox:1", imagePullPolicy="Never"))
    assert caught.value.container == "i"


async def test_image_not_in_the_store_names_the_container(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(errors.ImageNotFound, match="not in the image store") as caught:
        await build(container("i", image="busybox:1", imagePullPolicy="Never"), images=store)
    assert caught.value.container == "i"
    assert str(caught.value).startswith('container "i": image ')
    # every runtime failure is retried with backoff by the planner: a later import fixes it
    assert isinstance(caught.value, errors.RuntimeFailure)
