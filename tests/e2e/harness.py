"""The end-to-end harness: the real daemon as a subprocess, and readers of the host.

A test writes manifests into a directory the way people and tools do (``sed -i``, vim,
git-sync, ``tar -x``), reads the daemon's view back through ``reconciler get -o json``,
and checks the host itself: ``runc --root R state``, ``/proc/PID``, ``/proc/self/mountinfo``
and cgroup files. The fixtures that build an ``E2E`` world are in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")

# sh as PID 1 ignores SIGTERM unless it traps it; the trap makes every stop prompt.
SLEEP_LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
SETTLE = 0.3
RESYNC = 1.0  # holds "through a resync" stay short
SLOW_RESYNC = 10.0  # for tests that prove a reaction is event-driven, not a relist

T = TypeVar("T")


# -- polling -------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T | None], timeout: float, *, what: str = "",
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` every ``interval`` s until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or predicate!r}; last: {last!r}"
            )
        time.sleep(interval)


def hold(predicate: Callable[[], Any], duration: float, *, what: str = "",
         interval: float = 0.05) -> None:
    """Assert that ``predicate`` stays truthy for ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        value = predicate()
        assert value, f"{what or predicate!r} stopped holding: {value!r}"
        time.sleep(interval)


# -- manifests -----------------------------------------------------------------------------


def manifest(name: str, rootfs: Path, script: str = SLEEP_LOOP, **spec: Any) -> str:
    """The YAML text of one Container whose command is ``/bin/sh -c script``."""
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": name},
        "spec": {"rootfs": str(rootfs), "command": ["/bin/sh", "-c", script], **spec},
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def skip_without(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if not have(t)]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


# -- the host ------------------------------------------------------------------------------


def runc_state(runc_root: Path, name: str) -> dict[str, Any] | None:
    """runc's own view of a container, None if runc does not know it."""
    res = subprocess.run(["runc", f"--root={runc_root}", "state", name],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        assert "does not exist" in res.stderr, res.stderr
        return None
    state: dict[str, Any] = json.loads(res.stdout)
    return state


def pid_alive(pid: int | None) -> bool:
    """A live (not zombie) process."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    """One ``reconciler run`` subprocess; its stdout and stderr go to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd)
        self.started_wall = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM, a bounded wait, SIGKILL; the seconds it took to exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up of any kind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@dataclass
