#!/usr/bin/env python3
"""Figure 10: what ``hostUsers: false`` costs: create, recreate and delete, both ways.

One daemon (``--policy privileged --networks off``, subuid/subgid files of the run's own,
user ``reconciler``, 100 ranges from uid 2,000,000,000; never the host's /etc/subuid)
and one manifest at a time, with ``hostUsers: false`` (userns) or without (plain):

1. the manifest dropped (a rename from a staging dir) -> its container running;
2. the manifest changed (an env value: a recreate) -> the new instance running;
3. the manifest removed -> gone: no runc container, no depot, no mount of the instance
   (its overlay; for userns also its idmapped lower and its bind under
   /run/reconciler/userns), checked the same way both ways; the settle window is in it.

"Running" is runc's own rule read from its files, as bench/run.py decides it (state.json,
exec.fifo, /proc/PID/stat, polled every 2 ms), cross-checked with ``runc state``
afterwards, untimed. The floors are bare runc with ``runc spec``'s config (plain, no
user namespace), timed in the same rounds: ``runc run -d``; a stop (``runc kill`` TERM,
the exit awaited, ``runc delete``) then ``runc run -d``; the stop alone. Each round runs
the floors, then both ways, the way that goes first alternating, so load from elsewhere
hits both alike. Untimed, every userns container's init is checked from the host
(/proc/PID/status and uid_map: uids of the range, never 0), every plain one's is root,
each recreate's old mounts and each delete's range are looked for, and what is left at
the end. Clean-up runs in a ``finally``, also on Ctrl-C (130) or SIGTERM.

    .venv/bin/python bench/userns.py --rootfs .state/rootfs/busybox [--trials 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402 - bench/run.py: the sandbox, daemon and runc helpers

from reconciler.daemon import userns as ranges  # noqa: E402
from reconciler.runtime import idmap  # noqa: E402

USER = "reconciler"
FIRST = 2_000_000_000  # far above any real user on this host
SLOTS = 100
WAYS = ("plain", "userns")
TIMEOUT = 15.0
# The daemon's debug stage lines (docs/daemon.md, "Timing a change"): where each one goes.
RECREATE_STAGES = (("plan", "seen + plan"), ("action", "to a worker"),
                   ("deleted", "stop + runc delete + teardown"),
                   ("conmon", "spec, overlay, config.json"),
                   ("created", "conmon + runc create"), ("started", "runc start"))
DELETE_STAGES = (("action", "settle + plan + to a worker"),
                 ("deleted", "stop + runc delete + teardown"))


class UsernsDaemon(bench.Daemon):
    """The benchmark's daemon with the figure's flags and the run's own id files."""

    def argv(self) -> list[str]:
        ids = self.box.base / "ids"
        return [*super().argv(), "--policy", "privileged", "--networks", "off",
                "--userns-user", USER, "--subuid-file", str(ids / "subuid"),
                "--subgid-file", str(ids / "subgid")]


def write_ids(box: bench.Sandbox) -> None:
    ids = box.base / "ids"
    ids.mkdir()
    for kind in ("uid", "gid"):
        (ids / f"sub{kind}").write_text(f"{USER}:{FIRST}:{ranges.SIZE * SLOTS}\n")


def manifest(box: bench.Sandbox, name: str, way: str, *, rev: int) -> str:
    text = bench.manifest(name, box.rootfs, rev=rev)
    return text + ("  hostUsers: false\n" if way == "userns" else "")


# -- the host, read directly ---------------------------------------------------------------


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [bench.unescape(line.split()[4]) for line in f]


def mounts_of(box: bench.Sandbox, instance: str) -> list[str]:
    """An instance's mounts: its depot's (overlay, idmapped lower) and its /run bind."""
    depot = f"{box.state}/containers/{instance}/"
    visible = str(idmap.visible_root(box.state, instance))
    return [m for m in mount_points() if m.startswith(depot) or m == visible]


def gone(box: bench.Sandbox, name: str, instance: str) -> bool:
    """No runc container, no depot of ``name``, no mount of ``instance`` (its overlay, its
    idmapped lower, its /run/reconciler/userns bind) and no bind directory: the same
    checks both ways, mountinfo read only once the cheap ones pass."""
    return not ((box.runc_root / instance).exists()
                or any((box.state / "containers").glob(f"{name}.*"))
                or idmap.visible_root(box.state, instance).exists()
                or mounts_of(box, instance))


def ids_of(pid: int) -> tuple[list[int], str]:
    """The init's real, effective, saved and fs uids and its uid_map, from the host."""
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    return [int(u) for u in uids], " ".join(Path(f"/proc/{pid}/uid_map").read_text().split())


