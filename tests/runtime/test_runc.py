"""Integration tests of the runtime layer against real runc and conmon (root only).

The runtime is keyed by instance id (``web.1``): ``up`` (``support``) builds the instance
spec the way the daemon does and creates and starts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler import errors, proc
from reconciler.core.instance import (
    ANN_GENERATION,
    ANN_MANAGED_BY,
    ANN_MANIFEST,
    ANN_NAME,
    ANN_SOURCE,
    ANN_SOURCE_ID,
    ANN_SPEC_HASH,
    ANN_STOP_SIGNAL,
    MANAGED_BY,
)
from reconciler.core.observed import Status
from reconciler.manifest import model
from reconciler.manifest.model import Container
from reconciler.runtime import cgroups, hostmount
from reconciler.runtime.runc import RuncRuntime

from .support import SLEEPER, instance_spec, manifest, up

pytestmark = [pytest.mark.runc, pytest.mark.anyio]


@pytest.fixture
def rt(sandbox: Any) -> RuncRuntime:
    return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                       cgroup_parent=sandbox.cgroup_parent, timeout=10)


def runc_state(rt: RuncRuntime, instance: str) -> dict[str, Any]:
    out = subprocess.run(["runc", f"--root={rt.runc_root}", "state", instance],
                         capture_output=True, check=True).stdout
    state: dict[str, Any] = json.loads(out)
    return state


def own_cgroup(rt: RuncRuntime, instance: str) -> cgroups.Cgroup:
    cg = rt.cgroup(instance)
    assert cg is not None, f"no cgroup recorded for {instance}"
    return cg


async def test_create_state_list_and_annotations(
    rt: RuncRuntime, busybox_rootfs: Path, sandbox: Any
) -> None:
    c = manifest("web", busybox_rootfs, *SLEEPER, stopSignal="SIGINT",
                 terminationGracePeriodSeconds=7)
    spec = await instance_spec(rt, c, source="/m/web.yaml", spec_hash="v1-abc")
    assert (spec.id, spec.name, spec.generation) == ("web.1", "web", 1)
    assert spec.cgroup_path == f"{sandbox.cgroup_parent}/web.1"
    assert (spec.stop_signal, spec.grace) == ("SIGINT", 7.0)
    # create: created, not started (the place for network setup)
    made = await rt.create(spec)
    assert made.status is Status.CREATED and made.pid
    assert (made.name, made.instance, made.id, made.generation) == ("web", "web.1", "web.1", 1)
    assert (made.spec_hash, made.source, made.source_id) == ("v1-abc", "/m/web.yaml",
                                                             "directory")
    assert made.applied == model.canonical_json(c)
    assert runc_state(rt, "web.1")["status"] == "created"
    assert [(o.name, o.instance, o.status) for o in await rt.list()] == [
        ("web", "web.1", Status.CREATED)]
    await rt.start("web.1")
    state = await rt.state("web.1")
    assert state.status is Status.RUNNING and state.pid == made.pid
    assert (state.name, state.instance, state.generation) == ("web", "web.1", 1)
    assert state.annotations[ANN_SOURCE] == "/m/web.yaml"
    assert state.annotations[ANN_SOURCE_ID] == "directory"
    assert state.annotations[ANN_SPEC_HASH] == "v1-abc"
    assert state.annotations[ANN_NAME] == "web"
    assert state.annotations[ANN_GENERATION] == "1"
    assert state.annotations[ANN_MANAGED_BY] == MANAGED_BY
    assert state.annotations[ANN_STOP_SIGNAL] == "SIGINT"
    assert state.annotations[ANN_MANIFEST] == model.canonical_json(c) == state.applied
    # list: the logical name from the annotation, the runc id as the instance
    assert [(o.name, o.instance) for o in await rt.list()] == [("web", "web.1")]
    assert rt.locate("web") == "web.1"
    assert own_cgroup(rt, "web.1").path == f"{sandbox.cgroup_parent}/web.1"
    # the host agrees: runc's own view, and a live process
    assert runc_state(rt, "web.1")["status"] == "running"
    assert Path(f"/proc/{made.pid}").exists()
    # the monitor is conmon, and it is not our child: the daemon can go away
    conmon_pid = int((rt.depot("web.1").conmon_pidfile).read_text())
    assert Path(f"/proc/{conmon_pid}/comm").read_text().strip() == "conmon"
    assert os.getppid() != conmon_pid


async def test_two_containers_share_one_rootfs(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    before = sorted(p.name for p in busybox_rootfs.iterdir())
    for name in ("a", "b"):
        await up(rt, manifest(name, busybox_rootfs, *SLEEPER))
    for name in ("a", "b"):
        res = await rt.exec(f"{name}.1", ["/bin/sh", "-c", f"echo {name} > /mine-{name}"])
        assert res.exit_code == 0
    a = await rt.exec("a.1", ["/bin/ls", "/"])
    b = await rt.exec("b.1", ["/bin/ls", "/"])
    assert b"mine-a" in a.stdout and b"mine-b" not in a.stdout
    assert b"mine-b" in b.stdout and b"mine-a" not in b.stdout
    assert sorted(p.name for p in busybox_rootfs.iterdir()) == before  # lower never written
    assert (rt.depot("a.1").upper / "mine-a").read_text() == "a\n"


@pytest.mark.parametrize(
    ("script", "code", "sig"),
    [("exit 3", 3, None), ("exit 0", 0, None), ("exit 1", 1, None)],
)
async def test_exit_codes_and_signals(
    rt: RuncRuntime, busybox_rootfs: Path, script: str, code: int | None, sig: int | None
) -> None:
    # `sleep` first so the container is running when start returns
    await up(rt, manifest("x", busybox_rootfs, "/bin/sh", "-c", f"sleep 0.2; {script}"))
    with anyio.fail_after(5):
        status = await rt.wait_exit("x.1")
    assert (status.code, status.signal, status.oom_killed) == (code, sig, False)
    assert status.text() == f"exited with code {code}"
    assert (await rt.state("x.1")).status is Status.STOPPED
    assert await rt.exit_status("x.1") == status


async def test_kill_from_outside_reports_the_signal(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("x", busybox_rootfs, *SLEEPER))
    assert await rt.exit_status("x.1") is None  # still running
    await rt.signal("x.1", "SIGKILL")
    with anyio.fail_after(5):
        status = await rt.wait_exit("x.1")
    assert status.signal == 9 and status.exit_code == 137
    assert status.text() == "killed by signal 9 (code 137)"
    await rt.signal("x.1", "SIGTERM")  # a stopped instance: nothing to do, no error


async def test_signal_thaws_a_paused_instance_first(rt: RuncRuntime,
                                                    busybox_rootfs: Path) -> None:
    await up(rt, manifest("p", busybox_rootfs, *SLEEPER))
    await rt.pause("p.1")
    await rt.signal("p.1", "SIGTERM")  # frozen, the trap would never run
    with anyio.fail_after(5):
        status = await rt.wait_exit("p.1")
    assert status.code == 0  # the trap ran


async def test_signal_every_process(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    # the init ignores TERM, its child (started before the trap) does not: only
    # ``every`` reaches the child
    await up(rt, manifest("e", busybox_rootfs, "/bin/sh", "-c",
                          "sleep 1000 & trap '' TERM; wait; exec sleep 1000"))
    init = (await rt.state("e.1")).pid
    for _ in range(200):
        if len(await rt.pids("e.1")) == 2:
            break
        await anyio.sleep(0.01)
    [child] = [p for p in await rt.pids("e.1") if p != init]
    await rt.signal("e.1", "SIGTERM")  # the init only: it ignores it
    await anyio.sleep(0.2)
    assert Path(f"/proc/{child}").exists()
    await rt.signal("e.1", "SIGTERM", every=True)
    for _ in range(200):
        if child not in await rt.pids("e.1"):
            break
        await anyio.sleep(0.01)
    assert child not in await rt.pids("e.1")
    state = await rt.state("e.1")
    assert state.status is Status.RUNNING and state.pid == init  # the init ignored it


async def test_oom_kill_is_reported(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    # a shell string growing past 8Mi: the kernel kills it inside the cgroup
    hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    await up(rt, manifest("hog", busybox_rootfs, "/bin/sh", "-c", hog,
                          resources={"memory": "8Mi"}))
    with anyio.fail_after(10):
        status = await rt.wait_exit("hog.1")
    assert status.oom_killed and status.signal == 9
    assert status.text() == "OOM-killed (code 137)"


async def test_graceful_stop(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("g", busybox_rootfs, *SLEEPER))
    t0 = time.monotonic()
    status = await rt.stop("g.1", sig="SIGTERM", grace=5)
    assert status.code == 0  # the trap ran
    assert time.monotonic() - t0 < 2
    # stopping a stopped instance again is harmless: the same exit
    assert await rt.stop("g.1", sig="SIGTERM", grace=5) == status


async def test_stop_escalates_to_sigkill(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    stubborn = "trap '' TERM; while true; do sleep 0.05; done"
    await up(rt, manifest("s", busybox_rootfs, "/bin/sh", "-c", stubborn))
    t0 = time.monotonic()
    status = await rt.stop("s.1", sig="SIGTERM", grace=0.5)
    elapsed = time.monotonic() - t0
    assert status.signal == 9
    assert 0.5 <= elapsed < 3


async def test_delete_leaves_nothing(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("d", busybox_rootfs, *SLEEPER, resources={"memory": "32Mi"}))
    d, cg = rt.depot("d.1"), own_cgroup(rt, "d.1")
    assert hostmount.is_mountpoint(d.rootfs) and cg.exists()
    await rt.pause("d.1")  # a paused container is thawed first
    await rt.delete("d.1")
    assert not d.root.exists()
    assert not hostmount.is_mountpoint(d.rootfs)
    assert not cg.exists()
    leftover = list(Path("/sys/fs/cgroup").glob(f"*/{cg.path.strip('/')}"))
    assert leftover == []  # every hierarchy, the hybrid host's unified one included
    assert not (rt.runc_root / "d.1").exists()
    with pytest.raises(errors.ContainerNotFound):
        await rt.state("d.1")
    assert await rt.list() == []
    assert rt.cgroup("d.1") is None  # nothing recorded: nothing of it is ours any more
    with pytest.raises(errors.ContainerNotFound):
        await rt.limits("d.1")
    with pytest.raises(errors.ContainerNotFound):
        await rt.stats("d.1")


async def test_log_captures_output_and_previous_run(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    """A restart keeps the instance id: its last log becomes its previous log."""
    c = manifest("l", busybox_rootfs, "/bin/sh", "-c", "echo out-$RUN; echo err-$RUN >&2",
                 env=[{"name": "RUN", "value": "one"}])
    await up(rt, c)
    await rt.wait_exit("l.1")
    await rt.delete("l.1", keep_logs=True)
    c2 = manifest("l", busybox_rootfs, "/bin/sh", "-c", "echo out-two")
    await up(rt, c2)
    await rt.wait_exit("l.1")
    d = rt.depot("l.1")
    await until_logged(d.log, "out-two")
    previous = d.previous_log.read_text().splitlines()
    assert any(line.endswith(" stdout F out-one") for line in previous)
    assert any(line.endswith(" stderr F err-one") for line in previous)
    assert d.log.read_text().splitlines()[-1].endswith(" stdout F out-two")


async def until_logged(log: Path, needle: str) -> None:
    for _ in range(100):  # conmon flushes the log as the container exits
        if log.exists() and needle in log.read_text():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"{needle!r} never reached {log}")


async def test_next_generation_takes_over_the_logs(rt: RuncRuntime,
                                                   busybox_rootfs: Path) -> None:
    """A new instance replacing a deleted one: the old instance's last log is the new
    one's previous log, and the rest of the old depot goes."""
    await up(rt, manifest("n", busybox_rootfs, "/bin/sh", "-c", "echo gen-one"))
    await rt.wait_exit("n.1")
    await until_logged(rt.depot("n.1").log, "gen-one")
    await rt.delete("n.1", keep_logs=True)
    assert rt.depot("n.1").log.exists() and not rt.depot("n.1").bundle.exists()
    await up(rt, manifest("n", busybox_rootfs, "/bin/sh", "-c", "echo gen-two"),
             generation=2, previous="n.1")
    await rt.wait_exit("n.2")
    d = rt.depot("n.2")
    await until_logged(d.log, "gen-two")
    assert d.previous_log.read_text().splitlines()[-1].endswith(" stdout F gen-one")
    assert not rt.depot("n.1").root.exists()
    assert rt.locate("n") == "n.2"
    assert [(o.name, o.instance, o.generation) for o in await rt.list()] == [("n", "n.2", 2)]


