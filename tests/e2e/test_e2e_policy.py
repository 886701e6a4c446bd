"""The daemon policy end to end: ``run --policy FILE`` with a real daemon and real runc.

A violation is an error on that object only, naming the rule, the field and FILE:LINE;
the object is not made, a running older revision keeps running, the others go on; a
policy changed under the daemon is in force from the next look, and what now violates it
is reported, not killed; a broken policy keeps the last good one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .harness import E2E, wait_until

pytestmark = pytest.mark.runc


def write_policy(e2e: E2E, extra: str = "") -> Path:
    path = e2e.tmp / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\nlevel: baseline\n"
                    f"hostPaths:\n  - {{path: {e2e.rootfs}}}\n" + extra)
    return path


def message(e2e: E2E, name: str) -> str:
    return str((e2e.get(name) or {}).get("message") or "")


def test_a_violation_is_an_error_on_that_object_and_the_old_revision_keeps_running(
        e2e: E2E) -> None:
    policy = write_policy(e2e)
    e2e.write("web.yaml", e2e.manifest("web"))
    e2e.write("db.yaml", e2e.manifest("db"))
    e2e.write("evil.yaml", e2e.manifest("evil", hostNetwork=True))
    e2e.start("--policy", str(policy))
    pids = {n: e2e.wait_running(n) for n in ("web", "db")}
    assert e2e.runc("evil") is None  # never made
    # evil was never made, so the error is on its file (no object of that name exists)
    events = [e for e in e2e.events() if e["reason"] == "ManifestError"
              and "evil.yaml" in e["message"]]
    assert events, e2e.events()
    assert f"{e2e.manifests / 'evil.yaml'}:" in events[0]["message"]
    assert "spec.hostNetwork" in events[0]["message"]
    assert "(policy: allow.hostNetwork)" in events[0]["message"]

    # web edited into a violation: its running revision stays, with the error shown
    e2e.write("web.yaml", e2e.manifest("web", capabilities={"add": ["SYS_ADMIN"]}))
    wait_until(lambda: "(policy: capabilities)" in message(e2e, "web"), 10,
               what="the policy error on web")
    e2e.keeps(pids, 1.5, why="with web's new revision refused by the policy")

    # the policy widened under the daemon: web's new revision is made, db untouched
    policy.write_text(policy.read_text() + "capabilities: [SYS_ADMIN]\n")
    new_web = e2e.wait_running("web", timeout=15, not_pid=pids["web"])
    assert new_web != pids["web"] and e2e.running_pid("db") == pids["db"]
    assert "PolicyLoaded" in e2e.reasons()

    # tightened again: web now violates; it is reported, not killed
    policy.write_text(write_policy(e2e).read_text())
    wait_until(lambda: "(policy: capabilities)" in message(e2e, "web"), 10,
               what="web reported against the tightened policy")
    e2e.keeps({"web": new_web, "db": pids["db"]}, 1.5, why="a stricter policy reports")

    # a broken policy file: the last good one stays in force
    policy.write_text("apiVersion: reconciler/v1\nkind: Policy\nlevel: lax\n")
    wait_until(lambda: "PolicyError" in e2e.reasons(), 10, what="the PolicyError event")
    error = [e for e in e2e.events() if e["reason"] == "PolicyError"][-1]["message"]
    assert f"{policy}:3: level:" in error
    e2e.keeps({"web": new_web, "db": pids["db"]}, 1.0, why="with a broken policy file")


def test_a_policy_that_does_not_load_refuses_the_start(e2e: E2E) -> None:
    policy = e2e.tmp / "policy.yaml"
    policy.write_text("apiVersion: reconciler/v1\nkind: Policy\nhostPorts: ['0']\n")
    res = subprocess.run([sys.executable, "-m", "reconciler", "run", "--manifests",
                          str(e2e.manifests), "--state-dir", str(e2e.state_dir),
                          "--runc-root", str(e2e.runc_root), "--cgroup-parent",
                          e2e.sandbox.cgroup_parent, "--policy", str(policy)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: --policy: the policy has problems")
    assert f"{policy}:3: hostPorts[0]:" in res.stderr
