"""Shared fixtures: a busybox root filesystem, and a private runc runtime per test.

Every test that touches the host gets its own runc ``--root``, state dir and cgroup
parent under a temp dir, and the fixture removes whatever the test left — containers,
monitors, overlay mounts, cgroups — even when the test failed. Nothing else on the host
is ever touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The suite never reads the settings of whoever runs it: `make run` writes a config file
# in the user's home, and a shell may export RECONCILER_* variables. Tests that check
# settings set their own (monkeypatch).
os.environ["RECONCILER_CONFIG"] = os.devnull
for _name in [n for n in os.environ if n.startswith("RECONCILER_") and n != "RECONCILER_CONFIG"]:
    del os.environ[_name]
# Daemons the tests start make no bridge or firewall rule on this machine's network: the
# networking tests pass --networks on to a daemon inside a network namespace of their own.
os.environ["RECONCILER_NETWORKS"] = "off"
# Most tests run rootfs: trees from temp dirs, which the default policy (baseline, no host
# paths) refuses: they run at privileged. The policy's own tests pass --policy.
os.environ["RECONCILER_POLICY"] = "privileged"


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
    """Paths of one test's private runtime, and the clean-up of all it created.

    Clean-up order: every container of this runc root is deleted (so nothing of ours runs
    in a cgroup any more), the conmon monitors of the depots are killed, mounts under
    ``base`` detached, then cgroup dirs removed with ``rmdir`` only — never a kill — under
    the sandbox's own parent, under the parent the daemon recorded in
    ``<state-dir>/daemon.json`` (``cgroupParent``: a daemon started without
    ``--cgroup-parent`` picks its own), and the leaf cgroup of each container of the
    state dir (its config's ``linux.cgroupsPath``) with that leaf's parent if it is left
    empty (``/reconciler...`` only).
    """

    def __init__(self, base: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.base = base
        self.state_dir = base / "state"
        self.runc_root = base / "runc"
        self.cgroup_parent = f"/reconciler-test/{tag}"

    def daemon_cgroup_parent(self) -> str | None:
        """The cgroup parent the daemon recorded in ``<state-dir>/daemon.json``, if any."""
        try:
            data = json.loads((self.state_dir / "daemon.json").read_text())
        except (OSError, ValueError):
            return None
        parent = data.get("cgroupParent") if isinstance(data, dict) else None
        return parent if isinstance(parent, str) and parent.strip("/") else None

    def cleanup(self) -> None:
        leaves = set()
        for config in self.state_dir.glob("containers/*/bundle/config.json"):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                path = json.loads(config.read_text())["linux"]["cgroupsPath"]
                if isinstance(path, str) and path.strip("/"):
                    leaves.add(path)
        if self.runc_root.exists():
            for _ in range(5):  # runc list fails when a container goes while it lists
                res = subprocess.run(["runc", f"--root={self.runc_root}", "list", "-q"],
                                     capture_output=True, text=True, check=False)
                if res.returncode == 0:
                    break
                time.sleep(0.05)
            def delete(cid: str) -> None:
                subprocess.run(["runc", f"--root={self.runc_root}", "resume", cid],
                               capture_output=True, check=False)
                subprocess.run(["runc", f"--root={self.runc_root}", "delete", "-f", cid],
                               capture_output=True, check=False)

            with ThreadPoolExecutor(8) as pool:  # a test may leave a hundred
                list(pool.map(delete, res.stdout.split()))
        for pidfile in self.state_dir.glob("containers/*/bundle/conmon.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), 9)
        # hostUsers: false roots are bound under /run too, in a directory of this state dir's
        from reconciler.runtime.idmap import visible_root

        exposed = visible_root(self.state_dir.absolute(), "-").parent
        for mnt in sorted(_mount_points(), key=len, reverse=True):
            if mnt.startswith((str(self.base) + "/", str(exposed) + "/")):
                _detach(mnt)
        from reconciler.paths import status_fallback

        with contextlib.suppress(OSError):  # a full state dir's status copy
            status_fallback(self.state_dir).unlink()
        if exposed.is_dir():
            for leftover in exposed.iterdir():
                with contextlib.suppress(OSError):
                    leftover.rmdir()
            with contextlib.suppress(OSError):
                exposed.rmdir()
        for leaf in sorted(leaves):
            remove_cgroup_tree(leaf)
            parent = leaf.rstrip("/").rsplit("/", 1)[0]
            if _safe_parent(parent):  # e.g. a daemon's default parent: only if now empty
                remove_cgroup_dir(parent)
        daemon_parent = self.daemon_cgroup_parent()
        if daemon_parent is not None and _safe_parent(daemon_parent):
            remove_cgroup_tree(daemon_parent)
        remove_cgroup_tree(self.cgroup_parent)
        remove_cgroup_tree(self.cgroup_parent.rsplit("/", 1)[0])  # /reconciler-test, if empty


CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_roots() -> list[Path]:
    """The hierarchy roots: the one tree on cgroup v2, every mounted v1 hierarchy else."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    roots: dict[str, Path] = {}
    for entry in sorted(CGROUP_ROOT.iterdir()):
        if entry.is_dir():
            roots.setdefault(os.path.realpath(entry), entry)  # cpu -> cpu,cpuacct once
    return list(roots.values())


def _safe_parent(parent: str) -> bool:
    """Only a daemon's own kind of parent is cleaned: ``/reconciler...``, no ``..``."""
    parts = parent.strip("/").split("/")
    return bool(parts[0]) and parts[0].startswith("reconciler") and ".." not in parts


def remove_cgroup_tree(path: str) -> None:
    """``rmdir`` the cgroup ``path`` and every dir under it, deepest first, in every
    hierarchy. rmdir fails on a cgroup that still has processes: this never kills."""
    rel = path.strip("/")
    if not rel:
        return
    for root in _cgroup_roots():
        top = root / rel
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def remove_cgroup_dir(path: str) -> None:
    """``rmdir`` the one cgroup dir ``path`` in every hierarchy, if it is empty."""
    rel = path.strip("/")
    for root in _cgroup_roots() if rel else []:
        with contextlib.suppress(OSError):
            os.rmdir(root / rel)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _detach(target: str) -> None:
    """``umount -l`` (MNT_DETACH); a path that is no mount point any more is fine."""
    libc = ctypes.CDLL(None, use_errno=True)
    while target in _mount_points():
        if libc.umount2(os.fsencode(target), 2) != 0:  # MNT_DETACH
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            raise OSError(err, f"cannot unmount {target}: {os.strerror(err)}")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[HostSandbox]:
    box = HostSandbox(tmp_path)
    try:
        yield box
    finally:
        box.cleanup()


@pytest.fixture
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Callable[[str], HostSandbox]]:
    """``make(label)``: one more sandbox, in a temp dir of its own (a second host world in
    one test). Each is cleaned like ``sandbox``, last made first, even when the test failed
    or one clean-up raised."""
    boxes: list[HostSandbox] = []

    def make(label: str = "world") -> HostSandbox:
        box = HostSandbox(tmp_path_factory.mktemp(label))
        boxes.append(box)
        return box

    try:
        yield make
    finally:
        with contextlib.ExitStack() as stack:
            for box in boxes:
                stack.callback(box.cleanup)
