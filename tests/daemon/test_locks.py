"""The two daemon locks: one daemon per state dir, and one per cgroup parent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import errors, paths
from reconciler.daemon.status import Store


def test_a_second_daemon_on_a_cgroup_parent_is_refused_until_the_first_goes(
        tmp_path: Path) -> None:
    parent = f"/reconciler-test-lock-{tmp_path.name}"
    first, second = Store(tmp_path / "a"), Store(tmp_path / "b")
    first.lock()
    second.lock()
    try:
        first.claim_cgroup_parent(parent)
        assert json.loads((tmp_path / "a" / "daemon.json").read_text())["cgroupParent"] == parent
        with pytest.raises(errors.StateDirLocked, match=f"cgroup parent {parent} is held by"
                           " another live reconciler daemon"):
            second.claim_cgroup_parent(parent)
        first.unlock()
        assert not paths.cgroup_lock(parent).exists()  # no lock file left behind
        second.claim_cgroup_parent(parent)
    finally:
        first.unlock()
        second.unlock()
    assert not paths.cgroup_lock(parent).exists()


def test_a_second_daemon_on_a_state_dir_is_refused(tmp_path: Path) -> None:
    first, second = Store(tmp_path), Store(tmp_path)
    first.lock()
    try:
        with pytest.raises(errors.StateDirLocked, match="another reconciler daemon"):
            second.lock()
    finally:
        first.unlock()


def test_the_default_cgroup_parent_is_the_state_dirs_own(tmp_path: Path) -> None:
    a, b = paths.default_cgroup_parent(tmp_path / "a"), paths.default_cgroup_parent(tmp_path / "b")
    assert a != b and a.startswith("/reconciler-") and len(a) == len("/reconciler-") + 8
    assert paths.default_cgroup_parent(tmp_path / "a" / ".." / "a") == a  # resolved
    assert paths.recorded_cgroup_parent(tmp_path / "a") == a  # nothing recorded: the default