async def test_make_before_break_two_instances_of_one_object(
    rt: RuncRuntime, busybox_rootfs: Path
) -> None:
    """Two instances of one object at once: each its own depot, cgroup and logs; the
    newest generation is the current one."""
    await up(rt, manifest("m", busybox_rootfs, "/bin/sh", "-c", "echo old; exec sleep 1000"))
    await until_logged(rt.depot("m.1").log, "old")
    await up(rt, manifest("m", busybox_rootfs, "/bin/sh", "-c", "echo new; exec sleep 1000"),
             generation=2, previous="m.1")
    await until_logged(rt.depot("m.2").log, "new")
    listed = await rt.list()
    assert [(o.name, o.instance, o.generation, o.status) for o in listed] == [
        ("m", "m.1", 1, Status.RUNNING), ("m", "m.2", 2, Status.RUNNING)]
    assert rt.locate("m") == "m.2"
    assert own_cgroup(rt, "m.1").path != own_cgroup(rt, "m.2").path
    assert not rt.depot("m.2").previous_log.exists()  # the old one keeps its own log
    assert "old" in rt.depot("m.1").log.read_text()
    await rt.delete("m.1")  # break: the new one runs on
    assert [o.instance for o in await rt.list()] == ["m.2"]
    assert (await rt.state("m.2")).status is Status.RUNNING