def trapping(pid: int) -> None:
    """Until the command's shell has a child: its TERM trap is set by then (a SIGTERM
    before it would be ignored by a PID 1 and cost the whole grace period). Untimed."""
    bench.wait_for(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().strip(),
                   timeout=TIMEOUT, what=f"pid {pid}'s sleep")


def slots(box: bench.Sandbox) -> dict[str, int]:
    try:
        held: dict[str, int] = json.loads((box.state / "userns.json").read_text())["slots"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}
    return held


def settled(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """True once ``check`` holds, False if it still fails after ``seconds`` (untimed)."""
    with contextlib.suppress(TimeoutError):
        return bool(bench.wait_for(check, timeout=seconds, every=0.02, what=""))
    return False


# -- the daemon's trials -------------------------------------------------------------------


@dataclass
class Way:
    drop: list[float] = field(default_factory=list)
    recreate: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)
    spans: dict[str, list[tuple[str, float, float]]] = field(
        default_factory=lambda: {"drop": [], "recreate": [], "delete": []})


@dataclass
class Checks:
    """What was seen from the host, untimed."""
    seen: dict[str, list[tuple[int, list[int], str]]] = field(
        default_factory=lambda: {w: [] for w in WAYS})  # pid, uids, uid_map per instance
    wrong_ids: list[str] = field(default_factory=list)
    mismatches: int = 0  # runc state disagreed with the state-file poll
    leaks: list[str] = field(default_factory=list)


def wait_running(box: bench.Sandbox, daemon: bench.Daemon, instance: str, t0: float) -> int:
    state = box.runc_root / instance
    while (pid := bench.pid_if_running(state)) is None:
        if time.perf_counter() - t0 > TIMEOUT:
            daemon.check()
            raise TimeoutError(f"{instance} not running {TIMEOUT:g} s after its manifest")
        time.sleep(bench.POLL)
    return pid


def check_running(box: bench.Sandbox, instance: str, pid: int, way: str,
                  checks: Checks) -> None:
    """``runc state`` agrees, and the init's ids are what ``way`` promises (untimed)."""
    done = subprocess.run(["runc", f"--root={box.runc_root}", "state", instance],
                          capture_output=True, check=False)
    state = json.loads(done.stdout) if done.returncode == 0 else {}
    if state.get("status") != "running" or state.get("pid") != pid:
        checks.mismatches += 1
    trapping(pid)
    uids, uid_map = ids_of(pid)
    checks.seen[way].append((pid, uids, uid_map))
    top = FIRST + ranges.SIZE * SLOTS
    if way == "userns":
        ok = (all(FIRST <= u < top for u in uids) and uid_map.split()[:2] == ["0", str(uids[0])]
              and str(idmap.visible_root(box.state, instance)) in mount_points())
    else:
        ok = uids == [0, 0, 0, 0]
    if not ok:
        checks.wrong_ids.append(f"{instance} ({way}): uids {uids}, uid_map {uid_map}")


def change(box: bench.Sandbox, daemon: bench.Daemon, name: str, way: str, *, rev: int,
           instance: str, checks: Checks) -> tuple[float, float]:
    """Write the manifest (rev 0: a drop; 1: a recreate) by a rename; the wall time of the
    rename and the seconds until ``instance`` runs."""
    staged = box.staging / f"{name}.yaml"
    staged.write_text(manifest(box, name, way, rev=rev))
    wall = time.time()
    t0 = time.perf_counter()
    os.replace(staged, box.manifests / f"{name}.yaml")
    pid = wait_running(box, daemon, instance, t0)
    seconds = time.perf_counter() - t0
    check_running(box, instance, pid, way, checks)
    return wall, seconds


def remove(box: bench.Sandbox, daemon: bench.Daemon, name: str, *,
           instance: str) -> tuple[float, float]:
    wall = time.time()
    t0 = time.perf_counter()
    os.unlink(box.manifests / f"{name}.yaml")
    while not gone(box, name, instance):
        if time.perf_counter() - t0 > TIMEOUT:
            daemon.check()
            raise TimeoutError(f"{name} not gone {TIMEOUT:g} s after its manifest was removed")
        time.sleep(bench.POLL)
    return wall, time.perf_counter() - t0


