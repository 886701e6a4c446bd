"""End-to-end fixtures: one ``E2E`` world per test (see ``harness``), measurements.

A test that needs a second, separate world (its own state dir, runc root, manifests dir
and cgroup parent) takes ``second_e2e`` or ``e2e_factory``. Every daemon a test starts is
stopped (SIGTERM, then SIGKILL after a bound) before the sandbox fixture removes what the
test left on the host; a failed test gets the daemons' logs and the event log in its
report. Measured latencies are collected with the ``record`` fixture and printed in the
terminal summary, so a plain ``pytest tests/e2e`` shows them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    E2E,
    GENERATION_ANNOTATION,
    NAME_ANNOTATION,
    SLEEP_LOOP,
    generation,
    instance_name,
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _finish(request: pytest.FixtureRequest, world: E2E, label: str = "") -> None:
    """Stop every daemon of ``world``; on a failed test, attach their logs and events."""
    for d in world.daemons:
        d.stop()
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    if any(r is not None and r.failed for r in reports):
        prefix = f"{label} " if label else ""
        for i, d in enumerate(world.daemons):
            request.node.add_report_section("teardown", f"{prefix}daemon-{i} log", d.log())
        request.node.add_report_section(
            "teardown", f"{prefix}events", "\n".join(json.dumps(e) for e in world.events()))


@pytest.fixture
def e2e(request: pytest.FixtureRequest, sandbox: Any, busybox_rootfs: Path,
        tmp_path: Path) -> Iterator[E2E]:
    """The world of one test; every daemon it started is stopped before the sandbox cleans."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    world = E2E(sandbox=sandbox, rootfs=busybox_rootfs, tmp=tmp_path, manifests=manifests)
    try:
        yield world
    finally:
        _finish(request, world)


@pytest.fixture
def net_e2e(e2e: E2E) -> Iterator[E2E]:
    """``e2e`` whose daemons run with ``--networks on`` inside a network namespace this
    fixture makes (loopback up) and removes: the bridges, veths, firewall rules, address
    store and published ports all live there, never on this machine's network. Test
    traffic goes only to that namespace's loopback, bridges and containers."""
    name = f"rt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        e2e.netns = name
        yield e2e
    finally:
        for d in e2e.daemons:
            d.stop()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def e2e_factory(request: pytest.FixtureRequest, sandbox_factory: Callable[[str], Any],
                busybox_rootfs: Path) -> Iterator[Callable[[str], E2E]]:
    """``make(label)``: one more world, fully separate from ``e2e`` and from each other —
    its own temp dir, state dir, runc root, manifests dir and sandbox (cgroup parent).
    At teardown each world's daemons are stopped, then its sandbox is cleaned (by
    ``sandbox_factory``, which this fixture's teardown runs before), even on failure."""
    worlds: list[tuple[str, E2E]] = []

    def make(label: str = "world") -> E2E:
        box = sandbox_factory(label)
        manifests = Path(box.base) / "manifests"
        manifests.mkdir()
        world = E2E(sandbox=box, rootfs=busybox_rootfs, tmp=Path(box.base),
                    manifests=manifests)
        worlds.append((label, world))
        return world

    try:
        yield make
    finally:
        with contextlib.ExitStack() as stack:
            for label, world in worlds:
                stack.callback(_finish, request, world, label)


@pytest.fixture
def second_e2e(e2e_factory: Callable[[str], E2E]) -> E2E:
    """A second world beside ``e2e`` (see ``e2e_factory``)."""
    return e2e_factory("second")


_MEASURED: list[tuple[str, str]] = []


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, float], None]:
    """``record(what, seconds)``: a measurement shown in the terminal summary."""
    def add(what: str, seconds: float) -> None:
        _MEASURED.append((request.node.name, f"{what}: {seconds * 1000:.0f} ms"))
    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _MEASURED:
        terminalreporter.section("e2e measurements")
        for test, line in _MEASURED:
            terminalreporter.write_line(f"{test}: {line}")


@pytest.fixture
def foreign_runc(
    tmp_path: Path, sandbox: Any, busybox_rootfs: Path
) -> Iterator[Callable[[str], Path]]:
    """``start(instance)``: a container of another runc root, made with bare ``runc run -d``
    under the runc id ``instance`` (``a.1``) and annotated as that instance of ours would
    be; the root dir is returned. Removed at teardown."""
    roots: list[tuple[Path, str]] = []

    def start(instance: str) -> Path:
        name = instance_name(instance)
        root = tmp_path / "foreign-runc"
        bundle = tmp_path / f"foreign-bundle-{instance}"
        bundle.mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["root"] = {"path": str(busybox_rootfs), "readonly": True}
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/sh", "-c", SLEEP_LOOP]
        config["linux"]["cgroupsPath"] = f"{sandbox.cgroup_parent}/foreign-{instance}"
        # looks like ours on purpose: only the runc root tells it apart
        config["annotations"] = {
            "io.reconciler.managed-by": "reconciler",
            "io.reconciler.spec-hash": "v1-foreign",
            NAME_ANNOTATION: name,
            GENERATION_ANNOTATION: str(generation({"id": instance})),
        }
        (bundle / "config.json").write_text(json.dumps(config))
        roots.append((root, instance))
        subprocess.run(["runc", f"--root={root}", "run", "-d", "--bundle", str(bundle),
                        instance],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=30)
        return root

    try:
        yield start
    finally:
        for root, instance in roots:
            subprocess.run(["runc", f"--root={root}", "delete", "-f", instance],
                           capture_output=True, check=False)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout of busybox:latest, built offline once per session
    (``deploy/mkimage-busybox.sh``); ``E2E.import_image`` puts it in a world's store."""
    layout = tmp_path_factory.mktemp("busybox-image") / "layout"
    script = Path(__file__).resolve().parents[2] / "deploy" / "mkimage-busybox.sh"
    subprocess.run([str(script), str(layout)], check=True, capture_output=True)
    return layout