async def test_pause_resume_freezes(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("p", busybox_rootfs, *SLEEPER))
    await rt.pause("p.1")
    assert (await rt.state("p.1")).status is Status.PAUSED
    assert own_cgroup(rt, "p.1").frozen() is True
    with pytest.raises(errors.RuncError, match="paused"):
        await rt.exec("p.1", ["/bin/true"])
    await rt.resume("p.1")
    assert own_cgroup(rt, "p.1").frozen() is False
    assert (await rt.exec("p.1", ["/bin/true"])).exit_code == 0


async def test_update_resources_reads_back(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    c = manifest("u", busybox_rootfs, *SLEEPER,
                 resources={"memory": "32Mi", "cpu": "250m", "pids": 20})
    await up(rt, c)
    assert await rt.limits("u.1") == type(await rt.limits("u.1"))(
        memory_bytes=32 << 20, cpu_quota_us=25000, cpu_period_us=100000, pids=20)
    new = manifest("u", busybox_rootfs, *SLEEPER,
                   resources={"memory": "64Mi", "cpu": "1", "pids": 40})
    limits = await rt.update_resources("u.1", new.spec.resources)
    assert (limits.memory_bytes, limits.cpu_quota_us, limits.pids) == (64 << 20, 100000, 40)
    config = json.loads(rt.depot("u.1").config.read_text())
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    await rt.set_applied("u.1", new)  # the manifest in force now, as state reads it back
    assert (await rt.state("u.1")).applied == model.canonical_json(new)
    assert [o.applied for o in await rt.list()] == [model.canonical_json(new)]


async def test_exec_pids_and_stats(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("e", busybox_rootfs, *SLEEPER, resources={"memory": "64Mi"}))
    res = await rt.exec("e.1", ["/bin/sh", "-c", "cat; echo oops >&2; exit 7"], stdin=b"hi\n")
    assert (res.exit_code, res.stdout, res.stderr) == (7, b"hi\n", b"oops\n")
    pids = await rt.pids("e.1")
    assert (await rt.state("e.1")).pid in pids
    stats = await rt.stats("e.1")
    assert stats.memory_limit == 64 << 20
    assert stats.memory_usage > 0 and stats.pids_current >= 1 and stats.cpu_usage_ns > 0


async def test_runc_failure_is_plain_words(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    with pytest.raises(errors.RuncError) as info:
        await up(rt, manifest("bad", busybox_rootfs, "/bin/nope"))
    text = str(info.value)
    assert text.startswith('container "bad.1": ')
    assert "/bin/nope" in text and "no such file or directory" in text
    assert "Traceback" not in text and "level=error" not in text
    assert not rt.depot("bad.1").bundle.exists() and await rt.list() == []


async def test_missing_rootfs(rt: RuncRuntime, tmp_path: Path) -> None:
    spec = await instance_spec(rt, manifest("m", tmp_path / "nope", "/bin/true"))
    with pytest.raises(errors.RootfsError, match="is not a directory") as info:
        await rt.create(spec)
    assert str(info.value) == f'container "m": rootfs {tmp_path / "nope"} is not a directory'
    assert info.value.container == "m"
    assert not rt.depot("m.1").bundle.exists()
    assert await rt.list() == []


async def test_failed_start_cleans_up_and_keeps_the_logs(
    rt: RuncRuntime, busybox_rootfs: Path
) -> None:
    spec = await instance_spec(rt, manifest("f", busybox_rootfs, *SLEEPER))
    made = await rt.create(spec)
    assert made.status is Status.CREATED and made.pid is not None
    cg = own_cgroup(rt, "f.1")
    os.kill(made.pid, signal.SIGKILL)  # init dies between create and start
    with anyio.fail_after(5), pytest.raises(errors.RuncError, match="already dead"):
        await rt.start("f.1")
    d = rt.depot("f.1")
    assert not d.bundle.exists() and not hostmount.is_mountpoint(d.rootfs)
    assert d.logs.is_dir()  # kept for the next try
    assert not cg.exists() and await rt.list() == []
    assert not Path(f"/proc/{made.pid}").exists() or \
        Path(f"/proc/{made.pid}/stat").read_text().split()[2] == "Z"


async def test_start_does_what_runc_start_does(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    """runc's exec.fifo read to its end (runtime._release): running as runc sees it, a
    second start refused in runc's words, and a process that exits at once started."""
    made = await up(rt, manifest("s", busybox_rootfs, *SLEEPER))
    assert not (rt.runc_root / "s.1" / "exec.fifo").exists()
    assert runc_state(rt, "s.1")["status"] == "running"
    assert (await rt.state("s.1")).pid == made.pid
    with pytest.raises(errors.RuncError, match="cannot start an already running container"):
        await rt.start("s.1")  # no fifo: runc start itself answers
    quick = await up(rt, manifest("q", busybox_rootfs, "/bin/sh", "-c", "exit 7"))
    with anyio.fail_after(5):
        status = await rt.wait_exit("q.1")
    assert (status.code, quick.status) == (7, Status.RUNNING)


async def test_hung_runc_create_is_killed_and_cleaned(
    sandbox: Any, busybox_rootfs: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "slow-runc"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = create ] && exec sleep 60; done\n'
                    'exec runc "$@"\n')
    fake.chmod(0o755)
    rt = RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                     cgroup_parent=sandbox.cgroup_parent, runc=str(fake), timeout=1)
    spec = await instance_spec(rt, manifest("h", busybox_rootfs, *SLEEPER))
    t0 = time.monotonic()
    with pytest.raises(errors.RuntimeTimeout, match="did not finish"):
        await rt.create(spec)
    assert time.monotonic() - t0 < 5
    assert not rt.depot("h.1").bundle.exists()
    assert not hostmount.is_mountpoint(rt.depot("h.1").rootfs)
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
        await up(rt, manifest("mine", busybox_rootfs, *SLEEPER))
        assert [o.name for o in await rt.list()] == ["mine"]
        await rt.delete("mine.1")
        assert await rt.gc() == []
        out = subprocess.run([*runc, "state", "foreign"], capture_output=True, check=True)
        assert json.loads(out.stdout)["status"] == "running"
    finally:
        subprocess.run([*runc, "delete", "-f", "foreign"], capture_output=True, check=False)


async def test_gc_clears_crash_leftovers(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    await up(rt, manifest("left", busybox_rootfs, *SLEEPER))
    cg = own_cgroup(rt, "left.1")
    # a crash between `runc delete` and the depot clean-up leaves a mounted depot behind
    subprocess.run(["runc", f"--root={rt.runc_root}", "delete", "-f", "left.1"], check=True)
    assert hostmount.is_mountpoint(rt.depot("left.1").rootfs)
    assert await rt.gc() == ["left.1"]
    assert not hostmount.is_mountpoint(rt.depot("left.1").rootfs)
    assert not rt.depot("left.1").bundle.exists()
    assert cg.path == f"{rt.cgroup_parent}/left.1" and not cg.exists()


async def test_gc_kills_processes_runc_forgot(rt: RuncRuntime, busybox_rootfs: Path) -> None:
    obs = await up(rt, manifest("orphan", busybox_rootfs, *SLEEPER))
    cg = own_cgroup(rt, "orphan.1")
    # runc's record removed under it (a racing `runc delete`): the processes live on
    subprocess.run(["rm", "-rf", str(rt.runc_root / "orphan.1")], check=True)
    assert Path(f"/proc/{obs.pid}").exists()
    t0 = time.monotonic()
    assert await rt.gc() == ["orphan.1"]
    assert time.monotonic() - t0 < 1.5  # no waiting out conmon
    for _ in range(100):
        if not Path(f"/proc/{obs.pid}").exists():
            break
        await anyio.sleep(0.01)
    assert not Path(f"/proc/{obs.pid}").exists()
    assert not cg.exists() and not rt.depot("orphan.1").bundle.exists()


async def test_gc_kills_nothing_outside_its_own_cgroup_parent(
    rt: RuncRuntime, busybox_rootfs: Path, sandbox: Any
) -> None:
    """What runc forgot is killed through the instance's recorded cgroup only when that
    cgroup is under the runtime's own parent: another daemon's is not its to kill."""
    obs = await up(rt, manifest("theirs", busybox_rootfs, *SLEEPER))
    assert obs.pid is not None
    cg = own_cgroup(rt, "theirs.1")
    other = RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                        cgroup_parent=f"{sandbox.cgroup_parent}-other", timeout=10)
    # conmon gone (so it takes nothing with it) and runc's record removed under it
    conmon = int(rt.depot("theirs.1").conmon_pidfile.read_text())
    os.kill(conmon, signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(rt.runc_root / "theirs.1")], check=True)
    try:
        assert await other.gc() == ["theirs.1"]
        assert obs.pid in cg.procs()  # left alone, in its cgroup
        assert Path(f"/proc/{obs.pid}/stat").read_text().split()[2] != "Z"
    finally:
        cg.kill_all()
    await anyio.sleep(0.1)


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
    await up(rt, Container.model_validate(doc))
    res = await rt.exec("b.1", ["/bin/sh", "-c", "echo $FROM_BUNDLE $FROM_MANIFEST; "
                                                "touch /written-inside"])
    assert (res.exit_code, res.stdout) == (0, b"yes yes\n")
    config = rt.config("b.1")
    assert config["process"]["args"] == list(SLEEPER)  # the manifest's command wins
    assert config["root"]["path"] == str(rt.depot("b.1").rootfs)
    assert not (bundle / "rootfs" / "written-inside").exists()  # the bundle is never written
    assert (rt.depot("b.1").upper / "written-inside").exists()


