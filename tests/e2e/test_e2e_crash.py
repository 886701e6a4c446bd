"""A daemon SIGKILLed at any moment converges on its next start: no duplicate container,
nothing leaked (runc state, conmon monitors, overlay mounts, cgroups, depots)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from .harness import E2E, wait_until

pytestmark = pytest.mark.runc


def assert_exactly(e2e: E2E, names: set[str], *,
                   gone: frozenset[str] | set[str] = frozenset()) -> None:
    """The host holds these containers, each once and whole, and nothing else of ours
    (``gone``: names that must have left no monitor behind)."""
    assert set(e2e.runc_names()) == names
    for n in names:
        assert e2e.running_pid(n) is not None, n

    def one_each() -> dict[str, int]:
        return {n: len(e2e.monitors(n)) for n in names | gone}

    wait_until(lambda: one_each() == {n: int(n in names) for n in names | gone}, 5,
               what="one conmon per container, none for the deleted")
    # each name once (one instance), nothing else of ours: runc containers, overlay mounts
    # under the depots, depots with a bundle, cgroups under the world's cgroup parents.
    # A delete's depot goes just after its runc container (and a leftover of a killed
    # daemon's own runc delete at the next relist): whole within a few seconds.
    def whole() -> bool:
        inventory = e2e.inventory()
        return all(inventory[k] == sorted(names) for k in ("runc", "overlays", "depots",
                                                            "cgroups"))
    wait_until(whole, 5, what="nothing else of ours on the host", interval=0.1)
    inventory = e2e.inventory()
    for kind in ("runc", "overlays", "depots", "cgroups"):
        assert inventory[kind] == sorted(names), (kind, inventory)


@pytest.mark.parametrize("kill_after", [0.05, 0.2, 0.45])
def test_sigkill_in_the_middle_of_a_batch(e2e: E2E, kill_after: float) -> None:
    names = {f"c{i:02d}" for i in range(10)}
    for n in sorted(names):
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    d = e2e.start(ready=False)
    time.sleep(kill_after)
    d.kill()  # somewhere in the batch: some created, some half-made, some not begun
    e2e.start()
    for n in names:
        e2e.wait_running(n, timeout=20)
    assert_exactly(e2e, names)


def test_sigkill_in_the_middle_of_a_delete_batch(e2e: E2E) -> None:
    names = {f"d{i:02d}" for i in range(8)}
    for n in sorted(names):
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    e2e.start("--allow-empty")
    for n in names:
        e2e.wait_running(n)
    for n in sorted(names)[:6]:
        os.unlink(e2e.manifests / f"{n}.yaml")
    time.sleep(0.3 + 0.1)  # the settle window, then a few deletes are under way
    e2e.daemons[-1].kill()
    e2e.start("--allow-empty")
    kept = set(sorted(names)[6:])
    wait_until(lambda: set(e2e.runc_names()) == kept, 20, what="the deletes finished")
    assert_exactly(e2e, kept, gone=names - kept)


def test_sigkill_between_conmon_create_and_start(e2e: E2E, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon held after the create by a conmon wrapper that returns only once a hold
    file is gone: it dies with the container created, not started (conmon waiting beside
    it). The next daemon replaces it, once."""
    shim = tmp_path / "shim"
    shim.mkdir()
    hold = tmp_path / "hold"
    hold.touch()
    real = shutil.which("conmon")
    assert real is not None
    (shim / "conmon").write_text(
        f'#!/bin/sh\n{real} "$@"\nrc=$?\n'
        f'while [ -e {hold} ]; do sleep 0.05; done\nexit $rc\n')
    (shim / "conmon").chmod(0o755)
    e2e.write("h.yaml", e2e.manifest("h"))
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    d = e2e.start(ready=False)
    try:
        wait_until(lambda: (e2e.runc("h") or {}).get("status") == "created", 10,
                   what="h created, not started")
        d.kill()
    finally:
        hold.unlink()  # the wrapper goes too
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    e2e.start()
    e2e.wait_running("h", timeout=20)
    assert_exactly(e2e, {"h"})
    assert "Recreated" in e2e.reasons("h")