class E2E:
    """One test's world: the sandbox's runtime dirs, a manifests dir, and the readers."""

    sandbox: Any
    rootfs: Path
    tmp: Path
    manifests: Path
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return Path(self.sandbox.state_dir)

    @property
    def runc_root(self) -> Path:
        return Path(self.sandbox.runc_root)

    # -- driving --

    def manifest(self, name: str, script: str = SLEEP_LOOP, **spec: Any) -> str:
        return manifest(name, self.rootfs, script, **spec)

    def write(self, filename: str, text: str, *, directory: Path | None = None) -> Path:
        """Drop a file the plain way: open, write, close (no rename)."""
        path = (directory or self.manifests) / filename
        path.write_text(text)
        return path

    def start(self, *extra: str, manifests: Path | None = None, ready: bool = True,
              settle: float = SETTLE, resync: float = RESYNC) -> Daemon:
        """Start ``reconciler run`` on this world; with ``ready``, wait for its first pass."""
        argv = [
            sys.executable, "-m", "reconciler", "run",
            "--manifests", str(manifests or self.manifests),
            "--state-dir", str(self.state_dir), "--runc-root", str(self.runc_root),
            "--cgroup-parent", self.sandbox.cgroup_parent,
            "--settle", str(settle), "--resync", str(resync), *extra,
        ]
        d = Daemon(argv, self.tmp / f"daemon-{len(self.daemons)}.log", self.tmp)
        self.daemons.append(d)
        if ready:
            self.wait_ready(d)
        return d

    def wait_ready(self, d: Daemon, timeout: float = 15) -> None:
        """Until the daemon wrote a status after starting (its first pass is done)."""
        def ready() -> bool:
            assert d.alive(), f"daemon exited with {d.proc.returncode}:\n{d.log()}"
            try:
                st = self.status()
            except ValueError:
                return False
            last_pass = (st.get("daemon") or {}).get("lastPassAt") or 0.0
            return bool(last_pass >= d.started_wall)
        wait_until(ready, timeout, what="the daemon's first pass")

    # -- reading the daemon's view --

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "reconciler", *args,
                              "--state-dir", str(self.state_dir),
                              "--runc-root", str(self.runc_root)],
                             capture_output=True, text=True, check=False, cwd=self.tmp)
        if check:
            assert res.returncode == 0, f"reconciler {' '.join(args)}: {res.stderr}"
        return res

    def get_all(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.cli("get", "-o", "json").stdout)
        return {c["name"]: c for c in items}

    def get(self, name: str) -> dict[str, Any] | None:
        """``reconciler get -o json``'s object for ``name``, None if it lists none."""
        return self.get_all().get(name)

    def phase(self, name: str) -> str | None:
        c = self.get(name)
        return None if c is None else str(c["phase"])

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "status.json").read_text())
        except FileNotFoundError:
            return {}
        return data

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The event log, read from the file (a torn last line is skipped)."""
        out = []
        with contextlib.suppress(FileNotFoundError), open(self.state_dir / "events.jsonl") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return [e for e in out if name is None or e.get("name") == name]

    def reasons(self, name: str | None = None, *, since: float = 0.0) -> list[str]:
        return [e["reason"] for e in self.events(name) if e["time"] >= since]

    # -- the host --

    def runc(self, name: str) -> dict[str, Any] | None:
        return runc_state(self.runc_root, name)

    def runc_names(self) -> list[str]:
        for _ in range(5):  # runc list fails when a container is deleted while it lists
            res = subprocess.run(["runc", f"--root={self.runc_root}", "list", "-q"],
                                 capture_output=True, text=True, check=False)
            if res.returncode == 0 or "no such file or directory" not in res.stderr:
                break
            time.sleep(0.02)
        assert res.returncode == 0, f"runc list: {res.stderr}"
        return sorted(res.stdout.split())

    def running_pid(self, name: str) -> int | None:
        """The init PID if runc says running and the process is alive, else None."""
        st = self.runc(name)
        if st is None or st["status"] != "running" or not pid_alive(st["pid"]):
            return None
        return int(st["pid"])

    def wait_running(self, name: str, timeout: float = 10, *, not_pid: int | None = None,
                     interval: float = 0.05) -> int:
        """Until ``name`` runs on the host (with a PID other than ``not_pid``); the PID."""
        def check() -> int | None:
            pid = self.running_pid(name)
            return None if pid == not_pid else pid
        return wait_until(check, timeout, what=f"{name} running (not pid {not_pid})",
                          interval=interval)

    def wait_gone(self, name: str, timeout: float = 10) -> None:
        """Until nothing is left of ``name`` on the host (see ``gone_from_host``)."""
        wait_until(lambda: not self.gone_from_host(name), timeout,
                   what=f"nothing left of {name} on the host")

    def keeps(self, pids: dict[str, int], duration: float, *, why: str = "") -> None:
        """Assert each container keeps running with its PID for ``duration`` seconds."""
        hold(lambda: {n: self.running_pid(n) for n in pids} == pids, duration,
             what=f"{', '.join(pids)} keep their PIDs{' ' + why if why else ''}")

    def wait_phase(self, name: str, phase: str, timeout: float = 10) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.get(name)
            return c if c is not None and c["phase"] == phase else None
        return wait_until(check, timeout, what=f"{name} in phase {phase}")

    def depot(self, name: str) -> Path:
        return self.state_dir / "containers" / name

    def gone_from_host(self, name: str) -> list[str]:
        """What is left of ``name`` on the host (empty: nothing)."""
        left = []
        if self.runc(name) is not None:
            left.append("runc state")
        if self.depot(name).exists():
            left.append(f"depot {self.depot(name)}")
        left += [f"mount {m}" for m in mounts_under(self.depot(name))]
        for controller in ("memory", "pids", "freezer", "cpu", "unified"):
            cg = CGROUP_ROOT / controller / self.sandbox.cgroup_parent.strip("/") / name
            if cg.exists():
                left.append(f"cgroup {cg}")
        return left

    def monitors(self, name: str) -> list[int]:
        """PIDs of live conmon processes that run this container's bundle."""
        bundle = str(self.depot(name) / "bundle")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = cmdline(int(entry.name))
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == "conmon" and bundle in argv:
                if pid_alive(int(entry.name)):
                    found.append(int(entry.name))
        return sorted(found)

    def cgroup_procs(self, name: str) -> list[int]:
        path = CGROUP_ROOT / "pids" / self.sandbox.cgroup_parent.strip("/") / name
        try:
            return sorted(int(p) for p in (path / "cgroup.procs").read_text().split())
        except FileNotFoundError:
            return []

    def freezer(self, name: str) -> str:
        path = CGROUP_ROOT / "freezer" / self.sandbox.cgroup_parent.strip("/") / name
        return str((path / "freezer.state").read_text().strip())


class PidSampler:
    """Samples ``runc state NAME`` in a thread: every (status, pid) it went through, in order.

    Used to prove what a reader polling now and then cannot: that a container was never
    absent or stopped, or that it got exactly one new PID.
    """

    def __init__(self, e2e: E2E, name: str, interval: float = 0.01) -> None:
        self.e2e = e2e
        self.name = name
        self.interval = interval
        self.seen: list[tuple[str, int | None]] = []
        self.times: list[float] = []  # time.monotonic() of each entry of ``seen``
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._sample()
        except BaseException as exc:  # re-raised in the test's thread by __exit__
            self._error = exc

    def _sample(self) -> None:
        while not self._stop.is_set():
            st = self.e2e.runc(self.name)
            item = ("absent", None) if st is None else (str(st["status"]), st.get("pid") or None)
            if not self.seen or self.seen[-1] != item:
                self.seen.append(item)
                self.times.append(time.monotonic())
            time.sleep(self.interval)

    def __enter__(self) -> PidSampler:
        self._thread.start()
        while not self.seen and self._thread.is_alive():
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._error is not None:
            raise AssertionError(f"sampling {self.name} failed") from self._error

    def first_seen(self, status: str, pid: int | None) -> float:
        return self.times[self.seen.index((status, pid))]

    def pids(self) -> list[int]:
        """The distinct running PIDs, in the order they appeared."""
        out: list[int] = []
        for status, pid in self.seen:
            if status == "running" and pid and pid not in out:
                out.append(pid)
        return out


