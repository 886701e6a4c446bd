"""The end-to-end harness: the real daemon as a subprocess, and readers of the host.

A test writes manifests into a directory the way people and tools do (``sed -i``, vim,
git-sync, ``tar -x``), reads the daemon's view back through ``reconciler get -o json``,
and checks the host itself: ``runc --root R state``, ``/proc/PID``, ``/proc/self/mountinfo``
and cgroup files. The fixtures that build an ``E2E`` world are in ``conftest.py``.

Names: tests speak of a container by its manifest's name (``web``). On the host it is an
*instance* whose runc id is either ``<name>.<generation>`` (annotated with
``io.reconciler.name`` and ``io.reconciler.generation``) or, as the daemon named them
before generations, the name itself. Every reader here that takes a name resolves it to
the current instance through ``runc list`` (``E2E.instance``), and reads the cgroup from
the instance's ``linux.cgroupsPath``, so tests work with either naming.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")

# sh as PID 1 ignores SIGTERM unless it traps it; the trap makes every stop prompt.
SLEEP_LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
SETTLE = 0.3
RESYNC = 1.0  # holds "through a resync" stay short
SLOW_RESYNC = 10.0  # for tests that prove a reaction is event-driven, not a relist

NAME_ANNOTATION = "io.reconciler.name"
GENERATION_ANNOTATION = "io.reconciler.generation"
_INSTANCE_RE = re.compile(r"^(?P<name>[^.]+)\.(?P<generation>[0-9]+)$")


class _Sandbox(Enum):
    PARENT = "the sandbox's cgroup parent"


SANDBOX_PARENT = _Sandbox.PARENT  # ``E2E.start``'s default: ``--cgroup-parent`` of the sandbox

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


def manifest(name: str, rootfs: Path, script: str = SLEEP_LOOP, /, **spec: Any) -> str:
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


def runc_list(runc_root: Path) -> list[dict[str, Any]]:
    """``runc list --format json``: one entry per runc container (id, pid, status, bundle,
    annotations...). Retried: runc fails when a container is deleted while it lists."""
    for _ in range(10):
        res = subprocess.run(["runc", f"--root={runc_root}", "list", "--format", "json"],
                             capture_output=True, text=True, check=False)
        if res.returncode == 0 or "no such file or directory" not in res.stderr:
            break
        time.sleep(0.02)
    assert res.returncode == 0, f"runc list: {res.stderr}"
    entries: list[dict[str, Any]] | None = json.loads(res.stdout or "null")
    return entries or []


def logical_name(entry: dict[str, Any]) -> str:
    """The manifest name of a ``runc list`` entry: its annotation, else its id."""
    name = (entry.get("annotations") or {}).get(NAME_ANNOTATION)
    return str(name) if name else str(entry["id"])


def generation(entry: dict[str, Any]) -> int:
    """An instance's generation: its annotation, else its id's ``.<n>`` suffix, else 0."""
    value = (entry.get("annotations") or {}).get(GENERATION_ANNOTATION)
    if isinstance(value, str | int):
        with contextlib.suppress(ValueError):
            return int(value)
    m = _INSTANCE_RE.match(str(entry["id"]))
    return int(m["generation"]) if m else 0


def current_entries(entries: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """name -> the current instance's entry: of those annotated with the name the highest
    generation, else the one whose id is the name."""
    annotated: dict[str, dict[str, Any]] = {}
    plain: dict[str, dict[str, Any]] = {}
    for e in entries:
        name = (e.get("annotations") or {}).get(NAME_ANNOTATION)
        if name:
            best = annotated.get(str(name))
            if best is None or (generation(e), str(e["id"])) > (generation(best), str(best["id"])):
                annotated[str(name)] = e
        else:
            plain[str(e["id"])] = e
    return {**plain, **annotated}


def is_instance_of(instance_id: str, name: str) -> bool:
    """Whether a runc id / depot dir name is ``name`` or ``name.<generation>``."""
    m = _INSTANCE_RE.match(instance_id)
    return instance_id == name or (m is not None and m["name"] == name)


def instance_name(instance_id: str) -> str:
    """The logical name in a runc id / depot dir name: ``web`` of ``web.2`` (and of ``web``)."""
    m = _INSTANCE_RE.match(instance_id)
    return m["name"] if m else instance_id


def cgroup_dir(cgroups_path: str, controller: str) -> Path:
    """The dir of a ``linux.cgroupsPath`` in one v1 controller (the one tree on v2)."""
    rel = cgroups_path.strip("/")
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT / rel
    return CGROUP_ROOT / controller / rel


def cgroup_procs_of(cgroups_path: str) -> list[int]:
    """The PIDs in a cgroup (the pids controller's ``cgroup.procs``), sorted; [] if none."""
    try:
        text = (cgroup_dir(cgroups_path, "pids") / "cgroup.procs").read_text()
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(p) for p in text.split())


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    """One ``reconciler run`` subprocess; its stdout and stderr go to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, cwd: Path,
                 cgroup_parent: str | None = None) -> None:
        self.argv = argv
        self.cgroup_parent = cgroup_parent  # the --cgroup-parent given, None: the default
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


class Sandbox(Protocol):
    """What a world needs of ``tests/conftest.py``'s ``HostSandbox``."""

    base: Path
    state_dir: Path
    runc_root: Path
    cgroup_parent: str


