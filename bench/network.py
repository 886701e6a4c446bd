#!/usr/bin/env python3
"""Figure 8: what networks add to drop -> running, beside the plugins alone and podman -p.

Everything runs inside a network namespace this script makes and removes (the daemon,
its bridge, veths, iptables rules and address store; podman's too): nothing touches the
machine's network, and no packet is sent. Sequential drops of one container each, three
ways: ``networks: []`` (loopback only: the baseline), the default network, and the
default network with a published port. The floor is the CNI plugins alone doing the
same attach (bridge + host-local + firewall, then portmap) on a bare namespace; the peer
is ``podman run -d`` with ``--network none`` and with its default network and ``-p``,
in the same namespace. Name resolution costs nothing idle: it is /etc/hosts, rewritten
in place when a peer comes or goes, with no resident process (the figure says so from
the namespace's process list, not from a constant).

    .venv/bin/python bench/network.py --rootfs .state/rootfs/busybox [--trials 20]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402 - bench/run.py: the sandbox, daemon and podman helpers

from reconciler.manifest.network import default_network  # noqa: E402
from reconciler.runtime import cni  # noqa: E402

CLONE_NEWNET = 0x40000000


class NetDaemon(bench.Daemon):
    """The benchmark's daemon, in the namespace, with networks on."""

    def __init__(self, box: bench.Sandbox, netns: str) -> None:
        super().__init__(box, concurrency=4, label="network")
        self.netns = netns

    def argv(self) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", *super().argv(),
                "--networks", "on"]


class NetPodman(bench.Podman):
    """podman in the namespace (its CNI bridge and rules there too)."""

    def __init__(self, box: bench.Sandbox, exe: str, runc: str, netns: str) -> None:
        super().__init__(box, exe, runc)
        self.argv = ["nsenter", f"--net=/var/run/netns/{netns}", *self.argv]

    def port_trial(self, name: str, port: int) -> bench.PeerTrial:
        trial, _ = self.timed(name, ["run", "-d", "--pull", "never", "--name", name,
                                     "-p", f"{port}:80", "--log-driver", "none",
                                     "--cgroup-parent", self.cgroup_parent,
                                     "--annotation", f"{bench.TRIAL_LABEL}={name}",
                                     bench.PODMAN_IMAGE, *bench.COMMAND])
        self.remove("rm", name)
        return trial


def manifest(name: str, rootfs: Path, variant: str, port: int) -> str:
    text = bench.manifest(name, rootfs)
    if variant == "none":
        text += "  networks: []\n"
    elif variant == "port":
        text += f"  ports: [{{containerPort: 80, hostPort: {port}}}]\n"
    return text


def drop(box: bench.Sandbox, daemon: NetDaemon, name: str, text: str) -> float:
    staged = box.staging / f"{name}.yaml"
    staged.write_text(text)
    t0 = time.perf_counter()
    os.rename(staged, box.manifests / f"{name}.yaml")
    deadline = t0 + 15
    while bench.running_pid(box.runc_root, name) is None:
        if time.perf_counter() > deadline:
            daemon.check()
            raise TimeoutError(f"{name} not running 15 s after its manifest was dropped")
        time.sleep(bench.POLL)
    seconds = time.perf_counter() - t0
    bench.drop_out(box, daemon, [name], timeout=30)
    return seconds


async def floor_trial(netns: str, scratch: Path, i: int, plugins: cni.Plugins) -> float:
    """The plugins alone: ADD of the default network's chain and of portmap on a bare
    namespace (made and removed untimed)."""
    ns = f"{netns}-f{i}"
    net = default_network()
    chain = cni.chain(net, ipam_dir=str(scratch / "ipam"))
    path = f"/var/run/netns/{ns}"
    t0 = time.perf_counter()
    result = await plugins.add(net.name, chain, container_id=f"floor{i}", netns=path,
                               ifname="eth0", runtime={})
    maps = [{"hostPort": 19000 + i, "containerPort": 80, "protocol": "tcp"}]
    await plugins.add("ports", cni.port_chain(), container_id=f"floor{i}", netns=path,
                      ifname="eth0", runtime={"portMappings": maps}, prev=result)
    seconds = time.perf_counter() - t0
    await plugins.delete("ports", cni.port_chain(), container_id=f"floor{i}",
                         netns=path, ifname="eth0", runtime={"portMappings": maps},
                         prev=result)
    await plugins.delete(net.name, chain, container_id=f"floor{i}", netns=path,
                         ifname="eth0", runtime={}, prev=result)
    return seconds


