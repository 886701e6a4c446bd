"""Pods through the real Controller over the fake runtime, on fake time.

A v1 Pod becomes a sandbox unit and one unit per container (``core.pods``); these tests
play a pod's life on the fake "host" and check the order Kubernetes gives it: the sandbox
first, init containers one after the other to completion, then the app containers; a
ConfigMap change written in place; one container's change recreating that one alone; a
sandbox's death taking its containers with it; a deleted pod going app containers first,
sidecars next, the sandbox last. End-to-end proof with runc is in tests/e2e/test_e2e_pods.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from trio.testing import MockClock

from reconciler.core import planner
from reconciler.core.desired import Desired
from reconciler.core.instance import ANN_MANIFEST, ANN_SOURCE, ANN_SOURCE_ID, InstanceSpec
from reconciler.core.observed import Status
from reconciler.manifest import model
from reconciler.resolve import spec
from reconciler.resolve.spec import Resolver

from .test_controller import Daemon, LiveFake, daemon, running, until

pytestmark = pytest.mark.anyio

BOX, INIT, SIDE = "default_web", "default_web_init", "default_web_shipper"
SERVER, CLIENT = "default_web_server", "default_web_client"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class _Resolver(Resolver):
    """Instance specs without an image store: the pod's own parts are what is tested."""

    async def instance(self, want: Desired, step: planner.Create) -> InstanceSpec:
        c = want.container
        made = InstanceSpec(
            id=step.instance, name=want.name, generation=step.generation, container=c,
            lower="/", cgroup_path=f"/fake/{step.instance}",
            annotations={ANN_MANIFEST: model.canonical_json(c), ANN_SOURCE: want.source,
                         ANN_SOURCE_ID: want.source_id},
            spec_hash=want.spec_hash, source=want.source, stop_signal="SIGTERM", grace=1.0)
        if want.pod is None:
            return made
        return spec.in_pod(made, want.pod, join=step.join, cgroup_parent="/fake")


def resolver() -> Resolver:
    return _Resolver(None, cgroup_parent="/fake", max_age=1.0)


def pod(*, client: str = "/bin/client", content: str = "v1", sidecar: bool = False,
        init: bool = True) -> str:
    inits: list[dict[str, Any]] = []
    if init:
        inits.append({"name": "init", "image": "busybox:1.36", "command": ["/bin/prepare"]})
    if sidecar:
        inits.append({"name": "shipper", "image": "busybox:1.36", "restartPolicy": "Always",
                      "command": ["/bin/ship"]})
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
         "data": {"index.html": content}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
            "initContainers": inits,
            "containers": [
                {"name": "server", "image": "busybox:1.36", "command": ["/bin/serve"],
                 "volumeMounts": [{"name": "conf", "mountPath": "/www"}]},
                {"name": "client", "image": "busybox:1.36", "command": [client]},
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "conf"}}],
        }},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def write(d: Daemon, text: str) -> Path:
    path = d.manifests / "web.yaml"
    path.write_text(text)
    return path


def creates(d: Daemon) -> list[str]:
    return [name for op, name in d.fake.calls if op == "create"]


async def finish_init(d: Daemon, name: str = INIT) -> None:
    await until(lambda: running(d, name))
    d.fake.crash(name, 0)


async def test_sandbox_then_init_then_apps(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod())
        await d.scan()
        await until(lambda: running(d, BOX))
        await finish_init(d)
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
        await d.settled()
        order = creates(d)
        assert order[:2] == [BOX, INIT]
        assert set(order[2:]) == {SERVER, CLIENT}
        assert d.fake.containers[INIT].status is Status.STOPPED  # not restarted: it succeeded
        box = d.fake.containers[BOX]
        assert d.fake.containers[SERVER].annotations["io.reconciler.sandbox"] \
            == f"{box.id}@{box.pid}"
        pods = {r["pod"]["pod"] for r in d.status()["containers"].values() if r["pod"]}
        assert pods == {"default/web"}


async def test_failed_init_is_retried_and_apps_wait(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod())
        await d.scan()
        await until(lambda: running(d, INIT))
        d.fake.crash(INIT, 3)
        await until(lambda: len([n for n in creates(d) if n == INIT]) == 2)
        assert SERVER not in d.fake.containers
        await finish_init(d)
        await until(lambda: running(d, SERVER))


async def test_one_container_changed_recreates_it_alone(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod())
        await d.scan()
        await finish_init(d)
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
        pids = {n: d.pid(n) for n in (BOX, SERVER, CLIENT)}
        write(d, pod(client="/bin/client2"))
        await d.scan()
        await until(lambda: running(d, CLIENT) and d.pid(CLIENT) != pids[CLIENT])
        await d.settled()
        assert d.pid(BOX) == pids[BOX] and d.pid(SERVER) == pids[SERVER]
        assert "Recreated" in d.events(CLIENT)
        assert creates(d).count(INIT) == 1


async def test_configmap_change_is_written_in_place(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod())
        await d.scan()
        await finish_init(d)
        await until(lambda: running(d, SERVER))
        await d.settled()
        pids = {n: d.pid(n) for n in (BOX, SERVER, CLIENT)}
        write(d, pod(content="v2"))
        await d.scan()
        await until(lambda: ("sync_volumes", d.fake.containers[BOX].id) in d.fake.calls)
        await d.settled()
        assert {n: d.pid(n) for n in pids} == pids
        (volume,) = [v for v in d.fake.volumes[d.fake.containers[BOX].id].volumes
                     if v.kind == "files"]
        assert [(f.path, f.data) for f in volume.files] == [("index.html", b"v2")]
        assert "VolumesUpdated" in d.events(BOX)


