"""core.pods.expand and desired.build with Pods: pure, no runtime.

What becomes of a Pod: its units and their order, env as the kubelet resolves it, volumes
as the host will hold them, and which changes touch which unit's spec hash (a container
alone, the whole pod, or nothing but the sandbox's live volume annotation).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from reconciler.core import changes, desired, pods
from reconciler.manifest import loader

PODS = "/var/lib/r/pods"

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "initContainers": [
            {"name": "prepare", "image": "busybox:1.36", "command": ["true"]},
            {"name": "shipper", "image": "busybox:1.36", "restartPolicy": "Always"},
        ],
        "containers": [
            {"name": "server", "image": "busybox:1.36",
             "env": [{"name": "GREETING", "value": "hi $(USER_NAME)"},
                     {"name": "USER_NAME", "valueFrom": {"configMapKeyRef": {
                         "name": "conf", "key": "user"}}},
                     {"name": "AGAIN", "value": "$(USER_NAME) and $$(USER_NAME)"},
                     {"name": "POD", "valueFrom": {"fieldRef": {
                         "fieldPath": "metadata.name"}}},
                     {"name": "APP", "valueFrom": {"fieldRef": {
                         "fieldPath": "metadata.labels['app']"}}}],
             "envFrom": [{"prefix": "S_", "secretRef": {"name": "creds"}}],
             "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"},
                              {"name": "scratch", "mountPath": "/scratch", "subPath": "a"},
                              {"name": "creds", "mountPath": "/creds"}]},
            {"name": "client", "image": "busybox:1.36", "command": ["/bin/client"]},
        ],
        "volumes": [
            {"name": "conf", "configMap": {"name": "conf", "items": [
                {"key": "index.html", "path": "www/index.html", "mode": 0o600}]}},
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
        ],
    },
}
CONF: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
                        "data": {"user": "ann", "index.html": "<h1>v1</h1>"}}
CREDS: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                         "stringData": {"token": "s3cret"}}


def state(*docs: dict[str, Any], previous: desired.DesiredState | None = None
          ) -> desired.DesiredState:
    text = yaml.safe_dump_all(list(docs))
    result = loader.load_bytes(text.encode(), file="/m/web.yaml", base_dir="/m")
    assert result.ok, result.findings
    snap = desired.SourceSnapshot("directory", True, None, {"/m/web.yaml": result})
    return desired.build(snap, previous, pods_dir=PODS)


def changed(**spec: Any) -> dict[str, Any]:
    pod = copy.deepcopy(POD)
    pod["spec"].update(spec)
    return pod


def test_units_roles_and_order() -> None:
    got = state(POD, CONF, CREDS)
    assert list(got.specs) == ["default_web", "default_web_client", "default_web_prepare",
                               "default_web_server", "default_web_shipper"]
    roles = {n: (d.pod.role.value, d.pod.before) for n, d in got.specs.items() if d.pod}
    assert roles["default_web"] == ("sandbox", ())
    assert roles["default_web_prepare"] == ("init", ())
    assert roles["default_web_shipper"] == ("sidecar", ("default_web_prepare",))
    assert roles["default_web_server"][1] == ("default_web_prepare", "default_web_shipper")
    policies = {n: d.container.spec.restart_policy.value for n, d in got.specs.items()}
    assert policies["default_web_prepare"] == "OnFailure"  # pod Always: an init is retried
    assert policies["default_web_shipper"] == "Always"


def test_env_as_the_kubelet_resolves_it() -> None:
    env = {e.name: e.value for e in
           state(POD, CONF, CREDS).specs["default_web_server"].container.spec.env}
    assert env["USER_NAME"] == "ann"
    assert env["GREETING"] == "hi $(USER_NAME)"  # defined later: left as written
    assert env["AGAIN"] == "ann and $(USER_NAME)"  # $$ escapes
    assert (env["POD"], env["APP"], env["S_token"]) == ("web", "web", "s3cret")
    assert env["HOSTNAME"] == "web"


def test_volumes_on_the_host() -> None:
    got = state(POD, CONF, CREDS)
    box = got.specs["default_web"].pod
    assert box is not None
    conf, scratch, creds, shm = box.volumes
    assert (shm.kind, shm.path) == ("tmpfs", f"{PODS}/default_web/shm")  # one /dev/shm
    assert (conf.kind, conf.path) == ("files", f"{PODS}/default_web/volumes/conf")
    assert [(f.path, f.data, f.mode) for f in conf.files] == [
        ("www/index.html", b"<h1>v1</h1>", 0o600)]
    assert (scratch.kind, scratch.size) == ("tmpfs", 16 << 20)
    assert creds.secret and [f.path for f in creds.files] == ["token"]
    assert "s3cret" not in repr(creds)
    mounts = {m.destination: (getattr(m, "source", None), m.read_only)
              for m in got.specs["default_web_server"].container.spec.mounts}
    assert mounts["/etc/conf"] == (conf.path, True)  # projected files: read-only
    assert mounts["/scratch"] == (f"{scratch.path}/a", False)
    assert mounts["/dev/shm"] == (shm.path, False)


def hashes(s: desired.DesiredState) -> dict[str, str]:
    return {n: d.spec_hash for n, d in s.specs.items()}


def test_one_container_changed_changes_its_hash_alone() -> None:
    before = hashes(state(POD, CONF, CREDS))
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][1]["command"] = ["/bin/client", "-v"]
    after = hashes(state(pod, CONF, CREDS))
    assert {n for n in before if before[n] != after[n]} == {"default_web_client"}


@pytest.mark.parametrize("change", [
    {"hostNetwork": True}, {"shareProcessNamespace": True}, {"hostname": "other"},
    {"initContainers": [{"name": "prepare", "image": "busybox:1.36", "command": ["false"]}]},
])
def test_a_pod_level_change_changes_every_hash(change: dict[str, Any]) -> None:
    before = hashes(state(POD, CONF, CREDS))
    after = hashes(state(changed(**change), CONF, CREDS))
    assert all(before[n] != after[n] for n in after if n in before)


def test_configmap_content_is_live_on_the_sandbox_and_env_recreates_its_user() -> None:
    first = state(POD, CONF, CREDS)
    conf = copy.deepcopy(CONF)
    conf["data"]["index.html"] = "<h1>v2</h1>"
    second = state(POD, conf, CREDS, previous=first)
    assert hashes(first) == hashes(second)  # file content: no new container
    ann = pods.ANN_VOLUMES
    assert first.specs["default_web"].container.metadata.annotations[ann] != \
        second.specs["default_web"].container.metadata.annotations[ann]
    conf["data"]["user"] = "bob"  # an env value: the server is made again
    third = state(POD, conf, CREDS, previous=second)
    assert {n for n in hashes(second) if hashes(second)[n] != hashes(third)[n]} == {
        "default_web_server"}


def test_missing_configmap_keeps_what_the_pod_had() -> None:
    first = state(POD, CONF, CREDS)
    second = state(POD, CREDS, previous=first)
    assert hashes(second) == hashes(first)
    (problem,) = second.problems
    assert problem.file == "/m/web.yaml"
    assert 'ConfigMap "default/conf" not found' in problem.message
    assert problem.path.startswith("spec.")


@pytest.mark.parametrize(("container", "path", "words"), [
    ({"terminationMessagePath": "/tmp/msg"}, "spec.containers[0].terminationMessagePath",
     "termination messages are not collected yet"),
    ({"resources": {"limits": {"ephemeral-storage": "1Gi"}}},
     "spec.containers[0].resources.limits.ephemeral-storage", "not enforced"),
])
def test_accepted_but_not_run_is_a_finding(container: dict[str, Any], path: str,
                                           words: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", **container}]}}
    (problem,) = state(pod).problems
    assert problem.path == path and words in problem.message


def test_two_pods_with_one_name_apply_neither() -> None:
    text = yaml.safe_dump_all([POD, CONF, CREDS])
    a = loader.load_bytes(text.encode(), file="/m/a.yaml", base_dir="/m")
    b = loader.load_bytes(yaml.safe_dump(POD).encode(), file="/m/b.yaml", base_dir="/m")
    snap = desired.SourceSnapshot("directory", True, None, {"/m/a.yaml": a, "/m/b.yaml": b})
    got = desired.build(snap, None, pods_dir=PODS)
    assert not got.specs
    assert got.conflicts == {"default/web": ("/m/a.yaml", "/m/b.yaml")}


def test_diff_never_prints_a_secret_value() -> None:
    first = state(POD, CONF, CREDS)
    creds = copy.deepcopy(CREDS)
    creds["stringData"]["token"] = "n3w-s3cret"
    second = state(POD, CONF, creds, previous=first)
    want = second.specs["default_web_server"]
    assert want.pod is not None and "S_token" in want.pod.secret_env
    doc = json.loads(want.manifest_json)
    change = changes.classify(first.specs["default_web_server"].manifest_json, doc)
    ops = pods.masked(change.recreate, want.pod, doc["spec"]["env"])
    text = "\n".join(changes.Change(live=(), recreate=tuple(ops)).lines())
    assert "<secret>" in text and "n3w-s3cret" not in text
