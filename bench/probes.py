#!/usr/bin/env python3
"""Figure 9: the CPU that probes cost: N containers probed every 10 s, as a share of one core.

The daemon runs N containers (busybox httpd, loopback only) and its CPU (its own and its
reaped children's: each ``runc exec`` of an exec probe) is read from /proc over a window,
first with no probes (the baseline), then with each kind of probe added to every
container live (no restart): exec (``true``), tcpSocket and httpGet. What a probe kind
costs is its window minus the baseline. The floor for exec probes is bare ``runc exec ID
true`` run by this script for the same containers at the same rate, its children's CPU
read with getrusage; the goal is within 1.2x of it. The goal for network probes is under
1% of one core. No packet leaves the containers' own namespaces.

    .venv/bin/python bench/probes.py --rootfs .state/rootfs/busybox [--n 100] [--window 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402 - bench/run.py: the sandbox and daemon helpers

PERIOD = 10
COMMAND = ("trap 'exit 0' TERM; httpd -p 80 -h /var/www; "
           "while true; do sleep 1000 & wait $!; done")
PROBES = {
    "exec": "  livenessProbe:\n    exec: {command: [\"true\"]}\n"
            f"    periodSeconds: {PERIOD}\n    timeoutSeconds: 5\n",
    "tcpSocket": f"  livenessProbe:\n    tcpSocket: {{port: 80}}\n    periodSeconds: {PERIOD}\n",
    "httpGet": f"  livenessProbe:\n    httpGet: {{port: 80, path: /}}\n"
               f"    periodSeconds: {PERIOD}\n",
}


def manifest(name: str, rootfs: Path, probe: str | None) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}\n"
            f"spec:\n  rootfs: {rootfs}\n  command: [/bin/sh, -c, {COMMAND!r}]\n"
            f"  terminationGracePeriodSeconds: 2\n"
            + (PROBES[probe] if probe else ""))


def write_all(box: bench.Sandbox, names: list[str], probe: str | None) -> None:
    for name in names:
        staged = box.staging / f"{name}.yaml"
        staged.write_text(manifest(name, box.rootfs, probe))
        os.replace(staged, box.manifests / f"{name}.yaml")


def daemon_seconds(pid: int) -> float:
    own, children = bench.cpu_ticks(pid)
    return (own + children) / os.sysconf("SC_CLK_TCK")


def window(daemon: bench.Daemon, seconds: float) -> float:
    """The daemon's CPU seconds over ``seconds`` of wall time."""
    before = daemon_seconds(daemon.pid)
    time.sleep(seconds)
    daemon.check()
    return daemon_seconds(daemon.pid) - before


def floor(box: bench.Sandbox, names: list[str], seconds: float) -> float:
    """Bare ``runc exec ID true`` for each container every PERIOD seconds, spread out as
    the probes are: the CPU seconds of those runc processes over ``seconds``."""
    ids = [bench.instance(box.runc_root, n) for n in names]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    gap = PERIOD / len(ids)
    i = 0
    while time.perf_counter() - start < seconds:
        subprocess.run(["runc", f"--root={box.runc_root}", "exec", ids[i % len(ids)], "true"],
                       check=False, capture_output=True, timeout=30)
        i += 1
        time.sleep(max(0.0, start + i * gap - time.perf_counter()))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", required=True, type=Path, help="a busybox root filesystem")
    parser.add_argument("--n", type=int, default=100, help="containers (default 100)")
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds of each measurement (default 30: three periods)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="reconciler-probebench-"))
    box = bench.Sandbox(base, args.rootfs.resolve())
    daemon = bench.Daemon(box, concurrency=4, label="probes")
    names = [f"p{i:03d}" for i in range(args.n)]
    w = args.window
    try:
        daemon.start()
        bench.wait_ready(box, daemon, since=0)
        write_all(box, names, None)
        bench.wait_for(lambda: all(bench.running_pid(box.runc_root, n) for n in names),
                       timeout=300, every=0.2, what=f"{args.n} containers running")
        time.sleep(3)
        idle = window(daemon, w)
        bench.out(f"# 9. probes: {args.n} containers probed every {PERIOD} s, the daemon's CPU"
                  f" over {w:g} s as a share of one core (its own + its runc children)")
        bench.out(f"  no probes (baseline)             {idle / w * 100:6.2f} %")
        results = {}
        for kind in PROBES:
            write_all(box, names, kind)
            time.sleep(PERIOD + 2)  # the live change applied, one period of probes begun
            used = window(daemon, w)
            results[kind] = max(0.0, used - idle)
            bench.out(f"  {kind:<10} probes               {used / w * 100:6.2f} %   "
                      f"probes alone: {results[kind] / w * 100:5.2f} % "
                      f"({results[kind] / (args.n * w / PERIOD) * 1000:.2f} ms CPU a probe)")
        write_all(box, names, None)
        time.sleep(2)
        bare = floor(box, names, w)
        ratio = results["exec"] / bare if bare else float("nan")
        bench.out(f"  floor: bare runc exec ID true    {bare / w * 100:6.2f} %   exec probes /"
                  f" floor = {ratio:.2f}x (goal <= 1.2x) {bench.verdict(ratio <= 1.2)}")
        for kind in ("tcpSocket", "httpGet"):
            share = results[kind] / w * 100
            bench.out(f"  {kind} probes alone: {share:.2f} % of one core (goal < 1 %)"
                      f" {bench.verdict(share < 1.0)}")
    finally:
        bench.cleanup(box, [daemon])
    return 0


if __name__ == "__main__":
    sys.exit(main())
