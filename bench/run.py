"""The reconciler's latency and footprint, each figure printed beside its floor.

    make bench    (= .venv/bin/python bench/run.py --rootfs .state/rootfs/busybox)

One run, one root filesystem, everything private: a temp dir holding the manifests
directory, a staging dir beside it (same filesystem, so a drop is one rename), the daemon's
state dir and runc root, a second runc root for the bare-runc floors, and a cgroup parent
``/reconciler-bench/<tag>``. The figures (see bench/README.md):

1. one manifest dropped -> its container running, against a bare ``runc run -d``;
2. N manifests dropped at once -> all running, against N sequential ``runc run -d``;
3. ``runc kill NAME KILL`` -> the first restart running, against podman's measured 102 ms
   and a bare ``runc delete`` + ``runc run -d``;
4. the daemon restarted under N running containers -> converged, and restarts it caused;
5. the daemon's idle CPU and RSS with N containers, and conmon's RSS per container.

Each floor is measured beside its figure, trial by trial where there are trials (bare,
then the daemon, in turn), so that load from other work on the machine hits both alike.

"Running" is decided the way ``runc state`` decides it, from runc's own files, so the
benchmark can poll every 2 ms without spawning anything: ``<root>/<name>/state.json``
(runc writes it to a temp file and renames it, so a read never sees half of it) names the
init PID and its start time; the container runs when that PID is alive with that start
time and ``exec.fifo`` is gone (``runc start`` removes it once init was let go). Every
single-drop trial is checked against ``runc state`` afterwards, untimed.

Targets are printed with PASS/MISS; the benchmark always exits 0 unless it crashes.
Clean-up (daemon, containers, monitors, mounts, cgroups, the temp dir) runs in a
``finally``, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# sh traps SIGTERM so that a deletion is quick: the daemon stops a container whose manifest
# is gone with SIGTERM and a 10 s grace, whatever its manifest said (see bench/README.md).
COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
PODMAN_RESTART_MS = 102.0  # /work/shared/notes/runtime-facts.md, "Peers timed on this machine"
DEFAULT_CONCURRENCY = 4  # reconciler run --concurrency default (reconciler/cli/daemon.py)
SETTLE = 0.2  # only delays deletions (untimed) and half-written files; drops are renames
BACKOFF_RESET = 0.5  # every crash after a 0.6 s run is a first crash (see crash_trials)
POLL = 0.002
BULK_POLL = 0.005
CLK_TCK = os.sysconf("SC_CLK_TCK")


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- numbers -------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (with 30 samples, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- the sandbox and its clean-up ----------------------------------------------------------


@dataclass
class Sandbox:
    base: Path
    rootfs: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def __post_init__(self) -> None:
        self.manifests = self.base / "manifests"
        self.staging = self.base / "staging"
        self.state = self.base / "state"
        self.runc_root = self.base / "runc"
        self.bare_root = self.base / "runc-bare"
        self.bundles = self.base / "bundles"
        self.logs = self.base / "logs"
        self.cgroup_parent = f"/reconciler-bench/{self.tag}"
        for d in (self.manifests, self.staging, self.state, self.runc_root, self.bare_root,
                  self.bundles, self.logs):
            d.mkdir(parents=True)

    @property
    def status_path(self) -> Path:
        return self.state / "status.json"


def cleanup(box: Sandbox, daemons: Sequence[Daemon]) -> None:
    """Leave nothing behind; each step goes on when an earlier one failed."""
    for daemon in daemons:
        with contextlib.suppress(Exception):
            daemon.stop()
    for root in (box.runc_root, box.bare_root):
        with contextlib.suppress(Exception):
            listed = subprocess.run(["runc", f"--root={root}", "list", "-q"], check=False,
                                    capture_output=True, text=True, timeout=30).stdout
            for cid in listed.split():
                subprocess.run(["runc", f"--root={root}", "delete", "-f", cid], check=False,
                               capture_output=True, timeout=30)
    for pid in processes_mentioning(str(box.base), comm="conmon"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        mounts = [unescape(line.split()[4]) for line in f]
    for mnt in sorted(mounts, key=len, reverse=True):
        if mnt.startswith(f"{box.base}/"):
            subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    remove_cgroups(box.cgroup_parent)
    shutil.rmtree(box.base, ignore_errors=True)


def unescape(field_: str) -> str:
    return field_.encode().decode("unicode_escape") if "\\" in field_ else field_


def remove_cgroups(parent: str) -> None:
    """rmdir the parent, deepest first, in every controller (and its empty grandparent)."""
    root = Path("/sys/fs/cgroup")
    rel = parent.strip("/")
    for controller in sorted(p for p in root.iterdir() if p.is_dir()):
        top = controller / rel
        if top.is_dir():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        with contextlib.suppress(OSError):
            os.rmdir(top.parent)  # /reconciler-bench, if no other run uses it


def processes_mentioning(text: str, *, comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so the ``finally`` clean-up runs for both."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- runc, read from its files ------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None for a dead or zombie process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def instance(root: Path, name: str) -> str:
    """The runc id of ``name``: the daemon's first instance ``name.1`` (the benchmark never
    changes a spec, so no other generation is made; a restart keeps the id), or a bare runc
    container's own name. Two stats, no directory listing: this runs in the 2 ms polls."""
    first = f"{name}.1"
    if not (root / first).exists() and (root / name).exists():
        return name
    return first