def lifecycle(box: bench.Sandbox, daemon: bench.Daemon, name: str, way: str, into: Way,
              checks: Checks, *, on_running: Callable[[Path], None] | None = None) -> None:
    """Drop, recreate, delete one object, each timed; leaks looked for after each, untimed.
    ``on_running`` gets the first instance's depot while it runs."""
    wall, s = change(box, daemon, name, way, rev=0, instance=f"{name}.1", checks=checks)
    into.drop.append(s)
    into.spans["drop"].append((name, wall, wall + s))
    if on_running is not None:
        on_running(box.state / "containers" / f"{name}.1")
    wall, s = change(box, daemon, name, way, rev=1, instance=f"{name}.2", checks=checks)
    into.recreate.append(s)
    into.spans["recreate"].append((name, wall, wall + s))
    if not settled(lambda: not mounts_of(box, f"{name}.1")):
        checks.leaks.append(f"{name}.1 recreated away, mounts left: {mounts_of(box, f'{name}.1')}")
    wall, s = remove(box, daemon, name, instance=f"{name}.2")
    into.delete.append(s)
    into.spans["delete"].append((name, wall, wall + s))
    if way == "userns" and not settled(lambda: f"Container/{name}" not in slots(box)):
        checks.leaks.append(f"{name} deleted, its range still held: {slots(box)}")


# -- the floors ----------------------------------------------------------------------------


@dataclass
class Floor:
    run: list[float] = field(default_factory=list)
    run_cfg: list[float] = field(default_factory=list)  # the daemon's plain config.json
    recreate: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)


def bare_stop(bare: bench.Bare, name: str) -> None:
    """What the daemon does to stop one, by hand: ``runc kill`` TERM (the command traps it
    and exits), the death awaited on a pidfd, ``runc delete``. Not ``runc delete -f``:
    runc 1.1 sleeps 100 ms after its SIGKILL before it looks again."""
    pid = bench.running_pid(bare.box.bare_root, name)
    if pid is None:
        raise RuntimeError(f"bare {name} is not running")
    fd = os.pidfd_open(pid)
    try:
        bare.runc("kill", name, "TERM")
        if not select.select([fd], [], [], TIMEOUT)[0]:
            raise TimeoutError(f"bare {name}: no exit {TIMEOUT:g} s after SIGTERM")
    finally:
        os.close(fd)
    bare.runc("delete", name)
    if (bare.box.bare_root / name).exists():
        raise RuntimeError(f"runc delete {name} returned but it is still there")


def floor_round(bare: bench.Bare, i: int, floor: Floor, config: dict[str, Any]) -> None:
    a, b = f"bare-{i:02d}", f"bare-{i:02d}-2"
    floor.run.append(bare.timed_run(a))
    second = bare.bundle(b)  # written untimed, as the first one's
    trapping(bench.running_pid(bare.box.bare_root, a) or 0)
    t0 = time.perf_counter()
    bare_stop(bare, a)
    bare.run(b, second)
    floor.recreate.append(time.perf_counter() - t0)
    pid = bench.running_pid(bare.box.bare_root, b)
    if pid is None:
        raise RuntimeError(f"runc run -d {b} returned but it is not running")
    trapping(pid)
    t0 = time.perf_counter()
    bare_stop(bare, b)
    floor.delete.append(time.perf_counter() - t0)
    floor.run_cfg.append(bare.timed_run(f"cfg-{i:02d}", template=config))
    bare.delete(f"cfg-{i:02d}")


# -- the run -------------------------------------------------------------------------------


@dataclass
class Result:
    trials: int
    cold: dict[str, Way]
    ways: dict[str, Way]
    floor: Floor
    checks: Checks
    records: list[dict[str, Any]]
    leftovers: list[str]


def measure(box: bench.Sandbox, daemon: bench.Daemon, trials: int) -> Result:
    write_ids(box)
    daemon.start()
    bench.wait_ready(box, daemon, since=0)
    checks = Checks()
    cold = {way: Way() for way in WAYS}
    config: dict[str, Any] = {}

    def keep_config(depot: Path) -> None:  # the plain config.json, for a floor beside it
        config.update(json.loads((depot / "bundle" / "config.json").read_text()))

    for way in WAYS:  # one cold lifecycle each, uncounted (imports, caches, first mounts)
        lifecycle(box, daemon, f"cold-{way}", way, cold[way], checks,
                  on_running=keep_config if way == "plain" else None)
    bare = bench.Bare(box)
    bare.timed_run("bare-cold")
    bare.delete("bare-cold")
    ways = {way: Way() for way in WAYS}
    floor = Floor()
    for i in range(trials):
        floor_round(bare, i, floor, config)
        order = WAYS if i % 2 == 0 else WAYS[::-1]
        for way in order:
            lifecycle(box, daemon, f"{way[0]}{i:02d}", way, ways[way], checks)
    daemon.check()
    visible = idmap.visible_root(box.state, "x").parent
    left = [f"{visible} still exists"] if visible.exists() else []
    left += [f"mount {m}" for m in mount_points() if m.startswith(f"{box.state}/")]
    left += [f"range held: {k}" for k in slots(box)]
    return Result(trials, cold, ways, floor, checks, daemon.log_records(), left)


