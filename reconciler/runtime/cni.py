"""CNI: the reference plugins driven per the CNI spec, the netns pins they work on, and
the host facts a network needs (routes, links, port reservations).

    daemon.network (what to attach where) ─▶ cni (this module) ─▶ /usr/lib/cni/bridge,
        host-local, firewall, portmap (Debian's containernetworking-plugins)

A network is a chain of plugins (``chain``): ``bridge`` with ``host-local`` IPAM (the
address is chosen by the daemon and asked for with the ``ips`` capability), then
``firewall`` (forwarding allowed where a host's FORWARD policy drops). Published ports are
a chain of their own (``port_chain``: ``portmap``), run against the interface's cached
result, so ports change on a live container without touching its interface. Each plugin
is an executable given its config on stdin and the command in ``CNI_*`` variables (CNI
spec 1.0); DEL is given the result ADD returned, which the caller keeps on disk.

An instance's network namespace is pinned by a bind mount (``pin``) before the first ADD
and unpinned after the last DEL, so DEL always finds the veth and the NAT rules to remove,
even after the container, or the daemon, died in between.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import errors, proc
from reconciler.manifest.network import Network
from reconciler.runtime import hostmount

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
DEFAULT_CNI_PATH = "/usr/lib/cni"
_TIMEOUT = 30.0
Conf = dict[str, Any]


def bridge_name(network: str) -> str:
    """The bridge's link name: ``rc-NAME``, or a stable short form (15 bytes at most)."""
    name = f"rc-{network}"
    if len(name) <= 15:
        return name
    return f"rc-{network[:5]}-{hashlib.sha256(network.encode()).hexdigest()[:6]}"


def chain(net: Network, *, ipam_dir: str, default_route: bool = True) -> list[Conf]:
    """The plugins that attach an interface to ``net`` (no name or version yet);
    ``default_route``: through its gateway (an object's first network only)."""
    spec = net.spec
    ranges = [[{"subnet": s.subnet, "gateway": s.gateway_ip}] for s in spec.subnets]
    ipam: Conf = {"type": "host-local", "dataDir": ipam_dir, "ranges": ranges}
    if not spec.internal and default_route:
        ipam["routes"] = [{"dst": "0.0.0.0/0" if s.network.version == 4 else "::/0"}
                          for s in spec.subnets]
    bridge: Conf = {"type": "bridge", "bridge": bridge_name(net.name),
                    "isGateway": not spec.internal, "ipMasq": not spec.internal,
                    "hairpinMode": True, "ipam": ipam,
                    "capabilities": {"ips": True, "mac": True}}
    if spec.mtu is not None:
        bridge["mtu"] = spec.mtu
    plugins = [bridge]
    if not spec.internal:
        plugins.append({"type": "firewall", "backend": "iptables"})
    return plugins


def stable_mac(network: str, address: str) -> str:
    """A locally administered unicast MAC per network and address: an address always
    comes with the same MAC (an object made again keeps both, so no ARP cache holds a
    stale one), and two instances of one object, side by side, never share one."""
    digest = hashlib.sha256(f"{network}/{address.split('/')[0]}".encode()).digest()[:5]
    return ":".join(["02", *(f"{b:02x}" for b in digest)])


