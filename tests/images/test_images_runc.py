"""Containers from images on real runc: the image config seen from inside, one shared tree.

The daemon's path: the image pulled (here: imported) per ``imagePullPolicy``, then
``resolve.spec.build`` unpacks it and applies its config to the manifest, and the runtime
creates and starts the instance with the unpacked rootfs as the overlay's lower dir.
What the process reports about itself is the proof.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.core.desired import Desired
from reconciler.core.instance import ANN_IMAGE_DIGEST, ANN_STOP_SIGNAL, InstanceSpec
from reconciler.images import apply, store
from reconciler.manifest import model
from reconciler.resolve import spec as specs
from reconciler.runtime.runc import RuncRuntime

from .support import REPORT, Built

pytestmark = [pytest.mark.runc, pytest.mark.anyio]


@pytest.fixture
def rt(sandbox: Any) -> RuncRuntime:
    return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                       cgroup_parent=sandbox.cgroup_parent, timeout=20)


def image_manifest(name: str, image: str, **spec: Any) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
        "spec": {"image": image, "imagePullPolicy": "Never", **spec},
    })


async def run_from_image(rt: RuncRuntime, s: store.ImageStore, c: model.Container
                         ) -> InstanceSpec:
    """Start instance ``<name>.1`` of ``c`` the way the daemon does; its spec."""
    assert c.spec.image is not None
    image = await s.resolve(c.spec.image, c.spec.image_pull_policy)
    spec_hash = model.spec_hash(c, extra={"image": image.digest})
    want = Desired(name=c.name, container=c, source="test", spec_hash=spec_hash)
    spec = await specs.build(want, instance=f"{c.name}.1", generation=1, previous=None,
                             spec_hash=spec_hash, cgroup_parent=rt.cgroup_parent, images=s)
    # the effective manifest: the image's config applied, its Entrypoint kept apart
    assert spec.container.spec.image == c.spec.image
    assert spec.lower == str(await s.ensure_unpacked(image))
    assert spec.annotations[ANN_IMAGE_DIGEST] == image.digest
    await rt.create(spec)
    await rt.start(spec.id)
    state = await rt.state(spec.id)
    assert state.annotations[ANN_IMAGE_DIGEST] == image.digest
    assert state.annotations[ANN_STOP_SIGNAL] == spec.stop_signal
    assert rt.config(spec.id)["process"]["args"] == apply.argv(spec.container,
                                                               list(spec.entrypoint))
    return spec


async def output(rt: RuncRuntime, instance: str) -> list[str]:
    await rt.wait_exit(instance)
    log = rt.depot(instance).log
    for _ in range(200):  # conmon flushes the log as the container exits
        lines = [ln.split(" stdout F ", 1)[1] for ln in log.read_text().splitlines()
                 if " stdout F " in ln]
        if any(ln.startswith("path=") for ln in lines):
            return lines
        await anyio.sleep(0.01)
    raise AssertionError(f"no report in {log}: {log.read_text()!r}")


@pytest.mark.parametrize(
    ("spec", "argv_line"),
    [
        # neither: Entrypoint + Cmd, so $0 is the Cmd's second word
        ({}, "argv=from-cmd "),
        # only args: Entrypoint + args
        ({"args": [REPORT, "zero", "one", "two"]}, "argv=zero one two"),
        # command and args: the image's Entrypoint and Cmd are both gone
        ({"command": ["/bin/sh", "-c", REPORT], "args": ["mine", "x"]}, "argv=mine x"),
    ],
    ids=["image-argv", "args", "command-args"],
)
async def test_image_config_seen_from_inside(
    rt: RuncRuntime, built: Built, tmp_path: Path, spec: dict[str, Any], argv_line: str
) -> None:
    s = store.ImageStore(tmp_path / "images", timeout=60)
    await s.import_(built.source("conf:1"))
    c = image_manifest("conf", "conf:1", env=[{"name": "GREETING", "value": "manifest"}],
                       **spec)
    made = await run_from_image(rt, s, c)
    assert made.stop_signal == "SIGQUIT"  # from the image: the manifest says none
    assert made.container.spec.stop_signal == "SIGQUIT"
    assert made.entrypoint == ("/bin/sh", "-c")  # the image's Entrypoint
    lines = await output(rt, "conf.1")
    assert lines == [
        argv_line,
        "uid=33 gid=33 groups=33",  # User www-data, looked up in the image's /etc/passwd
        "cwd=/var/www",  # WorkingDir
        "greeting=manifest mode=image",  # env merged, the manifest winning
        "path=/bin:/usr/bin",  # the image's PATH, not the runtime's default
    ]


async def test_manifest_overrides_win_inside(rt: RuncRuntime, built: Built,
                                             tmp_path: Path) -> None:
    s = store.ImageStore(tmp_path / "images", timeout=60)
    await s.import_(built.source("conf:1"))
    c = image_manifest("mine", "conf:1", user={"uid": 1234, "gid": 99}, workingDir="/tmp",
                       stopSignal="SIGTERM", env=[{"name": "PATH", "value": "/bin"}])
    spec = await run_from_image(rt, s, c)
    assert spec.stop_signal == "SIGTERM"
    assert await output(rt, "mine.1") == ["argv=from-cmd ", "uid=1234 gid=99 groups=99",
                                        "cwd=/tmp", "greeting=hello mode=image", "path=/bin"]


def du_kib(*paths: Path) -> int:
    out = subprocess.run(["du", "-skc", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.splitlines()[-1].split()[0])


async def test_fifty_containers_share_one_unpacked_tree(rt: RuncRuntime, built: Built,
                                                        tmp_path: Path) -> None:
    s = store.ImageStore(tmp_path / "images", timeout=60)
    await s.import_(built.source())
    names = [f"bb-{i:02d}" for i in range(50)]
    limit = anyio.Semaphore(8)
    started = time.monotonic()

    async def start(name: str) -> None:
        async with limit:
            await run_from_image(rt, s, image_manifest(
                name, "busybox", command=["/bin/sh", "-c", "echo mine > /mine; exec sleep 600"]))

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(start, name)
    elapsed = time.monotonic() - started
    listed = await rt.list()
    assert sorted(o.name for o in listed) == names
    assert sorted(o.instance for o in listed) == [f"{n}.1" for n in names]
    [tree] = list(s.unpacked.iterdir())
    rootfs = tree / "rootfs"
    # every container's root is an overlay whose lower dir is that one tree
    for name in (names[0], names[-1]):
        pid = (await rt.state(f"{name}.1")).pid
        mountinfo = (await anyio.Path(f"/proc/{pid}/mountinfo").read_text()).splitlines()
        root = next(ln for ln in mountinfo if ln.split()[4] == "/")
        assert "overlay" in root and f"lowerdir={rootfs}" in root
    for _ in range(200):
        if all((rt.depot(f"{n}.1").upper / "mine").exists() for n in names):
            break
        await anyio.sleep(0.02)
    uppers = [rt.depot(f"{n}.1").upper for n in names]
    assert all((u / "mine").read_text() == "mine\n" for u in uppers)
    tree_kib, uppers_kib = du_kib(tree), du_kib(*uppers)
    print(f"50 containers: tree {tree_kib} KiB once, 50 upper dirs {uppers_kib} KiB,"  # noqa: T201
          f" started in {elapsed:.1f}s")
    assert tree_kib > 1000  # busybox itself is ~2 MiB
    assert uppers_kib < tree_kib  # fifty copies would be 50x the tree
    assert not (rootfs / "mine").exists()  # the shared tree is never written
    assert await s.gc_unpacked({"sha256:" + tree.name}) == []
