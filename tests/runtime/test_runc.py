"""Integration tests of the runtime layer against real runc and conmon (root only)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler import errors
from reconciler.manifest.model import Container
from reconciler.runtime import cgroups, hostmount
from reconciler.runtime.runc import RuncRuntime
from reconciler.core.instance import ANN_SOURCE, ANN_SPEC_HASH
from reconciler.core.observed import Status

pytestmark = [pytest.mark.runc, pytest.mark.anyio]


def manifest(name: str, rootfs: Path, *cmd: str, **spec: Any) -> Container:
    doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
           "spec": {"rootfs": str(rootfs), "command": list(cmd), **spec}}
    return Container.model_validate(doc)


@pytest.fixture
def rt(sandbox: Any) -> RuncRuntime:
    return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                       cgroup_parent=sandbox.cgroup_parent, timeout=10)


SLEEPER = ("/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done")


async def test_create_state_list_and_annotations(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    obs = await rt.create(manifest("web", busybox_rootfs, *SLEEPER), source="/m/web.yaml",
                          spec_hash="v1-abc")
    assert obs.status is Status.RUNNING and obs.pid
    state = await rt.state("web")
    assert state.status is Status.RUNNING and state.pid == obs.pid
    assert state.annotations[ANN_SOURCE] == "/m/web.yaml"
    assert state.annotations[ANN_SPEC_HASH] == "v1-abc"
    assert [o.name for o in await rt.list()] == ["web"]
    # the host agrees: runc's own view, and a live process
    out = subprocess.run(["runc", f"--root={rt.runc_root}", "state", "web"],
                         capture_output=True, check=True).stdout
    assert json.loads(out)["status"] == "running"
    assert Path(f"/proc/{obs.pid}").exists()
    # the monitor is conmon, and it is not our child: the daemon can go away
    conmon_pid = int((rt.depot("web").conmon_pidfile).read_text())
    assert Path(f"/proc/{conmon_pid}/comm").read_text().strip() == "conmon"
    assert os.getppid() != conmon_pid


async def test_two_containers_share_one_rootfs(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    before = sorted(p.name for p in busybox_rootfs.iterdir())
    for name in ("a", "b"):
        await rt.create(manifest(name, busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    for name in ("a", "b"):
        res = await rt.exec(name, ["/bin/sh", "-c", f"echo {name} > /mine-{name}"])
        assert res.exit_code == 0
    a = await rt.exec("a", ["/bin/ls", "/"])
    b = await rt.exec("b", ["/bin/ls", "/"])
    assert b"mine-a" in a.stdout and b"mine-b" not in a.stdout
    assert b"mine-b" in b.stdout and b"mine-a" not in b.stdout
    assert sorted(p.name for p in busybox_rootfs.iterdir()) == before  # lower never written
    assert (rt.depot("a").upper / "mine-a").read_text() == "a\n"


@pytest.mark.parametrize(
    ("script", "code", "sig"),
    [("exit 3", 3, None), ("exit 0", 0, None), ("exit 1", 1, None)],
)
async def test_exit_codes_and_signals(
    rt: RuncRuntime, busybox_rootfs: Path, script: str, code: int | None, sig: int | None
) -> None:
    # `sleep` first so the container is running when start returns
    await rt.create(manifest("x", busybox_rootfs, "/bin/sh", "-c", f"sleep 0.2; {script}"),
                    source="s", spec_hash="h")
    with anyio.fail_after(5):
        status = await rt.wait_exit("x")
    assert (status.code, status.signal, status.oom_killed) == (code, sig, False)
    assert (await rt.state("x")).status is Status.STOPPED
    assert await rt.exit_status("x") == status


async def test_kill_from_outside_reports_the_signal(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("x", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    await rt.kill("x", "SIGKILL")
    with anyio.fail_after(5):
        status = await rt.wait_exit("x")
    assert status.signal == 9 and status.exit_code == 137


async def test_oom_kill_is_reported(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    # a shell string growing past 8Mi: the kernel kills it inside the cgroup
    hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    await rt.create(manifest("hog", busybox_rootfs, "/bin/sh", "-c", hog,
                             resources={"memory": "8Mi"}), source="s", spec_hash="h")
    with anyio.fail_after(10):
        status = await rt.wait_exit("hog")
    assert status.oom_killed and status.signal == 9


async def test_graceful_stop(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("g", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    t0 = time.monotonic()
    status = await rt.stop("g", sig="SIGTERM", grace=5)
    assert status.code == 0  # the trap ran
    assert time.monotonic() - t0 < 2


async def test_stop_escalates_to_sigkill(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    stubborn = "trap '' TERM; while true; do sleep 0.05; done"
    await rt.create(manifest("s", busybox_rootfs, "/bin/sh", "-c", stubborn), source="s",
                    spec_hash="h")
    t0 = time.monotonic()
    status = await rt.stop("s", sig="SIGTERM", grace=0.5)
    elapsed = time.monotonic() - t0
    assert status.signal == 9
    assert 0.5 <= elapsed < 3


async def test_delete_leaves_nothing(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("d", busybox_rootfs, *SLEEPER, resources={"memory": "32Mi"}),
                    source="s", spec_hash="h")
    d, cg = rt.depot("d"), rt.cgroup("d")
    assert hostmount.is_mountpoint(d.rootfs) and cg.exists()
    await rt.pause("d")  # a paused container is thawed first
    await rt.delete("d")
    assert not d.root.exists()
    assert not hostmount.is_mountpoint(d.rootfs)
    assert not cg.exists()
    leftover = list(Path("/sys/fs/cgroup").glob(f"*/{cg.path.strip('/')}"))
    assert leftover == []  # every hierarchy, the hybrid host's unified one included
    assert not (rt.runc_root / "d").exists()
    with pytest.raises(errors.ContainerNotFound):
        await rt.state("d")
    assert await rt.list() == []


async def test_log_captures_output_and_previous_run(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    c = manifest("l", busybox_rootfs, "/bin/sh", "-c", "echo out-$RUN; echo err-$RUN >&2",
                 env=[{"name": "RUN", "value": "one"}])
    await rt.create(c, source="s", spec_hash="h")
    await rt.wait_exit("l")
    await rt.delete("l", keep_logs=True)
    c2 = manifest("l", busybox_rootfs, "/bin/sh", "-c", "echo out-two")
    await rt.create(c2, source="s", spec_hash="h")
    await rt.wait_exit("l")
    d = rt.depot("l")
    for _ in range(100):  # conmon flushes the log as the container exits
        if "out-two" in d.log.read_text():
            break
        await anyio.sleep(0.01)
    previous = d.previous_log.read_text().splitlines()
    assert any(line.endswith(" stdout F out-one") for line in previous)
    assert any(line.endswith(" stderr F err-one") for line in previous)
    assert d.log.read_text().splitlines()[-1].endswith(" stdout F out-two")


async def test_pause_resume_freezes(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("p", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    await rt.pause("p")
    assert (await rt.state("p")).status is Status.PAUSED
    assert rt.cgroup("p").frozen() is True
    with pytest.raises(errors.RuncError, match="paused"):
        await rt.exec("p", ["/bin/true"])
    await rt.resume("p")
    assert rt.cgroup("p").frozen() is False
    assert (await rt.exec("p", ["/bin/true"])).exit_code == 0


async def test_update_resources_reads_back(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    c = manifest("u", busybox_rootfs, *SLEEPER,
                 resources={"memory": "32Mi", "cpu": "250m", "pids": 20})
    await rt.create(c, source="s", spec_hash="h")
    assert await rt.limits("u") == type(await rt.limits("u"))(
        memory_bytes=32 << 20, cpu_quota_us=25000, cpu_period_us=100000, pids=20)
    new = manifest("u", busybox_rootfs, *SLEEPER,
                   resources={"memory": "64Mi", "cpu": "1", "pids": 40})
    limits = await rt.update_resources("u", new.spec.resources)
    assert (limits.memory_bytes, limits.cpu_quota_us, limits.pids) == (64 << 20, 100000, 40)
    config = json.loads(rt.depot("u").config.read_text())
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20


async def test_exec_pids_and_stats(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("e", busybox_rootfs, *SLEEPER, resources={"memory": "64Mi"}),
                    source="s", spec_hash="h")
    res = await rt.exec("e", ["/bin/sh", "-c", "cat; echo oops >&2; exit 7"], stdin=b"hi\n")
    assert (res.exit_code, res.stdout, res.stderr) == (7, b"hi\n", b"oops\n")
    pids = await rt.pids("e")
    assert (await rt.state("e")).pid in pids
    stats = await rt.stats("e")
    assert stats.memory_limit == 64 << 20
    assert stats.memory_usage > 0 and stats.pids_current >= 1 and stats.cpu_usage_ns > 0


async def test_runc_failure_is_plain_words(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    with pytest.raises(errors.RuncError) as info:
        await rt.create(manifest("bad", busybox_rootfs, "/bin/nope"), source="s", spec_hash="h")
    text = str(info.value)
    assert text.startswith('container "bad": ')
    assert "/bin/nope" in text and "no such file or directory" in text
    assert "Traceback" not in text and "level=error" not in text
    assert not rt.depot("bad").bundle.exists() and await rt.list() == []


async def test_missing_rootfs(rt: RuncRuntime, tmp_path: Path) -> None:
    with pytest.raises(errors.RootfsError, match="is not a directory"):
        await rt.create(manifest("m", tmp_path / "nope", "/bin/true"), source="s", spec_hash="h")
    assert not rt.depot("m").bundle.exists()


async def test_hung_runc_create_is_killed_and_cleaned(
    sandbox: Any, busybox_rootfs: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "slow-runc"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = create ] && exec sleep 60; done\n'
                    'exec runc "$@"\n')
    fake.chmod(0o755)
    rt = RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                     cgroup_parent=sandbox.cgroup_parent, runc=str(fake), timeout=1)
    t0 = time.monotonic()
    with pytest.raises(errors.RuntimeTimeout, match="did not finish"):
        await rt.create(manifest("h", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    assert time.monotonic() - t0 < 5
    assert not rt.depot("h").bundle.exists()
    assert not hostmount.is_mountpoint(rt.depot("h").rootfs)
    out = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True).stdout
    for pid in out.split():  # the hung runc create was killed with its monitor
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep" or \
            str(sandbox.base) not in Path(f"/proc/{pid}/environ").read_text(errors="replace")


async def test_foreign_runc_root_untouched(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path, sandbox: Any
) -> None:
    other_root = tmp_path / "other-root"
    bundle = tmp_path / "foreign"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{busybox_rootfs}/.", str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sleep", "30"]
    cfg["linux"]["cgroupsPath"] = f"{sandbox.cgroup_parent}/foreign"
    (bundle / "config.json").write_text(json.dumps(cfg))
    runc = ["runc", f"--root={other_root}"]
    # detached with no pipes: the foreign container must not hold ours open
    subprocess.run([*runc, "run", "-d", "--bundle", str(bundle), "foreign"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await rt.create(manifest("mine", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
        assert [o.name for o in await rt.list()] == ["mine"]
        await rt.delete("mine")
        assert await rt.gc() == []
        out = subprocess.run([*runc, "state", "foreign"], capture_output=True, check=True)
        assert json.loads(out.stdout)["status"] == "running"
    finally:
        subprocess.run([*runc, "delete", "-f", "foreign"], capture_output=True, check=False)


async def test_gc_clears_crash_leftovers(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await rt.create(manifest("left", busybox_rootfs, *SLEEPER), source="s", spec_hash="h")
    # a crash between `runc delete` and the depot clean-up leaves a mounted depot behind
    subprocess.run(["runc", f"--root={rt.runc_root}", "delete", "-f", "left"], check=True)
    assert hostmount.is_mountpoint(rt.depot("left").rootfs)
    assert await rt.gc() == ["left"]
    assert not hostmount.is_mountpoint(rt.depot("left").rootfs)
    assert not rt.depot("left").bundle.exists()
    assert not cgroups.Cgroup(f"{rt.cgroup_parent}/left").exists()


async def test_gc_kills_processes_runc_forgot(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    obs = await rt.create(manifest("orphan", busybox_rootfs, *SLEEPER), source="s",
                          spec_hash="h")
    # runc's record removed under it (a racing `runc delete`): the processes live on
    subprocess.run(["rm", "-rf", str(rt.runc_root / "orphan")], check=True)
    assert Path(f"/proc/{obs.pid}").exists()
    t0 = time.monotonic()
    assert await rt.gc() == ["orphan"]
    assert time.monotonic() - t0 < 1.5  # no waiting out conmon
    for _ in range(100):
        if not Path(f"/proc/{obs.pid}").exists():
            break
        await anyio.sleep(0.01)
    assert not Path(f"/proc/{obs.pid}").exists()
    assert not rt.cgroup("orphan").exists() and not rt.depot("orphan").bundle.exists()


async def test_bundle_source_is_the_base_and_the_manifest_overrides(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """Dobby's start-from-bundle: the bundle's config.json is the base; its rootfs gets
    the same overlay treatment (never written); manifest fields win."""
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{busybox_rootfs}/.", str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    base = json.loads((bundle / "config.json").read_text())
    base["process"]["env"].append("FROM_BUNDLE=yes")
    base["process"]["args"] = ["/bin/sh", "-c", "echo from the bundle"]
    base["root"]["readonly"] = False  # runc spec's is read-only, and the bundle's wins
    (bundle / "config.json").write_text(json.dumps(base))
    doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "b"},
           "spec": {"bundle": str(bundle), "command": list(SLEEPER),
                    "env": [{"name": "FROM_MANIFEST", "value": "yes"}]}}
    await rt.create(Container.model_validate(doc), source="s", spec_hash="h")
    res = await rt.exec("b", ["/bin/sh", "-c", "echo $FROM_BUNDLE $FROM_MANIFEST; "
                                              "touch /written-inside"])
    assert (res.exit_code, res.stdout) == (0, b"yes yes\n")
    config = rt.config("b")
    assert config["process"]["args"] == list(SLEEPER)  # the manifest's command wins
    assert config["root"]["path"] == str(rt.depot("b").rootfs)
    assert not (bundle / "rootfs" / "written-inside").exists()  # the bundle is never written
    assert (rt.depot("b").upper / "written-inside").exists()
