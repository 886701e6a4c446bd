"""The daemon with image: manifests: pulled from a loopback registry, config applied,
and a re-pushed tag recreating its container exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.instance import ANN_GENERATION, ANN_IMAGE_DIGEST, ANN_NAME, ANN_STOP_SIGNAL

from .support import Built, push

pytestmark = pytest.mark.runc


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class World:
    def __init__(self, sandbox: Any, tmp: Path) -> None:
        self.sandbox = sandbox
        self.manifests = tmp / "manifests"
        self.manifests.mkdir()
        self.daemon_log = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.daemon_log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "run", "--manifests", str(self.manifests),
                 "--state-dir", str(self.sandbox.state_dir),
                 "--runc-root", str(self.sandbox.runc_root),
                 "--cgroup-parent", self.sandbox.cgroup_parent,
                 "--settle", "0.2", "--resync", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def drop(self, name: str, **spec: Any) -> None:
        doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
               "spec": spec}
        tmp = self.manifests / f".{name}.tmp"
        tmp.write_text(yaml.safe_dump(doc))
        tmp.rename(self.manifests / f"{name}.yaml")

    def state(self, name: str) -> dict[str, Any] | None:
        """runc's list entry of ``name``'s current instance (its newest generation, found
        by the name annotation: ids are ``<name>.<generation>``), None if there is none."""
        for _ in range(10):  # runc fails the listing when a container goes while it lists
            res = subprocess.run(["runc", f"--root={self.sandbox.runc_root}", "list",
                                  "--format", "json"], capture_output=True, text=True,
                                 check=False)
            if res.returncode == 0:
                break
            time.sleep(0.02)
        if res.returncode != 0:
            return None
        mine = [e for e in json.loads(res.stdout or "null") or []
                if (e.get("annotations") or {}).get(ANN_NAME) == name]
        if not mine:
            return None
        newest: dict[str, Any] = max(
            mine, key=lambda e: int(e["annotations"].get(ANN_GENERATION) or 0))
        return newest

    def log(self, name: str) -> Path | None:
        """The current log of ``name``'s current instance."""
        st = self.state(name)
        if st is None:
            return None
        return Path(self.sandbox.state_dir) / "containers" / str(st["id"]) / "logs" / "current.log"

    def running_pid(self, name: str) -> int | None:
        st = self.state(name)
        return int(st["pid"]) if st and st["status"] == "running" else None

    def reasons(self, name: str) -> list[str]:
        path = Path(self.sandbox.state_dir) / "events.jsonl"
        if not path.exists():
            return []
        return [e["reason"] for e in map(json.loads, path.read_text().splitlines())
                if e.get("name") == name]

    def digest(self, name: str) -> str | None:
        st = self.state(name)
        return None if st is None else st["annotations"].get(ANN_IMAGE_DIGEST)


@pytest.fixture
def world(sandbox: Any, tmp_path: Path) -> Iterator[World]:
    w = World(sandbox, tmp_path)
    try:
        yield w
    finally:
        w.stop()


SLEEP = ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


def test_repushed_tag_recreates_always_once_and_not_ifnotpresent(
    world: World, built: Built, registry: str
) -> None:
    always, ifnp = f"{registry}/daemon-always:1", f"{registry}/daemon-ifnp:1"
    first = push(built, "busybox:latest", always)
    assert push(built, "busybox:latest", ifnp) == first
    world.start()
    world.drop("always", image=always, imagePullPolicy="Always", command=SLEEP)
    world.drop("ifnp", image=ifnp, imagePullPolicy="IfNotPresent", command=SLEEP)
    a_pid = wait_for("always running", lambda: world.running_pid("always"))
    i_pid = wait_for("ifnp running", lambda: world.running_pid("ifnp"))
    assert world.digest("always") == first == world.digest("ifnp")
    diff = subprocess.run([sys.executable, "-m", "reconciler", "diff", "--manifests",
                           str(world.manifests), "--state-dir", str(world.sandbox.state_dir),
                           "--runc-root", str(world.sandbox.runc_root)],
                          capture_output=True, text=True, timeout=30)
    assert (diff.returncode, diff.stdout) == (0, "converged: nothing to do\n"), diff.stdout
    time.sleep(2.5)  # two resyncs re-pull an unchanged digest: nothing happens
    assert world.running_pid("always") == a_pid and "Recreated" not in world.reasons("always")

    second = push(built, "other:1", always)  # both tags now name a new digest
    assert push(built, "other:1", ifnp) == second != first
    new = wait_for("always recreated", lambda: (p := world.running_pid("always")) != a_pid
                   and p)
    assert world.digest("always") == second
    time.sleep(2.5)
    assert world.reasons("always").count("Recreated") == 1
    assert world.running_pid("always") == new
    # IfNotPresent never asks the registry again: the local digest still counts
    assert world.running_pid("ifnp") == i_pid and world.digest("ifnp") == first


def test_image_config_applied_inside_the_container(
    world: World, built: Built, registry: str
) -> None:
    ref = f"{registry}/daemon-conf:1"
    push(built, "conf:1", ref)
    world.start()
    world.drop("conf", image=ref, restartPolicy="Never", env=[{"name": "MODE",
                                                               "value": "manifest"}])

    def report() -> str | None:
        log = world.log("conf")
        if log is None or not log.exists() or "path=" not in log.read_text():
            return None
        return log.read_text()

    text = wait_for("the report", report)
    lines = {ln.split(" F ", 1)[1].split("=", 1)[0]: ln.split(" F ", 1)[1]
             for ln in text.splitlines() if " F " in ln}
    assert lines["argv"] == "argv=from-cmd "  # Entrypoint sh -c REPORT, Cmd's 2nd word = $0
    assert lines["uid"].startswith("uid=33 gid=33")  # www-data, from the image's /etc/passwd
    assert lines["cwd"] == "cwd=/var/www"
    assert lines["greeting"] == "greeting=hello mode=manifest"  # env merged, manifest wins
    state = world.state("conf")
    assert state is not None
    assert state["annotations"][ANN_STOP_SIGNAL] == "SIGQUIT"


def test_missing_image_fails_one_container_only(world: World, built: Built,
                                                registry: str) -> None:
    push(built, "busybox:latest", f"{registry}/daemon-ok:1")
    world.start()
    world.drop("absent", image=f"{registry}/daemon-nowhere:1", command=SLEEP)
    world.drop("never", image="not-imported:1", imagePullPolicy="Never", command=SLEEP)
    world.drop("fine", image=f"{registry}/daemon-ok:1", command=SLEEP)
    wait_for("fine running", lambda: world.running_pid("fine"))

    def failed(name: str) -> bool:
        return "Failed" in world.reasons(name)

    wait_for("absent failed", lambda: failed("absent") and failed("never"))
    status = json.loads((Path(world.sandbox.state_dir) / "status.json").read_text())
    fine = status["containers"]["fine"]  # converged: one spec hash, its digest included
    assert fine["specHash"] == fine["desiredSpecHash"]
    never = status["containers"]["never"]
    assert never["phase"] in ("BackOff", "Failed")
    assert "imagePullPolicy is Never" in never["message"]
    assert status["containers"]["absent"]["phase"] in ("BackOff", "Failed")
