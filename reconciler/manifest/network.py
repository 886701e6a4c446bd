"""``kind: Network`` (reconciler/v1) and what containers say of networks: pure models.

    loader ─▶ Network (this module) ─▶ core.desired (names checked) ─▶ daemon.network

A network is desired state like a container: a bridge with its subnets, made by the CNI
plugins when the first object attaches, changed or removed when its manifest is. The
``default`` network exists without a manifest (``DEFAULT``); a manifest named ``default``
replaces its settings. Objects choose networks with ``spec.networks`` (``kind:
Container``) or the ``reconciler.io/networks`` annotation (a ``v1`` Pod), and publish
ports with ``spec.ports`` or a container port's ``hostPort``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection
from typing import Literal

import pydantic
from pydantic import Field

from reconciler.manifest import model
from reconciler.manifest.model import API_VERSION, Metadata, _Model

DEFAULT_NAME = "default"
DEFAULT_SUBNET = "10.92.0.0/16"  # podman's is 10.88.0.0/16: both can run on one host
POD_ANNOTATION = "reconciler.io/networks"  # a v1 Pod's networks: "a,b"; "" for none
ANN_NETWORKS = "io.reconciler.networks"  # a unit's: its manifest networks' config hashes


class Subnet(_Model):
    """One address range of a network."""

    subnet: str = Field(description="A CIDR, IPv4 (10.92.0.0/16) or IPv6 (fd00:92::/64).")
    gateway: str | None = Field(None, description="The bridge's address in it; default: "
                                                  "the first address.")

    @pydantic.field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a subnet in CIDR form ({exc})") from None
        if net.num_addresses < 4:
            raise ValueError(f"{value} is too small: it needs room for a gateway and a"
                             " container (a /30 or larger)")
        return str(net)

    @pydantic.model_validator(mode="after")
    def _gateway(self) -> Subnet:
        if self.gateway is None:
            return self
        net = self.network
        try:
            gw = ipaddress.ip_address(self.gateway)
        except ValueError:
            raise ValueError(f"gateway {self.gateway!r} is not an IP address") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise ValueError(f"gateway {gw} is not a host address of {net}")
        return self

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.subnet)

    @property
    def gateway_ip(self) -> str:
        return self.gateway or str(next(self.network.hosts()))


class NetworkSpec(_Model):
    """What the network is."""

    subnets: list[Subnet] = Field(
        min_length=1, max_length=2,
        description="One IPv4 subnet, one IPv6 subnet, or one of each.")
    internal: bool = Field(False, description="No route out and no NAT: its objects reach "
                                              "each other only. Default false.")
    dns: bool = Field(True, description="Objects on it resolve each other by name (through "
                                        "/etc/hosts, kept current). Default true.")
    mtu: int | None = Field(None, ge=576, le=65535, description="The bridge's and the "
                                                               "interfaces' MTU; default: "
                                                               "the kernel's (1500).")
    driver: Literal["bridge"] = Field("bridge", description="bridge (the only one).")

    @pydantic.model_validator(mode="after")
    def _families(self) -> NetworkSpec:
        versions = [s.network.version for s in self.subnets]
        if len(set(versions)) != len(versions):
            raise ValueError("subnets: at most one IPv4 and one IPv6 subnet")
        return self


class Network(_Model):
    """One ``kind: Network`` document."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion",
                                                  description="Must be reconciler/v1.")
    kind: Literal["Network"] = Field(description="Must be Network.")
    metadata: Metadata = Field(description="Its name (a DNS-1123 label) and labels.")
    spec: NetworkSpec = Field(description="Its subnets and settings.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        return self.metadata.name

    def config_hash(self) -> str:
        """What attachments depend on: a change re-attaches every object on it."""
        doc = self.spec.model_dump(mode="json", exclude_defaults=True)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def default_network(subnet: str = DEFAULT_SUBNET) -> Network:
    return Network.model_validate({
        "apiVersion": API_VERSION, "kind": "Network", "metadata": {"name": DEFAULT_NAME},
        "spec": {"subnets": [{"subnet": subnet}]}})


def overlapping(networks: list[Network], *, first: Collection[str] = ()) -> dict[str, str]:
    """Networks whose subnets overlap an earlier one's: name -> why refused. Earlier:
    ``default``, then those named in ``first`` (networks already in force), then by
    name."""
    refused: dict[str, str] = {}
    kept: list[Network] = []
    for net in sorted(networks, key=lambda n: (n.name != DEFAULT_NAME, n.name not in first,
                                               n.name)):
        clash = next(((other, s, o) for other in kept for s in net.spec.subnets
                      for o in other.spec.subnets if s.network.overlaps(o.network)), None)
        if clash is None:
            kept.append(net)
            continue
        other, s, o = clash
        refused[net.name] = (f"subnet {s.subnet} overlaps {o.subnet} of network"
                             f" {other.name!r}")
    return refused


def wanted(container: model.Container, *, sandbox_member: bool = False) -> tuple[str, ...]:
    """The networks an object's own namespace joins: none with hostNetwork or in a pod's
    app container (it joins the sandbox's), the default one when none are named."""
    spec = container.spec
    if spec.host_network or sandbox_member:
        return ()
    if spec.networks is None:
        return (DEFAULT_NAME,)
    return tuple(a.name for a in spec.networks)