async def test_sandbox_death_remakes_its_containers(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod(init=False))
        await d.scan()
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
        server = d.pid(SERVER)
        d.fake.crash(BOX, 137)
        await until(lambda: running(d, BOX) and running(d, SERVER) and d.pid(SERVER) != server)
        box = d.fake.containers[BOX]
        assert d.fake.containers[SERVER].annotations["io.reconciler.sandbox"] \
            == f"{box.id}@{box.pid}"


async def test_deleted_pod_goes_apps_then_sidecar_then_sandbox(tmp_path: Path) -> None:
    async with daemon(tmp_path, allow_empty=True, resolver=resolver()) as d:
        write(d, pod(init=False, sidecar=True))
        await d.scan()
        await until(lambda: all(running(d, n) for n in (BOX, SIDE, SERVER, CLIENT)))
        await d.settled()
        order = creates(d)
        assert order.index(SIDE) < order.index(SERVER)  # a sidecar starts before the apps
        (d.manifests / "web.yaml").unlink()
        await d.scan()
        await until(lambda: not d.fake.containers)
        deletes = [n for op, n in d.fake.calls if op == "delete"]
        assert deletes[-1] == BOX
        assert deletes.index(SIDE) > max(deletes.index(SERVER), deletes.index(CLIENT))


async def test_missing_configmap_is_a_problem_until_it_comes(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        text = pod(init=False)
        docs = list(yaml.safe_load_all(text))
        write(d, yaml.safe_dump(docs[1]))
        await d.scan()
        await d.settled()
        assert not d.fake.containers
        problems = d.status()["daemon"]["problems"]
        assert any('ConfigMap "default/conf" not found' in p for p in problems), problems
        (d.manifests / "conf.yaml").write_text(yaml.safe_dump(docs[0]))
        await d.scan()
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
        with anyio.fail_after(1):
            await d.settled()


async def test_pre_stop_hook_runs_inside_before_the_signal(tmp_path: Path) -> None:
    async with daemon(tmp_path, allow_empty=True, resolver=resolver()) as d:
        docs = list(yaml.safe_load_all(pod(init=False)))
        docs[1]["spec"]["containers"][0]["lifecycle"] = {
            "preStop": {"exec": {"command": ["/bin/sh", "-c", "nginx -s quit"]}}}
        write(d, yaml.safe_dump_all(docs))
        await d.scan()
        await until(lambda: running(d, SERVER))
        server = d.fake.containers[SERVER].id
        (d.manifests / "web.yaml").unlink()
        await d.scan()
        await until(lambda: not d.fake.containers)
        assert d.fake.execs == [(server, ("/bin/sh", "-c", "nginx -s quit"))]
        ops = [(op, n) for op, n in d.fake.calls if n in (SERVER, server)]
        assert ops.index(("exec", server)) < ops.index(("stop", SERVER))


async def test_pod_level_change_remakes_the_pod_and_says_why(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod(init=False))
        await d.scan()
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
        pids = {n: d.pid(n) for n in (BOX, SERVER, CLIENT)}
        docs = list(yaml.safe_load_all(pod(init=False)))
        docs[1]["spec"]["hostname"] = "renamed"
        write(d, yaml.safe_dump_all(docs))
        await d.scan()
        await until(lambda: all(running(d, n) and d.pid(n) != pids[n] for n in pids))
        await d.settled()
        box = d.fake.containers[BOX]
        assert box.generation == 2
        assert d.fake.containers[SERVER].annotations["io.reconciler.sandbox"] \
            == f"{box.id}@{box.pid}"
        messages = [e["message"] for e in d.store.events(BOX) if e["reason"] == "Recreated"]
        assert messages == ["spec changed: hostname; pod changed: hostname"]


async def test_emptied_directory_deletes_no_pod_without_allow_empty(tmp_path: Path) -> None:
    async with daemon(tmp_path, resolver=resolver()) as d:
        write(d, pod(init=False))
        d.write("solo")
        await d.scan()
        await until(lambda: running(d, SERVER) and running(d, "solo"))
        (d.manifests / "web.yaml").unlink()
        (d.manifests / "solo.yaml").unlink()
        await d.scan()
        await d.settled()
        assert not [n for op, n in d.fake.calls if op == "delete"]
        notes = d.status()["daemon"]["notes"]
        assert any("refusing to delete all 4 containers" in n for n in notes), notes


async def test_broken_configmap_at_start_keeps_the_running_pod(tmp_path: Path) -> None:
    fake = LiveFake()
    docs = list(yaml.safe_load_all(pod(init=False)))
    async with daemon(tmp_path, fake, resolver=resolver()) as d:
        write(d, yaml.safe_dump(docs[1]))
        (d.manifests / "conf.yaml").write_text(yaml.safe_dump(docs[0]))
        await d.scan()
        await until(lambda: running(d, SERVER) and running(d, CLIENT))
    pids = {n: fake.containers[n].pid for n in (BOX, SERVER, CLIENT)}
    async with daemon(tmp_path, fake, resolver=resolver()) as d:  # a restarted daemon
        (d.manifests / "conf.yaml").write_text("data: [\n")  # the ConfigMap's file broke
        await d.scan()
        await d.settled()
        assert {n: fake.containers[n].pid for n in pids} == pids
        notes = " ".join(d.status()["daemon"]["notes"])
        assert 'ConfigMap "default/conf" not found' in notes