def running_pid(root: Path, name: str) -> int | None:
    """The init PID if runc would call the container running now (as ``runc state`` does)."""
    d = root / instance(root, name)
    if os.path.exists(d / "exec.fifo"):
        return None  # created, not started (or no container at all: see state.json)
    try:
        with open(d / "state.json", "rb") as f:
            state = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    pid = state.get("init_process_pid") or 0
    if pid <= 0 or start_time(pid) != state.get("init_process_start"):
        return None
    if os.path.exists(d / "exec.fifo"):
        return None  # a new container made between the two looks
    return int(pid)


def runc_state(root: Path, name: str) -> dict[str, Any] | None:
    done = subprocess.run(["runc", f"--root={root}", "state", instance(root, name)],
                          capture_output=True,
                          check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def wait_for(check: Callable[[], Any], *, timeout: float, every: float = POLL,
             what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


# -- bare runc: the floors -----------------------------------------------------------------


class Bare:
    """Containers made with plain ``runc run -d`` from ``runc spec``'s config."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        template = box.bundles / "template"
        template.mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(template)], check=True)
        self.template = json.loads((template / "config.json").read_text())

    def bundle(self, name: str, *, template: dict[str, Any] | None = None) -> Path:
        """A bundle of ``runc spec``'s config (or ``template``) for the benchmark's command."""
        config = json.loads(json.dumps(template or self.template))
        config["process"]["terminal"] = False
        config["process"]["args"] = COMMAND
        config["root"] = {"path": str(self.box.rootfs), "readonly": True}
        config["hostname"] = name
        config["linux"]["cgroupsPath"] = f"{self.box.cgroup_parent}/{name}"
        bundle = self.box.bundles / name
        bundle.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def run(self, name: str, bundle: Path) -> None:
        done = subprocess.run(
            ["runc", f"--root={self.box.bare_root}", "run", "-d", "-b", str(bundle), name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False)
        if done.returncode != 0:
            raise RuntimeError(f"runc run -d {name} failed (exit {done.returncode})")

    def runc(self, *args: str) -> None:
        subprocess.run(["runc", f"--root={self.box.bare_root}", *args], check=False,
                       capture_output=True)

    def timed_run(self, name: str, *, template: dict[str, Any] | None = None) -> float:
        bundle = self.bundle(name, template=template)
        t0 = time.perf_counter()
        self.run(name, bundle)
        elapsed = time.perf_counter() - t0
        if running_pid(self.box.bare_root, name) is None:
            raise RuntimeError(f"runc run -d {name} returned but it is not running")
        return elapsed

    def delete(self, name: str) -> None:
        self.runc("delete", "-f", name)


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    def __init__(self, box: Sandbox, *, concurrency: int, label: str) -> None:
        self.box = box
        self.concurrency = concurrency
        self.log = box.logs / f"daemon-{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        b = self.box
        return [sys.executable, "-m", "reconciler", "run", "--manifests", str(b.manifests),
                "--state-dir", str(b.state), "--runc-root", str(b.runc_root),
                "--cgroup-parent", b.cgroup_parent, "--settle", str(SETTLE),
                "--concurrency", str(self.concurrency),
                "--backoff-reset", str(BACKOFF_RESET), "--log-format", "json",
                "--allow-empty"]  # trials empty the directory; that is not a mistake here

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=REPO, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> float:
        """SIGTERM, a bounded wait, SIGKILL; the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.perf_counter() - t0

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"the daemon exited; see {self.log}:\n{tail(self.log)}")

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_records(self, *, since: int = 0) -> list[dict[str, Any]]:
        """The JSON log lines from byte offset ``since`` on."""
        records = []
        with contextlib.suppress(FileNotFoundError), open(self.log, "rb") as f:
            f.seek(since)
            for line in f:
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def read_status(box: Sandbox) -> dict[str, Any] | None:
    try:
        with open(box.status_path, "rb") as f:
            data: dict[str, Any] = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return data


def passed_since(box: Sandbox, wall: float) -> dict[str, Any] | None:
    """status.json if a daemon wrote it after a pass that ran at or after ``wall`` (so this
    daemon's, not its predecessor's: inode numbers are reused, times are not)."""
    status = read_status(box)
    if status is None or (status.get("daemon", {}).get("lastPassAt") or 0.0) < wall:
        return None
    return status


def wait_ready(box: Sandbox, daemon: Daemon, *, since: float) -> None:
    """Until the daemon (this one, not its predecessor) wrote status after a first pass."""

    def ready() -> bool:
        daemon.check()
        return passed_since(box, since) is not None

    wait_for(ready, timeout=30, every=0.01, what="the daemon's first pass")


def events(box: Sandbox) -> list[dict[str, Any]]:
    records = []
    with contextlib.suppress(FileNotFoundError), open(box.state / "events.jsonl") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


# -- manifests -----------------------------------------------------------------------------


def manifest(name: str, rootfs: Path, *, rev: int = 0) -> str:
    args = ", ".join(json.dumps(a) for a in COMMAND)
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}\n"
            f"spec:\n  rootfs: {rootfs}\n  command: [{args}]\n  restartPolicy: Always\n"
            f"  terminationGracePeriodSeconds: 2\n"
            f"  env:\n    - name: BENCH_REV\n      value: \"{rev}\"\n")


