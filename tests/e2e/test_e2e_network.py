"""Networks end to end: the real daemon with ``--networks on``, runc, and the CNI plugins.

Every daemon runs inside a network namespace the ``net_e2e`` fixture makes, so the bridges,
veths, NAT rules and published ports live there and nowhere else. Traffic goes only to
that namespace's loopback, its bridge addresses and container addresses: from the
namespace with a Python socket client (``nsenter --net``), from inside a container with
busybox ``nc``; every attempt is one connection with a timeout of 1-2 s. Facts are read
where they live: interfaces and routes inside the containers (``runc exec ... ip``), names
from the containers' own ``/etc/hosts`` and glibc's ``getent``, rules from the namespace's
iptables, links from its ``ip link``; status.json and the event log are checked against
them, not instead of them.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import E2E, SETTLE, manifest, skip_without, wait_until

CNI = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.runc,
    pytest.mark.skipif(not (CNI / "bridge").exists(), reason=f"needs the CNI plugins in {CNI}"),
]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "busybox:1.36"
HOSTS_WITHIN = SETTLE + 1.0  # a peer created or deleted shows in /etc/hosts within ~1 s

# One HTTP GET; the body of a 200 on stdout, else a non-zero exit.
_CLIENT = """
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
except OSError as exc:
    sys.exit(f"{type(exc).__name__}: {exc}")
head, _, body = data.decode(errors="replace").partition("\\r\\n\\r\\n")
if " 200 " not in head.split("\\r\\n", 1)[0]:
    sys.exit(f"not a 200: {head[:80]!r}")
