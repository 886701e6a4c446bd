"""privileged: true against real runc: what it grants, and only where a policy allows it.

Checked from the host (``/proc/PID/status``) and inside. The one write is to a sysctl of
the container's own network namespace, never a host-wide one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import E2E, wait_until

pytestmark = pytest.mark.runc

# ALL is every capability the daemon (root here) has in its bounding set
ALL_CAPS = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("CapBnd:"))


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def _exec(e2e: E2E, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "exec", "--state-dir",
                           str(e2e.state_dir), "--runc-root", str(e2e.runc_root), name, "--",
                           "/bin/sh", "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)


def test_privileged_grants_everything_and_a_plain_one_nothing(e2e: E2E) -> None:
    e2e.write("priv.yaml", e2e.manifest("priv", privileged=True))
    e2e.write("plain.yaml", e2e.manifest("plain"))
    e2e.start()  # the suite's policy: privileged
    pids = e2e.wait_all_running(["priv", "plain"])
    priv, plain = _status(pids["priv"]), _status(pids["plain"])
    assert priv["CapEff"].strip() == ALL_CAPS and priv["Seccomp"].strip() == "0"
    assert priv["NoNewPrivs"].strip() == "0"
    assert plain["CapEff"].strip() != ALL_CAPS and plain["Seccomp"].strip() == "2"
    # /proc/sys is writable: a sysctl of its own network namespace, set and read back
    res = _exec(e2e, "priv", "echo 1 > /proc/sys/net/ipv4/ip_forward &&"
                             " cat /proc/sys/net/ipv4/ip_forward && ls /dev/kmsg")
    assert res.returncode == 0 and res.stdout.split()[0] == "1", res.stderr
    denied = _exec(e2e, "plain", "echo 1 > /proc/sys/net/ipv4/ip_forward")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_baseline_refuses_it_on_its_field(e2e: E2E) -> None:
    policy = e2e.tmp / "policy.yaml"
    policy.write_text("apiVersion: reconciler/v1\nkind: Policy\nlevel: baseline\n"
                      f"hostPaths: [{{path: {e2e.rootfs}}}]\n")
    path = e2e.write("priv.yaml", e2e.manifest("priv", privileged=True))
    e2e.write("plain.yaml", e2e.manifest("plain"))
    e2e.start("--policy", str(policy))
    e2e.wait_all_running(["plain"])
    wanted = re.compile(re.escape(str(path)) + r":\d+: spec\.privileged: privileged"
                        r" containers are not allowed \(policy: allow\.privileged\)")
    wait_until(lambda: wanted.search(str(e2e.status()["daemon"]["problems"])), 10,
               what="the finding")
    assert e2e.runc("priv") is None