def in_netns(netns: str, fn: object, *args: object) -> object:
    """Run ``fn`` with this process's network namespace switched to ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)  # os.setns is Python 3.12's
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        return anyio.run(fn, *args)  # type: ignore[arg-type]
    finally:
        libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def med(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:6.1f} ms (p90 {bench.pct(values, 0.9) * 1000:.1f})"


def processes_in(netns: str) -> list[str]:
    """Commands of the processes whose network namespace is ``netns``."""
    want = os.stat(f"/var/run/netns/{netns}").st_ino
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == want:
                found.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", required=True, type=Path, help="a busybox root filesystem")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-podman", action="store_true", help="leave out the peer")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="reconciler-netbench-"))
    box = bench.Sandbox(base, args.rootfs.resolve())
    netns = f"rb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
    daemon = NetDaemon(box, netns)
    peers: list[bench.Podman] = []
    try:
        daemon.start()
        bench.wait_ready(box, daemon, since=0)
        n = args.trials
        bench.out(f"# 8. networks: drop -> running, one container at a time, {n} trials each"
                  " (median, p90), in a network namespace of the benchmark's own")
        drop(box, daemon, "warm", manifest("warm", box.rootfs, "port", 17999))  # first ADD
        times: dict[str, list[float]] = {"none": [], "default": [], "port": []}
        for i in range(n):
            for variant in times:
                name = f"n{variant[0]}{i}"
                times[variant].append(drop(box, daemon, name,
                                           manifest(name, box.rootfs, variant, 18000 + i)))
        plugins = cni.Plugins()
        scratch = base / "floor"
        floor = []
        for i in range(n):  # each on a bare namespace, made and removed untimed
            subprocess.run(["ip", "netns", "add", f"{netns}-f{i}"], check=True)
            try:
                floor.append(float(in_netns(netns, floor_trial, netns, scratch, i,  # type: ignore[arg-type]
                                            plugins)))
            finally:
                subprocess.run(["ip", "netns", "del", f"{netns}-f{i}"], check=False)
        base_ms = statistics.median(times["none"])
        bench.out(f"  loopback only (networks: [])    {med(times['none'])}")
        bench.out(f"  default network                 {med(times['default'])}   "
                  f"+{(statistics.median(times['default']) - base_ms) * 1000:.1f} ms")
        bench.out(f"  default network + hostPort      {med(times['port'])}   "
                  f"+{(statistics.median(times['port']) - base_ms) * 1000:.1f} ms")
        bench.out(f"  floor: the CNI plugins alone    {med(floor)}   (bridge+host-local+"
                  "firewall, then portmap, on a bare namespace)")
        if not args.no_podman and shutil.which("podman"):
            runc = shutil.which("runc") or "runc"
            podman = NetPodman(box, shutil.which("podman") or "podman", runc, netns)
            peers.append(podman)
            version = podman.setup(box.rootfs)
            podman.run_trial("pwarm")
            podman.port_trial("ppwarm", 17998)
            none = [podman.run_trial(f"pn{i}").running for i in range(n)]
            port = [podman.port_trial(f"pp{i}", 18500 + i).running for i in range(n)]
            bench.out(f"  peer: podman {version} run -d --network none   {med(none)}")
            bench.out(f"  peer: podman {version} run -d -p (CNI bridge)  {med(port)}   "
                      f"+{(statistics.median(port) - statistics.median(none)) * 1000:.1f} ms")
        drop(box, daemon, "dns1", manifest("dns1", box.rootfs, "default", 0))
        resident = [c for c in processes_in(netns) if c not in ("python3", "python", "nsenter",
                                                                "conmon", "sh", "sleep")]
        bench.out(f"  names: /etc/hosts kept current; processes resident in the namespace for"
                  f" it: {len(resident)} {resident or ''} -> idle cost 0 CPU, 0 RSS")
    finally:
        bench.cleanup(box, [daemon], peers)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