@dataclass
class E2E:
    """One test's world: the sandbox's runtime dirs, a manifests dir, and the readers."""

    sandbox: Sandbox
    rootfs: Path
    tmp: Path
    manifests: Path
    daemons: list[Daemon] = field(default_factory=list)
    netns: str | None = None  # a network namespace the test made: daemons run in it

    @property
    def state_dir(self) -> Path:
        return Path(self.sandbox.state_dir)

    @property
    def runc_root(self) -> Path:
        return Path(self.sandbox.runc_root)

    # -- driving --

    def manifest(self, name: str, script: str = SLEEP_LOOP, /, **spec: Any) -> str:
        return manifest(name, self.rootfs, script, **spec)

    def write(self, filename: str, text: str, *, directory: Path | None = None) -> Path:
        """Drop a file the plain way: open, write, close (no rename)."""
        path = (directory or self.manifests) / filename
        path.write_text(text)
        return path

    def start(self, *extra: str, manifests: Path | None = None, ready: bool = True,
              settle: float = SETTLE, resync: float = RESYNC,
              cgroup_parent: str | None | _Sandbox = SANDBOX_PARENT) -> Daemon:
        """Start ``reconciler run`` on this world; with ``ready``, wait for its first pass.

        ``cgroup_parent``: by default the sandbox's; a string is passed as is; None passes
        no ``--cgroup-parent`` at all (the daemon's default, recorded in daemon.json)."""
        parent = self.sandbox.cgroup_parent if cgroup_parent is SANDBOX_PARENT else cgroup_parent
        assert not isinstance(parent, _Sandbox)
        argv = [
            sys.executable, "-m", "reconciler", "run",
            "--manifests", str(manifests or self.manifests),
            "--state-dir", str(self.state_dir), "--runc-root", str(self.runc_root),
            *(["--cgroup-parent", parent] if parent is not None else []),
            "--settle", str(settle), "--resync", str(resync), *extra,
        ]
        if self.netns is not None:  # its bridges, rules and ports live in that namespace
            argv = ["nsenter", f"--net=/var/run/netns/{self.netns}", *argv, "--networks", "on"]
        d = Daemon(argv, self.tmp / f"daemon-{len(self.daemons)}.log", self.tmp, parent)
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

    def import_image(self, layout: Path, tag: str) -> None:
        """``busybox:latest`` of the OCI layout (``busybox_layout``) as ``tag`` in this
        world's image store."""
        subprocess.run([sys.executable, "-m", "reconciler", "image", "import", "--state-dir",
                        str(self.state_dir), f"oci:{layout}:busybox:latest", tag],
                       check=True, capture_output=True)

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

    def daemon_json(self) -> dict[str, Any]:
        """``<state-dir>/daemon.json`` ({} while there is none)."""
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "daemon.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def cgroup_parents(self) -> list[str]:
        """The cgroup parents this world's containers may be under: the sandbox's, and the
        one the daemon recorded in daemon.json."""
        out = [str(self.sandbox.cgroup_parent)]
        recorded = self.daemon_json().get("cgroupParent")
        if isinstance(recorded, str) and recorded not in out:
            out.append(recorded)
        return out

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

    def runc_entries(self) -> list[dict[str, Any]]:
        """Every container of this world's runc root (``runc list --format json``)."""
        return runc_list(self.runc_root)

    def current(self) -> dict[str, dict[str, Any]]:
        """name -> the ``runc list`` entry of its current instance, from one listing."""
        return current_entries(self.runc_entries())

    def find_instance(self, name: str) -> str | None:
        """The runc id of ``name``'s current instance, None if runc has none."""
        entry = self.current().get(name)
        return None if entry is None else str(entry["id"])

    def instance(self, name: str) -> str:
        """The runc id of ``name``'s current instance (``web.2``, or ``web`` before
        generations); fails the test if runc has none."""
        found = self.find_instance(name)
        assert found is not None, f"runc has no instance of {name}: {self.runc_names()}"
        return found

    def runc(self, name: str) -> dict[str, Any] | None:
        """runc's view (its list entry: id, status, pid...) of ``name``'s current
        instance, None if runc has none."""
        return self.current().get(name)

    def runc_names(self) -> list[str]:
        """The logical names of the runc containers, sorted, one per instance (so two
        instances of one name show as the name twice)."""
        return sorted(logical_name(e) for e in self.runc_entries())

    def runc_instances(self) -> list[str]:
        """The runc ids, sorted."""
        return sorted(str(e["id"]) for e in self.runc_entries())

    def running_pids(self) -> dict[str, int]:
        """name -> init PID of every current instance that runs and is alive (one list)."""
        return {n: int(e["pid"]) for n, e in self.current().items()
                if e.get("status") == "running" and pid_alive(e.get("pid"))}

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

    def wait_all_running(self, names: Iterable[str], timeout: float = 30,
                         interval: float = 0.1) -> dict[str, int]:
        """Until every one of ``names`` runs (one ``runc list`` a poll); name -> PID."""
        want = set(names)

        def check() -> dict[str, int] | None:
            pids = self.running_pids()
            return {n: pids[n] for n in want} if want <= pids.keys() else None
        return wait_until(check, timeout, what=f"all {len(want)} running", interval=interval)

    def wait_gone(self, name: str, timeout: float = 10) -> None:
        """Until nothing is left of ``name`` on the host (see ``gone_from_host``)."""
        self.wait_all_gone([name], timeout, interval=0.05)

    def wait_all_gone(self, names: Iterable[str], timeout: float,
                      interval: float = 0.1) -> float:
        """Until nothing is left on the host of any of ``names`` (``left_on_host``); the
        seconds it took. Fails with a summary of what is left."""
        wanted = list(names)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            left = {n: what for n, what in self.left_on_host(wanted).items() if what}
            if not left:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                sample = "; ".join(f"{n}: {', '.join(w[:2])}{' ...' if len(w) > 2 else ''}"
                                   for n, w in list(left.items())[:3])
                raise AssertionError(f"after {timeout:g}s, {len(left)} of {len(wanted)} still "
                                     f"on the host, e.g. {sample}")
            time.sleep(interval)

    def keeps(self, pids: dict[str, int], duration: float, *, why: str = "") -> None:
        """Assert each container keeps running with its PID for ``duration`` seconds."""
        def same() -> bool:
            now = self.running_pids()
            return {n: now.get(n) for n in pids} == pids
        hold(same, duration,
             what=f"{', '.join(pids)} keep their PIDs{' ' + why if why else ''}")

    def wait_phase(self, name: str, phase: str, timeout: float = 10) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.get(name)
            return c if c is not None and c["phase"] == phase else None
        return wait_until(check, timeout, what=f"{name} in phase {phase}")

    def depots(self, name: str) -> list[Path]:
        """Every depot dir of ``name`` (``containers/<name>`` and ``containers/<name>.<n>``),
        oldest generation first."""
        root = self.state_dir / "containers"
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir() if is_instance_of(p.name, name)]
        return sorted(found, key=lambda p: generation({"id": p.name}))

    def depot(self, name: str) -> Path:
        """The depot of ``name``'s current instance; with no instance in runc, the newest
        depot dir of the name, else ``containers/<name>``."""
        found = self.find_instance(name)
        if found is not None:
            return self.state_dir / "containers" / found
        dirs = self.depots(name)
        return dirs[-1] if dirs else self.state_dir / "containers" / name

    def config(self, name: str) -> dict[str, Any] | None:
        """The OCI config.json in the depot of ``name``'s current instance (None: none)."""
        try:
            data: dict[str, Any] = json.loads(
                (self.depot(name) / "bundle" / "config.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return data

    def cgroup_path(self, name: str) -> str | None:
        """The current instance's ``linux.cgroupsPath`` (``/parent/web.1``)."""
        path = ((self.config(name) or {}).get("linux") or {}).get("cgroupsPath")
        return str(path) if path else None

    def cgroup_dir(self, name: str, controller: str) -> Path:
        """The current instance's cgroup dir in one controller (the tree on v2)."""
        path = self.cgroup_path(name)
        assert path is not None, f"no config.json with a cgroupsPath for {name}"
        return cgroup_dir(path, controller)

    def cgroup_file(self, name: str, controller: str, file: str) -> str:
        return (self.cgroup_dir(name, controller) / file).read_text().strip()

    def gone_from_host(self, name: str) -> list[str]:
        """What is left of ``name`` on the host (empty: nothing)."""
        return self.left_on_host([name])[name]

    def left_on_host(self, names: Iterable[str]) -> dict[str, list[str]]:
        """For each name, what is left of it on the host, of any instance: runc containers,
        depot dirs, mounts under them, cgroup dirs (``<parent>/<name>`` and
        ``<parent>/<name>.<n>`` under the sandbox's parent and daemon.json's). One
        ``runc list`` and one mountinfo read for all."""
        wanted = list(names)
        left: dict[str, list[str]] = {n: [] for n in wanted}
        for e in self.runc_entries():
            n = logical_name(e)
            if n in left:
                left[n].append(f"runc container {e['id']} ({e.get('status')})")
        containers = self.state_dir / "containers"
        depots = list(containers.iterdir()) if containers.is_dir() else []
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        cgroup_dirs: list[Path] = []
        v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
        for parent in self.cgroup_parents():
            for controller in ("",) if v2 else ("memory", "pids", "freezer", "cpu", "unified"):
                base = CGROUP_ROOT / controller / parent.strip("/")
                if base.is_dir():
                    cgroup_dirs += [p for p in base.iterdir() if p.is_dir()]
        prefix = str(containers) + "/"
        mounted = [(p[len(prefix):].split("/", 1)[0], p) for p in points if p.startswith(prefix)]
        for n in wanted:
            left[n] += [f"depot {d}" for d in depots if is_instance_of(d.name, n)]
            left[n] += [f"mount {p}" for top, p in mounted if is_instance_of(top, n)]
            left[n] += [f"cgroup {cg}" for cg in cgroup_dirs if is_instance_of(cg.name, n)]
        return left

    def inventory(self) -> dict[str, list[str]]:
        """What of this world is on the host, as sorted logical names (one per instance):
        ``runc`` containers, ``depots`` (with a bundle), ``overlays`` (mounts under the
        depots) and ``cgroups`` (dirs under the world's cgroup parents, memory controller;
        the tree on v2)."""
        containers = self.state_dir / "containers"
        depots = [p.name for p in containers.iterdir()
                  if (p / "bundle").exists()] if containers.is_dir() else []
        prefix = str(containers) + "/"
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        overlays = {p[len(prefix):].split("/", 1)[0] for p in points if p.startswith(prefix)}
        cgroups: list[str] = []
        for parent in self.cgroup_parents():
            base = cgroup_dir(parent, "memory")
            if base.is_dir():
                cgroups += [p.name for p in base.iterdir() if p.is_dir()]
        return {
            "runc": self.runc_names(),
            "depots": sorted(instance_name(d) for d in depots),
            "overlays": sorted(instance_name(d) for d in overlays),
            "cgroups": sorted(instance_name(c) for c in cgroups),
        }

    def monitors(self, name: str) -> list[int]:
        """PIDs of live conmon processes that run a bundle of this name (any instance)."""
        return sorted(pid for pid, instances in self.conmons().items()
                      if any(is_instance_of(i, name) for i in instances))

    def conmons(self) -> dict[int, set[str]]:
        """Each live conmon process of this world: its PID -> the instances whose bundles
        it runs (the ids of ``<state>/containers/<id>/bundle`` in its argv)."""
        containers = str(self.state_dir / "containers") + "/"
        found: dict[int, set[str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = cmdline(int(entry.name))
            except OSError:
                continue
            if not argv or os.path.basename(argv[0]) != "conmon":
                continue
            ours = {a[len(containers):-len("/bundle")] for a in argv
                    if a.startswith(containers) and a.endswith("/bundle")}
            if ours and pid_alive(int(entry.name)):
                found[int(entry.name)] = ours
        return found

    def cgroup_procs(self, name: str) -> list[int]:
        """The PIDs in the current instance's cgroup, sorted ([] if it has none)."""
        path = self.cgroup_path(name)
        return [] if path is None else cgroup_procs_of(path)

    def freezer(self, name: str) -> str:
        """FROZEN or THAWED (v1's freezer.state; v2's cgroup.freeze mapped to them)."""
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return "FROZEN" if self.cgroup_file(name, "", "cgroup.freeze") == "1" else "THAWED"
        return self.cgroup_file(name, "freezer", "freezer.state")


class PidSampler:
    """Samples runc's view of NAME's current instance in a thread: every (status, pid) it
    went through, in order.

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