def port_chain() -> list[Conf]:
    """Published ports: DNAT from any host address (loopback too: ``snat``)."""
    return [{"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]


class Plugins:
    """Runs chains of CNI plugins from ``path``; errors carry the plugin's own words."""

    def __init__(self, path: str = DEFAULT_CNI_PATH) -> None:
        self.path = path

    def available(self) -> str | None:
        """Why the plugins cannot be used, or None."""
        for plugin in ("bridge", "host-local", "portmap", "firewall"):
            if not os.access(os.path.join(self.path, plugin), os.X_OK):
                return (f"the CNI plugin {plugin} is not in {self.path} (Debian's package"
                        " containernetworking-plugins)")
        return None

    async def add(self, name: str, plugins: Sequence[Conf], *, container_id: str,
                  netns: str, ifname: str, runtime: Mapping[str, Any],
                  prev: Conf | None = None) -> Conf:
        """ADD every plugin in order, each given the previous result; on a failure the
        chain is deleted again (the spec's rule) and the first error raised."""
        result = prev
        try:
            for conf in plugins:
                out = await self._exec("ADD", self._conf(name, conf, runtime, result),
                                       container_id=container_id, netns=netns, ifname=ifname)
                if out is None:
                    raise errors.NetworkError(f"CNI {conf['type']} ADD printed no result")
                result = out
        except BaseException:
            import anyio

            with anyio.CancelScope(shield=True):
                try:
                    await self.delete(name, plugins, container_id=container_id, netns=netns,
                                      ifname=ifname, runtime=runtime, prev=result)
                except errors.NetworkError as exc:
                    log.warning("undoing a failed ADD on %s: %s", name, exc)
            raise
        assert result is not None
        return result

    async def delete(self, name: str, plugins: Sequence[Conf], *, container_id: str,
                     netns: str, ifname: str, runtime: Mapping[str, Any],
                     prev: Conf | None) -> None:
        """DEL every plugin in reverse order with the cached result; idempotent."""
        first: errors.NetworkError | None = None
        for conf in reversed(plugins):
            try:
                await self._exec("DEL", self._conf(name, conf, runtime, prev),
                                 container_id=container_id, netns=netns, ifname=ifname)
            except errors.NetworkError as exc:  # go on: the other plugins' state goes too
                first = first or exc
        if first is not None:
            raise first

    @staticmethod
    def _conf(name: str, conf: Conf, runtime: Mapping[str, Any], prev: Conf | None) -> Conf:
        full = {"cniVersion": CNI_VERSION, "name": name, **conf}
        caps = [c for c, on in conf.get("capabilities", {}).items() if on]
        wanted = {c: runtime[c] for c in caps if c in runtime}
        if wanted:
            full["runtimeConfig"] = wanted
        if prev is not None:
            full["prevResult"] = prev
        return full

    async def _exec(self, command: str, conf: Conf, *, container_id: str, netns: str,
                    ifname: str) -> Conf | None:
        plugin = conf["type"]
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
               "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": self.path,
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        argv = [os.path.join(self.path, plugin)]
        try:
            res = await proc.run(argv, timeout=_TIMEOUT, input=json.dumps(conf).encode(),
                                 check=False, env=env)
        except errors.RuntimeFailure as exc:
            raise errors.NetworkError(f"CNI {plugin} {command}: {exc}") from exc
        out = res.stdout.strip()
        if res.returncode != 0:
            raise errors.NetworkError(f"network {conf['name']}: CNI {plugin} {command} failed:"
                                      f" {_plugin_error(out, res.stderr)}")
        if not out:
            return None
        try:
            parsed: Conf = json.loads(out)
        except ValueError:
            raise errors.NetworkError(f"CNI {plugin} {command} printed no JSON: "
                                      f"{out[:200]!r}") from None
        return parsed


def stop_orphans(pins: Path, *, wait: float = 2.0) -> list[int]:
    """Kill the CNI plugins (and what they started) that a killed daemon left running on
    the network namespaces pinned under ``pins`` (this daemon's own: ``CNI_NETNS`` says),
    and wait for them to go: one finishing late would undo the next daemon's work (a DEL
    of ``eth0`` taking the interface just added on another network). The PIDs killed."""
    prefix = os.fsencode(str(pins).rstrip("/") + "/")
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"CNI_NETNS=" + prefix) for v in env):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    deadline = time.monotonic() + wait
    while killed and time.monotonic() < deadline and any(
            os.path.exists(f"/proc/{pid}") and _state(pid) not in ("Z", "X") for pid in killed):
        time.sleep(0.01)
    return killed


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _plugin_error(out: bytes, err: bytes) -> str:
    try:
        doc = json.loads(out)
        msg = str(doc.get("msg") or "")
        details = str(doc.get("details") or "")
        return f"{msg}: {details}" if details and details not in msg else msg or "no message"
    except ValueError:
        text = (err or out).decode(errors="replace").strip()
        return text.splitlines()[-1] if text else "no message"


# -- the netns pin ---------------------------------------------------------------------------


def pin(pid: int, target: Path) -> None:
    """Keep ``pid``'s network namespace alive at ``target`` (a bind mount)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if hostmount.is_mountpoint(target):
        hostmount.unmount(target)
    hostmount.bind(Path(f"/proc/{pid}/ns/net"), target)


def unpin(target: Path) -> None:
    hostmount.unmount(target)
    target.unlink(missing_ok=True)


def same_netns(pid: int, target: Path) -> bool:
    """Whether ``target`` pins ``pid``'s network namespace."""
    try:
        a, b = os.stat(f"/proc/{pid}/ns/net"), os.stat(target)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# -- host facts ------------------------------------------------------------------------------


def routes(skip_links: Sequence[str]) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                   str]]:
    """The routes of this network namespace (but those via ``skip_links``: our bridges)."""
    found: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for family in ("-4", "-6"):
        res = subprocess.run(["ip", "-j", family, "route", "show", "table", "all"],
                             capture_output=True, check=False, timeout=10)
        if res.returncode != 0:
            continue
        for r in json.loads(res.stdout or b"[]"):
            dst, dev = r.get("dst", ""), r.get("dev", "")
            if dev in skip_links or r.get("type") in ("local", "broadcast", "multicast"):
                continue
            if dst in ("default", "") or dst.startswith(("fe80", "ff00", "multicast")):
                continue
            try:
                found.append((ipaddress.ip_network(dst, strict=False), dev))
            except ValueError:
                continue
    return found


def delete_link(name: str) -> bool:
    """Remove a link (a bridge of a network no longer desired); False if there was none."""
    res = subprocess.run(["ip", "link", "del", name], capture_output=True, check=False,
                         timeout=10)
    return res.returncode == 0


_PROTO = {"TCP": (socket.SOCK_STREAM, 0), "UDP": (socket.SOCK_DGRAM, 0),
          "SCTP": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))}


def reserve_port(port: int, protocol: str, host_ip: str | None) -> socket.socket | None:
    """Bind the host port (as the kubelet's hostport opener does) so no host process takes
    it while it is published; raises when one already has it. None: SCTP is unavailable."""
    kind, number = _PROTO[protocol]
    ip = host_ip or "0.0.0.0"  # noqa: S104 - the published port is on every address
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        sock = socket.socket(family, kind, number)
    except OSError:
        if protocol == "SCTP":
            return None
        raise
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        why = ("another program is listening on it" if exc.errno == errno.EADDRINUSE
               else exc.strerror or str(exc))
        raise errors.NetworkError(f"host port {port}/{protocol} on {host_ip or 'every address'}"
                                  f" is taken: {why}") from None
    return sock
