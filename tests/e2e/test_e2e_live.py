"""End to end: live changes through the real daemon, each keeping the container's init PID."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .harness import E2E, pid_alive, wait_until

pytestmark = pytest.mark.runc


def inside(e2e: E2E, name: str, script: str) -> tuple[int, str]:
    """``runc exec`` in ``name``'s current instance."""
    res = subprocess.run(["runc", f"--root={e2e.runc_root}", "exec", e2e.instance(name),
                          "/bin/sh", "-c", script],
                         capture_output=True, text=True, timeout=10, check=False)
    return res.returncode, res.stdout + res.stderr


def cgroup_file(e2e: E2E, controller: str, name: str, file: str) -> str:
    """A file of the cgroup of ``name``'s current instance (its ``linux.cgroupsPath``)."""
    return e2e.cgroup_file(name, controller, file)


def test_bind_mount_add_readonly_change_remove(e2e: E2E, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, text in ((a, "from a"), (b, "from b")):
        d.mkdir()
        (d / "f").write_text(text)
    e2e.write("m.yaml", e2e.manifest("m"))
    e2e.start()
    pid = e2e.wait_running("m")

    def apply(**spec: Any) -> None:
        e2e.write("m.yaml", e2e.manifest("m", **spec))

    t0 = time.monotonic()
    apply(mounts=[{"type": "bind", "source": str(a), "destination": "/data"}])
    wait_until(lambda: inside(e2e, "m", "cat /data/f") == (0, "from a"), 1.0,
               what="/data/f readable within 1 s", interval=0.02)
    added = time.monotonic() - t0

    apply(mounts=[{"type": "bind", "source": str(a), "destination": "/data", "readOnly": True}])
    wait_until(lambda: "Read-only file system" in inside(e2e, "m", "echo x > /data/g")[1], 2,
               what="writes fail with EROFS")

    apply(mounts=[{"type": "bind", "source": str(b), "destination": "/data"}])
    wait_until(lambda: inside(e2e, "m", "cat /data/f") == (0, "from b"), 2, what="new source")

    apply()
    wait_until(lambda: inside(e2e, "m", "cat /data/f")[0] != 0, 2, what="/data gone")
    assert e2e.running_pid("m") == pid
    # the event of the last change is written once its action is done, which may be just
    # after the mount went inside
    wait_until(lambda: "MountRemoved" in e2e.reasons("m"), 2, what="MountRemoved recorded")
    reasons = e2e.reasons("m")
    assert reasons.count("Created") == 1 and "Recreated" not in reasons
    assert {"MountAdded", "MountChanged", "MountRemoved"} <= set(reasons)
    print(f"manifest edit -> bind mount visible inside: {added * 1000:.0f} ms")  # noqa: T201


def test_tmpfs_mount_with_size_limit(e2e: E2E) -> None:
    e2e.write("t.yaml", e2e.manifest("t"))
    e2e.start()
    pid = e2e.wait_running("t")
    e2e.write("t.yaml", e2e.manifest("t", mounts=[{"type": "tmpfs", "destination": "/scratch",
                                                   "sizeLimit": "1Mi"}]))
    wait_until(lambda: inside(e2e, "t", "grep -q ' /scratch ' /proc/mounts")[0] == 0, 2,
               what="tmpfs mounted")
    code, out = inside(e2e, "t", "dd if=/dev/zero of=/scratch/big bs=1k count=2048")
    assert code != 0 and "No space left on device" in out
    mounts = e2e.get("t")["actual"]["mounts"]  # type: ignore[index]
    assert [(m["destination"], m["type"]) for m in mounts] == [("/scratch", "tmpfs")]
    described = e2e.cli("describe", "t").stdout
    assert "Mount:         /scratch tmpfs size=1Mi rw (in place)" in described
    assert f"Image:         {e2e.rootfs}" in described and "Command:       /bin/sh -c" in described
    e2e.write("t.yaml", e2e.manifest("t"))
    wait_until(lambda: inside(e2e, "t", "grep -q ' /scratch ' /proc/mounts")[0] != 0, 2,
               what="tmpfs removed")
    assert e2e.running_pid("t") == pid


def test_resource_limits_live(e2e: E2E) -> None:
    e2e.write("r.yaml", e2e.manifest("r", resources={"memory": "64Mi", "cpu": "250m",
                                                      "pids": 32}))
    e2e.start()
    pid = e2e.wait_running("r")
    assert cgroup_file(e2e, "memory", "r", "memory.limit_in_bytes") == str(64 << 20)
    e2e.write("r.yaml", e2e.manifest("r", resources={"memory": "128Mi", "cpu": "1500m",
                                                      "pids": 64}))
    wait_until(lambda: cgroup_file(e2e, "memory", "r", "memory.limit_in_bytes")
               == str(128 << 20), 3, what="memory limit 128Mi")
    assert cgroup_file(e2e, "cpu", "r", "cpu.cfs_quota_us") == "150000"
    assert cgroup_file(e2e, "pids", "r", "pids.max") == "64"
    assert e2e.running_pid("r") == pid
    limits = wait_until(lambda: (e2e.get("r") or {}).get("actual", {}).get("limits"), 3)
    assert limits["memoryBytes"] == 128 << 20 and limits["pids"] == 64
    assert "Limits:        memory 128Mi, cpu 1500m, pids 64" in e2e.cli("describe", "r").stdout
    assert any("64Mi\u2192128Mi" in e["message"] for e in e2e.events("r"))


def test_run_state_paused_stopped_running(e2e: E2E) -> None:
    e2e.write("s.yaml", e2e.manifest("s"))
    e2e.start()
    pid = e2e.wait_running("s")
    e2e.write("s.yaml", e2e.manifest("s", state="Paused"))
    e2e.wait_phase("s", "Paused")
    assert e2e.freezer("s") == "FROZEN"
    assert e2e.runc("s")["status"] == "paused"  # type: ignore[index]
    e2e.write("s.yaml", e2e.manifest("s", state="Running"))
    e2e.wait_phase("s", "Running")
    assert e2e.freezer("s") == "THAWED" and e2e.running_pid("s") == pid
    e2e.write("s.yaml", e2e.manifest("s", state="Stopped"))
    e2e.wait_phase("s", "Stopped")
    assert not pid_alive(pid)
    assert e2e.runc("s")["status"] == "stopped"  # type: ignore[index]  # definition kept
    e2e.write("s.yaml", e2e.manifest("s", state="Running"))
    new = e2e.wait_running("s", not_pid=pid)
    assert new != pid and e2e.phase("s") == "Running"


def test_mixed_change_is_one_recreate(e2e: E2E, tmp_path: Path) -> None:
    e2e.write("x.yaml", e2e.manifest("x"))
    e2e.start()
    pid = e2e.wait_running("x")
    t0 = time.time()
    e2e.write("x.yaml", e2e.manifest("x", env=[{"name": "A", "value": "1"}],
                                     mounts=[{"type": "bind", "source": str(tmp_path),
                                              "destination": "/data"}]))
    new = e2e.wait_running("x", not_pid=pid)
    wait_until(lambda: "Recreated" in e2e.reasons("x", since=t0), 3)
    time.sleep(0.5)
    reasons = e2e.reasons("x", since=t0)
    assert reasons.count("Recreated") == 1
    assert "MountAdded" not in reasons and "ResourcesUpdated" not in reasons
    assert e2e.running_pid("x") == new
    assert inside(e2e, "x", "test -d /data && echo $A") == (0, "1\n")


def test_live_updated_container_adopted_after_daemon_restart(e2e: E2E, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("kept")
    e2e.write("k.yaml", e2e.manifest("k"))
    d = e2e.start()
    pid = e2e.wait_running("k")
    e2e.write("k.yaml", e2e.manifest("k", mounts=[{"type": "bind", "source": str(tmp_path),
                                                   "destination": "/data"}]))
    wait_until(lambda: inside(e2e, "k", "cat /data/f") == (0, "kept"), 2)
    wait_until(lambda: "MountAdded" in e2e.reasons("k"), 2)  # the change is recorded
    d.kill()
    t0 = time.time()
    e2e.start()
    time.sleep(1.0)
    assert e2e.running_pid("k") == pid
    assert inside(e2e, "k", "cat /data/f") == (0, "kept")
    assert not {"Recreated", "Restarted", "MountAdded"} & set(e2e.reasons("k", since=t0))