sys.stdout.write(body)
"""

# A listener that holds a port of the namespace until it is stopped (60 s at most).
_LISTENER = """
import signal, socket, sys
signal.alarm(60)
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
sys.stdin.read()
"""


# -- manifests -------------------------------------------------------------------------------


def network(name: str, subnet: str, **spec: Any) -> str:
    doc = {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": name},
           "spec": {"subnets": [{"subnet": subnet}], **spec}}
    return yaml.safe_dump(doc, sort_keys=False)


def serve(text: str) -> str:
    """A shell that serves ``text`` on port 80 (busybox httpd) and stops at once on TERM."""
    return (f"trap 'exit 0' TERM; mkdir -p /tmp/www; echo {text} > /tmp/www/index.html;"
            " httpd -p 80 -h /tmp/www; while true; do sleep 0.1; done")


def on(*networks: str) -> list[dict[str, str]]:
    return [{"name": n} for n in networks]


def publish(host_port: int) -> list[dict[str, int]]:
    return [{"containerPort": 80, "hostPort": host_port}]


# -- probes ----------------------------------------------------------------------------------


def in_ns(e2e: E2E, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """A command in the test's network namespace (nsenter: /sys and cgroups stay as they are)."""
    return subprocess.run(["nsenter", f"--net=/var/run/netns/{e2e.netns}", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)


def fetch(e2e: E2E, host: str, port: int, *, timeout: float = 1.0) -> str | None:
    """The body of ``GET http://host:port/`` sent from the test's namespace; None if it
    cannot connect or does not answer 200 within ``timeout``."""
    res = in_ns(e2e, sys.executable, "-c", _CLIENT, host, str(port), str(timeout))
    return res.stdout if res.returncode == 0 else None


def inside(e2e: E2E, name: str, script: str) -> tuple[int, str]:
    """``runc exec`` in ``name``'s current instance: exit code, stdout and stderr."""
    res = subprocess.run(["runc", f"--root={e2e.runc_root}", "exec", e2e.instance(name),
                          "/bin/sh", "-c", script],
                         capture_output=True, text=True, timeout=10, check=False)
    return res.returncode, res.stdout + res.stderr


def fetch_inside(e2e: E2E, name: str, host: str) -> str | None:
    """The body of ``GET http://host:80/`` sent from inside ``name`` (busybox nc, 1 s);
    None if it cannot connect. (busybox-static's wget crashes in its NSS lookups.)"""
    code, out = inside(e2e, name,
                       f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {host} 80")
    head, _, body = out.partition("\n\n")  # text mode made each CRLF a LF
    return body if code == 0 and head.startswith("HTTP/1.1 200") else None


def interfaces(e2e: E2E, name: str) -> dict[str, list[str]]:
    """The IPv4 addresses (CIDR) of each interface but lo, as ``ip`` sees them inside."""
    code, out = inside(e2e, name, "ip -o -4 addr show")
    assert code == 0, out
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        fields = line.split()
        if fields[1] != "lo":
            found.setdefault(fields[1], []).append(fields[3])
    return found


def hosts(e2e: E2E, name: str) -> dict[str, str]:
    """Name -> address of every line of ``name``'s /etc/hosts, read inside it."""
    code, out = inside(e2e, name, "cat /etc/hosts")
    assert code == 0, out
    table: dict[str, str] = {}
    for line in out.splitlines():
        ip, *names = line.split()
        for n in names:
            table.setdefault(n, ip)
    return table


def resolve(e2e: E2E, name: str, host: str) -> str | None:
    """``getent hosts host`` inside ``name`` (glibc, files NSS): the address, or None."""
    code, out = inside(e2e, name, f"getent hosts {host}")
    return out.split()[0] if code == 0 and out.strip() else None


def address(e2e: E2E, name: str, net: str) -> str | None:
    """``name``'s address on ``net`` as status.json reports it (no prefix length)."""
    entry = (e2e.status().get("containers") or {}).get(name) or {}
    ips = (entry.get("addresses") or {}).get(net) or []
    return str(ips[0]).split("/")[0] if ips else None


def nat_rules(e2e: E2E) -> str:
    res = in_ns(e2e, "iptables-save", "-t", "nat")
    assert res.returncode == 0, res.stderr
    return res.stdout


def problems(e2e: E2E) -> list[str]:
    return [str(p) for p in (e2e.status().get("daemon") or {}).get("problems") or []]


def messages(e2e: E2E, name: str, reason: str) -> list[str]:
    return [str(e["message"]) for e in e2e.events(name) if e["reason"] == reason]


def in_subnet(ip: str | None, subnet: str) -> bool:
    return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def resolver_rootfs(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs plus glibc's ``getent`` and the libraries ``ldd`` lists (glibc's
    files NSS is built in), told to use /etc/hosts alone: busybox-static cannot look names
    up at all."""
    root = tmp_path_factory.mktemp("resolver") / "rootfs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    getent = shutil.which("getent") or "/usr/bin/getent"
    libs = subprocess.run(["ldd", getent], capture_output=True, text=True,
                          check=True).stdout.split()
    for path in [getent, *(w for w in libs if w.startswith("/"))]:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    # files only: glibc's default without this file asks DNS first, which would send a
    # query towards the host's nameserver, outside the test's namespace
    (root / "etc" / "nsswitch.conf").write_text("hosts: files\n")
    return root


@pytest.fixture
def listener(net_e2e: E2E) -> Iterator[Callable[[int], subprocess.Popen[str]]]:
    """``listen(port)``: a process of the test's namespace listening on 0.0.0.0:port
    until it is sent SIGTERM (or the test ends)."""
    started: list[subprocess.Popen[str]] = []

    def listen(port: int) -> subprocess.Popen[str]:
        p = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{net_e2e.netns}",
                              sys.executable, "-c", _LISTENER, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "listening"
        return p

    try:
        yield listen
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.wait(5)
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def pod_world(net_e2e: E2E, busybox_layout: Path) -> E2E:
    """``net_e2e`` whose image store has ``busybox:1.36`` (as test_e2e_pods does)."""
    net_e2e.import_image(busybox_layout, IMAGE)
    return net_e2e


# -- 1. names ---------------------------------------------------------------------------------


def test_peers_reach_each_other_by_name_and_hosts_follow_peers(
        net_e2e: E2E, resolver_rootfs: Path, record: Callable[[str, float], None]) -> None:
    e2e = net_e2e
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("web.yaml", e2e.manifest("web", serve("web"), networks=on("app")))
    e2e.write("client.yaml", manifest("client", resolver_rootfs, networks=on("app")))
    e2e.start()
    pids = e2e.wait_all_running(["web", "client"], 20)

    web_ip = wait_until(lambda: address(e2e, "web", "app"), 5, what="web's address")
    assert in_subnet(web_ip, "10.93.0.0/24")
    assert interfaces(e2e, "web") == {"eth0": [f"{web_ip}/24"]}  # what status says is so
    assert resolve(e2e, "client", "web") == web_ip
    assert fetch_inside(e2e, "client", web_ip) == "web\n"
    client_ip = wait_until(lambda: address(e2e, "client", "app"), 5, what="client's address")
    assert client_ip != web_ip
    assert hosts(e2e, "web")["client"] == client_ip  # both ways

    # a peer comes: every object on the network learns its name, in place
    t0 = time.monotonic()
    e2e.write("peer.yaml", e2e.manifest("peer", networks=on("app")))
    peer_ip = wait_until(lambda: hosts(e2e, "client").get("peer"), HOSTS_WITHIN,
                         what="peer in client's /etc/hosts", interval=0.02)
    record("peer created -> in a peer's /etc/hosts", time.monotonic() - t0)
    assert hosts(e2e, "web")["peer"] == peer_ip
    assert peer_ip not in (web_ip, client_ip) and in_subnet(peer_ip, "10.93.0.0/24")
    e2e.wait_running("peer")
    assert wait_until(lambda: address(e2e, "peer", "app"), 5) == peer_ip
    assert resolve(e2e, "client", "peer") == peer_ip

    # the peer goes: its name goes from the others' files
    t0 = time.monotonic()
    (e2e.manifests / "peer.yaml").unlink()
    wait_until(lambda: "peer" not in hosts(e2e, "client"), HOSTS_WITHIN,
               what="peer gone from client's /etc/hosts", interval=0.02)
    record("peer deleted -> out of a peer's /etc/hosts", time.monotonic() - t0)
    assert "peer" not in hosts(e2e, "web")
    assert resolve(e2e, "client", "peer") is None
    e2e.wait_gone("peer")
    assert resolve(e2e, "client", "web") == web_ip
    assert e2e.running_pids() == pids  # the files changed under running containers


# -- 2. internal networks -----------------------------------------------------------------


def test_internal_network_keeps_its_objects_to_themselves(
        net_e2e: E2E, resolver_rootfs: Path) -> None:
    e2e = net_e2e
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("priv.yaml", network("priv", "10.94.0.0/24", internal=True))
    e2e.write("web.yaml", e2e.manifest("web", serve("web"), networks=on("app")))
    e2e.write("a.yaml", e2e.manifest("a", serve("a"), networks=on("priv")))
    e2e.write("b.yaml", manifest("b", resolver_rootfs, networks=on("priv")))
    e2e.start()
    e2e.wait_all_running(["web", "a", "b"], 20)
    web_ip = wait_until(lambda: address(e2e, "web", "app"), 5)
    a_ip = wait_until(lambda: address(e2e, "a", "priv"), 5)
    assert in_subnet(a_ip, "10.94.0.0/24")

    # on the same internal network: by name and by address
    assert resolve(e2e, "b", "a") == a_ip
    assert fetch_inside(e2e, "b", a_ip) == "a\n"

    # nothing else: no route out, no name of the other network, no connection either way
    code, routes = inside(e2e, "b", "ip route")
    assert code == 0 and "default" not in routes, routes
    assert resolve(e2e, "b", "web") is None
    assert fetch_inside(e2e, "b", web_ip) is None
    assert fetch_inside(e2e, "web", a_ip) is None
    # the internal bridge is no gateway: the namespace has no address on it, and no way in
    bridge = in_ns(e2e, "ip", "-4", "-o", "addr", "show", "dev", "rc-priv")
    assert bridge.returncode == 0 and bridge.stdout.strip() == "", bridge
    assert fetch(e2e, a_ip, 80) is None
    assert fetch(e2e, web_ip, 80) == "web\n"  # the open network is reachable all the while


# -- 3. published ports --------------------------------------------------------------------


def test_published_port_on_loopback_and_bridge_moves_live(net_e2e: E2E) -> None:
    e2e = net_e2e
    e2e.write("web.yaml", e2e.manifest("web", serve("web"), ports=publish(8080)))  # default net
    e2e.start()
    pid = e2e.wait_running("web")
    web_ip = wait_until(lambda: address(e2e, "web", "default"), 5, what="web's address")
    assert in_subnet(web_ip, "10.92.0.0/16")
    default = e2e.status()["networks"]["networks"]["default"]
    gateway = default["gateways"][0]
    assert gateway == "10.92.0.1" and default["subnets"] == ["10.92.0.0/16"]

    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8080), 3) == "web\n"
    assert fetch(e2e, gateway, 8080) == "web\n"
    assert "--dport 8080" in nat_rules(e2e)

    e2e.write("web.yaml", e2e.manifest("web", serve("web"), ports=publish(8081)))
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8081), SETTLE + 2,
                      what="8081 answering") == "web\n"
    assert fetch(e2e, gateway, 8081) == "web\n"
    assert fetch(e2e, "127.0.0.1", 8080) is None
    assert fetch(e2e, gateway, 8080) is None
    rules = nat_rules(e2e)
    assert "--dport 8081" in rules and "--dport 8080" not in rules
    assert e2e.running_pid("web") == pid
    wait_until(lambda: ":8081->80/tcp" in messages(e2e, "web", "PortsPublished"), 2)
    wait_until(lambda: e2e.status()["networks"]["ports"].get("web") == [
        {"containerPort": 80, "hostPort": 8081, "protocol": "tcp"}], 2, what="status: 8081")

    e2e.write("web.yaml", e2e.manifest("web", serve("web")))
    wait_until(lambda: "--dport 8081" not in nat_rules(e2e), SETTLE + 2, what="8081 unmapped")
    assert fetch(e2e, "127.0.0.1", 8081) is None
    assert fetch(e2e, web_ip, 80) == "web\n"
    assert e2e.running_pid("web") == pid
    # the event is written once the action is done, which may be just after the rules went
    wait_until(lambda: "PortsUnpublished" in e2e.reasons("web"), 2, what="PortsUnpublished")
    reasons = e2e.reasons("web")
    assert reasons.count("Created") == 1 and "Recreated" not in reasons


# -- 4. live attach and detach ---------------------------------------------------------------


def test_live_attach_and_detach_of_a_second_network(net_e2e: E2E) -> None:
    e2e = net_e2e
    e2e.write("front.yaml", network("front", "10.93.0.0/24"))
    e2e.write("back.yaml", network("back", "10.95.0.0/24"))
    e2e.write("peer.yaml", e2e.manifest("peer", networks=on("back")))
    e2e.write("m.yaml", e2e.manifest("m", serve("m"), networks=on("front"),
                                     ports=publish(8082)))
    e2e.start()
    pids = e2e.wait_all_running(["m", "peer"], 20)
    front_ip = wait_until(lambda: address(e2e, "m", "front"), 5)
    assert interfaces(e2e, "m") == {"eth0": [f"{front_ip}/24"]}
    assert "m" not in hosts(e2e, "peer")

    e2e.write("m.yaml", e2e.manifest("m", serve("m"), networks=on("front", "back"),
                                     ports=publish(8082)))
    def addresses_when(ready: Callable[[dict[str, list[str]]], bool]
                       ) -> Callable[[], dict[str, list[str]] | None]:
        def check() -> dict[str, list[str]] | None:
            found = interfaces(e2e, "m")
            return found if ready(found) else None
        return check

    found = wait_until(addresses_when(lambda i: "eth1" in i), SETTLE + 2, what="eth1 inside m")
    back_ip = found["eth1"][0].split("/")[0]
    assert found == {"eth0": [f"{front_ip}/24"], "eth1": [f"{back_ip}/24"]}
    assert in_subnet(back_ip, "10.95.0.0/24")
    assert wait_until(lambda: address(e2e, "m", "back"), 3) == back_ip
    assert fetch(e2e, back_ip, 80) == "m\n"
    assert wait_until(lambda: hosts(e2e, "peer").get("m"), 2) == back_ip
    assert e2e.running_pids() == pids
    wait_until(lambda: f"eth1 {back_ip}/24 on network back"
               in messages(e2e, "m", "NetworkAttached"), 2, what="NetworkAttached eth1")

    e2e.write("m.yaml", e2e.manifest("m", serve("m"), networks=on("front"),
                                     ports=publish(8082)))
    wait_until(lambda: "eth1" not in interfaces(e2e, "m"), SETTLE + 2, what="eth1 gone")
    assert interfaces(e2e, "m") == {"eth0": [f"{front_ip}/24"]}
    wait_until(lambda: "m" not in hosts(e2e, "peer"), 2, what="m gone from peer's hosts")
    assert wait_until(lambda: "back" not in (e2e.status()["containers"]["m"].get("addresses")
                                             or {}), 2)
    wait_until(lambda: "eth1 left network back" in messages(e2e, "m", "NetworkDetached"), 2,
               what="NetworkDetached eth1")
    assert fetch(e2e, "127.0.0.1", 8082) == "m\n"

    # leaving the network the ports were published on: they follow to the one left
    e2e.write("m.yaml", e2e.manifest("m", serve("m"), networks=on("back"),
                                     ports=publish(8082)))
    wait_until(addresses_when(lambda i: list(i.values()) == [[f"{back_ip}/24"]]), SETTLE + 2,
               what="m on back alone, with the same address as before")
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8082), 2) == "m\n"
    assert f"--to-destination {back_ip}:80" in nat_rules(e2e)
    assert e2e.running_pids() == pids


# -- 5. v1 Pods -----------------------------------------------------------------------------


POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "annotations": {"reconciler.io/networks": "app"}},
    "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", serve("pod")],
        "ports": [{"containerPort": 80, "hostPort": 8090}],
    }]},
}


def pod_running(e2e: E2E) -> dict[str, int] | None:
    pids = e2e.running_pids()
    return pids if {"default_web", "default_web_server"} <= pids.keys() else None


@skip_without("umoci", "skopeo", "catatonit")
def test_pod_on_its_annotated_network_publishes_its_host_port(pod_world: E2E) -> None:
    e2e = pod_world
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("web.yaml", yaml.safe_dump(POD, sort_keys=False))
    e2e.start()
    assert not problems(e2e)
    pids = wait_until(lambda: pod_running(e2e), 30, what="the pod running")
    ip = wait_until(lambda: address(e2e, "default_web", "app"), 5, what="the pod's address")
    assert in_subnet(ip, "10.93.0.0/24")
    # the app container is in the sandbox's namespace, which has the interface
    server, box = pids["default_web_server"], pids["default_web"]
    assert os.readlink(f"/proc/{server}/ns/net") == os.readlink(f"/proc/{box}/ns/net")
    assert interfaces(e2e, "default_web_server") == {"eth0": [f"{ip}/24"]}
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8090), 3) == "pod\n"
    assert fetch(e2e, "10.93.0.1", 8090) == "pod\n"
    assert fetch(e2e, ip, 80) == "pod\n"
    wait_until(lambda: e2e.status()["networks"]["ports"].get("default_web") == [
        {"containerPort": 80, "hostPort": 8090, "protocol": "tcp"}], 2, what="status: 8090")


def two_pods() -> str:
    """``web`` (hostname www, subdomain shop) and ``client``, both on ``app``."""
    def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "annotations": {"reconciler.io/networks": "app"}},
                "spec": {"terminationGracePeriodSeconds": 2, **spec, "containers": [{
                    "name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script]}]}}
    web = pod("web", serve("pod-web"), hostname="www", subdomain="shop")
    client = pod("client", "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    return yaml.safe_dump_all([web, client], sort_keys=False)


@skip_without("umoci", "skopeo", "catatonit")
def test_two_pods_on_one_network_reach_each_other_by_name(pod_world: E2E) -> None:
    e2e = pod_world
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("pods.yaml", two_pods())
    e2e.start()
    assert not problems(e2e)
    wait_until(lambda: {"default_web_main", "default_client_main"} <= e2e.running_pids().keys(),
               30, what="both pods running")
    web_ip = wait_until(lambda: address(e2e, "default_web", "app"), 5, what="web's address")
    client_ip = wait_until(lambda: address(e2e, "default_client", "app"), 5)
    assert web_ip != client_ip
    # the client's containers see the sandbox's hosts file: the pod's name, its hostname
    # and hostname.subdomain all name the web pod's address
    table = wait_until(lambda: (lambda t: t if t.get("web") == web_ip else None)(
        hosts(e2e, "default_client_main")), 3, what="web in client's /etc/hosts")
    assert table["www"] == table["www.shop"] == web_ip
    assert table["client"] == client_ip
    assert fetch_inside(e2e, "default_client_main", table["web"]) == "pod-web\n"
    assert hosts(e2e, "default_web_main")["client"] == client_ip


# -- 6. bad input, on that object only ------------------------------------------------------


def test_taken_host_port_fails_that_object_only(
        net_e2e: E2E, listener: Callable[[int], subprocess.Popen[str]]) -> None:
    e2e = net_e2e
    holder = listener(8085)
    e2e.write("good.yaml", e2e.manifest("good", serve("good"), ports=publish(8084)))
    e2e.write("bad.yaml", e2e.manifest("bad", serve("bad"), ports=publish(8085)))
    e2e.start()
    pid = e2e.wait_running("good")
    failed = wait_until(lambda: messages(e2e, "bad", "Failed"), 10, what="bad's Failed event")
    assert "host port 8085/TCP" in failed[0] and "is taken" in failed[0], failed
    assert e2e.running_pid("bad") is None
    assert "bad" not in e2e.status()["networks"]["ports"]
    assert fetch(e2e, "127.0.0.1", 8084) == "good\n"
    assert fetch(e2e, "127.0.0.1", 8085) is None  # the listener's, never DNATed away

    # the port is free again: the next retry publishes it
    holder.send_signal(signal.SIGTERM)
    holder.wait(5)
    e2e.wait_running("bad", 15)
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8085), 3) == "bad\n"

    # a port another object publishes: refused, naming the owner, which keeps it
    e2e.write("dup.yaml", e2e.manifest("dup", serve("dup"), ports=publish(8084)))
    refused = wait_until(lambda: messages(e2e, "dup", "Failed"), 10, what="dup's Failed")
    assert "host port 8084/TCP is taken: published by good" in refused[0], refused
    assert e2e.running_pid("dup") is None
    assert fetch(e2e, "127.0.0.1", 8084) == "good\n"
    assert e2e.running_pid("good") == pid


def test_unknown_network_is_a_problem_of_that_file_only(net_e2e: E2E) -> None:
    e2e = net_e2e
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("ok.yaml", e2e.manifest("ok", serve("ok"), networks=on("app")))
    lost = e2e.write("lost.yaml", e2e.manifest("lost", networks=on("app", "nowhere")))
    e2e.start()
    pid = e2e.wait_running("ok")
    found = wait_until(lambda: [p for p in problems(e2e) if str(lost) in p], 5,
                       what="a problem on lost.yaml")
    assert "spec.networks[1].name" in found[0] and "'nowhere' is not defined" in found[0]
    assert all("ok.yaml" not in p for p in problems(e2e))
    assert e2e.find_instance("lost") is None
    ok_ip = wait_until(lambda: address(e2e, "ok", "app"), 5, what="ok's address")
    assert fetch(e2e, ok_ip, 80) == "ok\n"

    # once the network is defined, the object runs on it and the problem goes
    e2e.write("nowhere.yaml", network("nowhere", "10.97.0.0/24"))
    e2e.wait_running("lost", 10)
    assert in_subnet(wait_until(lambda: address(e2e, "lost", "nowhere"), 3), "10.97.0.0/24")
    wait_until(lambda: not problems(e2e), 3, what="no problems left")
    assert e2e.running_pid("ok") == pid


def test_overlapping_network_is_refused_and_the_first_keeps_working(net_e2e: E2E) -> None:
    e2e = net_e2e
    e2e.write("alpha.yaml", network("alpha", "10.96.0.0/24"))
    e2e.write("good.yaml", e2e.manifest("good", serve("good"), networks=on("alpha")))
    e2e.start()
    pid = e2e.wait_running("good")
    good_ip = wait_until(lambda: address(e2e, "good", "alpha"), 5)

    beta = e2e.write("beta.yaml", network("beta", "10.96.0.128/25"))
    e2e.write("onbeta.yaml", e2e.manifest("onbeta", networks=on("beta")))
    refused = wait_until(lambda: [p for p in problems(e2e) if str(beta) in p], 5,
                         what="a problem on beta.yaml")
    assert "spec.subnets" in refused[0] and "overlaps 10.96.0.0/24 of network 'alpha'" \
        in refused[0], refused
    assert any("onbeta.yaml" in p and "'beta' is not defined" in p for p in problems(e2e))
    assert "beta" not in e2e.status()["networks"]["networks"]
    assert in_ns(e2e, "ip", "link", "show", "rc-beta").returncode != 0  # no bridge made
    assert e2e.find_instance("onbeta") is None
    assert fetch(e2e, good_ip, 80) == "good\n"
    assert e2e.running_pid("good") == pid


def test_a_new_network_never_displaces_one_in_use(net_e2e: E2E) -> None:
    """A new Network that overlaps one in force is refused, whatever its name: ``aaa``
    sorts before ``alpha`` but came later, so ``aaa`` is the one refused, its object is
    not made, and ``alpha``'s object keeps its address and answers."""
    e2e = net_e2e
    e2e.write("alpha.yaml", network("alpha", "10.96.0.0/24"))
    e2e.write("good.yaml", e2e.manifest("good", serve("good"), networks=on("alpha")))
    e2e.start()
    pid = e2e.wait_running("good")
    good_ip = wait_until(lambda: address(e2e, "good", "alpha"), 5)
    e2e.write("aaa.yaml", network("aaa", "10.96.0.0/16"))
    e2e.write("other.yaml", e2e.manifest("other", serve("other"), networks=on("aaa")))
    wait_until(lambda: any("other.yaml" in p for p in problems(e2e)), 5)
    said = problems(e2e)
    assert any("aaa.yaml" in p and "overlaps 10.96.0.0/24 of network 'alpha'" in p
               for p in said), said
    assert not any("alpha.yaml" in p or "good.yaml" in p for p in said), said
    assert e2e.running_pid("other") is None
    assert fetch(e2e, good_ip, 80) == "good\n"
    assert e2e.running_pid("good") == pid
    assert "rc-aaa" not in in_ns(e2e, "ip", "-br", "link").stdout


# -- 7. stable addresses -------------------------------------------------------------------


def test_address_is_kept_across_recreate_and_restart_after_daemon_restart(
        net_e2e: E2E) -> None:
    e2e = net_e2e
    e2e.write("app.yaml", network("app", "10.93.0.0/24"))
    e2e.write("s.yaml", e2e.manifest("s", serve("one"), networks=on("app"),
                                     ports=publish(8086)))
    e2e.write("t.yaml", e2e.manifest("t", networks=on("app")))
    daemon = e2e.start()
    pid = e2e.wait_all_running(["s", "t"], 20)["s"]
    ip = wait_until(lambda: address(e2e, "s", "app"), 5)
    first = e2e.instance("s")

    # a changed command: a new instance, the same address
    e2e.write("s.yaml", e2e.manifest("s", serve("two"), networks=on("app"),
                                     ports=publish(8086)))
    pid2 = e2e.wait_running("s", 10, not_pid=pid)
    assert e2e.instance("s") != first
    assert interfaces(e2e, "s") == {"eth0": [f"{ip}/24"]}
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8086), 3) == "two\n"
    assert fetch(e2e, ip, 80) == "two\n"
    assert hosts(e2e, "t")["s"] == ip

    # the daemon stops, s dies meanwhile, a new object comes: s restarts on its address
    daemon.stop()
    os.kill(pid2, signal.SIGKILL)
    wait_until(lambda: (e2e.runc("s") or {}).get("status") == "stopped", 5)
    e2e.write("a.yaml", e2e.manifest("a", networks=on("app")))
    e2e.start()
    e2e.wait_running("s", 15, not_pid=pid2)
    e2e.wait_running("a", 15)
    wait_until(lambda: "Restarted" in e2e.reasons("s"), 3)
    assert interfaces(e2e, "s") == {"eth0": [f"{ip}/24"]}
    assert wait_until(lambda: address(e2e, "s", "app"), 3) == ip
    a_ip = wait_until(lambda: address(e2e, "a", "app"), 3)
    assert a_ip != ip and a_ip != address(e2e, "t", "app")
    assert wait_until(lambda: fetch(e2e, "127.0.0.1", 8086), 3) == "two\n"  # port followed
    assert hosts(e2e, "t")["s"] == ip