def stage(box: Sandbox, name: str, *, rev: int = 0) -> Path:
    path = box.staging / f"{name}.yaml"
    path.write_text(manifest(name, box.rootfs, rev=rev))
    return path


def gone(box: Sandbox, name: str) -> bool:
    return (not (box.runc_root / instance(box.runc_root, name)).exists()
            and not any((box.state / "containers").glob(f"{name}.*"))
            and not (box.state / "containers" / name).exists())


def drop_out(box: Sandbox, daemon: Daemon, names: Sequence[str], *, timeout: float) -> float:
    """Delete the manifests and wait until every container and depot is gone (untimed)."""
    t0 = time.perf_counter()
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(box.manifests / f"{name}.yaml")

    def all_gone() -> bool:
        daemon.check()
        return all(gone(box, n) for n in names)

    wait_for(all_gone, timeout=timeout, every=0.02, what=f"{len(names)} deletions")
    return time.perf_counter() - t0


# -- 1. one drop -> running ----------------------------------------------------------------


@dataclass
class DropTrial:
    name: str
    wall: float  # time.time() at the rename, to match the daemon's log
    seconds: float
    pid: int


def drop_one(box: Sandbox, daemon: Daemon, name: str) -> DropTrial:
    staged = stage(box, name)
    wall = time.time()
    t0 = time.perf_counter()
    os.rename(staged, box.manifests / f"{name}.yaml")
    deadline = t0 + 15
    while (pid := running_pid(box.runc_root, name)) is None:
        if time.perf_counter() > deadline:
            daemon.check()
            raise TimeoutError(f"{name} not running 15 s after its manifest was dropped")
        time.sleep(POLL)
    return DropTrial(name, wall, time.perf_counter() - t0, pid)


@dataclass
class Singles:
    cold: float  # the daemon's first drop (imports, caches)
    trials: list[DropTrial]
    bare_cold: float
    bare: list[float]  # runc run -d, runc spec's config
    bare_cfg: list[float]  # runc run -d, the config.json the daemon wrote
    mismatches: int  # trials where `runc state` disagreed with the state-file poll
    daemon_config: dict[str, Any] | None = None  # for the same-work bulk floor


def single_trials(box: Sandbox, daemon: Daemon, bare: Bare, trials: int) -> Singles:
    """A cold drop each, then ``trials`` rounds of: bare run, bare run of the daemon's
    config, daemon drop; interleaved so that load from elsewhere hits all three alike.
    Every container is removed (untimed) before the next is made."""
    cold = drop_one(box, daemon, "warmup")
    daemon_config = json.loads(
        (box.state / "containers" / "warmup.1" / "bundle" / "config.json").read_text())
    drop_out(box, daemon, ["warmup"], timeout=30)
    bare_cold = bare.timed_run("bare-warmup")
    bare.delete("bare-warmup")
    result = Singles(cold.seconds, [], bare_cold, [], [], 0, daemon_config)
    for i in range(trials):
        result.bare.append(bare.timed_run(f"bare-one-{i:02d}"))
        bare.delete(f"bare-one-{i:02d}")
        result.bare_cfg.append(bare.timed_run(f"bare-cfg-{i:02d}", template=daemon_config))
        bare.delete(f"bare-cfg-{i:02d}")
        trial = drop_one(box, daemon, f"one-{i:02d}")
        state = runc_state(box.runc_root, trial.name)  # untimed cross-check
        if state is None or state.get("status") != "running" or state.get("pid") != trial.pid:
            result.mismatches += 1
        result.trials.append(trial)
        drop_out(box, daemon, [trial.name], timeout=30)
    return result


