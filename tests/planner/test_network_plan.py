"""Networks as desired state and as a plan: desired.build and planner.plan, no runtime.

Which networks are in force (the built-in default, or a manifest's in its place; none
whose subnets overlap an earlier one's), an object that names an unknown network (a
finding on its file, the object keeps what it had), the config hashes a unit carries for
the manifest networks it joins, what a Pod's annotation and hostPorts make of its sandbox,
and the plan for a change of networks, ports or a network's config: a live update with an
``UpdateNetworks`` step, never a new instance.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from reconciler.core import desired, planner
from reconciler.core.instance import (
    ANN_MANIFEST,
    ANN_POD,
    ANN_POD_ROLE,
    ANN_POD_SPEC,
    ANN_SANDBOX,
    ANN_SOURCE,
    ANN_SPEC_HASH,
)
from reconciler.core.observed import Observed, Status
from reconciler.core.planner import Kind, UpdateNetworks
from reconciler.manifest import loader, network

NOW = 1000.0
PODS = "/var/lib/r/pods"
ANN = network.ANN_NETWORKS
Docs = Mapping[str, list[dict[str, Any]]]


def net(name: str, *subnets: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": name},
            "spec": {"subnets": [{"subnet": s} for s in subnets], **spec}}


def ctr(name: str, *, labels: Mapping[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Container",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"rootfs": "/srv/rootfs", "command": ["/bin/serve"], **spec}}


def pod(networks: str | None = None, *, host_ports: bool = False) -> dict[str, Any]:
    annotations = {} if networks is None else {network.POD_ANNOTATION: networks}
    server: dict[str, Any] = {"name": "server", "image": "busybox:1.36"}
    if host_ports:
        server["ports"] = [{"containerPort": 80, "hostPort": 8080},
                           {"containerPort": 443, "hostPort": 8443, "hostIP": "127.0.0.1"}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"containers": [server, {
                "name": "dns", "image": "busybox:1.36",
                "ports": [{"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}]
                if host_ports else []}]}}


BACK = net("back", "10.1.0.0/24")


def build(files: Docs, previous: desired.DesiredState | None = None, **kw: Any
          ) -> desired.DesiredState:
    """The desired state of a directory holding ``files`` (path -> its documents)."""
    origins = {}
    for path, docs in files.items():
        result = loader.load_bytes(yaml.safe_dump_all(docs).encode(), file=path, base_dir="/m")
        assert result.ok, result.findings
        origins[path] = result
    snap = desired.SourceSnapshot("directory", True, None, origins)
    return desired.build(snap, previous, pods_dir=PODS, **kw)


def said(state: desired.DesiredState) -> list[tuple[str, str, str]]:
    return [(f.file, f.path or "", f.message) for f in state.problems]


# -- the networks in force ---------------------------------------------------------------


def test_the_default_network_is_built_in() -> None:
    got = build({"/m/web.yaml": [ctr("web")]})
    assert list(got.networks) == ["default"]
    assert got.networks["default"].spec.subnets[0].subnet == network.DEFAULT_SUBNET
    assert got.problems == ()
    other = build({"/m/web.yaml": [ctr("web")]}, default_subnet="10.77.0.0/16")
    assert other.networks["default"].spec.subnets[0].subnet == "10.77.0.0/16"


def test_manifest_networks_are_in_force_and_config() -> None:
    got = build({"/m/back.yaml": [BACK], "/m/web.yaml": [ctr("web")]})
    assert list(got.networks) == ["back", "default"]
    assert got.networks["back"].spec.subnets[0].subnet == "10.1.0.0/24"
    assert got.config[("Network", "back")].source == "/m/back.yaml"
    assert list(got.specs) == ["web"]  # a network is no unit
    assert got.problems == ()


def test_a_manifest_named_default_replaces_the_built_in_one() -> None:
    mine = net("default", "10.50.0.0/16", mtu=1400)
    got = build({"/m/default.yaml": [mine], "/m/web.yaml": [ctr("web")]},
                default_subnet="10.77.0.0/16")
    assert got.networks["default"].spec.subnets[0].subnet == "10.50.0.0/16"
    assert got.networks["default"].spec.mtu == 1400
    assert got.problems == ()
    # now it overlaps nothing of the built-in 10.92.0.0/16: a network there is fine
    moved = build({"/m/default.yaml": [mine], "/m/x.yaml": [net("x", "10.92.1.0/24")]})
    assert list(moved.networks) == ["default", "x"]


def test_overlapping_networks_the_later_by_name_is_refused() -> None:
    got = build({"/m/a.yaml": [net("a", "10.92.5.0/24")], "/m/b.yaml": [net("b", "10.1.0.0/16")],
                 "/m/c.yaml": [net("c", "10.1.2.0/24")]})
    assert list(got.networks) == ["b", "default"]
    assert said(got) == [
        ("/m/a.yaml", "spec.subnets", "network 'a' is not made: subnet 10.92.5.0/24 overlaps"
                                      " 10.92.0.0/16 of network 'default'"),
        ("/m/c.yaml", "spec.subnets", "network 'c' is not made: subnet 10.1.2.0/24 overlaps"
                                      " 10.1.0.0/16 of network 'b'"),
    ]


def test_objects_on_a_refused_network_are_not_made() -> None:
    got = build({"/m/c.yaml": [net("c", "10.92.2.0/24")],
                 "/m/web.yaml": [ctr("web", networks=[{"name": "c"}])]})
    assert "web" not in got.specs
    assert [p for _, p, _ in said(got)] == ["spec.subnets", "spec.networks[0].name"]


def test_a_network_changed_to_overlap_keeps_what_it_was() -> None:
    before = build({"/m/back.yaml": [BACK], "/m/web.yaml": [ctr("web", networks=[
        {"name": "back"}])]})
    after = build({"/m/back.yaml": [net("back", "10.92.1.0/24")],
                   "/m/web.yaml": [ctr("web", networks=[{"name": "back"}])]}, before)
    assert after.networks.get("back") == before.networks["back"]
    assert after.specs["web"] == before.specs["web"]
    assert [p for _, p, _ in said(after)] == ["spec.subnets"]  # on the network alone


# -- an unknown network: a finding, and the object keeps what it had ----------------------


def test_an_unknown_network_is_a_finding_and_the_object_is_not_made() -> None:
    got = build({"/m/web.yaml": [ctr("web", networks=[{"name": "default"}, {"name": "back"}])],
                 "/m/db.yaml": [ctr("db")]})
    assert list(got.specs) == ["db"]
    [finding] = got.problems
    assert (finding.file, finding.line, finding.path) == ("/m/web.yaml", 1,
                                                          "spec.networks[1].name")
    assert finding.message == ("network 'back' is not defined (networks: default); the object"
                               " keeps what it had until it is")


def test_an_unknown_network_keeps_the_last_good_desired() -> None:
    first = build({"/m/back.yaml": [BACK], "/m/web.yaml": [ctr("web", networks=[
        {"name": "back"}])]})
    web = first.specs["web"]
    gone = build({"/m/web.yaml": [ctr("web", env=[{"name": "V", "value": "2"}],
                                      networks=[{"name": "back"}])]}, first)
    assert gone.specs["web"] == web  # the env change waits for the network
    assert [p for _, p, _ in said(gone)] == ["spec.networks[0].name"]
    back = build({"/m/back.yaml": [BACK], "/m/web.yaml": [ctr(
        "web", env=[{"name": "V", "value": "2"}], networks=[{"name": "back"}])]}, gone)
    assert back.problems == ()
    assert back.specs["web"].container.spec.env[0].value == "2"


def test_a_pod_naming_an_unknown_network_is_held_with_a_finding_on_the_annotation() -> None:
    got = build({"/m/web.yaml": [pod("back")]})
    assert got.specs == {}
    [finding] = got.problems
    assert (finding.file, finding.path) == (
        "/m/web.yaml", f"metadata.annotations['{network.POD_ANNOTATION}']")
    assert got.held["default/web"] == finding.message
    assert "network 'back' is not defined" in finding.message
    made = build({"/m/web.yaml": [pod("")]})  # then fixed: made; previous held: kept
    kept = build({"/m/web.yaml": [pod("back")]}, made)
    assert kept.specs == made.specs and "default/web" in kept.held


@pytest.mark.parametrize("value", ["Back_End", "back,back"])
def test_a_malformed_annotation_is_a_finding_on_the_annotation(value: str) -> None:
    got = build({"/m/back.yaml": [BACK], "/m/web.yaml": [pod(value)]})
    [finding] = got.problems
    assert finding.path == f"metadata.annotations['{network.POD_ANNOTATION}']"


# -- ANN_NETWORKS: the config hashes of the manifest networks a unit joins -----------------


def test_ann_networks_only_for_manifest_networks() -> None:
    nets = [BACK, net("front", "10.2.0.0/24")]
    got = build({"/m/nets.yaml": nets, "/m/objs.yaml": [
        ctr("plain"), ctr("none", networks=[]), ctr("host", hostNetwork=True),
        ctr("back", networks=[{"name": "back"}]),
        ctr("both", networks=[{"name": "front"}, {"name": "default"}, {"name": "back"}])]})
    h = {n: got.networks[n].config_hash() for n in ("back", "front")}
    marks = {n: d.container.metadata.annotations.get(ANN) for n, d in got.specs.items()}
    assert marks == {"plain": None, "none": None, "host": None, "back": f"back={h['back']}",
                     "both": f"front={h['front']},back={h['back']}"}


def test_ann_networks_for_a_manifest_default() -> None:
    mine = net("default", "10.50.0.0/16")
    got = build({"/m/d.yaml": [mine], "/m/web.yaml": [ctr("web")]})
    assert got.specs["web"].container.metadata.annotations[ANN] \
        == f"default={got.networks['default'].config_hash()}"


def test_a_network_change_changes_ann_networks_not_the_spec_hash() -> None:
    web = ctr("web", networks=[{"name": "back"}])
    one = build({"/m/back.yaml": [BACK], "/m/web.yaml": [web]})
    labelled = copy.deepcopy(BACK)
    labelled["metadata"]["labels"] = {"tier": "back"}
    same = build({"/m/back.yaml": [labelled], "/m/web.yaml": [web]}, one)
    two = build({"/m/back.yaml": [net("back", "10.1.0.0/24", mtu=1400)],
                 "/m/web.yaml": [web]}, one)
    assert same.specs["web"] == one.specs["web"]  # labels are not the network's config
    a, b = one.specs["web"], two.specs["web"]
    assert a.container.metadata.annotations[ANN] != b.container.metadata.annotations[ANN]
    assert a.spec_hash == b.spec_hash


def test_networks_and_ports_leave_the_spec_hash_alone() -> None:
    a = build({"/m/web.yaml": [ctr("web")]}).specs["web"]
    b = build({"/m/back.yaml": [BACK], "/m/web.yaml": [ctr(
        "web", networks=[{"name": "back"}], ports=[{"containerPort": 80, "hostPort": 80}])]}
              ).specs["web"]
    assert a.spec_hash == b.spec_hash
    assert a.manifest_json != b.manifest_json


# -- a Pod: its sandbox joins the networks and publishes the hostPorts ---------------------


def units(state: desired.DesiredState) -> dict[str, tuple[list[str] | None, str | None]]:
    return {n: (None if d.container.spec.networks is None
                else [a.name for a in d.container.spec.networks],
                d.container.metadata.annotations.get(ANN)) for n, d in state.specs.items()}


def test_pod_annotation_goes_to_the_sandbox_alone() -> None:
    got = build({"/m/back.yaml": [BACK], "/m/web.yaml": [pod(" back , default ,")]})
    mark = f"back={got.networks['back'].config_hash()}"
    assert units(got) == {"default_web": (["back", "default"], mark),
                          "default_web_dns": (None, None), "default_web_server": (None, None)}
    assert got.problems == ()


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", []), ("default", ["default"])])
def test_pod_annotation_forms(value: str | None, expected: list[str] | None) -> None:
    got = build({"/m/web.yaml": [pod(value)]})
    assert units(got)["default_web"] == (expected, None)


def test_a_host_network_pod_has_no_networks_or_ports_on_its_sandbox() -> None:
    doc = pod()
    doc["spec"]["hostNetwork"] = True
    doc["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    sandbox = build({"/m/web.yaml": [doc]}).specs["default_web"].container.spec
    assert (sandbox.host_network, sandbox.networks, sandbox.ports) == (True, None, [])


def test_a_host_network_pod_naming_networks_is_a_finding() -> None:
    doc = pod("default")
    doc["spec"]["hostNetwork"] = True
    got = build({"/m/web.yaml": [doc]})
    assert "default_web" not in got.specs
    assert said(got) == [("/m/web.yaml", f"metadata.annotations['{network.POD_ANNOTATION}']",
                          "a pod with hostNetwork joins no other network")]


def test_pod_host_ports_are_published_by_the_sandbox() -> None:
    got = build({"/m/web.yaml": [pod("default", host_ports=True)]})
    assert got.problems == ()
    sandbox = got.specs["default_web"].container.spec
    assert [(p.container_port, p.key) for p in sandbox.ports] == [
        (80, (8080, "TCP", "")), (443, (8443, "TCP", "127.0.0.1")), (53, (5353, "UDP", ""))]
    assert all(d.container.spec.ports == [] for n, d in got.specs.items() if n != "default_web")


# -- the plan: a live update with UpdateNetworks, not a new instance ----------------------


def seen(d: desired.Desired, *, sandbox: str | None = None) -> Observed:
    """``d`` running as generation 1, as the fake runtime records it."""
    ann = {ANN_SOURCE: d.source, ANN_SPEC_HASH: d.spec_hash, ANN_MANIFEST: d.manifest_json}
    if d.pod is not None:
        ann |= {ANN_POD: d.pod.key, ANN_POD_ROLE: d.pod.role.value,
                ANN_POD_SPEC: d.pod.identity_doc or ""}
        if sandbox is not None:
            ann[ANN_SANDBOX] = sandbox
    return Observed(d.name, Status.RUNNING, 42, d.spec_hash, d.source, NOW - 100, ann,
                    d.manifest_json, instance=f"{d.name}.1", generation=1)


def observe(state: desired.DesiredState) -> dict[str, Observed]:
    box = next((f"{d.name}.1@42" for d in state.specs.values()
                if d.pod is not None and d.pod.role.value == "sandbox"), None)
    return {n: seen(d, sandbox=box) for n, d in state.specs.items()}


def plan(state: desired.DesiredState, observed: Mapping[str, Observed]) -> planner.Plan:
    return planner.plan(state, observed, {}, NOW)


WEB = ctr("web")
CHANGES: list[tuple[str, Docs, Docs, str]] = [
    ("networks named", {"/m/web.yaml": [WEB]},
     {"/m/web.yaml": [ctr("web", networks=[{"name": "default"}])]}, "networks"),
    ("network added", {"/m/n.yaml": [BACK], "/m/web.yaml": [ctr("web", networks=[])]},
     {"/m/n.yaml": [BACK], "/m/web.yaml": [ctr("web", networks=[{"name": "back"}])]},
     "metadata, networks"),
    ("ports", {"/m/web.yaml": [WEB]},
     {"/m/web.yaml": [ctr("web", ports=[{"containerPort": 80, "hostPort": 8080}])]}, "ports"),
    ("host address of a port",
     {"/m/web.yaml": [ctr("web", ports=[{"containerPort": 80, "hostPort": 8080}])]},
     {"/m/web.yaml": [ctr("web", ports=[{"containerPort": 80, "hostPort": 8080,
                                         "hostIP": "127.0.0.1"}])]}, "ports"),
    ("the network's config", {"/m/n.yaml": [BACK], "/m/web.yaml": [ctr(
        "web", networks=[{"name": "back"}])]},
     {"/m/n.yaml": [net("back", "10.1.0.0/24", internal=True)],
      "/m/web.yaml": [ctr("web", networks=[{"name": "back"}])]}, "metadata"),
]


@pytest.mark.parametrize(("old", "new", "parts"), [c[1:] for c in CHANGES],
                         ids=[c[0] for c in CHANGES])
def test_a_network_change_is_an_update_networks_step(old: Docs, new: Docs, parts: str) -> None:
    before = build(old)
    after = build(new, before)
    assert after.problems == ()
    observed = observe(before)
    [action] = plan(after, observed).actions
    assert (action.kind, action.name, action.reason) == (Kind.UPDATE, "web",
                                                         f"live change: {parts}")
    want = after.specs["web"].container
    assert [type(s).__name__ for s in action.steps] == ["UpdateNetworks", "RecordApplied"]
    assert action.steps[0] == UpdateNetworks("web.1", want)
    # planning against the state the update leaves yields nothing
    assert plan(after, observe(after)).actions == ()


def test_a_label_change_is_an_update_without_networks() -> None:
    before = build({"/m/web.yaml": [WEB]})
    after = build({"/m/web.yaml": [ctr("web", labels={"tier": "front"})]}, before)
    [action] = plan(after, observe(before)).actions
    assert action.kind is Kind.UPDATE
    assert not any(isinstance(s, UpdateNetworks) for s in action.steps)


def test_host_network_is_a_recreate_not_a_network_update() -> None:
    before = build({"/m/web.yaml": [ctr("web", networks=[{"name": "default"}])]})
    after = build({"/m/web.yaml": [ctr("web", hostNetwork=True)]}, before)
    [action] = plan(after, observe(before)).actions
    assert action.kind is Kind.RECREATE
    assert not any(isinstance(s, UpdateNetworks) for s in action.steps)


def test_a_pod_network_change_updates_its_sandbox_in_place() -> None:
    before = build({"/m/back.yaml": [BACK], "/m/web.yaml": [pod()]})
    observed = observe(before)
    assert plan(before, observed).actions == ()
    after = build({"/m/back.yaml": [BACK], "/m/web.yaml": [pod("back")]}, before)
    actions = {a.name: a for a in plan(after, observed).actions}
    assert {n: a.kind for n, a in actions.items()} == {
        "default_web": Kind.UPDATE, "default_web_dns": Kind.UPDATE,
        "default_web_server": Kind.UPDATE}  # the app containers: the pod's annotations
    box = actions["default_web"]
    assert box.reason == "live change: metadata, networks"
    assert UpdateNetworks("default_web.1", after.specs["default_web"].container) in box.steps
    assert not any(isinstance(s, UpdateNetworks) for n, a in actions.items()
                   for s in a.steps if n != "default_web")