def med(values: Sequence[float]) -> str:
    return f"{p50(values) * 1000:6.1f} ms (p90 {bench.pct(values, 0.9) * 1000:5.1f})"


def cell(values: Sequence[float]) -> str:
    return " ".join(med(values).split())


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def plus(a: float, b: float) -> str:
    return f"{(a - b) * 1000:+.1f} ms"


def stages(records: Sequence[dict[str, Any]], spans: Sequence[tuple[str, float, float]],
           names: Sequence[tuple[str, str]], end: str) -> str:
    """bench.split_stages, the last gap named ``end``."""
    gaps = bench.stage_gaps(records, spans, names)
    parts = [f"{label} {p50(gaps[s]) * 1000:.1f}"
             for s, label in [*names, ("running", end)] if gaps[s]]
    return "; ".join(parts) + " (ms, medians)" if parts else "(no stage lines in the log)"


Row = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Figure:
    title: str
    key: str  # Way.spans' key
    floor: str
    stages: tuple[tuple[str, str], ...]
    end: str


FIGURES = (
    Figure("1. drop -> running", "drop", "bare runc run -d", bench.DROP_STAGES,
           "-> running seen"),
    Figure("2. recreate -> new instance running", "recreate",
           "bare stop + runc delete + runc run -d", RECREATE_STAGES, "-> running seen"),
    Figure("3. delete -> gone", "delete", "bare stop + runc delete", DELETE_STAGES,
           "-> gone seen"),
)


def report(r: Result) -> list[Row]:
    """The figure's lines; the summary table's rows."""
    settle = bench.SETTLE
    floors = {"drop": r.floor.run, "recreate": r.floor.recreate, "delete": r.floor.delete}
    rows: list[Row] = []
    for fig in FIGURES:
        p, u = (getattr(r.ways[way], fig.key) for way in WAYS)
        f = floors[fig.key]
        ratio = p50(u) / p50(p)
        bench.out(f"  {fig.title}")
        bench.out(f"     plain  (no hostUsers)       {med(p)}   floor {plus(p50(p), p50(f))}")
        bench.out(f"     userns (hostUsers: false)   {med(u)}   floor {plus(p50(u), p50(f))}"
                  f"   userns/plain {ratio:.2f}x ({plus(p50(u), p50(p))})")
        bench.out(f"     floor                       {med(f)}   {fig.floor}")
        if fig.key == "drop":
            bench.out(f"     floor, same config          {med(r.floor.run_cfg)}   bare runc run -d"
                      " of the config.json the daemon wrote (plain)")
        net = ""
        if fig.key == "delete":
            beyond = (p50(u) - settle) / (p50(p) - settle)
            net = f"; {beyond:.2f}x beyond the {settle:g} s settle"
            bench.out(f"     both wait the settle window ({settle:g} s: a removed file counts"
                      f" once it stayed away that long); beyond it, userns/plain {beyond:.2f}x")
        for way in WAYS:
            spans = r.ways[way].spans[fig.key]
            bench.out(f"     where {way} goes: {stages(r.records, spans, fig.stages, fig.end)}")
        rows.append((f"10.{fig.title.replace('. ', ' ', 1)}", cell(p), cell(u),
                     f"{ratio:.2f}x{net}", f"{cell(f)} {fig.floor}"))
    cold = ", ".join(f"{way} " + " / ".join(f"{getattr(r.cold[way], k)[0] * 1000:.1f}"
                                           for k in ("drop", "recreate", "delete")) + " ms"
                     for way in WAYS)
    bench.out(f"  cold, uncounted (drop / recreate / delete): {cold}")
    return rows


