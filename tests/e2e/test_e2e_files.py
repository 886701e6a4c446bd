"""End to end: how the manifests directory changes, and what the daemon makes of it.

Each test changes the directory the way a person or a tool does (plain writes, ``sed -i``,
vim, git-sync's symlink swap, ``tar -x``, a directory removed and made again) and checks
both the daemon's view (``reconciler get``) and the host (runc, /proc, mountinfo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import (
    E2E,
    RESYNC,
    SETTLE,
    SLOW_RESYNC,
    PidSampler,
    cmdline,
    environ,
    hold,
    mounts_under,
    pid_alive,
    skip_without,
    wait_until,
)

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]


def test_drop_edit_delete(e2e: E2E, record: Record) -> None:
    # a second container keeps the directory from becoming empty (that is refused)
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.start(resync=SLOW_RESYNC)  # every reaction below comes from inotify
    keep = e2e.wait_running("keep")
    t0 = time.monotonic()
    path = e2e.write("a.yaml", e2e.manifest("a"))
    pid1 = e2e.wait_running("a", interval=0.01)
    record("drop -> running", time.monotonic() - t0)
    c = e2e.wait_phase("a", "Running")
    assert c["pid"] == pid1 and c["source"] == str(path) and c["desiredState"] == "Running"
    assert e2e.depot("a").is_dir() and mounts_under(e2e.depot("a"))

    # sed -i: a temporary file renamed over the manifest; no modify event for it at all
    t0 = time.monotonic()
    subprocess.run(["sed", "-i", "s/sleep 0.1/sleep 0.2/", str(path)], check=True)
    pid2 = e2e.wait_running("a", not_pid=pid1, interval=0.01)
    record("sed -i -> recreated", time.monotonic() - t0)
    assert not pid_alive(pid1)
    assert "sleep 0.2" in cmdline(pid2)[-1]
    assert e2e.wait_phase("a", "Running")["pid"] == pid2
    assert e2e.reasons("a") == ["Created", "Recreated"]
    assert e2e.cli("diff", "--manifests", str(e2e.manifests), check=False).returncode == 0

    # rm: held for the settle time (a vim save looks the same at first), then deleted
    t0 = time.monotonic()
    path.unlink()
    wait_until(lambda: e2e.runc("a") is None, 10, what="a deleted from runc", interval=0.01)
    elapsed = time.monotonic() - t0
    record("rm -> deleted", elapsed)
    assert elapsed >= SETTLE * 0.9, "deleted before the settle time was over"
    assert not pid_alive(pid2)
    e2e.wait_gone("a", 5)
    wait_until(lambda: e2e.get("a") is None, 5, what="a gone from get")
    assert e2e.reasons("a")[-1] == "Deleted"
    assert e2e.running_pid("keep") == keep


@skip_without("vim")
@pytest.mark.parametrize("backup", ["nobackup", "backup"])
def test_vim_save_recreates_once(e2e: E2E, record: Record, backup: str) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))  # a wrong delete of `a` would not be refused
    path = e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start(resync=SLOW_RESYNC)
    keep = e2e.wait_running("keep")
    pid1 = e2e.wait_running("a")
    inode = path.stat().st_ino
    # vim's own defaults but two: `backupskip=` because tmp_path is under /tmp (which vim
    # skips, writing in place), and optionally `backup` to keep the renamed original.
    # With a swap file and backupcopy=auto it also creates and removes its `4913` probe.
    vim = ["vim", "-u", "NONE", "-N", "-es", "-c", f"set {backup} writebackup backupskip=",
           "-c", "%s/sleep 0.1/sleep 0.2/", "-c", "wq", str(path)]
    with PidSampler(e2e, "a") as sampler:
        t0 = time.monotonic()
        subprocess.run(vim, check=True, timeout=20, stdin=subprocess.DEVNULL,
                       capture_output=True)
        pid2 = e2e.wait_running("a", not_pid=pid1, interval=0.01)
        record("vim :wq -> recreated", time.monotonic() - t0)
        # nothing else happens once the settle time of the brief absence is over
        hold(lambda: e2e.running_pid("a") == pid2, SETTLE * 2 + 0.3, what="a keeps pid2")
    # strace-free proof that vim renamed: the name now holds a new inode, and with
    # `backup` the original inode lives on as `a.yaml~` (which is not a manifest name)
    assert path.stat().st_ino != inode
    if backup == "backup":
        assert Path(f"{path}~").stat().st_ino == inode
    else:
        assert not Path(f"{path}~").exists()
    assert sampler.pids() == [pid1, pid2], sampler.seen
    assert sampler.seen[0] == ("running", pid1) and sampler.seen[-1] == ("running", pid2)
    assert e2e.reasons("a") == ["Created", "Recreated"]  # never Deleted, never Created again
    assert "sleep 0.2" in cmdline(pid2)[-1]
    assert e2e.running_pid("keep") == keep


def test_git_sync_symlink_swap(e2e: E2E, record: Record) -> None:
    root = e2e.tmp / "sync"
    rev1, rev2 = root / "worktrees" / "rev1", root / "worktrees" / "rev2"
    rev1.mkdir(parents=True)
    e2e.write("a.yaml", e2e.manifest("a"), directory=rev1)
    e2e.write("b.yaml", e2e.manifest("b"), directory=rev1)
    link = root / "link"
    os.symlink("worktrees/rev1", link)
    e2e.start(manifests=link)
    pa, pb = e2e.wait_running("a"), e2e.wait_running("b")
    assert e2e.wait_phase("b", "Running")["source"] == str(link / "b.yaml")

    # rev2: a changed, b the same bytes, c new; published as git-sync does, old tree removed
    shutil.copytree(rev1, rev2)
    subprocess.run(["sed", "-i", "s/sleep 0.1/sleep 0.2/", str(rev2 / "a.yaml")], check=True)
    e2e.write("c.yaml", e2e.manifest("c"), directory=rev2)
    t0 = time.monotonic()
    subprocess.run(["ln", "-s", "worktrees/rev2", "tmp-link"], cwd=root, check=True)
    subprocess.run(["mv", "-T", "tmp-link", "link"], cwd=root, check=True)
    shutil.rmtree(rev1)
    pa2 = e2e.wait_running("a", not_pid=pa, interval=0.01)
    record("link swap -> changed container recreated", time.monotonic() - t0)
    pc = e2e.wait_running("c")
    # through a resync: the removal of rev1 deletes nothing, b is never touched
    hold(lambda: [e2e.running_pid(n) for n in "abc"] == [pa2, pb, pc], RESYNC + SETTLE + 0.5,
         what="a, b, c keep their PIDs")
    assert "Deleted" not in e2e.reasons()
    assert e2e.reasons("b") == ["Created"]
    assert {n: c["source"] for n, c in e2e.get_all().items()} == {
        n: str(link / f"{n}.yaml") for n in "abc"}
    # and the watch follows rev2: an edit there is applied
    subprocess.run(["sed", "-i", "s/sleep 0.1/sleep 0.3/", str(rev2 / "b.yaml")], check=True)
    pb2 = e2e.wait_running("b", not_pid=pb)
    assert "sleep 0.3" in cmdline(pb2)[-1]


@pytest.mark.parametrize("subdir", [False, True], ids=["flat", "in-new-subdir"])
def test_tar_extract_twenty(e2e: E2E, record: Record, subdir: bool) -> None:
    names = [f"m{i:02d}" for i in range(20)]
    src = e2e.tmp / "src"
    (src / "batch").mkdir(parents=True)
    for n in names:
        e2e.write(f"{n}.yaml", e2e.manifest(n), directory=src / "batch" if subdir else src)
    archive = e2e.tmp / "m.tar"
    with tarfile.open(archive, "w") as tar:
        for p in sorted(src.rglob("*.yaml")):
            tar.add(p, arcname=str(p.relative_to(src)))
    e2e.start(resync=SLOW_RESYNC)
    t0 = time.monotonic()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(e2e.manifests)], check=True)

    def all_running() -> list[str] | None:
        missing = [n for n in names if e2e.running_pid(n) is None]
        return None if missing else names
    wait_until(all_running, 30, what="all 20 running", interval=0.02)
    record("tar -x of 20 -> all running", time.monotonic() - t0)
    got = e2e.get_all()
    assert sorted(got) == names
    assert {c["phase"] for c in got.values()} == {"Running"}
    assert e2e.reasons().count("Created") == 20


def test_partial_write_is_never_applied(e2e: E2E) -> None:
    text = e2e.manifest("p", env=[{"name": "STAGE", "value": "full"}], restartPolicy="Never")
    half, rest = text.split("  env:\n")  # the half alone is a valid manifest: no env, Always
    rest = "  env:\n" + rest
    e2e.write("keep.yaml", e2e.manifest("keep"))
    e2e.start()
    e2e.wait_running("keep")
    path = e2e.manifests / "p.yaml"
    with PidSampler(e2e, "p") as sampler:
        with open(path, "w") as f:
            f.write(half)
            f.flush()
            time.sleep(SETTLE * 0.6)  # less than settle: still being written
            assert e2e.runc("p") is None, "created from a half-written file"
            f.write(rest)
        pid = e2e.wait_running("p")
        hold(lambda: e2e.running_pid("p") == pid, SETTLE + 0.5, what="p keeps its PID")
    assert sampler.pids() == [pid], sampler.seen
    assert environ(pid).get("STAGE") == "full"
    assert e2e.reasons("p") == ["Created"]
    c = e2e.wait_phase("p", "Running")
    assert c["specHash"] == c["desiredSpecHash"]


def test_directory_removed_and_recreated(e2e: E2E) -> None:
    texts = {f"{n}.yaml": e2e.manifest(n) for n in ("a", "b")}
    for fname, text in texts.items():
        e2e.write(fname, text)
    resync = 2.5  # longer than it takes to see a new file, short enough to hold through
    e2e.start(resync=resync)
    pids = [e2e.wait_running("a"), e2e.wait_running("b")]

    def same() -> bool:
        return [e2e.running_pid("a"), e2e.running_pid("b")] == pids

    # removed and made again with the same files, as a deploy script might
    shutil.rmtree(e2e.manifests)
    e2e.manifests.mkdir()
    for fname, text in texts.items():
        e2e.write(fname, text)
    hold(same, SETTLE + 0.7, what="a and b keep their PIDs")
    # the new directory is watched: a new file there is picked up before any resync
    t0 = time.monotonic()
    e2e.write("c.yaml", e2e.manifest("c"))
    e2e.wait_running("c", timeout=5)
    assert time.monotonic() - t0 < 1.5
    pids.append(e2e.running_pid("c"))  # type: ignore[arg-type]

    # missing: the source is unavailable, which deletes nothing, through resyncs
    shutil.rmtree(e2e.manifests)
    wait_until(lambda: "SourceUnavailable" in e2e.reasons(), 5, what="SourceUnavailable")
    hold(lambda: [e2e.running_pid(n) for n in "abc"] == pids, resync + SETTLE,
         what="a, b, c keep running")
    assert e2e.status()["daemon"]["source"]["available"] is False
    assert {c["phase"] for c in e2e.get_all().values()} == {"Running"}
    # back with the same files: available again, still nothing touched
    e2e.manifests.mkdir()
    for n in "abc":
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    wait_until(lambda: "SourceAvailable" in e2e.reasons(), 5, what="SourceAvailable")
    hold(lambda: [e2e.running_pid(n) for n in "abc"] == pids, SETTLE + 0.5,
         what="a, b, c keep running")
    assert "Deleted" not in e2e.reasons()
    assert [e2e.reasons(n) for n in "abc"] == [["Created"]] * 3


def test_broken_edit_keeps_last_good_spec(e2e: E2E) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    good = e2e.manifest("a")
    path = e2e.write("a.yaml", good)
    e2e.start()
    pid = e2e.wait_running("a")
    lines = good.splitlines(keepends=True)
    bad_line = next(i for i, line in enumerate(lines) if line.startswith("  rootfs:")) + 1
    lines[bad_line - 1] = lines[bad_line - 1].rstrip("\n") + ": oops\n"  # not YAML
    path.write_text("".join(lines))
    where = f"{path}:{bad_line}"

    def reported() -> str | None:
        out = e2e.cli("describe", "a").stdout
        return out if f"Manifest error: {where}" in out else None
    described = wait_until(reported, 5, what=f"describe a naming {where}")
    assert "Running" in described
    assert any(p.startswith(where) for p in e2e.status()["daemon"]["problems"])
    assert any(where in e["message"] for e in e2e.events() if e["reason"] == "ManifestError")
    # still running on the last good spec, through a resync
    hold(lambda: e2e.running_pid("a") == pid, RESYNC + SETTLE, what="a keeps running")
    assert e2e.get("a")["phase"] == "Running"  # type: ignore[index]

    # fixed (and changed): applied
    path.write_text(good.replace("sleep 0.1", "sleep 0.2"))
    pid2 = e2e.wait_running("a", not_pid=pid)
    assert "sleep 0.2" in cmdline(pid2)[-1]
    wait_until(lambda: not e2e.status()["daemon"]["problems"], 5, what="problems cleared")


@pytest.mark.parametrize("problem", ["broken", "conflict"])
def test_manifest_problem_shows_in_get_and_describe(e2e: E2E, problem: str) -> None:
    e2e.write("keep.yaml", e2e.manifest("keep"))
    path = e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start()
    e2e.wait_running("a")
    if problem == "broken":
        path.write_text(e2e.manifest("a").replace("kind: Container", "kind: Container: oops"))
        expected = [f"{path}:2"]
    else:
        other = e2e.write("b.yaml", e2e.manifest("a", "sleep 100"))
        expected = [str(path), str(other)]
    wait_until(lambda: e2e.status()["daemon"]["problems"], 5, what="a problem reported")
    c = e2e.get("a")
    assert c is not None
    assert all(e in c["message"] for e in expected), c["message"]
    described = e2e.cli("describe", "a").stdout
    assert all(e in described for e in expected), described


def test_name_defined_in_two_files(e2e: E2E) -> None:
    a = e2e.write("a.yaml", e2e.manifest("x"))
    e2e.start()
    pid = e2e.wait_running("x")
    b = e2e.write("b.yaml", e2e.manifest("x", "trap 'exit 0' TERM; while true; do sleep 0.2; done"))
    wait_until(lambda: e2e.status()["daemon"]["conflicts"].get("x"), 5, what="a conflict on x")
    assert e2e.status()["daemon"]["conflicts"]["x"] == [str(a), str(b)]
    problems = e2e.status()["daemon"]["problems"]
    assert any(str(a) in p and str(b) in p for p in problems), problems
    # neither definition applied: the running container is kept as it is, through a resync
    hold(lambda: e2e.running_pid("x") == pid, RESYNC + SETTLE, what="x keeps running")
    assert "sleep 0.1" in cmdline(pid)[-1]
    assert e2e.reasons("x") == ["Created"]
    # the duplicate removed: a.yaml's definition, the one running, stays as it is
    b.unlink()
    wait_until(lambda: not e2e.status()["daemon"]["conflicts"], 5, what="conflict resolved")
    hold(lambda: e2e.running_pid("x") == pid, SETTLE + 0.5, what="x keeps running")
    assert e2e.reasons("x") == ["Created"]


@pytest.mark.parametrize("allow_empty", [False, True], ids=["refused", "allow-empty"])
def test_directory_emptied(e2e: E2E, allow_empty: bool) -> None:
    for n in ("a", "b"):
        e2e.write(f"{n}.yaml", e2e.manifest(n))
    e2e.start(*(["--allow-empty"] if allow_empty else []))
    pids = [e2e.wait_running("a"), e2e.wait_running("b")]
    for p in list(e2e.manifests.iterdir()):
        p.unlink()
    if allow_empty:
        for n in ("a", "b"):
            e2e.wait_gone(n)
        assert all(not pid_alive(p) for p in pids)
        wait_until(lambda: not e2e.get_all(), 5, what="get lists nothing")
        return
    hold(lambda: [e2e.running_pid("a"), e2e.running_pid("b")] == pids, RESYNC + SETTLE,
         what="a and b kept")
    notes = e2e.status()["daemon"]["notes"]
    assert any("refusing to delete all 2 containers" in n for n in notes), notes
    assert "Deleted" not in e2e.reasons()


def test_diff_shows_old_and_new(e2e: E2E) -> None:
    """What the daemon would do, with the value in force beside the new one (the daemon
    stopped, so nothing converges meanwhile); -o diff as a unified diff."""
    path = e2e.write("a.yaml", e2e.manifest("a"))
    daemon = e2e.start()
    e2e.wait_running("a")
    daemon.stop()
    path.write_text(path.read_text().replace("sleep 0.1", "sleep 0.2"))
    done = e2e.cli("diff", "--manifests", str(e2e.manifests), check=False)
    assert done.returncode == 1
    (line,) = [x for x in done.stdout.splitlines() if "spec.command" in x]
    assert "sleep 0.1" in line and "\u2192" in line and "sleep 0.2" in line.split("\u2192")[1]
    unified = e2e.cli("diff", "--manifests", str(e2e.manifests), "-o", "diff",
                      check=False).stdout
    assert "--- a/a (running)" in unified and "+++ b/a (manifests)" in unified
    assert any(x.startswith("-") and "sleep 0.1" in x for x in unified.splitlines())
    assert any(x.startswith("+") and "sleep 0.2" in x for x in unified.splitlines())