def breakdown(daemon: Daemon, trials: Sequence[DropTrial]) -> str:
    """Median drop -> "create" logged (watch, scan, plan) and "create" -> running."""
    logged: dict[str, float] = {}
    for record in daemon.log_records():
        words = str(record.get("message", "")).split()
        if len(words) >= 2 and words[0] == "create":
            logged.setdefault(words[1].rstrip(":"), float(record["time"]))
    noticed, created = [], []
    for t in trials:
        at = logged.get(t.name)
        if at is not None:
            noticed.append(at - t.wall)
            created.append(t.seconds - (at - t.wall))
    if not noticed:
        return "  (no 'create' lines in the daemon log to break the time down)"
    return (f"  where it goes (medians, from the daemon's log): drop -> action started "
            f"{statistics.median(noticed) * 1000:.1f} ms (watch, scan, plan); action -> "
            f"running {statistics.median(created) * 1000:.1f} ms (overlay, config, conmon, "
            f"runc create + start)")


# -- 2. N at once -> all running -----------------------------------------------------------


def bulk_drop(box: Sandbox, daemon: Daemon, n: int, prefix: str) -> tuple[float, float]:
    """(first running, all running) after N renames into the directory."""
    names = [f"{prefix}-{i:03d}" for i in range(n)]
    staged = [stage(box, name) for name in names]
    t0 = time.perf_counter()
    for name, path in zip(names, staged, strict=True):
        os.rename(path, box.manifests / f"{name}.yaml")
    pending, first = set(names), None
    deadline = t0 + 120
    while pending:
        for name in [n for n in pending if running_pid(box.runc_root, n) is not None]:
            pending.discard(name)
            first = first or time.perf_counter() - t0
        if time.perf_counter() > deadline:
            daemon.check()
            raise TimeoutError(f"{len(pending)} of {n} not running after 120 s")
        time.sleep(BULK_POLL)
    return first or 0.0, time.perf_counter() - t0


def bare_bulk(bare: Bare, n: int, *, template: dict[str, Any] | None = None,
              tag: str = "bulk") -> float:
    """N sequential ``runc run -d``, timed right before the daemon's bulk it is compared to
    (``template``: of the config the daemon writes, seccomp profile and all)."""
    names = [f"bare-{tag}-{i:03d}" for i in range(n)]
    bundles = [bare.bundle(name, template=template) for name in names]
    t0 = time.perf_counter()
    for name, bundle in zip(names, bundles, strict=True):
        bare.run(name, bundle)
    elapsed = time.perf_counter() - t0
    for name in names:
        bare.delete(name)
    return elapsed


# -- 3. crash -> first restart running -----------------------------------------------------


@dataclass
class CrashTrial:
    seconds: float  # runc kill -> the new PID running
    after_death: float  # the old PID's pidfd readable -> the new PID running
    to_action: float | None  # death -> the daemon logged "restart crash"
    crashes: int  # the daemon's consecutive crash count afterwards (1: a first crash)


def crash_trials(box: Sandbox, daemon: Daemon, bare: Bare, trials: int
                 ) -> tuple[list[CrashTrial], list[tuple[float, float]]]:
    """kill -> new PID running, each a first crash: the daemon runs with --backoff-reset 0.5
    and each container ran 0.6 s before it is killed, so its earlier crashes are forgotten
    (the crash count the daemon reports afterwards proves it). A bare trial (``bare_crash``)
    runs in each wait, so both see the same load."""
    trial = drop_one(box, daemon, "crash")
    pid, up_since = trial.pid, time.perf_counter()
    bare.run("bare-crash", bare.bundle("bare-crash"))
    results, floor = [], []
    for _ in range(trials):
        floor.append(bare_crash(bare, "bare-crash"))
        time.sleep(max(0.0, up_since + BACKOFF_RESET + 0.1 - time.perf_counter()))
        offset = daemon.log_size()
        fd = os.pidfd_open(pid)
        try:
            t0 = time.perf_counter()
            subprocess.run(["runc", f"--root={box.runc_root}", "kill",
                            instance(box.runc_root, "crash"), "KILL"],
                           check=True, capture_output=True)
            died, died_wall = None, None
            deadline = t0 + 15
            while True:
                if died is None and select.select([fd], [], [], 0)[0]:
                    died, died_wall = time.perf_counter(), time.time()
                new = running_pid(box.runc_root, "crash")
                if new is not None and new != pid:
                    break
                if time.perf_counter() > deadline:
                    daemon.check()
                    raise TimeoutError("crash: no new PID 15 s after the kill")
                time.sleep(POLL)
            t1 = time.perf_counter()
        finally:
            os.close(fd)
        pid, up_since = new, t1
        time.sleep(0.05)  # let the daemon write its status after the restart
        record = (read_status(box) or {}).get("containers", {}).get("crash", {})
        acted = [float(r["time"]) for r in daemon.log_records(since=offset)
                 if str(r.get("message", "")).startswith("restart crash")]
        results.append(CrashTrial(
            seconds=t1 - t0, after_death=t1 - (died or t0),
            to_action=acted[0] - died_wall if acted and died_wall else None,
            crashes=int(record.get("history", {}).get("crashes", -1))))
    bare.delete("bare-crash")
    drop_out(box, daemon, ["crash"], timeout=30)
    return results, floor