def report_checks(r: Result) -> None:
    c = r.checks
    pid, uids, uid_map = c.seen["userns"][-1]
    n_user, n_plain = len(c.seen["userns"]), len(c.seen["plain"])
    firsts = sorted({u[0] for _, u, _ in c.seen["userns"]})
    bench.out(f"  sanity (untimed, from the host): a userns init (pid {pid}) has uids {uids}"
              f" (Uid: real, effective, saved, fs), uid_map '{uid_map}': >= {FIRST}, the"
              " range start")
    bench.out(f"     {n_user - sum('(userns)' in w for w in c.wrong_ids)} of {n_user} userns"
              f" instances had a host uid of the range and their /run/reconciler/userns bind"
              f" (first uids seen: {', '.join(map(str, firsts))});"
              f" {n_plain - sum('(plain)' in w for w in c.wrong_ids)} of {n_plain} plain ones"
              " ran as host root")
    for wrong in c.wrong_ids[:5]:
        bench.out(f"     WRONG: {wrong}")
    bench.out(f"     runc state disagreed with the state-file poll: {c.mismatches} time(s)")
    leaks = c.leaks + r.leftovers
    bench.out("     leaks after recreate and delete (mounts, /run binds, ranges): "
              + ("none" if not leaks else f"{len(leaks)}"))
    for leak in leaks[:10]:
        bench.out(f"     LEAK: {leak}")
    loud = [rec for rec in r.records if rec.get("level") in ("warning", "error", "critical")]
    bench.out(f"     the daemon's log: {len(loud)} warning(s) or error(s)")
    for rec in loud[:5]:
        bench.out(f"     {rec.get('level')}: {rec.get('message')}")


def summary(rows: Sequence[Row]) -> None:
    bench.out("| figure | plain | userns | userns/plain (p50) | floor |")
    bench.out("|---|---|---|---|---|")
    for row in rows:
        bench.out("| " + " | ".join(row) + " |")


def cleanup(box: bench.Sandbox, daemon: bench.Daemon) -> None:
    """bench.cleanup, and first what it cannot see: the binds under /run/reconciler/userns
    of this state dir (unmounted once the daemon and the containers are gone)."""
    with contextlib.suppress(Exception):
        daemon.stop()
    for root in (box.runc_root, box.bare_root):
        with contextlib.suppress(Exception):
            listed = subprocess.run(["runc", f"--root={root}", "list", "-q"], check=False,
                                    capture_output=True, text=True, timeout=30).stdout
            for cid in listed.split():
                subprocess.run(["runc", f"--root={root}", "delete", "-f", cid], check=False,
                               capture_output=True, timeout=30)
    visible = idmap.visible_root(box.state, "x").parent
    with contextlib.suppress(OSError):
        for mnt in sorted(mount_points(), key=len, reverse=True):
            if mnt.startswith(f"{visible}/"):
                subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    if visible.is_dir():
        for d in visible.iterdir():
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            visible.rmdir()
    bench.cleanup(box, [daemon])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, default=Path(".state/rootfs/busybox"),
                        help="a busybox root filesystem (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()
    rootfs = args.rootfs.resolve()
    if not (rootfs / "bin" / "sleep").exists():
        parser.error(f"{rootfs} has no /bin/sleep; build it with `make rootfs`")
    if os.geteuid() != 0:
        parser.error("needs root (runc, idmapped and overlay mounts, cgroups)")
    box = bench.Sandbox(Path(tempfile.mkdtemp(prefix="reconciler-usernsbench-")), rootfs)
    daemon = UsernsDaemon(box, concurrency=bench.DEFAULT_CONCURRENCY, label="userns")
    started = time.perf_counter()
    bench.out(f"# 10. hostUsers: false: a user namespace's cost, {args.trials} rounds"
              " (median, p90), the two ways alternating who goes first")
    bench.out(f"  {os.cpu_count()} CPUs; {bench.runc_version()}; kernel {os.uname().release};"
              f" tree {bench.revision()}; load average before {bench.loadavg()}")
    bench.out(f"  daemon: --policy privileged --networks off --settle {bench.SETTLE:g};"
              f" ranges of {ranges.SIZE} ids from {FIRST} (the run's own subuid/subgid);"
              f" temp dir {box.base}")
    bench.out("  'running' = runc's own rule read from R/<id>/state.json, exec.fifo and"
              f" /proc/<pid>/stat, polled every {bench.POLL * 1000:g} ms; floors: bare runc,"
              " runc spec's config, no user namespace")
    try:
        with bench.interrupts_as_keyboard():
            result = measure(box, daemon, args.trials)
            bench.out(f"  load average after {bench.loadavg()}")
            rows = report(result)
            report_checks(result)
    except KeyboardInterrupt:
        bench.out("\ninterrupted; cleaning up")
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # clean-up is not to be cut short
            signal.signal(signum, signal.SIG_IGN)
        cleanup(box, daemon)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    bench.out(f"  total {time.perf_counter() - started:.0f} s")
    bench.out()
    summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
