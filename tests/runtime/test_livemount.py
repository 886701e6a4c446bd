"""Live mount changes in a running runc container: same init PID, really enforced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.manifest.model import Container
from reconciler.runtime.runc import RuncRuntime

from .support import up

pytestmark = [pytest.mark.runc, pytest.mark.anyio]

LIVE = "live.1"  # the instance
SLEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"]


def manifest(rootfs: Path, mounts: list[dict[str, Any]], **spec: Any) -> Container:
    return Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "live"},
        "spec": {"rootfs": str(rootfs), "command": SLEEPER, "mounts": mounts, **spec}})


@pytest.fixture
def rt(sandbox: Any) -> RuncRuntime:
    return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                       cgroup_parent=sandbox.cgroup_parent, timeout=10)


async def sh(rt: RuncRuntime, script: str) -> tuple[int, str]:
    res = await rt.exec(LIVE, ["/bin/sh", "-c", script])
    return res.exit_code, (res.stdout + res.stderr).decode()


async def test_bind_mount_add_readonly_change_remove(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("from a\n")
    (b / "f").write_text("from b\n")
    c0 = manifest(busybox_rootfs, [])
    obs = await up(rt, c0)
    pid = obs.pid

    c1 = manifest(busybox_rootfs, [{"type": "bind", "source": str(a), "destination": "/data"}])
    said = await rt.update_mounts(LIVE, c0.spec.mounts, c1.spec.mounts)
    assert said == [("MountAdded", "/data")]
    # a daemon killed before it recorded the change applies it again: still one mount
    await rt.update_mounts(LIVE, c0.spec.mounts, c1.spec.mounts)
    assert len([m for m in await rt.mounts(LIVE) if m.destination == "/data"]) == 1
    assert await sh(rt, "cat /data/f") == (0, "from a\n")
    assert await sh(rt, "echo w > /data/new && echo ok") == (0, "ok\n")
    assert (a / "new").read_text() == "w\n"

    c2 = manifest(busybox_rootfs, [{"type": "bind", "source": str(a), "destination": "/data",
                                    "readOnly": True}])
    assert await rt.update_mounts(LIVE, c1.spec.mounts, c2.spec.mounts) == [
        ("MountChanged", "/data")]
    code, out = await sh(rt, "echo x > /data/g")
    assert code != 0 and "Read-only file system" in out
    assert [m.read_only for m in await rt.mounts(LIVE) if m.destination == "/data"] == [True]

    c3 = manifest(busybox_rootfs, [{"type": "bind", "source": str(b), "destination": "/data"}])
    await rt.update_mounts(LIVE, c2.spec.mounts, c3.spec.mounts)
    assert await sh(rt, "cat /data/f") == (0, "from b\n")
    assert len([m for m in await rt.mounts(LIVE) if m.destination == "/data"]) == 1

    assert await rt.update_mounts(LIVE, c3.spec.mounts, c0.spec.mounts) == [
        ("MountRemoved", "/data")]
    assert await rt.update_mounts(LIVE, c0.spec.mounts, c0.spec.mounts) == []  # nothing to do
    code, _ = await sh(rt, "cat /data/f")
    assert code != 0
    assert not [m for m in await rt.mounts(LIVE) if m.destination == "/data"]
    assert (await rt.state(LIVE)).pid == pid
    assert '"/data"' not in rt.depot(LIVE).config.read_text()


async def test_tmpfs_add_with_size_limit_then_remove(
    rt: RuncRuntime, busybox_rootfs: Path
) -> None:
    c0 = manifest(busybox_rootfs, [])
    pid = (await up(rt, c0)).pid
    c1 = manifest(busybox_rootfs, [{"type": "tmpfs", "destination": "/scratch",
                                    "sizeLimit": "1Mi"}])
    await rt.update_mounts(LIVE, c0.spec.mounts, c1.spec.mounts)
    assert (await sh(rt, "dd if=/dev/zero of=/scratch/a bs=1k count=512 2>/dev/null"))[0] == 0
    code, out = await sh(rt, "dd if=/dev/zero of=/scratch/b bs=1k count=1024")
    assert code != 0 and "No space left on device" in out
    info = [m for m in await rt.mounts(LIVE) if m.destination == "/scratch"]
    assert [m.fstype for m in info] == ["tmpfs"]
    await rt.update_mounts(LIVE, c1.spec.mounts, c0.spec.mounts)
    assert not [m for m in await rt.mounts(LIVE) if m.destination == "/scratch"]
    assert (await rt.state(LIVE)).pid == pid


async def test_readonly_root_gets_mountpoint_from_the_host_side(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hi\n")
    c0 = manifest(busybox_rootfs, [], readOnlyRootFilesystem=True)
    await up(rt, c0)
    assert (await sh(rt, "mkdir /x"))[0] != 0  # the root really is read-only
    c1 = manifest(busybox_rootfs, [{"type": "bind", "source": str(src), "destination": "/new/dir"}],
                  readOnlyRootFilesystem=True)
    await rt.update_mounts(LIVE, c0.spec.mounts, c1.spec.mounts)
    assert await sh(rt, "cat /new/dir/f") == (0, "hi\n")


async def test_destination_under_another_mount_needs_recreate(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    c0 = manifest(busybox_rootfs, [{"type": "tmpfs", "destination": "/t"}])
    await up(rt, c0)
    c1 = manifest(busybox_rootfs, [{"type": "tmpfs", "destination": "/t"},
                                   {"type": "bind", "source": str(tmp_path),
                                    "destination": "/t/inner"}])
    with pytest.raises(errors.LiveUpdateImpossible, match="/t/inner"):
        await rt.update_mounts(LIVE, c0.spec.mounts, c1.spec.mounts)
