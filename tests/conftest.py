"""Shared fixtures: a busybox root filesystem, and a private runc runtime per test.

Every test that touches the host gets its own runc ``--root``, state dir and cgroup
parent under a temp dir, and the fixture removes whatever the test left — containers,
monitors, overlay mounts, cgroups — even when the test failed. Nothing else on the host
is ever touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [t for t in ("runc", "conmon") if shutil.which(t) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root"
    elif missing:
        reason = f"needs {', '.join(missing)}"
    if reason:
        for item in items:
            if "runc" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention busybox rootfs built from Debian's busybox-static."""
    target = tmp_path_factory.mktemp("rootfs") / "busybox"
    subprocess.run([str(REPO / "deploy" / "mkrootfs-busybox.sh"), str(target)], check=True,
                   capture_output=True)
    return target


class HostSandbox:
    """Paths of one test's private runtime, and the clean-up of all it created."""

    def __init__(self, base: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.base = base
        self.state_dir = base / "state"
        self.runc_root = base / "runc"
        self.cgroup_parent = f"/reconciler-test/{tag}"

    def cleanup(self) -> None:
        from reconciler.runtime import cgroups, hostmount

        if self.runc_root.exists():
            out = subprocess.run(["runc", f"--root={self.runc_root}", "list", "-q"],
                                 capture_output=True, text=True, check=False).stdout
            for cid in out.split():
                subprocess.run(["runc", f"--root={self.runc_root}", "resume", cid],
                               capture_output=True, check=False)
                subprocess.run(["runc", f"--root={self.runc_root}", "delete", "-f", cid],
                               capture_output=True, check=False)
        for pidfile in self.state_dir.glob("containers/*/bundle/conmon.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), 9)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for mnt in sorted(mounts, key=len, reverse=True):
            if mnt.startswith(str(self.base) + "/"):
                hostmount.unmount(Path(mnt))
        cgroups.remove_parent(self.cgroup_parent)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[HostSandbox]:
    box = HostSandbox(tmp_path)
    try:
        yield box
    finally:
        box.cleanup()
