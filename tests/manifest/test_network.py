"""kind: Network and what containers say of networks, through the loader: pure, no host.

Network documents valid and invalid (each finding on its line, with its path), the
config hash attachments depend on, ``overlapping`` (a table and a property), ``wanted``,
a Container's ``networks`` and ``ports`` (no host port twice, hostNetwork's rules), the
spec hash that leaves both out (they change on the running container), and a v1 Pod with
the ``reconciler.io/networks`` annotation and a hostPort, valid for us and for Kubernetes.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.manifest import loader, model, network

K8S_VERSION: str = kubernetes_validate.latest_version()

NET_HEAD = """\
apiVersion: reconciler/v1
kind: Network
metadata:
  name: back
spec:
"""
CONTAINER_HEAD = """\
apiVersion: reconciler/v1
kind: Container
metadata:
  name: web
spec:
  rootfs: /srv/rootfs
"""


def load(text: str) -> loader.FileResult:
    return loader.load_bytes(text.encode(), file="/m/f.yaml", base_dir="/m")


def said(result: loader.FileResult) -> list[str]:
    """The findings as ``LINE: PATH: MESSAGE``."""
    return [f"{f.line}: {f.path + ': ' if f.path else ''}{f.message}" for f in result.findings]


def net_spec(*lines: str) -> str:
    """A Network whose spec holds ``lines`` (2-space indent), from line 6."""
    return NET_HEAD + "".join(line + "\n" for line in lines)


def one_network(text: str) -> network.Network:
    result = load(text)
    assert result.findings == ()
    (doc,) = result.documents
    assert isinstance(doc.document, network.Network)
    return doc.document


def net(name: str, *subnets: str, **spec: Any) -> network.Network:
    return network.Network.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": name},
        "spec": {"subnets": [{"subnet": s} for s in subnets], **spec}})


def container(**spec: Any) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "web"},
        "spec": {"rootfs": "/srv/rootfs", **spec}})


# -- Network documents -------------------------------------------------------------------


def test_a_minimal_network_and_its_defaults() -> None:
    got = one_network(net_spec("  subnets:", "    - subnet: 10.1.0.0/24"))
    assert (got.name, got.key, got.kind) == ("back", "back", "Network")
    assert [s.subnet for s in got.spec.subnets] == ["10.1.0.0/24"]
    assert got.spec.subnets[0].gateway is None
    assert got.spec.subnets[0].gateway_ip == "10.1.0.1"  # the first host address
    assert (got.spec.internal, got.spec.dns, got.spec.mtu, got.spec.driver) \
        == (False, True, None, "bridge")


def test_a_dual_stack_network_with_every_field() -> None:
    got = one_network(net_spec(
        "  subnets:",
        "    - {subnet: 10.1.0.0/24, gateway: 10.1.0.254}",
        "    - {subnet: 'fd00:1::/64', gateway: 'fd00:1::fe'}",
        "  internal: true",
        "  dns: false",
        "  mtu: 9000",
        "  driver: bridge"))
    assert [(s.network.version, s.gateway_ip) for s in got.spec.subnets] \
        == [(4, "10.1.0.254"), (6, "fd00:1::fe")]
    assert (got.spec.internal, got.spec.dns, got.spec.mtu) == (True, False, 9000)


@pytest.mark.parametrize("mtu", [576, 1500, 65535])
def test_mtu_bounds_are_inclusive(mtu: int) -> None:
    assert one_network(net_spec("  subnets: [{subnet: 10.1.0.0/24}]", f"  mtu: {mtu}")
                       ).spec.mtu == mtu


def test_a_network_beside_a_container_in_one_file() -> None:
    text = net_spec("  subnets: [{subnet: 10.1.0.0/24}]") + "---\n" + CONTAINER_HEAD \
        + "  networks: [{name: back}]\n"
    result = load(text)
    assert result.findings == ()
    assert [d.document.kind for d in result.documents] == ["Network", "Container"]
    assert [d.line for d in result.documents] == [1, 8]


# (id, spec lines from line 6, the findings)
INVALID: list[tuple[str, list[str], list[str]]] = [
    ("no-subnets", ["  internal: true"], ["5: spec.subnets: required field missing"]),
    ("empty-subnets", ["  subnets: []"],
     ["6: spec.subnets: List should have at least 1 item after validation, not 0"]),
    ("three-subnets", ["  subnets:", "    - subnet: 10.1.0.0/24", "    - subnet: 'fd00:1::/64'",
                       "    - subnet: 10.2.0.0/24"],
     ["6: spec.subnets: List should have at most 2 items after validation, not 3"]),
    ("two-ipv4", ["  subnets:", "    - subnet: 10.1.0.0/24", "    - subnet: 10.2.0.0/24"],
     ["5: spec: subnets: at most one IPv4 and one IPv6 subnet"]),
    ("two-ipv6", ["  subnets:", "    - subnet: 'fd00:1::/64'", "    - subnet: 'fd00:2::/64'"],
     ["5: spec: subnets: at most one IPv4 and one IPv6 subnet"]),
    ("host-bits", ["  subnets:", "    - subnet: 10.1.0.1/24"],
     ["7: spec.subnets[0].subnet: '10.1.0.1/24' is not a subnet in CIDR form (10.1.0.1/24 has"
      " host bits set)"]),
    ("not-cidr", ["  subnets:", "    - subnet: banana"],
     ["7: spec.subnets[0].subnet: 'banana' is not a subnet in CIDR form ('banana' does not"
      " appear to be an IPv4 or IPv6 network)"]),
    ("a-single-address", ["  subnets:", "    - subnet: 10.1.0.0"],
     ["7: spec.subnets[0].subnet: 10.1.0.0 is too small: it needs room for a gateway and a"
      " container (a /30 or larger)"]),
    ("slash-31", ["  subnets:", "    - subnet: 10.1.0.0/31"],
     ["7: spec.subnets[0].subnet: 10.1.0.0/31 is too small: it needs room for a gateway and"
      " a container (a /30 or larger)"]),
    ("ipv6-slash-127", ["  subnets:", "    - subnet: 'fd00::/127'"],
     ["7: spec.subnets[0].subnet: fd00::/127 is too small: it needs room for a gateway and"
      " a container (a /30 or larger)"]),
    ("gateway-outside", ["  subnets:", "    - subnet: 10.1.0.0/24", "      gateway: 10.2.0.1"],
     ["7: spec.subnets[0]: gateway 10.2.0.1 is not a host address of 10.1.0.0/24"]),
    ("gateway-network-address", ["  subnets:", "    - subnet: 10.1.0.0/24",
                                 "      gateway: 10.1.0.0"],
     ["7: spec.subnets[0]: gateway 10.1.0.0 is not a host address of 10.1.0.0/24"]),
    ("gateway-broadcast", ["  subnets:", "    - subnet: 10.1.0.0/24", "      gateway: 10.1.0.255"],
     ["7: spec.subnets[0]: gateway 10.1.0.255 is not a host address of 10.1.0.0/24"]),
    ("gateway-other-family", ["  subnets:", "    - subnet: 10.1.0.0/24",
                              "      gateway: 'fd00::1'"],
     ["7: spec.subnets[0]: gateway fd00::1 is not a host address of 10.1.0.0/24"]),
    ("gateway-a-name", ["  subnets:", "    - subnet: 10.1.0.0/24", "      gateway: router"],
     ["7: spec.subnets[0]: gateway 'router' is not an IP address"]),
    ("mtu-low", ["  subnets: [{subnet: 10.1.0.0/24}]", "  mtu: 575"],
     ["7: spec.mtu: must be greater than or equal to 576; got integer 575"]),
    ("mtu-high", ["  subnets: [{subnet: 10.1.0.0/24}]", "  mtu: 65536"],
     ["7: spec.mtu: must be less than or equal to 65535; got integer 65536"]),
    ("driver", ["  subnets: [{subnet: 10.1.0.0/24}]", "  driver: macvlan"],
     ["7: spec.driver: must be 'bridge'; got string \"macvlan\""]),
    ("internal-not-bool", ["  subnets: [{subnet: 10.1.0.0/24}]", "  internal: maybe"],
     ["7: spec.internal: must be true or false; got string \"maybe\""]),
    ("unknown-field", ["  subnets: [{subnet: 10.1.0.0/24}]", "  ipv6: true"],
     ["7: spec.ipv6: unknown field"]),
    ("unknown-subnet-field", ["  subnets: [{subnet: 10.1.0.0/24, range: 10.1.0.0/25}]"],
     ["6: spec.subnets[0].range: unknown field"]),
    ("several-at-once", ["  subnets:", "    - subnet: 10.1.0.0/24", "      gateway: 10.2.0.1",
                         "  mtu: 100", "  driver: macvlan"],
     ["7: spec.subnets[0]: gateway 10.2.0.1 is not a host address of 10.1.0.0/24",
      "9: spec.mtu: must be greater than or equal to 576; got integer 100",
      "10: spec.driver: must be 'bridge'; got string \"macvlan\""]),
]


@pytest.mark.parametrize(("lines", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_network(lines: list[str], expected: list[str]) -> None:
    result = load(net_spec(*lines))
    assert said(result) == expected
    assert all(f.file == "/m/f.yaml" for f in result.findings)
    assert result.documents == ()
    assert not result.ok


def test_invalid_network_metadata_and_api_version() -> None:
    body = "spec: {subnets: [{subnet: 10.1.0.0/24}]}\n"
    assert said(load("apiVersion: v1\nkind: Network\nmetadata: {name: back}\n" + body)) == [
        '1: apiVersion: kind Network needs apiVersion "reconciler/v1"; got string "v1"']
    [finding] = said(load("apiVersion: reconciler/v1\nkind: Network\nmetadata: {name: Back}\n"
                          + body))
    assert finding.startswith("3: metadata.name: 'Back' is not a DNS-1123 label")


def test_a_mistyped_kind_names_network_among_the_kinds() -> None:
    text = ("apiVersion: reconciler/v1\nkind: Netwerk\nmetadata: {name: back}\n"
            "spec: {subnets: [{subnet: 10.1.0.0/24}]}\n")
    findings = said(load(text))
    assert len(findings) == 1
    assert findings[0].startswith("2: kind:")
    assert "Network" in findings[0]


# -- the config hash ---------------------------------------------------------------------


def test_config_hash_follows_the_spec_only() -> None:
    base = net("back", "10.1.0.0/24")
    same = [
        net("back", "10.1.0.0/24", internal=False, dns=True, driver="bridge"),  # defaults
        network.Network.model_validate({**base.model_dump(by_alias=True),
                                        "metadata": {"name": "back", "labels": {"a": "b"}}}),
    ]
    other = [
        net("back", "10.1.0.0/25"),
        net("back", "10.1.0.0/24", "fd00:1::/64"),
        net("back", "10.1.0.0/24", internal=True),
        net("back", "10.1.0.0/24", dns=False),
        net("back", "10.1.0.0/24", mtu=1400),
        network.Network.model_validate({**base.model_dump(by_alias=True), "spec": {
            "subnets": [{"subnet": "10.1.0.0/24", "gateway": "10.1.0.2"}]}}),
    ]
    assert {n.config_hash() for n in same} == {base.config_hash()}
    hashes = [n.config_hash() for n in other]
    assert base.config_hash() not in hashes
    assert len(set(hashes)) == len(hashes)


def test_default_network() -> None:
    got = network.default_network()
    assert (got.name, [s.subnet for s in got.spec.subnets]) == ("default", ["10.92.0.0/16"])
    assert network.default_network("10.77.0.0/16").spec.subnets[0].subnet == "10.77.0.0/16"
    with pytest.raises(ValueError, match="host bits set"):
        network.default_network("10.77.0.1/16")


# -- overlapping -------------------------------------------------------------------------

OVERLAP: list[tuple[str, list[network.Network], dict[str, str]]] = [
    ("none", [net("a", "10.1.0.0/24"), net("b", "10.2.0.0/24")], {}),
    ("adjacent", [net("a", "10.1.0.0/24"), net("b", "10.1.1.0/24")], {}),
    ("the later by name", [net("b", "10.1.0.0/24"), net("a", "10.1.0.0/16")],
     {"b": "subnet 10.1.0.0/24 overlaps 10.1.0.0/16 of network 'a'"}),
    ("default goes first", [net("a", "10.92.1.0/24"), network.default_network()],
     {"a": "subnet 10.92.1.0/24 overlaps 10.92.0.0/16 of network 'default'"}),
    ("a refused one refuses nothing", [net("a", "10.0.0.0/8"), net("b", "10.1.0.0/16"),
                                       net("c", "10.2.0.0/16"), net("d", "192.168.0.0/24")],
     {"b": "subnet 10.1.0.0/16 overlaps 10.0.0.0/8 of network 'a'",
      "c": "subnet 10.2.0.0/16 overlaps 10.0.0.0/8 of network 'a'"}),
    ("by the ipv6 subnet", [net("a", "10.1.0.0/24", "fd00:1::/64"),
                            net("b", "10.2.0.0/24", "fd00:1::/48")],
     {"b": "subnet fd00:1::/48 overlaps fd00:1::/64 of network 'a'"}),
    ("families never overlap", [net("a", "10.1.0.0/24"), net("b", "::/64")], {}),
]


@pytest.mark.parametrize(("nets", "expected"), [c[1:] for c in OVERLAP],
                         ids=[c[0] for c in OVERLAP])
def test_overlapping(nets: list[network.Network], expected: dict[str, str]) -> None:
    assert network.overlapping(nets) == expected
    assert network.overlapping(nets[::-1]) == expected  # by name, not by order given


@st.composite
def networks(draw: st.DrawFn) -> list[network.Network]:
    """Up to six networks in 10.0.0.0/12 and fd00::/48 (overlaps are likely), maybe the
    default (10.92.0.0/16 when built in, here anywhere) among them."""
    names = draw(st.lists(st.sampled_from(["default", "a", "b", "c", "d", "e"]), unique=True,
                          max_size=6))
    out = []
    for name in names:
        v4 = ipaddress.ip_network((10 << 24 | draw(st.integers(0, (1 << 20) - 1)),
                                   draw(st.integers(12, 30))), strict=False)
        subnets = [str(v4)]
        if draw(st.booleans()):
            v6 = ipaddress.ip_network((0xfd00 << 112 | draw(st.integers(0, 0xfff)) << 64,
                                       draw(st.integers(44, 64))), strict=False)
            subnets.append(str(v6))
        out.append(net(name, *subnets))
    return out


@settings(max_examples=150, deadline=None)
@given(networks())
def test_overlapping_never_keeps_two_that_overlap(nets: list[network.Network]) -> None:
    refused = network.overlapping(nets)
    kept = [n for n in nets if n.name not in refused]
    for i, one in enumerate(kept):
        for other in kept[i + 1:]:
            assert not any(s.network.overlaps(o.network) for s in one.spec.subnets
                           for o in other.spec.subnets), (one.name, other.name)
    for name, why in refused.items():  # each refusal names a kept network that it overlaps
        [mine] = [n for n in nets if n.name == name]
        blocker = why.rsplit("of network ", 1)[1].strip("'")
        [theirs] = [n for n in kept if n.name == blocker]
        assert any(s.network.overlaps(o.network) for s in mine.spec.subnets
                   for o in theirs.spec.subnets)
    assert "default" not in refused


# -- wanted ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "member", "expected"), [
    ({}, False, ("default",)),
    ({"networks": []}, False, ()),
    ({"networks": [{"name": "back"}, {"name": "default"}]}, False, ("back", "default")),
    ({"hostNetwork": True}, False, ()),
    ({"networks": [{"name": "back"}]}, True, ()),  # a pod's app container: the sandbox's
])
def test_wanted(spec: dict[str, Any], member: bool, expected: tuple[str, ...]) -> None:
    assert network.wanted(container(**spec), sandbox_member=member) == expected


# -- a Container's networks and ports ----------------------------------------------------


@pytest.mark.parametrize(("lines", "networks", "ports"), [
    ([], None, []),
    (["  networks: []"], [], []),
    (["  networks: [{name: back}, {name: default}]"], ["back", "default"], []),
    (["  ports:", "    - {containerPort: 80, hostPort: 8080}"], None,
     [(8080, "TCP", "")]),
    (["  ports:", "    - {containerPort: 53, hostPort: 53, protocol: UDP, hostIP: 127.0.0.1}",
      "    - {containerPort: 53, hostPort: 53, protocol: TCP, hostIP: 127.0.0.1}",
      "    - {containerPort: 53, hostPort: 53, protocol: UDP, hostIP: '::1'}"], None,
     [(53, "UDP", "127.0.0.1"), (53, "TCP", "127.0.0.1"), (53, "UDP", "::1")]),
    (["  hostNetwork: true", "  ports: [{containerPort: 80, hostPort: 80}]"], None,
     [(80, "TCP", "")]),
    (["  hostNetwork: true", "  networks: []"], [], []),
])
def test_valid_networks_and_ports(lines: list[str], networks: list[str] | None,
                                  ports: list[tuple[int, str, str]]) -> None:
    result = load(CONTAINER_HEAD + "".join(f"{x}\n" for x in lines))
    assert result.findings == ()
    spec = result.documents[0].container.spec
    assert (None if spec.networks is None else [a.name for a in spec.networks]) == networks
    assert [p.key for p in spec.ports] == ports


PORT_80 = "    - {containerPort: 80, hostPort: 8080}"
PORT_80_LO = "    - {containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}"

# (id, spec lines from line 7, the findings)
INVALID_CONTAINER: list[tuple[str, list[str], list[str]]] = [
    ("host-port-twice", ["  ports:", PORT_80, "    - {containerPort: 81, hostPort: 8080}"],
     ["5: spec: ports[1]: host port 8080/TCP is published twice"]),
    ("every-address-then-one", ["  ports:", PORT_80, PORT_80_LO],
     ["5: spec: ports[1]: host port 8080/TCP is published twice"]),
    ("one-address-then-every", ["  ports:", PORT_80_LO, PORT_80],
     ["5: spec: ports[1]: host port 8080/TCP is published twice"]),
    ("same-address-twice", ["  ports:", PORT_80_LO,
                            "    - {containerPort: 81, hostPort: 8080, hostIP: 127.0.0.1}"],
     ["5: spec: ports[1]: host port 8080/TCP is published twice"]),
    ("host-network-other-port", ["  hostNetwork: true", "  ports:", PORT_80],
     ["5: spec: ports[0]: with hostNetwork, hostPort must equal containerPort 80"]),
    ("host-network-and-networks", ["  hostNetwork: true", "  networks: [{name: back}]"],
     ["5: spec: networks: a container with hostNetwork joins no other network"]),
    ("network-named-twice", ["  networks: [{name: back}, {name: back}]"],
     ["5: spec: networks: 'back' is named twice"]),
    ("network-name", ["  networks: [{name: Back}]"],
     ["7: spec.networks[0].name: 'Back' is not a network name (a DNS-1123 label)"]),
    ("network-a-string", ["  networks: [back]"],
     ['7: spec.networks[0]: must be a mapping; got string "back"']),
    ("network-unknown-field", ["  networks: [{name: back, ip: 10.1.0.5}]"],
     ["7: spec.networks[0].ip: unknown field"]),
    ("host-ip-a-name", ["  ports:", "    - {containerPort: 80, hostPort: 8080, hostIP: localhost}"],
     ["8: spec.ports[0].hostIP: 'localhost' is not an IP address"]),
    ("protocol-lowercase", ["  ports:",
                            "    - {containerPort: 80, hostPort: 8080, protocol: tcp}"],
     ["8: spec.ports[0].protocol: must be 'TCP', 'UDP' or 'SCTP'; got string \"tcp\""]),
    ("port-range", ["  ports:", "    - {containerPort: 0, hostPort: 70000}"],
     ["8: spec.ports[0].containerPort: must be greater than or equal to 1; got integer 0",
      "8: spec.ports[0].hostPort: must be less than or equal to 65535; got integer 70000"]),
    ("host-port-missing", ["  ports:", "    - {containerPort: 80}"],
     ["8: spec.ports[0].hostPort: required field missing"]),
]


@pytest.mark.parametrize(("lines", "expected"), [c[1:] for c in INVALID_CONTAINER],
                         ids=[c[0] for c in INVALID_CONTAINER])
def test_invalid_networks_and_ports(lines: list[str], expected: list[str]) -> None:
    result = load(CONTAINER_HEAD + "".join(f"{x}\n" for x in lines))
    assert said(result) == expected
    assert result.documents == ()


def port(host: int, *, ip: str | None = None, protocol: str = "TCP") -> model.Port:
    return model.Port.model_validate({"containerPort": 80, "hostPort": host, "hostIP": ip,
                                      "protocol": protocol})


@pytest.mark.parametrize(("ports", "twice"), [
    ([], None),
    ([port(80), port(81)], None),
    ([port(80), port(80, protocol="UDP"), port(80, protocol="SCTP")], None),
    ([port(80, ip="127.0.0.1"), port(80, ip="127.0.0.2"), port(80, ip="::1")], None),
    ([port(80), port(80)], 1),
    ([port(80, ip="127.0.0.1"), port(80)], 1),
    ([port(80), port(80, ip="127.0.0.1")], 1),
    ([port(80, ip="127.0.0.1"), port(80, ip="127.0.0.2"), port(80)], 2),
    ([port(81), port(80, protocol="UDP"), port(80, ip="::1", protocol="UDP")], 2),
])
def test_check_ports(ports: list[model.Port], twice: int | None) -> None:
    if twice is None:
        model.check_ports(ports)
        return
    with pytest.raises(ValueError, match=rf"^ports\[{twice}\]: host port 8\d/\w+ is published"
                                         " twice$"):
        model.check_ports(ports)


# -- the spec hash: networks and ports are live -------------------------------------------


def test_networks_and_ports_are_live_fields() -> None:
    assert {"networks", "ports"} <= model.LIVE_SPEC_FIELDS
    base = model.spec_hash(container())
    variants = [
        container(networks=[]),
        container(networks=[{"name": "back"}]),
        container(networks=[{"name": "back"}, {"name": "default"}]),
        container(ports=[{"containerPort": 80, "hostPort": 8080}]),
        container(ports=[{"containerPort": 80, "hostPort": 8081, "hostIP": "127.0.0.1",
                          "protocol": "UDP"}]),
        container(networks=[{"name": "back"}], ports=[{"containerPort": 80, "hostPort": 80}]),
    ]
    assert {model.spec_hash(c) for c in variants} == {base}
    assert model.spec_hash(container(hostNetwork=True)) != base  # not live: a new namespace
    assert "networks" not in model.identity(variants[-1])["spec"]


# -- a v1 Pod: the annotation and hostPort, for us and for Kubernetes ----------------------

POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    {network.POD_ANNOTATION}: back,default
spec:
  containers:
    - name: server
      image: busybox:1.36
      ports:
        - {{containerPort: 80, hostPort: 8080}}
        - {{containerPort: 443, hostPort: 8443, hostIP: 127.0.0.1, protocol: TCP}}
    - name: dns
      image: busybox:1.36
      ports:
        - {{containerPort: 53, hostPort: 5353, protocol: UDP}}
"""


def test_pod_with_networks_and_host_ports_is_valid_for_us_and_for_kubernetes() -> None:
    result = load(POD)
    assert result.findings == ()
    (doc,) = result.documents
    assert doc.document.metadata.annotations[network.POD_ANNOTATION] == "back,default"
    kubernetes_validate.validate(yaml.safe_load(POD), K8S_VERSION, strict=True)


def test_pod_host_port_twice_is_refused_on_load() -> None:
    text = POD.replace("hostPort: 5353, protocol: UDP", "hostPort: 8080, protocol: TCP")
    [finding] = said(load(text))
    assert "containers[1].ports[0]: host port 8080/TCP is already used by" in finding