def bare_crash(bare: Bare, name: str) -> tuple[float, float]:
    """The same by hand: ``runc kill``, wait for the death, ``runc delete``, ``runc run -d``.
    Returns (kill -> running, delete + run)."""
    pid = running_pid(bare.box.bare_root, name)
    assert pid is not None
    fd = os.pidfd_open(pid)
    try:
        t0 = time.perf_counter()
        bare.runc("kill", name, "KILL")
        select.select([fd], [], [], 15)
        t_dead = time.perf_counter()
        bare.runc("delete", name)
        bare.run(name, bare.bundle(name))
        t1 = time.perf_counter()
    finally:
        os.close(fd)
    return t1 - t0, t1 - t_dead


# -- 4. daemon restart under N -------------------------------------------------------------


def restart_daemon(box: Sandbox, daemon: Daemon, names: Sequence[str]) -> dict[str, Any]:
    before = {n: running_pid(box.runc_root, n) for n in names}
    stop_s = daemon.stop()
    survived = sum(1 for n in names if running_pid(box.runc_root, n) == before[n])
    offset = daemon.log_size()
    t0, wall0 = time.perf_counter(), time.time()
    daemon.start()

    def converged() -> bool:
        daemon.check()
        status = passed_since(box, wall0)
        if status is None:
            return False
        containers = status.get("containers", {})
        return all(containers.get(n, {}).get("phase") == "Running"
                   and containers[n].get("pid") == before[n] for n in names)

    wait_for(converged, timeout=60, every=0.01, what="convergence after the daemon restart")
    elapsed = time.perf_counter() - t0
    time.sleep(1.0)  # a restart planned in a later pass would show up by now
    after = {n: running_pid(box.runc_root, n) for n in names}
    status = read_status(box) or {}
    restarted = [n for n in names if after[n] != before[n]]
    acting = ("create", "recreate", "restart", "start", "stop", "delete")
    logged = [r for r in daemon.log_records(since=offset)
              if str(r.get("message", "")).split(" ", 1)[0] in acting]
    watching = [float(r["time"]) - wall0 for r in daemon.log_records(since=offset)
                if str(r.get("message", "")).startswith("watching ")]
    return {"stop": stop_s, "survived": survived, "converged": elapsed,
            "watching": watching[0] if watching else None,
            "restarted": restarted, "actions": len(logged),
            "passes": status.get("daemon", {}).get("passes")}


