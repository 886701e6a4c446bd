"""The network owner: attachments, addresses, published ports and /etc/hosts of every object.

    loop (desired networks) ─▶ Networks (this module) ◀─ worker (ensure after create,
        release before delete, ensure on a live change) ─▶ runtime.cni (plugins, pins)

One ``Networks`` per daemon. It alone writes the attachment records (one JSON file per
instance under ``<state>/networks/attachments``, written before each ADD and after each
DEL, so a daemon killed in between finds what may exist and deletes it), the address
book (``addresses.json``: object -> address per network, so an object keeps its address
across recreates and daemon restarts), and the hosts files (``etc/<unit>/hosts``,
rewritten in place: a bind mount pins the inode) that every container of an object sees.

Addresses are chosen here, from the subnet minus the gateway, the book and host-local's
reservations, and asked of host-local with the ``ips`` capability: the book is the
authority and host-local the check. Each instance's netns is pinned; ``recover`` at start
deletes what belongs to no live instance (records, then host-local reservations no record
explains) and re-attaches what a live one lacks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from reconciler import atomic, errors
from reconciler.core.pods import ANN_SUBDOMAIN
from reconciler.manifest import network as netmodel
from reconciler.runtime import cni

if TYPE_CHECKING:
    from reconciler.core.desired import Desired, DesiredState
    from reconciler.core.observed import Observed
    from reconciler.manifest.model import Container, Port

log = logging.getLogger("reconciler")

Told = list[tuple[str, str]]  # (event reason, message)


def dns_names(container: Container) -> list[str]:
    """What the object is called on its networks: its name, hostname, hostname.subdomain."""
    names = [container.metadata.name]
    host = container.spec.hostname
    if host and host not in names:
        names.append(host)
    sub = container.metadata.annotations.get(ANN_SUBDOMAIN)
    if sub:
        names.append(f"{host or container.metadata.name}.{sub}")
    return names


@dataclass
class _Link:
    network: str
    ifname: str
    ips: list[str]  # CIDR, as host-local was asked
    hash: str
    result: dict[str, Any] | None = None  # ADD's result: None while ADD may be under way
    mac: str = ""  # stable per object and network (cni.stable_mac)


@dataclass
class _Record:
    """What one instance has, as written before each ADD and after each DEL."""

    instance: str
    object: str
    netns: str  # the pin
    names: list[str] = field(default_factory=list)
    links: dict[str, _Link] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)  # portmap's portMappings
    ports_on: str | None = None  # the network whose result the ports were mapped with

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "object": self.object, "netns": self.netns,
                "names": self.names, "ports": self.ports, "portsOn": self.ports_on,
                "links": {n: vars(link) for n, link in self.links.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Record:
        return cls(doc["instance"], doc["object"], doc["netns"], list(doc.get("names", [])),
                   {n: _Link(**link) for n, link in doc.get("links", {}).items()},
                   list(doc.get("ports", [])), doc.get("portsOn"))


class Networks:
    def __init__(self, state_dir: str | os.PathLike[str], *, enabled: bool = True,
                 plugins: cni.Plugins | None = None,
                 resolv_conf: str = "/etc/resolv.conf") -> None:
        self.root = Path(state_dir) / "networks"
        self.enabled = enabled
        self.plugins = plugins or cni.Plugins()
        self.resolv_conf = resolv_conf
        self.networks: dict[str, netmodel.Network] = {}
        self.desired_names: frozenset[str] | None = None  # the objects desired now
        self.records: dict[str, _Record] = {}
        self.serving: dict[str, str] = {}  # object -> its serving instance, while it has two
        self.book: dict[str, dict[str, str]] = {}  # network -> object -> address (no prefix)
        self.refused: dict[str, str] = {}  # network -> why it cannot be made on this host
        self._checked: dict[str, str] = {}  # network -> config hash its routes were checked for
        self._held: dict[tuple[int, str, str], tuple[str, socket.socket | None]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self.disabled_reason: str | None = None if enabled else "networking is off (--networks off)"
        if enabled and (why := self.plugins.available()) is not None:
            self.enabled, self.disabled_reason = False, why
        self._load()

    # -- paths and persistence ---------------------------------------------------------------

    @property
    def ipam_dir(self) -> Path:
        return self.root / "ipam"

    def _record_path(self, instance: str) -> Path:
        return self.root / "attachments" / f"{instance}.json"

    def pin_path(self, instance: str) -> Path:
        return self.root / "netns" / instance

    def etc_dir(self, unit: str) -> Path:
        return self.root / "etc" / unit

    def _load(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.book = json.loads((self.root / "addresses.json").read_text())
        for path in sorted((self.root / "attachments").glob("*.json")):
            try:
                rec = _Record.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("network record %s is unreadable (%s): left for recover", path, exc)
                continue
            self.records[rec.instance] = rec

    def _save(self, rec: _Record) -> None:
        atomic.write(self._record_path(rec.instance), json.dumps(rec.to_json()).encode())

    def _save_book(self) -> None:
        atomic.write(self.root / "addresses.json", json.dumps(self.book, sort_keys=True).encode())

    # -- desired state ----------------------------------------------------------------------

    def set_desired(self, desired: DesiredState) -> None:
        """The networks in force, and what objects that are gone had let go."""
        self.networks = dict(desired.networks)
        self.desired_names = frozenset(desired.specs)
        self._let_go()

    def _let_go(self) -> None:
        """Addresses and /etc files of objects neither desired nor attached removed (an
        object being deleted keeps them until its last instance is released)."""
        if self.desired_names is None:  # not known yet: a start's recovery forgets nothing
            return
        keep = self.desired_names | {r.object for r in self.records.values()}
        changed = False
        for objects in self.book.values():
            for gone in [o for o in objects if o not in keep]:
                del objects[gone]
                changed = True
        if changed:
            self._save_book()
        etc = self.root / "etc"
        for d in (etc.iterdir() if etc.is_dir() else ()):
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def etc_files(self, want: Desired) -> dict[str, str]:
        """The /etc/hosts and /etc/resolv.conf an instance of ``want`` mounts, for its
        network mode: the host's with hostNetwork; else its own (a pod's containers: their
        sandbox's), written now: peers' names and the host's name servers on a network,
        localhost and its own names alone, and no name server, with loopback only."""
        if not self.enabled:
            return {}
        pod = want.pod
        if pod.host_network if pod is not None else want.container.spec.host_network:
            host = {"/etc/hosts": "/etc/hosts", "/etc/resolv.conf": self._host_resolv()}
            return {k: v for k, v in host.items() if os.path.isfile(v)}
        unit = pod.sandbox if pod is not None else want.name
        d = self.etc_dir(unit)
        files = {"/etc/hosts": str(d / "hosts"), "/etc/resolv.conf": str(d / "resolv.conf")}
        if pod is not None and pod.role.value != "sandbox":
            return files if (d / "hosts").exists() else {}
        d.mkdir(parents=True, exist_ok=True)
        self._write_hosts(unit, want.container)
        if netmodel.wanted(want.container):
            try:
                servers = Path(self._host_resolv()).read_text()
            except OSError:
                servers = "# the host has no resolv.conf\n"
            _write_in_place(d / "resolv.conf", servers)
        else:
            _write_in_place(d / "resolv.conf", "# loopback only: no name server\n")
        return files

    # -- attaching ------------------------------------------------------------------------------

    async def ensure(self, name: str, container: Container, instance: str, pid: int | None,
                     *, sandbox_member: bool = False, publish: bool = True) -> Told:
        """Make ``instance``'s interfaces and ports what ``container`` asks: ADD what is
        missing, DEL what is not wanted or stale (a network's config changed, a new
        netns after a restart). Idempotent; the changes made, as events."""
        want = netmodel.wanted(container, sandbox_member=sandbox_member)
        if not self.enabled:
            if container.spec.networks or (container.spec.ports and want):
                raise errors.NetworkError(f"{self.disabled_reason}; the object asks for"
                                          " networks or ports", container=name)
            return []
        if not want and instance not in self.records:
            return []
        if pid is None:
            raise errors.NetworkError("the instance has no process to attach", container=name)
        told: Told = []
        rec = self.records.get(instance)
        pin = self.pin_path(instance)
        if rec is not None and not cni.same_netns(pid, pin):  # restarted: a new namespace
            await self._release(rec)
            rec = None
        if rec is None:
            if not want:
                return []
            await anyio.to_thread.run_sync(cni.pin, pid, pin)
            rec = _Record(instance, name, str(pin))
            self.records[instance] = rec
        rec.names = dns_names(container)
        try:
            told += await self._links(rec, want)
            if publish or rec.ports:  # a make-before-break's new instance: at handover
                told += await self._ports(rec, list(container.spec.ports) if want else [])
        finally:
            self._hosts_changed()
        if not rec.links:
            await self._forget(rec)
        return told

    async def _links(self, rec: _Record, want: Sequence[str]) -> Told:
        told: Told = []
        for net_name, link in list(rec.links.items()):
            net = self.networks.get(net_name)
            if net_name in want and net is not None and link.hash == net.config_hash() \
                    and link.result is not None:
                continue
            if rec.ports_on == net_name:
                await self._unmap(rec)
            await self._del_link(rec, link)
            if net_name not in want:
                told.append(("NetworkDetached", f"{link.ifname} left network {net_name}"))
        for net_name in want:
            if net_name in rec.links:
                continue
            link = await self._add_link(rec, net_name)
            told.append(("NetworkAttached", f"{link.ifname} {', '.join(link.ips)} on network"
                                            f" {net_name}"))
        return told

    async def _add_link(self, rec: _Record, net_name: str) -> _Link:
        net = self.networks.get(net_name)
        if net is None:
            raise errors.NetworkError(f"network {net_name!r} is not defined",
                                      container=rec.object)
        await self._check_routes(net)
        first = not rec.links  # the default route goes through an object's first network
        used = {link.ifname for link in rec.links.values()}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        ips = self._address(net, rec)
        link = _Link(net_name, ifname, ips, net.config_hash(),
                     mac=cni.stable_mac(net_name, ips[0]))
        rec.links[net_name] = link
        await anyio.to_thread.run_sync(self._save, rec)  # before ADD: a crash DELs it
        async with self._lock(net_name):
            link.result = await self.plugins.add(
                net_name, cni.chain(net, ipam_dir=str(self.ipam_dir), default_route=first),
                container_id=rec.instance,
                netns=rec.netns, ifname=ifname, runtime={"ips": link.ips, "mac": link.mac})
        await anyio.to_thread.run_sync(self._save, rec)
        return link

    async def _del_link(self, rec: _Record, link: _Link) -> None:
        net = self.networks.get(link.network) or _stand_in(link)
        async with self._lock(link.network):
            await self.plugins.delete(
                link.network, cni.chain(net, ipam_dir=str(self.ipam_dir)),
                container_id=rec.instance, netns=rec.netns, ifname=link.ifname,
                runtime={"ips": link.ips}, prev=link.result or _result_of(link, rec.netns))
        del rec.links[link.network]
        await anyio.to_thread.run_sync(self._save, rec)

    async def _ports(self, rec: _Record, ports: Sequence[Port]) -> Told:
        mappings = [{"hostPort": p.host_port, "containerPort": p.container_port,
                     "protocol": p.protocol.lower(), **({"hostIP": p.host_ip} if p.host_ip else {})}
                    for p in ports]
        first = next(iter(rec.links.values()), None)
        on = first.network if first is not None and mappings else None
        if mappings == rec.ports and on == rec.ports_on:
            if not mappings or any(owner == rec.instance for owner, _ in self._held.values()):
                return []
            try:  # a daemon restarted: the mapping stands, its reservations are held anew
                self._reserve(rec, ports)
            except errors.NetworkError as exc:
                return [("PortReservationLost", f"{exc} (the mapping stays in force)")]
            return []
        if rec.ports:
            await self._unmap(rec)
        if not mappings or first is None:
            return [("PortsUnpublished", "no port is published")] if ports == [] else []
        self._reserve(rec, ports)
        rec.ports, rec.ports_on = mappings, on
        await anyio.to_thread.run_sync(self._save, rec)
        try:
            await self.plugins.add("ports", cni.port_chain(), container_id=rec.instance,
                                   netns=rec.netns, ifname=first.ifname,
                                   runtime={"portMappings": mappings}, prev=first.result)
        except BaseException:
            self._unreserve(rec.instance)
            rec.ports, rec.ports_on = [], None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._save, rec)
            raise
        text = ", ".join(f"{m.get('hostIP', '')}:{m['hostPort']}->{m['containerPort']}/"
                         f"{m['protocol']}" for m in mappings)
        return [("PortsPublished", text)]

    async def _unmap(self, rec: _Record) -> None:
        link = rec.links.get(rec.ports_on or "")
        if rec.ports:
            await self.plugins.delete(
                "ports", cni.port_chain(), container_id=rec.instance, netns=rec.netns,
                ifname=link.ifname if link else "eth0", runtime={"portMappings": rec.ports},
                prev=link.result if link else None)
        self._unreserve(rec.instance)
        rec.ports, rec.ports_on = [], None
        await anyio.to_thread.run_sync(self._save, rec)

    def _reserve(self, rec: _Record, ports: Sequence[Port]) -> None:
        """Every port free for this instance, or none taken (and a clear error)."""
        taken: list[tuple[int, str, str]] = []
        try:
            for p in ports:
                key = p.key
                for (port, proto, ip), (owner, _) in self._held.items():
                    if (port, proto) == key[:2] and owner != rec.instance and (
                            not ip or not key[2] or ip == key[2]):
                        other = self.records.get(owner)
                        raise errors.NetworkError(
                            f"host port {p.host_port}/{p.protocol} is taken: published by"
                            f" {other.object if other else owner}", container=rec.object)
                if key in self._held:
                    continue
                self._held[key] = (rec.instance, cni.reserve_port(p.host_port, p.protocol,
                                                                  p.host_ip))
                taken.append(key)
        except errors.NetworkError as exc:
            for key in taken:
                self._drop_hold(key)
            raise exc.for_container(rec.object) from None

    def _unreserve(self, instance: str) -> None:
        for key in [k for k, (owner, _) in self._held.items() if owner == instance]:
            self._drop_hold(key)

    def _drop_hold(self, key: tuple[int, str, str]) -> None:
        _, sock = self._held.pop(key)
        if sock is not None:
            sock.close()

    async def handover(self, name: str, old: str, new: str, container: Container) -> Told:
        """MakeBeforeBreak's switch: ``new`` takes the object's name and addresses (the
        book, every hosts file) and its published ports (the new mapping is added, then
        the old one removed: no moment without one); ``old`` keeps its interfaces until it
        is deleted."""
        new_rec, old_rec = self.records.get(new), self.records.get(old)
        self.serving[name] = new
        told: Told = []
        if new_rec is not None:
            for net_name, link in new_rec.links.items():
                self.book.setdefault(net_name, {})[name] = ",".join(
                    ip.split("/")[0] for ip in link.ips)
            self._save_book()
            for key, (owner, sock) in list(self._held.items()):
                if owner == old:  # the reservation changes hands, never closes
                    self._held[key] = (new, sock)
            try:
                told += await self._ports(new_rec, list(container.spec.ports))
            finally:
                if old_rec is not None and old_rec.ports:
                    await self._unmap(old_rec)
        self._hosts_changed()
        return told

    async def release(self, instance: str) -> None:
        """Everything of ``instance`` deleted (before the instance is): ports, links, pin."""
        rec = self.records.get(instance)
        if rec is None:
            return
        try:
            await self._release(rec)
        finally:
            self._hosts_changed()

    async def _release(self, rec: _Record) -> None:
        if rec.ports:
            await self._unmap(rec)
        for link in list(rec.links.values()):
            await self._del_link(rec, link)
        await self._forget(rec)

    async def _forget(self, rec: _Record) -> None:
        await anyio.to_thread.run_sync(cni.unpin, Path(rec.netns))
        self._record_path(rec.instance).unlink(missing_ok=True)
        self.records.pop(rec.instance, None)
        if self.serving.get(rec.object) == rec.instance:
            del self.serving[rec.object]
        self._let_go()

    # -- addresses -------------------------------------------------------------------------------

    def _address(self, net: netmodel.Network, rec: _Record) -> list[str]:
        """The object's addresses on ``net`` (CIDR): the book's, else the first free; a
        make-before-break's new instance, beside the old that holds them, gets its own
        (the book follows at the handover)."""
        obj = rec.object
        mine = self.book.setdefault(net.name, {})
        out: list[str] = []
        taken = {ip.split("/")[0] for r in self.records.values()
                 if r.object == obj and r.instance != rec.instance
                 for link in r.links.values() for ip in link.ips}
        kept = [] if taken else [a for a in mine.get(obj, "").split(",") if a]
        for sub in net.spec.subnets:
            subnet = sub.network
            have = next((a for a in kept if ipaddress.ip_address(a) in subnet), None)
            if have is None:
                have = self._free(net, subnet, sub.gateway_ip)
            out.append(have)
        if not taken:
            mine[obj] = ",".join(out)
            self._save_book()
        return [f"{a}/{net.spec.subnets[i].network.prefixlen}" for i, a in enumerate(out)]

    def _free(self, net: netmodel.Network, subnet: Any, gateway: str) -> str:
        used = {a for v in self.book.get(net.name, {}).values() for a in v.split(",")}
        used |= {ip.split("/")[0] for r in self.records.values()
                 for link in r.links.values() for ip in link.ips}
        used.add(gateway)
        store = self.ipam_dir / net.name
        if store.is_dir():
            used |= {p.name for p in store.iterdir()}
        for ip in subnet.hosts():
            if str(ip) not in used:
                return str(ip)
            if ip.version == 6 and int(ip) - int(subnet.network_address) > 1 << 16:
                break
        raise errors.NetworkError(f"network {net.name}: no free address in {subnet}")

    # -- networks on the host ------------------------------------------------------------------

    def _lock(self, net: str) -> anyio.Lock:
        return self._locks.setdefault(net, anyio.Lock())

    async def _check_routes(self, net: netmodel.Network) -> None:
        """A subnet that a route of this namespace already covers is refused (once per
        config)."""
        h = net.config_hash()
        if self._checked.get(net.name) == h:
            return
        found = await anyio.to_thread.run_sync(cni.routes, [cni.bridge_name(net.name)])
        for s in net.spec.subnets:
            for dst, dev in found:
                if dst.version == s.network.version and dst.overlaps(s.network):
                    why = (f"network {net.name}: subnet {s.subnet} collides with the route to"
                           f" {dst} via {dev or 'no device'} on this host")
                    self.refused[net.name] = why
                    raise errors.NetworkError(why)
        self.refused.pop(net.name, None)
        self._checked[net.name] = h

    async def prune(self) -> list[str]:
        """Remove the bridges and address stores of networks no longer desired and no
        longer used; the networks removed."""
        if not self.enabled:
            return []
        used = {link.network for r in self.records.values() for link in r.links.values()}
        gone = []
        store = self.ipam_dir
        known = {p.name for p in store.iterdir()} if store.is_dir() else set()
        for name in sorted((known | set(self.book)) - set(self.networks) - used):
            await anyio.to_thread.run_sync(cni.delete_link, cni.bridge_name(name))
            shutil.rmtree(store / name, ignore_errors=True)
            self.book.pop(name, None)
            self._checked.pop(name, None)
            gone.append(name)
        if gone:
            self._save_book()
        return gone

    async def recover(self, live: Iterable[Observed]) -> list[str]:
        """At start: delete the attachments of instances that are gone (a crash between
        ADD and DEL, or a daemon that died with them) and host-local reservations no record
        explains; what was cleared, in words."""
        if not self.enabled:
            return []
        cleared = [f"CNI plugin pid {pid} of the daemon before: killed"
                   for pid in cni.stop_orphans(self.root / "netns")]
        alive = {o.id: o for o in live if o.pid}
        for inst, rec in list(self.records.items()):
            if inst in alive:
                continue
            what = f"{inst}: {len(rec.links)} attachment(s), {len(rec.ports)} port(s)"
            try:
                await self._release(rec)
                cleared.append(what)
            except errors.NetworkError as exc:
                log.warning("network: cannot release %s: %s", inst, exc)
        owned = set(self.records)
        store = self.ipam_dir
        for net_dir in (store.iterdir() if store.is_dir() else ()):
            for f in net_dir.iterdir():
                if f.name.startswith(("last_reserved", "lock")):
                    continue
                with contextlib.suppress(OSError):
                    owner = f.read_text().split()[0]
                    if owner not in owned:
                        f.unlink()
                        cleared.append(f"{net_dir.name}/{f.name}: address of {owner}")
        pins = self.root / "netns"
        for p in (pins.iterdir() if pins.is_dir() else ()):
            if p.name not in self.records:
                await anyio.to_thread.run_sync(cni.unpin, p)
        self._hosts_changed()
        return cleared

    # -- names -----------------------------------------------------------------------------------

    def _hosts_changed(self) -> None:
        """Every attached object's hosts file made current (only those that changed)."""
        by_object: dict[str, _Record] = {}
        for rec in self.records.values():  # two of one object (make-before-break): the
            if self.serving.get(rec.object, rec.instance) == rec.instance:  # serving one
                by_object.setdefault(rec.object, rec)
        for obj, rec in by_object.items():
            path = self.etc_dir(obj) / "hosts"
            if path.parent.is_dir():
                _write_in_place(path, self._hosts_text(rec, by_object))

    def _hosts_text(self, rec: _Record | None, everyone: Mapping[str, _Record],
                    names: Sequence[str] = ()) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if rec is None:
            if names:
                lines.append(f"127.0.1.1\t{' '.join(names)}")
            return "\n".join(lines) + "\n"
        own = [ip for link in rec.links.values() for ip in link.ips]
        if own:
            lines.append(f"{own[0].split('/')[0]}\t{' '.join(rec.names)}")
        for obj, peer in sorted(everyone.items()):
            if obj == rec.object:
                continue
            for net_name, link in peer.links.items():
                net = self.networks.get(net_name)
                if net_name in rec.links and (net is None or net.spec.dns):
                    lines += [f"{ip.split('/')[0]}\t{' '.join(peer.names)}" for ip in link.ips]
                    break
        return "\n".join(lines) + "\n"

    def _write_hosts(self, unit: str, container: Container) -> None:
        everyone = {r.object: r for r in self.records.values()}
        text = self._hosts_text(everyone.get(unit), everyone, dns_names(container))
        _write_in_place(self.etc_dir(unit) / "hosts", text)

    def _host_resolv(self) -> str:
        """The host's resolv.conf, or systemd-resolved's upstream one when the host's
        points at its stub (127.0.0.53, which a container cannot reach)."""
        try:
            text = Path(self.resolv_conf).read_text()
        except OSError:
            return self.resolv_conf
        servers = [line.split()[1] for line in text.splitlines()
                   if line.startswith("nameserver") and len(line.split()) > 1]
        upstream = "/run/systemd/resolve/resolv.conf"
        if servers and all(s.startswith("127.") for s in servers) and os.path.exists(upstream):
            return upstream
        return self.resolv_conf

    # -- views ------------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """Networks and their attachments, for status.json (``get networks``)."""
        nets: dict[str, Any] = {}
        for name, net in self.networks.items():
            nets[name] = {"subnets": [s.subnet for s in net.spec.subnets],
                          "gateways": [s.gateway_ip for s in net.spec.subnets],
                          "internal": net.spec.internal, "dns": net.spec.dns,
                          "mtu": net.spec.mtu, "bridge": cni.bridge_name(name),
                          "attached": {}, **({"error": self.refused[name]}
                                             if name in self.refused else {})}
        for rec in self.records.values():
            for net_name, link in rec.links.items():
                entry = nets.setdefault(net_name, {"subnets": [], "attached": {}})
                entry["attached"][rec.object] = {"interface": link.ifname, "ips": link.ips,
                                                 "instance": rec.instance}
        return {"enabled": self.enabled, "reason": self.disabled_reason, "networks": nets,
                "ports": {rec.object: rec.ports for rec in self.records.values() if rec.ports},
                }

    def addresses(self, obj: str) -> dict[str, list[str]]:
        return {n: link.ips for r in self.records.values() if r.object == obj
                for n, link in r.links.items()}


def _result_of(link: _Link, netns: str) -> dict[str, Any]:
    """The result an ADD cut short (a daemon killed in it) would have given, from what the
    record says was asked: DEL of the firewall plugin removes rules only for the addresses
    of its prevResult."""
    return {"cniVersion": cni.CNI_VERSION,
            "interfaces": [{"name": link.ifname, "sandbox": netns}],
            "ips": [{"address": ip, "interface": 0} for ip in link.ips]}


def _stand_in(link: _Link) -> netmodel.Network:
    """A network no longer desired, as far as DEL needs it: its subnets from the link."""
    subnets = [{"subnet": str(ipaddress.ip_interface(ip).network)} for ip in link.ips]
    return netmodel.Network.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": link.network},
        "spec": {"subnets": subnets}})


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite a file keeping its inode (a container bind-mounts it); unchanged: untouched."""
    data = text.encode()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