async def test_an_early_list_is_taken_once_and_only_for_this_root(
    sandbox: Any, rt: RuncRuntime, busybox_rootfs: Path
) -> None:
    """The daemon's first `runc list`, started before its imports (cli.daemon)."""
    await up(rt, manifest("e", busybox_rootfs, *SLEEPER))

    def runtime(first: proc.Spawned) -> RuncRuntime:
        return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                           cgroup_parent=sandbox.cgroup_parent, timeout=10, first_list=first)

    early = proc.Spawned.start(rt.list_argv())
    taken = runtime(early)
    assert [o.id for o in await taken.list()] == ["e.1"]
    assert early.out.closed and early.process.returncode == 0
    assert [o.id for o in await taken.list()] == ["e.1"]  # later lists ask runc again
    elsewhere = proc.Spawned.start(["runc", "--root=/nonexistent", "list", "--format", "json"])
    assert [o.id for o in await runtime(elsewhere).list()] == ["e.1"]  # not this root's
    assert elsewhere.out.closed and elsewhere.process.returncode is not None


async def test_a_start_that_hangs_is_a_timeout_and_cleans_up(
    sandbox: Any, busybox_rootfs: Path
) -> None:
    rt = RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                     cgroup_parent=sandbox.cgroup_parent, timeout=1)
    made = await rt.create(await instance_spec(rt, manifest("z", busybox_rootfs, *SLEEPER)))
    assert made.pid is not None
    os.kill(made.pid, signal.SIGSTOP)  # init never gets to write into its exec.fifo
    t0 = time.monotonic()
    with pytest.raises(errors.RuntimeTimeout, match="start did not finish within 1s"):
        await rt.start("z.1")
    assert time.monotonic() - t0 < 5
    assert await rt.list() == [] and not rt.depot("z.1").bundle.exists()


async def test_a_frozen_created_instance_is_refused_by_runc_start_at_once(
    rt: RuncRuntime, busybox_rootfs: Path
) -> None:
    made = await rt.create(await instance_spec(rt, manifest("p", busybox_rootfs, *SLEEPER)))
    assert made.status is Status.CREATED
    subprocess.run(["runc", f"--root={rt.runc_root}", "pause", "p.1"], check=True,
                   capture_output=True)
    t0 = time.monotonic()
    with pytest.raises(errors.RuncError):  # runc's own refusal, not a 30 s wait on the fifo
        await rt.start("p.1")
    assert time.monotonic() - t0 < 5
    assert await rt.list() == []