# -- 5. idle cost --------------------------------------------------------------------------


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def cpu_ns(pid: int) -> int:
    """CPU time of all live threads (schedstat, nanoseconds: finer than clock ticks)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Sample:
    at: float  # perf_counter
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: the runc processes it spawned and reaped
    ns: int  # schedstat of its live threads


def sample(pid: int) -> Sample:
    ticks, child_ticks = cpu_ticks(pid)
    return Sample(time.perf_counter(), ticks, child_ticks, cpu_ns(pid))


def usage(a: Sample, b: Sample) -> dict[str, float]:
    """% of one core between two samples."""
    span = b.at - a.at
    return {"seconds": span,
            "cpu": (b.ticks - a.ticks) / CLK_TCK / span * 100,
            "cpu_sched": (b.ns - a.ns) / 1e9 / span * 100,
            "cpu_children": (b.child_ticks - a.child_ticks) / CLK_TCK / span * 100}


def idle(box: Sandbox, daemon: Daemon, n: int, seconds: float, resync_window: float
         ) -> dict[str, Any]:
    """A ``seconds`` window, then (unless 0) on to ``resync_window`` seconds, which holds
    one periodic relist (``--resync``, 30 s by default) that a 10 s window may miss."""
    time.sleep(2.0)  # past the restart's last status write
    first = sample(daemon.pid)
    rss = []
    while (left := seconds - (time.perf_counter() - first.at)) > 0:
        rss.append(status_kib(daemon.pid, "VmRSS"))
        time.sleep(min(1.0, left))
    short = sample(daemon.pid)
    rss.append(status_kib(daemon.pid, "VmRSS"))
    while (left := resync_window - (time.perf_counter() - first.at)) > 0:
        rss.append(status_kib(daemon.pid, "VmRSS"))
        time.sleep(min(1.0, left))
    long = sample(daemon.pid) if resync_window else None
    rss.append(status_kib(daemon.pid, "VmRSS"))
    conmons = processes_mentioning(str(box.state), comm="conmon")
    return {
        "short": usage(first, short),
        "long": usage(first, long) if long is not None else None,
        "rss": rss[-1] / 1024, "rss_max": max(rss) / 1024,
        "threads": status_kib(daemon.pid, "Threads"),
        "conmons": len(conmons),
        "conmon_rss": sum(status_kib(p, "VmRSS") for p in conmons) / max(1, n) / 1024,
        "conmon_pss": sum(pss_kib(p) for p in conmons) / max(1, n) / 1024,
    }


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    trials: int
    n: int
    crash_trials: int
    idle_seconds: float
    resync_window: float  # 0: skip the window that holds a periodic relist


def progress(text: str) -> None:
    sys.stderr.write(f"  ... {text}\n")
    sys.stderr.flush()


def measure(box: Sandbox, plan: Plan, daemons: list[Daemon]) -> dict[str, Any]:
    """Every figure; each floor measured right beside (or interleaved with) its figure."""
    r: dict[str, Any] = {}
    bare = Bare(box)
    daemon = Daemon(box, concurrency=DEFAULT_CONCURRENCY, label="c4")
    daemons.append(daemon)
    started = time.time()
    daemon.start()
    wait_ready(box, daemon, since=started)
    progress(f"1. {plan.trials} rounds of: bare run, bare run of the daemon's config, drop")
    r["single"] = single_trials(box, daemon, bare, plan.trials)
    r["breakdown"] = breakdown(daemon, r["single"].trials)
    progress(f"3. {plan.crash_trials} rounds of: bare kill + delete + run, daemon crash")
    r["crash"], r["bare_crash"] = crash_trials(box, daemon, bare, plan.crash_trials)
    progress(f"2. {plan.n} bare runs in a loop, then {plan.n} drops, --concurrency "
             f"{DEFAULT_CONCURRENCY}")
    r["loop4"] = bare_bulk(bare, plan.n)
    r["loop4cfg"] = bare_bulk(bare, plan.n, template=r["single"].daemon_config, tag="cfg")
    r["first4"], r["all4"] = bulk_drop(box, daemon, plan.n, "bulk")
    names = [f"bulk-{i:03d}" for i in range(plan.n)]
    progress("4. daemon restart")
    r["restart"] = restart_daemon(box, daemon, names)
    progress(f"5. idle for {plan.idle_seconds:g} s")
    if plan.resync_window:
        progress(f"   and on to {plan.resync_window:g} s, to hold one periodic relist")
    r["idle"] = idle(box, daemon, plan.n, plan.idle_seconds, plan.resync_window)
    progress(f"   removing {plan.n}")
    r["removed"] = drop_out(box, daemon, names, timeout=120)
    daemon.stop()

    daemon8 = Daemon(box, concurrency=8, label="c8")
    daemons.append(daemon8)
    started = time.time()
    daemon8.start()
    wait_ready(box, daemon8, since=started)
    progress(f"2. {plan.n} bare runs in a loop, then {plan.n} drops, --concurrency 8")
    r["loop8"] = bare_bulk(bare, plan.n)
    r["first8"], r["all8"] = bulk_drop(box, daemon8, plan.n, "bulk8")
    return r


def report(r: dict[str, Any], plan: Plan) -> None:
    one: Singles = r["single"]
    drop, bare, cfg = [t.seconds for t in one.trials], one.bare, one.bare_cfg
    d50, b50 = pct(drop, 0.5), pct(bare, 0.5)
    out(f"1. one manifest dropped -> running ({plan.trials} trials after one cold one, "
        "interleaved with the floors)")
    out(f"   reconciler   p50 {ms(d50)}  p99 {ms(pct(drop, 0.99))}   "
        f"(cold {ms(one.cold).strip()})")
    out(f"   bare runc    p50 {ms(b50)}  p99 {ms(pct(bare, 0.99))}   "
        f"(cold {ms(one.bare_cold).strip()})   runc run -d, runc spec's config")
    out(f"   bare runc    p50 {ms(pct(cfg, 0.5))}  p99 {ms(pct(cfg, 0.99))}   "
        "runc run -d of the config.json the daemon wrote (seccomp etc.), for context")
    c50 = pct(cfg, 0.5)
    out(f"   target: p50 within 50 ms of bare runc: {(d50 - b50) * 1000:+.1f} ms over runc "
        f"spec's config -> {verdict(d50 - b50 <= 0.050)}; {(d50 - c50) * 1000:+.1f} ms over "
        f"the same config (the same work) -> {verdict(d50 - c50 <= 0.050)}")
    out(r["breakdown"])
    if one.mismatches:
        out(f"   WARNING: `runc state` disagreed with the state-file poll in {one.mismatches} "
            "trials")
    out()

    n, all4, all8, loop4, loop8 = plan.n, r["all4"], r["all8"], r["loop4"], r["loop8"]
    out(f"2. {n} manifests dropped at once -> all running (each beside a bare loop timed "
        "just before it)")
    out(f"   reconciler --concurrency {DEFAULT_CONCURRENCY} (default) {ms(all4)}   "
        f"({all4 / n * 1000:.1f} ms each; first running after {ms(r['first4']).strip()})")
    out(f"   bare runc, {n} sequential run -d     {ms(loop4)}   ({loop4 / n * 1000:.1f} ms each)"
        f"   ratio {all4 / loop4:.2f}x")
    out(f"   reconciler --concurrency 8           {ms(all8)}   "
        f"({all8 / n * 1000:.1f} ms each; first running after {ms(r['first8']).strip()})")
    out(f"   bare runc, {n} sequential run -d     {ms(loop8)}   ({loop8 / n * 1000:.1f} ms each)"
        f"   ratio {all8 / loop8:.2f}x")
    loopc = r["loop4cfg"]
    out(f"   bare runc, {n} sequential run -d of the daemon's config  {ms(loopc)}   "
        f"({loopc / n * 1000:.1f} ms each)   ratio {all4 / loopc:.2f}x")
    out(f"   target: within 1.5x the bare loop at the default concurrency: "
        f"{all4 / loop4:.2f}x runc spec's config -> {verdict(all4 / loop4 <= 1.5)}; "
        f"{all4 / loopc:.2f}x the same config -> {verdict(all4 / loopc <= 1.5)}")
    out(f"   (deleting the {n} again took {r['removed']:.1f} s; not a target)")
    out()

    crash = [t.seconds for t in r["crash"]]
    c50 = pct(crash, 0.5)
    crashes = [t.crashes for t in r["crash"]]
    to_action = [t.to_action for t in r["crash"] if t.to_action is not None]
    after_death = pct([t.after_death for t in r["crash"]], 0.5)
    floor = r["bare_crash"]
    out(f"3. runc kill NAME KILL -> first restart running ({plan.crash_trials} trials, "
        "interleaved with the floor)")
    out(f"   reconciler   p50 {ms(c50)}  max {ms(max(crash))}   "
        f"(from the death seen by pidfd: p50 {ms(after_death).strip()})")
    out(f"   bare runc    p50 {ms(pct([f[0] for f in floor], 0.5))}   kill, wait, delete, "
        f"run -d (delete + run -d alone: p50 {ms(pct([f[1] for f in floor], 0.5)).strip()})")
    out(f"   podman       p50 {ms(PODMAN_RESTART_MS / 1000)}   --restart=always after SIGKILL "
        "(shared/notes/runtime-facts.md; not re-measured)")
    first = all(c == 1 for c in crashes)
    out(f"   each a first crash (--backoff-reset {BACKOFF_RESET:g}, killed after "
        f"{BACKOFF_RESET + 0.1:g} s up; the daemon's crash count was 1 every time): "
        f"{'yes' if first else f'NO {crashes}'}")
    out(f"   target: first restart under 150 ms: {verdict(c50 < 0.150)}")
    if to_action:
        a50 = statistics.median(to_action)
        out(f"   where it goes (medians): death -> \"restart\" logged {a50 * 1000:.1f} ms "
            f"(exit file, plan); -> running {(after_death - a50) * 1000:.1f} ms "
            "(runc state + delete, teardown, create)")
    out()

    rs = r["restart"]
    out(f"4. daemon restarted with {n} running -> converged")
    out(f"   SIGTERM -> exited in {ms(rs['stop']).strip()}; still running with the same PIDs "
        f"meanwhile: {rs['survived']}/{n}")
    out(f"   start -> status.json all Running, same PIDs, passes >= 1: {ms(rs['converged'])}")
    if rs["watching"] is not None:
        out(f"   (of which start -> \"watching\" logged: {ms(rs['watching']).strip()}: "
            "interpreter, imports, lock, gc, first relist)")
    out(f"   restarts caused: {len(rs['restarted'])} (PIDs compared again 1 s later; "
        f"create/recreate/restart/delete actions logged: {rs['actions']})")
    out(f"   target: zero restarts caused: {verdict(not rs['restarted'])}")
    out()

    c = r["idle"]
    short, long = c["short"], c["long"]
    out(f"5. idle daemon with {n} containers")
    out(f"   {short['seconds']:.0f} s window: CPU {short['cpu']:.2f}% of one core (utime+stime "
        f"in 1/{CLK_TCK} s ticks; {short['cpu_sched']:.3f}% by its threads' schedstat; "
        f"reaped children {short['cpu_children']:.2f}%)")
    if long is not None:
        total = long["cpu"] + long["cpu_children"]
        out(f"   {long['seconds']:.0f} s window holding one --resync relist: CPU "
            f"{long['cpu']:.2f}% + {long['cpu_children']:.2f}% in the runc processes it "
            f"spawned = {total:.2f}% of one core")
    out(f"   RSS {c['rss']:.1f} MiB (max {c['rss_max']:.1f} MiB), {c['threads']:.0f} threads")
    out(f"   conmon: {c['conmons']:.0f} monitors, RSS {c['conmon_rss']:.2f} MiB per container "
        f"(PSS {c['conmon_pss']:.2f} MiB)")
    line = (f"   target: idle CPU under 1% of a core: {short['seconds']:.0f} s window "
            f"{verdict(short['cpu'] < 1.0)}")
    if long is not None:
        line += (f"; over a full --resync period, runc children included "
                 f"{verdict(long['cpu'] + long['cpu_children'] < 1.0)}")
    out(line)


def run(box: Sandbox, plan: Plan, daemons: list[Daemon]) -> None:
    out(f"reconciler bench: rootfs {box.rootfs}")
    out(f"  {plan.trials} trials, N = {plan.n}, {plan.crash_trials} crash trials; "
        f"{os.cpu_count()} CPUs; {runc_version()}; temp dir {box.base}")
    out("  'running' = runc's own rule read from R/<name>/state.json, exec.fifo and "
        f"/proc/<pid>/stat, polled every {POLL * 1000:g} ms ({BULK_POLL * 1000:g} ms in bulk)")
    out(f"  daemon: --settle {SETTLE:g} --backoff-reset {BACKOFF_RESET:g} --allow-empty "
        "--log-format json; a drop is a rename from a staging dir on the same filesystem")
    out(f"  tree {revision()}; load average before {loadavg()}")
    results = measure(box, plan, daemons)
    out(f"  load average after {loadavg()} (other work on this machine skews every figure)")
    out()
    report(results, plan)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def revision() -> str:
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "?"
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "reconciler"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"{head}{' + uncommitted changes under reconciler/' if dirty else ''}"


def runc_version() -> str:
    done = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "runc ?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", required=True, type=Path, help="a busybox root filesystem")
    parser.add_argument("--quick", action="store_true", help="N = 20, 10 trials")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir's logs (containers are removed anyway)")
    args = parser.parse_args(argv)
    rootfs = args.rootfs.resolve()
    if not (rootfs / "bin" / "sleep").exists():
        parser.error(f"{rootfs} has no /bin/sleep; build it with `make rootfs`")
    if os.geteuid() != 0:
        parser.error("needs root (runc, overlay mounts, cgroups)")
    # The long idle window holds one relist: --resync is 30 s (the daemon's default).
    plan = (Plan(trials=10, n=20, crash_trials=5, idle_seconds=5, resync_window=0)
            if args.quick else
            Plan(trials=30, n=100, crash_trials=10, idle_seconds=10, resync_window=31))
    box = Sandbox(Path(tempfile.mkdtemp(prefix="reconciler-bench-")), rootfs)
    daemons: list[Daemon] = []
    started = time.perf_counter()
    try:
        with interrupts_as_keyboard():
            run(box, plan, daemons)
    except KeyboardInterrupt:
        out("\ninterrupted; cleaning up")
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # clean-up is not to be cut short
            signal.signal(signum, signal.SIG_IGN)
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="reconciler-bench-logs-"))
            shutil.copytree(box.logs, kept / "logs", dirs_exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(box.state / "events.jsonl", kept / "events.jsonl")
            out(f"logs kept in {kept}")
        cleanup(box, daemons)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    out(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
