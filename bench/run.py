"""The reconciler's latency and footprint, each figure printed beside its floor and its peers.

    make bench    (= .venv/bin/python bench/run.py --rootfs .state/rootfs/busybox)

One run, one root filesystem, everything private: a temp dir holding the manifests
directory, a staging dir beside it (same filesystem, so a drop is one rename), the daemon's
state dir and runc root, a second runc root for the bare-runc floors, podman's own storage,
run root, tmp dir and runc root, figure 7's etcd data dirs, nodes' state dirs and runc
roots, and a cgroup parent ``/reconciler-bench/<tag>``. The
figures (see bench/README.md):

1. one manifest dropped -> its container running, against a bare ``runc run -d`` and, as
   peers timed in the same rounds, ``podman run -d`` and ``podman kube play`` of a Pod;
2. N manifests dropped at once -> all running, against N sequential ``runc run -d``;
3. ``runc kill NAME KILL`` -> the first restart running, against podman's measured 102 ms
   and a bare ``runc delete`` + ``runc run -d``;
4. the daemon restarted under N running containers -> converged, and restarts it caused;
5. the daemon's idle CPU and RSS with N containers, and conmon's RSS per container;
6. a two-container Kubernetes Pod (image busybox:1.36) dropped -> both containers running,
   against ``podman kube play`` of the same file and three bare ``runc run -d`` (a
   catatonit infra container and two joining its namespaces);
7. one fleet-wide etcd write -> the container running on every one of 10, then 50 nodes
   (daemons with ``--source etcd`` on this host, a 3-member etcd on 127.0.0.1), against
   N bare ``runc run -d`` at once; no peer (``--only 7`` runs it alone).

Each floor and peer is measured beside its figure, trial by trial where there are trials
(bare, then podman, then the daemon, in turn), so that load from other work on the machine
hits all of them alike.

"Running" is decided the way ``runc state`` decides it, from runc's own files, so the
benchmark can poll every 2 ms without spawning anything: ``<root>/<name>/state.json``
(runc writes it to a temp file and renames it, so a read never sees half of it) names the
init PID and its start time; the container runs when that PID is alive with that start
time and ``exec.fifo`` is gone (``runc start`` removes it once init was let go). Every
single-drop trial is checked against ``runc state`` afterwards, untimed. Podman's
containers are judged by the same rule in podman's own runc root.

Targets are printed with PASS/MISS, then a summary table; the benchmark always exits 0
unless it crashes. Clean-up (daemons, etcd members, podman's containers and pods,
containers, monitors, mounts, cgroups, the temp dir) runs in a ``finally``, also on Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from reconciler.sources import etcdapi

os.environ.setdefault("RECONCILER_NETWORKS", "off")  # no bridge on the machine's network

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

# The targets, printed with PASS/MISS (information, never a failure).
SINGLE_OVER_BARE = 0.020  # 1: drop -> running p50 at most this above bare runc run -d
FASTER_THAN_PODMAN_RUN = 2.5  # 1: podman run -d p50 / our drop -> running p50, at least
FASTER_THAN_KUBE_PLAY = 4.0  # 1: podman kube play p50 / our drop -> running p50, at least
BULK_OVER_LOOP = 1.25  # 2: N at once, at most this times N sequential bare runc run -d
CRASH_OVER_BARE = 0.025  # 3: first restart p50 at most this above the bare restart's p50
RESTART_CONVERGED = 0.400  # 4: daemon restart with N running -> converged, under; 0 restarts
IDLE_CPU = 0.5  # 5: % of one core over a full --resync period, runc children included
FASTER_THAN_KUBE_PLAY_POD = 2.0  # 6: kube play (returned) p50 / our Pod drop -> running p50
FLEET_P50 = 1.0  # 7: one fleet write -> running, the p50 over nodes under this, with ...
FLEET_TARGET_NODES = 10  # ... this many nodes (the fleet issue's goal)

# podman, the peer: the same busybox rootfs imported as an image, once per run (untimed).
PODMAN_IMAGE = "localhost/bench-busybox:latest"
TRIAL_LABEL = "bench.trial"  # annotation naming a trial's container (runc keeps it in labels)

# 6: the two-container Pod. Its image is an OCI image (deploy/mkimage-busybox.sh), imported
# into the daemon's store as busybox:1.36 and pulled into podman's storage and tagged
# busybox:1.36 (podman: localhost/busybox:1.36, the first name a short name looks up).
POD_IMAGE = "busybox:1.36"
POD_LAYOUT_REF = "busybox:latest"  # the image's name inside the layout mkimage builds
MKIMAGE = REPO / "deploy" / "mkimage-busybox.sh"
# Both trap SIGTERM, as COMMAND does: busybox httpd as PID 1 ignores SIGTERM, so every
# (untimed) deletion would otherwise cost the whole grace period.
POD_CONTAINERS = (("server", ["/bin/sh", "-c",
                              "trap 'exit 0' TERM; httpd -f -p 127.0.0.1:8080 & wait"]),
                  ("sleeper", COMMAND))
ANN_POD, ANN_POD_ROLE = "io.reconciler.pod", "io.reconciler.pod-role"  # on every pod unit
CATATONIT = ("catatonit", "/usr/libexec/podman/catatonit")

# 7: a fleet. Nodes are daemons on this host, each with its own state dir, runc root and
# cgroup parent, fed by a real etcd cluster on 127.0.0.1 (tests/etcd_cluster.py).
FLEET_MEMBERS = 3
FLEET_PREFIX = "/reconciler/fleet/"  # a key here is every node's (no selector: all nodes)
# The etcd source logs no stage of its own: its watch, its batch (QUIET, 20 ms) and the
# desired state end at the loop's "desired" line.
FLEET_STAGES = (("desired", "watch + batch + desired"), ("plan", "plan"),
                ("action", "to a worker"), ("conmon", "spec, overlay, config.json"),
                ("created", "conmon + runc create"), ("started", "runc start"))


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
        self.more_roots: list[Path] = []  # figure 7: each node's runc root, and the floor's
        self.closers: list[Callable[[], None]] = []  # figure 7: the etcd members
        for d in (self.manifests, self.staging, self.state, self.runc_root, self.bare_root,
                  self.bundles, self.logs):
            d.mkdir(parents=True)

    @property
    def status_path(self) -> Path:
        return self.state / "status.json"


def cleanup(box: Sandbox, daemons: Sequence[Daemon], peers: Sequence[Podman] = ()) -> None:
    """Leave nothing behind; each step goes on when an earlier one failed."""
    for daemon in daemons:  # all told first: figure 7 has up to 50 of them
        with contextlib.suppress(Exception):
            daemon.terminate()
    for daemon in daemons:
        with contextlib.suppress(Exception):
            daemon.stop()
    for close in box.closers:
        with contextlib.suppress(Exception):
            close()
    for podman in peers:
        with contextlib.suppress(Exception):
            podman.remove_all()
    roots = [box.runc_root, box.bare_root, *box.more_roots,
             *(podman.runc_root for podman in peers)]
    for root in roots:
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
    for podman in peers:
        with contextlib.suppress(Exception):
            podman.remove_host_leftovers()
    shutil.rmtree(box.base, ignore_errors=True)


def unescape(field_: str) -> str:
    return field_.encode().decode("unicode_escape") if "\\" in field_ else field_


def remove_cgroups(parent: str, *, and_its_parent: bool = True) -> None:
    """rmdir the parent, deepest first, in every controller (and its empty grandparent)."""
    root = Path("/sys/fs/cgroup")
    rel = parent.strip("/")
    for controller in sorted(p for p in root.iterdir() if p.is_dir()):
        top = controller / rel
        if top.is_dir():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        if and_its_parent:
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
    return pid_if_running(root / instance(root, name))


def pid_if_running(d: Path) -> int | None:
    """The same for runc's state directory ``d`` (``<root>/<id>``)."""
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

    def pod_bundle(self, name: str, args: Sequence[str], *, root: Path,
                   join: int | None = None) -> Path:
        """A pod member's bundle, of ``runc spec``'s config as ``bundle`` makes it; with
        ``join`` (the infra PID), one that joins that process's net, IPC and UTS namespaces
        by their /proc paths and sets no hostname (the pod's is the infra's)."""
        bundle = self.bundle(name)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"] = list(args)
        config["root"] = {"path": str(root), "readonly": True}
        if join is not None:
            config.pop("hostname", None)
            paths = {"network": "net", "ipc": "ipc", "uts": "uts"}
            config["linux"]["namespaces"] = [
                {**ns, "path": f"/proc/{join}/ns/{paths[ns['type']]}"}
                if ns["type"] in paths else ns for ns in config["linux"]["namespaces"]]
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def timed_pod(self, name: str, infra_root: Path) -> float:
        """The floor of figure 6: three ``runc run -d``, an infra container (catatonit -P,
        alone in ``infra_root``) and the Pod's two containers joining its namespaces. The
        infra bundle is written before the clock starts; the two others need its PID, so
        they are written inside the timed span (a JSON dump each)."""
        infra = self.pod_bundle(f"{name}-infra", ["/catatonit", "-P"], root=infra_root)
        t0 = time.perf_counter()
        self.run(f"{name}-infra", infra)
        pid = running_pid(self.box.bare_root, f"{name}-infra")
        if pid is None:
            raise RuntimeError(f"runc run -d {name}-infra returned but it is not running")
        for cname, argv in POD_CONTAINERS:
            member = f"{name}-{cname}"
            self.run(member, self.pod_bundle(member, argv, root=self.box.rootfs, join=pid))
        elapsed = time.perf_counter() - t0
        for cname, _ in POD_CONTAINERS:
            if running_pid(self.box.bare_root, f"{name}-{cname}") is None:
                raise RuntimeError(f"runc run -d {name}-{cname} returned but it is not running")
        return elapsed

    def delete_pod(self, name: str) -> None:
        for cname, _ in POD_CONTAINERS:
            self.delete(f"{name}-{cname}")
        self.delete(f"{name}-infra")


# -- podman: the peers ---------------------------------------------------------------------


class PodmanError(RuntimeError):
    pass


@dataclass(frozen=True)
class PeerTrial:
    running: float  # the command started -> its container running (runc's rule, as for ours)
    returned: float  # the command started -> the command exited


@dataclass
class Peers:
    """podman's figures beside figure 1: empty when podman is missing or its set-up failed."""

    version: str = ""
    skipped: str | None = None  # why there are no figures, or why they stop early
    run_cold: PeerTrial | None = None
    run: list[PeerTrial] = field(default_factory=list)
    kube_cold: PeerTrial | None = None
    kube: list[PeerTrial] = field(default_factory=list)


# podman's containers.conf: the machine's own (read the way podman reads it), then these,
# which keep podman's state in the temp dir. lock_type "file": the default "shm" locks
# live in /dev/shm/libpod_lock, shared with every other podman on the host. network_backend
# "cni": netavark creates /run/containers/networks on every start, even for --network none.
# default_ulimits: as root podman asks runc for nofile 1048576, which runc cannot set
# without CAP_SYS_RESOURCE, and containers/common lowers podman's own nproc to pid_max, so
# the container's nproc must not exceed that (runc then fails "error setting rlimit").
def podman_conf(d: Path, *, nofile: int, nproc: int) -> dict[str, Any]:
    conf = system_containers_conf()
    ours: dict[str, dict[str, Any]] = {
        "containers": {"default_ulimits": [f"nofile={nofile}:{nofile}",
                                           f"nproc={nproc}:{nproc}"]},
        "network": {"network_backend": "cni", "network_config_dir": str(d / "networks")},
        "engine": {"cgroup_manager": "cgroupfs", "events_logger": "none", "lock_type": "file",
                   "tmp_dir": str(d / "tmp"), "image_copy_tmp_dir": str(d / "tmp")},
    }
    for table, values in ours.items():
        conf.setdefault(table, {}).update(values)
    return conf


def system_containers_conf() -> dict[str, Any]:
    """The host's containers.conf files merged in podman's order (CONTAINERS_CONF, which
    the benchmark sets, makes podman read only that file)."""
    paths = [Path("/usr/share/containers/containers.conf"),
             Path("/etc/containers/containers.conf"),
             *sorted(Path("/etc/containers/containers.conf.d").glob("*.conf"))]
    merged: dict[str, Any] = {}
    for path in paths:
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
            merge(merged, tomllib.loads(path.read_text()))
    return merged


def merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def toml(data: dict[str, Any], table: str = "") -> str:
    """Enough TOML for containers.conf: tables of strings, numbers, booleans and lists."""

    def key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)

    text = f"[{table}]\n" if table else ""
    text += "".join(f"{key(k)} = {json.dumps(v)}\n" for k, v in data.items()
                    if not isinstance(v, dict))
    for k, v in data.items():
        if isinstance(v, dict):
            text += "\n" + toml(v, f"{table}.{key(k)}" if table else key(k))
    return text


def capped(which: int, ceiling: int) -> int:
    hard = resource.getrlimit(which)[1]
    return ceiling if hard == resource.RLIM_INFINITY or hard > ceiling else hard


def pid_max() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())
    return 32768


def cgroup_controllers() -> list[Path]:
    return sorted(p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())


def pod_yaml(name: str) -> str:
    """A one-container Pod running the benchmark's command; the annotation names the trial
    (podman copies a pod's annotations to its containers, not to the infra container)."""
    args = ", ".join(json.dumps(a) for a in COMMAND)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n"
            f"    {TRIAL_LABEL}: {name}\nspec:\n  containers:\n    - name: main\n"
            f"      image: {PODMAN_IMAGE}\n      imagePullPolicy: Never\n"
            f"      command: [{args}]\n")


def pod2_yaml(name: str) -> str:
    """Figure 6's Pod: two busybox containers, no init container, no volume, the image
    never pulled. The same bytes go to ``podman kube play`` and into the daemon's
    directory; the annotation names the trial's containers in podman's runc root."""
    containers = "".join(
        f"    - name: {cname}\n      image: {POD_IMAGE}\n      imagePullPolicy: IfNotPresent\n"
        f"      command: [{', '.join(json.dumps(a) for a in argv)}]\n"
        for cname, argv in POD_CONTAINERS)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n"
            f"    {TRIAL_LABEL}: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n"
            f"  containers:\n{containers}")


def hidden(d: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run in a private mount namespace where the host's blob-info cache and
    /var/tmp are empty dirs of ours (``d/hide-cache``, ``d/hide-vartmp``). Every image copy
    (podman's, and skopeo's as root: the image build and the daemon's ``image import``)
    writes that cache in /var/lib/containers/cache whatever else it is told."""
    binds: list[str] = []
    cache = next((p for p in (Path("/var/lib/containers/cache"), Path("/var/lib/containers"),
                              Path("/var/lib")) if p.is_dir()), None)
    for sub, target in (("hide-cache", cache), ("hide-vartmp", Path("/var/tmp"))):
        if target is not None and target.is_dir():
            (d / sub).mkdir(parents=True, exist_ok=True)
            binds += [str(d / sub), str(target)]
    script = ('while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; '
              'shift; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *binds, "--", *argv]


class Podman:
    """podman (4.3.1 on Debian 12) with nothing of the machine's: storage, run root, tmp dir,
    locks, network config and runc root under the temp dir, a cgroup parent under the
    bench's, no events, no logs, no network. Every command goes through ``argv`` and
    ``env``; podman never runs without them (see bench/README.md, "podman, the peer")."""

    def __init__(self, box: Sandbox, exe: str, runc: str) -> None:
        self.box = box
        self.runc = runc
        self.dir = d = box.base / "podman"
        self.runc_root = d / "runc"
        self.cgroup_parent = f"{box.cgroup_parent}/podman"
        self.pods: set[str] = set()  # kube play's pods: their cgroups are not under ours
        self.others: set[str] = set()  # runc ids that belong to no trial (infra containers)
        for sub in ("root", "runroot", "tmp", "runc", "networks", "out", "hide-cache",
                    "hide-vartmp"):
            (d / sub).mkdir(parents=True)
        # What the host had before podman ran, so that clean-up removes only what it made.
        self.had_libpod_parent = {c for c in cgroup_controllers()
                                  if (c / "libpod_parent").is_dir()}
        self.had_run_runc = os.path.lexists("/run/runc")
        conf = podman_conf(d, nofile=capped(resource.RLIMIT_NOFILE, 1048576),
                           nproc=capped(resource.RLIMIT_NPROC, pid_max()))
        (d / "containers.conf").write_text(toml(conf))
        (d / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{d / "root"}"\n'
            f'runroot = "{d / "runroot"}"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"), "TMPDIR": str(d / "tmp")}
        self.argv = [exe, "--root", str(d / "root"), "--runroot", str(d / "runroot"),
                     "--tmpdir", str(d / "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                     "--network-config-dir", str(d / "networks"),
                     "--runtime", runc, f"--runtime-flag=root={self.runc_root}"]

    def podman(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False, timeout=timeout)

    def checked(self, *args: str) -> str:
        done = self.podman(*args)
        if done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:2])}: exit {done.returncode}: "
                              f"{done.stderr.strip()[-400:]}")
        return done.stdout

    def hidden(self, args: Sequence[str]) -> list[str]:
        """podman ``args`` in a private mount namespace (``hidden``): podman 4.3 keeps the
        cache of every image copy in /var/lib/containers/cache whatever --root says, and
        its pause-image build (buildah) writes to /var/tmp. Only the untimed set-up runs
        this way."""
        return hidden(self.dir, [*self.argv, *args])

    def setup(self, rootfs: Path) -> str:
        """Untimed, once: the rootfs imported as PODMAN_IMAGE, and podman's pause image
        (catatonit, for kube play's infra container) built by a pod created and removed.
        Returns podman's version."""
        version = self.checked("version", "--format", "{{.Client.Version}}").strip()
        if shutil.which("unshare") is None:
            raise PodmanError("no unshare(1), which keeps podman's set-up off the host's "
                              "/var/lib/containers/cache")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            done = subprocess.run(self.hidden(["import", "--quiet", "-", PODMAN_IMAGE]),
                                  stdin=tar.stdout, env=self.env, capture_output=True,
                                  text=True, check=False, timeout=120)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
        if done.returncode != 0 or tar.returncode != 0:
            raise PodmanError(f"podman import: exit {done.returncode} (tar {tar.returncode}): "
                              f"{done.stderr.strip()[-400:]}")
        done = subprocess.run(
            self.hidden(["pod", "create", "--name", "bench-pause", "--network", "none",
                         "--cgroup-parent", f"{self.cgroup_parent}/pause"]),
            env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            check=False, timeout=120)
        if done.returncode != 0:
            raise PodmanError(f"podman pod create (the pause image): exit {done.returncode}: "
                              f"{done.stderr.strip()[-400:]}")
        self.checked("pod", "rm", "-f", "bench-pause")
        return version

    def load_layout(self, layout: Path) -> None:
        """Untimed, once: figure 6's image, pulled from the OCI layout the daemon imports
        too (in the private mount namespace, as the import above) and tagged POD_IMAGE."""
        done = subprocess.run(
            self.hidden(["pull", "--quiet", f"oci:{layout}:{POD_LAYOUT_REF}"]), env=self.env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0 or not done.stdout.split():
            raise PodmanError(f"podman pull oci:{layout}: exit {done.returncode}: "
                              f"{done.stderr.strip()[-400:]}")
        done = subprocess.run(self.hidden(["tag", done.stdout.split()[-1], POD_IMAGE]),
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise PodmanError(f"podman tag {POD_IMAGE}: exit {done.returncode}: "
                              f"{done.stderr.strip()[-400:]}")

    def pod_trial(self, name: str, yaml: Path) -> PeerTrial:
        """``podman kube play`` of figure 6's Pod file, timed until the command returns
        (it returns once the pod runs); ``running`` is when both its containers counted
        as running in podman's runc root (runc's rule, polled while it runs). Then the pod
        is removed, untimed."""
        out_path, err_path = self.dir / "out" / f"{name}.out", self.dir / "out" / f"{name}.err"
        want, ids = f"{TRIAL_LABEL}={name}", set[str]()
        running: float | None = None
        returned: float | None = None
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            t0 = time.perf_counter()
            proc = subprocess.Popen([*self.argv, "kube", "play", "--network", "none",
                                     "--log-driver", "none", str(yaml)], env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f)
            try:
                while returned is None:
                    if proc.poll() is not None:
                        returned = time.perf_counter() - t0
                    if running is None and self.pod_running(want, ids) >= len(POD_CONTAINERS):
                        running = time.perf_counter() - t0
                    if returned is None:
                        if time.perf_counter() > t0 + 60:
                            raise PodmanError(f"podman kube play {name}: no return after 60 s")
                        time.sleep(POLL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        output = out_path.read_text(errors="replace").split()
        if "Pod:" in output[:-1]:
            self.pods.add(output[output.index("Pod:") + 1])
        if proc.returncode != 0:
            raise PodmanError(f"podman kube play {name}: exit {proc.returncode}: "
                              f"{err_path.read_text(errors='replace').strip()[-400:]}")
        self.remove("pod", "rm", name)
        assert returned is not None
        if running is None:  # looked at once more right after the return
            raise PodmanError(f"podman kube play {name} returned, but its containers were "
                              "not both running")
        return PeerTrial(running, returned)

    def pod_running(self, want: str, ids: set[str]) -> int:
        """How many containers labelled ``want`` (kept in ``ids`` once found) run now."""
        for cid in os.listdir(self.runc_root):
            if cid in ids or cid in self.others:
                continue
            try:
                with open(self.runc_root / cid / "state.json", "rb") as f:
                    labels = json.loads(f.read()).get("config", {}).get("labels") or []
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue
            (ids if want in labels else self.others).add(cid)
        return sum(1 for cid in ids if pid_if_running(self.runc_root / cid) is not None)

    def run_trial(self, name: str) -> PeerTrial:
        """``podman run -d`` of the benchmark's command, timed; then removed, untimed."""
        trial, _ = self.timed(name, ["run", "-d", "--pull", "never", "--name", name,
                                     "--network", "none", "--log-driver", "none",
                                     "--cgroup-parent", self.cgroup_parent,
                                     "--annotation", f"{TRIAL_LABEL}={name}",
                                     PODMAN_IMAGE, *COMMAND])
        self.remove("rm", name)
        return trial

    def kube_trial(self, name: str) -> PeerTrial:
        """``podman kube play`` of a one-container Pod, timed until that container runs;
        then the pod is removed, untimed."""
        yaml = self.dir / "out" / f"{name}.yaml"
        yaml.write_text(pod_yaml(name))
        trial, output = self.timed(name, ["kube", "play", "--network", "none",
                                          "--log-driver", "none", str(yaml)])
        lines = output.split()
        if "Pod:" in lines[:-1]:
            self.pods.add(lines[lines.index("Pod:") + 1])
        self.remove("pod", "rm", name)
        return trial

    def timed(self, name: str, args: Sequence[str]) -> tuple[PeerTrial, str]:
        """The clock starts before podman is spawned and stops when the container whose
        runc labels carry ``bench.trial=NAME`` counts as running in podman's runc root."""
        out_path, err_path = self.dir / "out" / f"{name}.out", self.dir / "out" / f"{name}.err"
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            t0 = time.perf_counter()
            proc = subprocess.Popen([*self.argv, *args], env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out_f, stderr=err_f)
            try:
                running, returned = self.wait_running(name, proc, t0)
                if returned is None:
                    proc.wait(timeout=60)
                    returned = time.perf_counter() - t0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0:
            raise PodmanError(f"podman {args[0]} {name}: exit {proc.returncode}: "
                              f"{err_path.read_text(errors='replace').strip()[-400:]}")
        return PeerTrial(running, returned), out_path.read_text(errors="replace")

    def wait_running(self, name: str, proc: subprocess.Popen[bytes], t0: float
                     ) -> tuple[float, float | None]:
        """(-> running, -> the command exited if it did by then)."""
        cid, returned, deadline = None, None, t0 + 30
        while True:
            if returned is None and proc.poll() is not None:
                returned = time.perf_counter() - t0
                if proc.returncode != 0:
                    return returned, returned  # failed; timed() reports why
            if cid is None:
                cid = self.find(name)
            if cid is not None and pid_if_running(self.runc_root / cid) is not None:
                return time.perf_counter() - t0, returned
            if time.perf_counter() > deadline:
                raise PodmanError(f"podman: {name} not running after 30 s")
            time.sleep(POLL)

    def find(self, name: str) -> str | None:
        """The runc id of the trial's container, from the labels runc keeps in state.json
        (runc writes them at create, with the file; an id without it is not there yet)."""
        want = f"{TRIAL_LABEL}={name}"
        for cid in os.listdir(self.runc_root):
            if cid in self.others:
                continue
            try:
                with open(self.runc_root / cid / "state.json", "rb") as f:
                    labels = json.loads(f.read()).get("config", {}).get("labels") or []
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue
            if want in labels:
                return cid
            self.others.add(cid)
        return None

    def remove(self, *args: str) -> None:
        """``podman [pod] rm -f -t 0 NAME``, then what podman leaves: its cleanup process
        (``podman container cleanup``, which conmon runs when a container exits) is waited
        for, and the stopped runc state it did not delete (its runc gets no --root) too."""
        self.checked(*args[:-1], "-f", "-t", "0", args[-1])
        self.settle(timeout=10)
        self.delete_runc_leftovers()

    def settle(self, *, timeout: float) -> None:
        """Wait for podman processes working on our dirs to exit; kill them after timeout."""
        deadline = time.monotonic() + timeout
        while (busy := processes_mentioning(str(self.dir), comm="podman")) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def delete_runc_leftovers(self) -> None:
        for cid in os.listdir(self.runc_root):
            subprocess.run([self.runc, f"--root={self.runc_root}", "delete", "-f", cid],
                           check=False, capture_output=True, timeout=30)
            self.others.discard(cid)

    def remove_all(self) -> None:
        """Clean-up: every pod and container podman made, then its leftovers."""
        with contextlib.suppress(Exception):
            self.pods.update(self.podman("pod", "ps", "-q", "--no-trunc").stdout.split())
        for args in (("pod", "rm", "-af", "-t", "0"), ("rm", "-af", "-t", "0")):
            with contextlib.suppress(Exception):
                self.podman(*args)
        self.settle(timeout=10)
        self.delete_runc_leftovers()

    def remove_host_leftovers(self) -> None:
        """After the cgroup parent is gone: the pod cgroups kube play made under
        /libpod_parent (kube play has no --cgroup-parent; podman's cgroupfs manager leaves
        the name=systemd and unified copies), /libpod_parent itself where this run made it,
        and /run/runc if this run made it (the runc of podman's cleanup process, which gets
        no --root, creates it) and it is empty."""
        for pod in self.pods:
            remove_cgroups(f"/libpod_parent/{pod}", and_its_parent=False)
        for controller in cgroup_controllers():
            if controller not in self.had_libpod_parent:
                with contextlib.suppress(OSError):
                    os.rmdir(controller / "libpod_parent")
        if not self.had_run_runc:
            with contextlib.suppress(OSError):
                os.rmdir("/run/runc")


def start_podman(box: Sandbox, peers: list[Podman]) -> tuple[Podman | None, Peers]:
    """podman set up for the peers, or None (and why) when it is missing or fails."""
    exe, runc = shutil.which("podman"), shutil.which("runc")
    if exe is None or runc is None:
        out("podman: not installed, peers skipped")
        return None, Peers(skipped="podman: not installed")
    podman = Podman(box, exe, runc)
    peers.append(podman)  # before the set-up, so that clean-up covers half a set-up too
    try:
        version = podman.setup(box.rootfs)
    except (PodmanError, OSError, subprocess.SubprocessError) as exc:
        out(f"podman: set-up failed, peers skipped: {exc}")
        return None, Peers(skipped=f"podman set-up failed: {exc}")
    out(f"  podman {version}: --runtime {runc}, its own --root, --runroot, --tmpdir, runc root, "
        "file locks, CNI config dir and containers.conf under the temp dir; --cgroup-manager "
        "cgroupfs, --events-backend none, --network none, --log-driver none; "
        f"--cgroup-parent {podman.cgroup_parent} (kube play: /libpod_parent/<pod id>)")
    return podman, Peers(version=version)


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    def __init__(self, box: Sandbox, *, concurrency: int, label: str) -> None:
        self.box = box
        self.concurrency = concurrency
        self.log = box.logs / f"daemon-{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.terminated = False  # SIGTERM sent to this process

    def argv(self) -> list[str]:
        b = self.box
        return [sys.executable, "-m", "reconciler", "run", "--manifests", str(b.manifests),
                "--state-dir", str(b.state), "--runc-root", str(b.runc_root),
                "--cgroup-parent", b.cgroup_parent, "--settle", str(SETTLE),
                "--concurrency", str(self.concurrency),
                "--backoff-reset", str(BACKOFF_RESET), "--log-format", "json",
                "--log-level", "debug",  # one line per stage of a change: the breakdowns
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

    def terminate(self) -> None:
        """SIGTERM, no wait (``stop`` waits): many daemons then exit side by side."""
        if self.proc is not None and self.proc.poll() is None and not self.terminated:
            self.proc.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self) -> float:
        """SIGTERM (unless ``terminate`` sent it), a bounded wait, SIGKILL; the seconds it
        took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.terminated = False  # a restart (figure 4) starts a new process
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
    return read_status_file(box.status_path)


def read_status_file(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return data


def passed_since(box: Sandbox, wall: float) -> dict[str, Any] | None:
    """status.json if a daemon wrote it after a pass that ran at or after ``wall`` (so this
    daemon's, not its predecessor's: inode numbers are reused, times are not)."""
    return status_after(box.status_path, wall)


def status_after(path: Path, wall: float) -> dict[str, Any] | None:
    """The status file ``path`` if it comes from a pass that ran at or after ``wall``."""
    status = read_status_file(path)
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
    return gone_from(box.runc_root, box.state, name)


def gone_from(runc_root: Path, state: Path, name: str) -> bool:
    """No runc container and no depot of ``name`` left (a daemon's runc root, state dir)."""
    return (not (runc_root / instance(runc_root, name)).exists()
            and not any((state / "containers").glob(f"{name}.*"))
            and not (state / "containers" / name).exists())


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
    peers: Peers = field(default_factory=Peers)


def single_trials(box: Sandbox, daemon: Daemon, bare: Bare, plan: Plan,
                  podman: Podman | None, peers: Peers) -> Singles:
    """A cold drop each, then ``plan.trials`` rounds of: bare run, bare run of the daemon's
    config, ``podman run -d`` (and, in every ``trials // kube_trials``-th round, ``podman
    kube play``), daemon drop; interleaved so that load from elsewhere hits all alike.
    Every container is removed (untimed) before the next is made."""
    cold = drop_one(box, daemon, "warmup")
    daemon_config = json.loads(
        (box.state / "containers" / "warmup.1" / "bundle" / "config.json").read_text())
    drop_out(box, daemon, ["warmup"], timeout=30)
    bare_cold = bare.timed_run("bare-warmup")
    bare.delete("bare-warmup")
    result = Singles(cold.seconds, [], bare_cold, [], [], 0, daemon_config, peers)
    try:
        if podman is not None:
            peers.run_cold = podman.run_trial("podman-warmup")
            peers.kube_cold = podman.kube_trial("kube-warmup")
    except PodmanError as exc:
        peers.skipped, podman = f"podman's cold trials failed: {exc}", None
    every = max(1, plan.trials // max(1, plan.kube_trials))
    for i in range(plan.trials):
        result.bare.append(bare.timed_run(f"bare-one-{i:02d}"))
        bare.delete(f"bare-one-{i:02d}")
        result.bare_cfg.append(bare.timed_run(f"bare-cfg-{i:02d}", template=daemon_config))
        bare.delete(f"bare-cfg-{i:02d}")
        try:
            if podman is not None:
                peers.run.append(podman.run_trial(f"podman-{i:02d}"))
                if i % every == 0 and len(peers.kube) < plan.kube_trials:
                    peers.kube.append(podman.kube_trial(f"kube-{i:02d}"))
        except PodmanError as exc:
            peers.skipped, podman = f"podman stopped after an error: {exc}", None
        trial = drop_one(box, daemon, f"one-{i:02d}")
        state = runc_state(box.runc_root, trial.name)  # untimed cross-check
        if state is None or state.get("status") != "running" or state.get("pid") != trial.pid:
            result.mismatches += 1
        result.trials.append(trial)
        drop_out(box, daemon, [trial.name], timeout=30)
    return result


# The daemon's --log-level debug lines carry a "stage" (docs/daemon.md, "Timing a change"):
# the first of each stage after a drop, or after a death, splits the time to running.
DROP_STAGES = (("event", "inotify -> loop"), ("snapshot", "look"), ("plan", "desired + plan"),
               ("action", "to a worker"), ("conmon", "spec, overlay, config.json"),
               ("created", "conmon + runc create"), ("started", "runc start"))
CRASH_STAGES = (("action", "exit seen, planned"), ("deleted", "runc delete, teardown"),
                ("conmon", "spec, overlay, config.json"), ("created", "conmon + runc create"),
                ("started", "runc start"))


def split_stages(records: Sequence[dict[str, Any]], spans: Sequence[tuple[str, float, float]],
                 stages: Sequence[tuple[str, str]]) -> str:
    """Median time of each stage, from the start of each span (``(object, start wall,
    running wall)``) to the first line of the stage for that object, then to the next."""
    return medians(stage_gaps(records, spans, stages), stages)


def stage_gaps(records: Sequence[dict[str, Any]], spans: Sequence[tuple[str, float, float]],
               stages: Sequence[tuple[str, str]]) -> dict[str, list[float]]:
    """Each stage's gaps (see ``split_stages``), one per span that logged it, and the last
    stage -> running seen (``"running"``)."""
    names = [s for s, _ in stages]
    gaps: dict[str, list[float]] = {s: [] for s in [*names, "running"]}
    for obj, start, end in spans:
        seen: dict[str, float] = {}
        for r in records:
            at, stage = float(r.get("time", 0.0)), r.get("stage")
            if (stage in names and stage not in seen and start <= at <= end
                    and r.get("object") in (None, obj)):
                seen[stage] = at
        last = start
        for stage in names:
            if stage in seen and seen[stage] >= last:
                gaps[stage].append(seen[stage] - last)
                last = seen[stage]
        gaps["running"].append(end - last)
    return gaps


def medians(gaps: dict[str, list[float]], stages: Sequence[tuple[str, str]]) -> str:
    parts = [f"{label} {statistics.median(gaps[s]) * 1000:.1f}"
             for s, label in [*stages, ("running", "-> running seen")] if gaps[s]]
    if not parts:
        return "(no stage lines in the daemon's log)"
    return "; ".join(parts) + " (ms, medians)"


def breakdown(daemon: Daemon, trials: Sequence[DropTrial]) -> str:
    """Drop -> running split into the daemon's stages."""
    spans = [(t.name, t.wall, t.wall + t.seconds) for t in trials]
    return ("  where it goes, from the drop: "
            + split_stages(daemon.log_records(), spans, DROP_STAGES))


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


# -- 6. a two-container Pod dropped -> both running ----------------------------------------


def pod_image(box: Sandbox) -> tuple[Path | None, str | None]:
    """Untimed, once, before the daemon starts: figure 6's image built as an OCI layout
    (deploy/mkimage-busybox.sh, its temp files in the temp dir) and imported into the
    daemon's state dir as POD_IMAGE, both in a private mount namespace (``hidden``); a
    root for the bare floor's infra container (catatonit alone). Returns (the layout,
    None) or (None, why the figure is skipped)."""
    missing = [t for t in ("umoci", "skopeo", "unshare") if shutil.which(t) is None]
    catatonit = next((p for p in (shutil.which(c) or c for c in CATATONIT)
                      if os.path.isabs(p) and os.access(p, os.X_OK)), None)
    if catatonit is None:
        missing.append("catatonit")
    if missing or catatonit is None:
        return None, f"{', '.join(missing)} not installed"
    tmp = box.base / "image-tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    layout = box.base / "image"
    steps = [[str(MKIMAGE), "-r", POD_LAYOUT_REF, str(layout)],
             [sys.executable, "-m", "reconciler", "image", "import", "--state-dir",
              str(box.state), f"oci:{layout}:{POD_LAYOUT_REF}", POD_IMAGE]]
    for what, argv in zip(("mkimage-busybox.sh", "reconciler image import"), steps,
                          strict=True):  # skopeo, in both, writes the blob-info cache
        done = subprocess.run(hidden(box.base / "image-hide", argv), env=env, cwd=REPO,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False, timeout=300)
        if done.returncode != 0:
            return None, f"{what}: exit {done.returncode}: {done.stderr.strip()[-300:]}"
    root = box.bundles / "infra-root"
    for sub in ("proc", "dev", "sys", "etc"):
        (root / sub).mkdir(parents=True)
    shutil.copy2(catatonit, root / "catatonit")
    return layout, None


class PodUnits:
    """A Pod's units in a runc root, found by the labels runc keeps in state.json (its
    copy of the OCI annotations, as ``runc list`` shows them): ``io.reconciler.pod`` and
    ``io.reconciler.pod-role``. Ids are remembered once read; a directory listing a poll."""

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.want = root, f"{ANN_POD}={key}"
        self.roles: dict[str, str] = {}  # runc id -> role
        self.others: set[str] = set()

    def scan(self) -> list[str]:
        ids = os.listdir(self.root)
        for cid in ids:
            if cid in self.roles or cid in self.others:
                continue
            try:
                with open(self.root / cid / "state.json", "rb") as f:
                    labels = json.loads(f.read()).get("config", {}).get("labels") or []
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue
            if self.want in labels:
                prefix = f"{ANN_POD_ROLE}="
                self.roles[cid] = next((la[len(prefix):] for la in labels
                                        if la.startswith(prefix)), "")
            else:
                self.others.add(cid)
        return ids

    def running(self, role: str) -> int:
        self.scan()
        return sum(1 for cid, r in self.roles.items()
                   if r == role and pid_if_running(self.root / cid) is not None)

    def present(self) -> bool:
        return any(cid in self.roles for cid in self.scan())


@dataclass(frozen=True)
class PodTrial:
    seconds: float  # the rename -> both app containers running
    sandbox: float | None  # the rename -> the sandbox (catatonit) seen running


def drop_pod(box: Sandbox, daemon: Daemon, name: str, staged: Path) -> PodTrial:
    """The Pod file (already staged, the bytes podman played) renamed in; the clock stops
    when both its app containers count as running in the daemon's runc root."""
    units = PodUnits(box.runc_root, f"default/{name}")
    sandbox = None
    t0 = time.perf_counter()
    os.rename(staged, box.manifests / staged.name)
    deadline = t0 + 30
    while units.running("app") < len(POD_CONTAINERS):
        if sandbox is None and units.running("sandbox"):
            sandbox = time.perf_counter() - t0
        if time.perf_counter() > deadline:
            daemon.check()
            raise TimeoutError(f"pod {name}: not all running 30 s after its file was dropped")
        time.sleep(POLL)
    return PodTrial(time.perf_counter() - t0, sandbox)


def listed_running(box: Sandbox, name: str) -> int:
    """Untimed cross-check: the pod's app containers ``runc list`` calls running."""
    done = subprocess.run(["runc", f"--root={box.runc_root}", "list", "--format", "json"],
                          capture_output=True, text=True, check=False)
    entries = json.loads(done.stdout or "null") if done.returncode == 0 else None
    return sum(1 for e in entries or []
               if (e.get("annotations") or {}).get(ANN_POD) == f"default/{name}"
               and (e.get("annotations") or {}).get(ANN_POD_ROLE) == "app"
               and e.get("status") == "running")


def drop_pod_out(box: Sandbox, daemon: Daemon, name: str) -> None:
    """Untimed: the file deleted, then every unit, depot and pod dir of it gone."""
    os.unlink(box.manifests / f"{name}.yaml")
    units = PodUnits(box.runc_root, f"default/{name}")
    unit = f"default_{name}"

    def all_gone() -> bool:
        daemon.check()
        return (not units.present() and not (box.state / "pods" / unit).exists()
                and not any((box.state / "containers").glob(f"{unit}*")))

    wait_for(all_gone, timeout=30, every=0.02, what=f"pod {name} deleted")


@dataclass
class PodFigure:
    skipped: str | None = None
    cold: PodTrial | None = None
    trials: list[PodTrial] = field(default_factory=list)
    bare_cold: float | None = None
    bare: list[float] = field(default_factory=list)
    kube_cold: PeerTrial | None = None
    kube: list[PeerTrial] = field(default_factory=list)
    kube_skipped: str | None = None
    mismatches: int = 0  # trials where `runc list` did not show both app containers running


def pod_trials(box: Sandbox, daemon: Daemon, bare: Bare, trials: int, infra_root: Path,
               podman: Podman | None, kube_skipped: str | None) -> PodFigure:
    """A cold trial each, then ``trials`` rounds of: the bare floor, ``podman kube play``
    of the Pod file, the same file dropped into the daemon's directory. Everything is
    removed (untimed) before the next round."""
    fig = PodFigure(kube_skipped=kube_skipped)

    def stage_pod(name: str) -> Path:
        staged = box.staging / f"{name}.yaml"
        staged.write_text(pod2_yaml(name))
        return staged

    def round_(name: str) -> tuple[float, PeerTrial | None, PodTrial]:
        nonlocal podman
        floor = bare.timed_pod(f"bare-{name}", infra_root)
        bare.delete_pod(f"bare-{name}")
        staged = stage_pod(name)
        kube = None
        try:
            if podman is not None:
                kube = podman.pod_trial(name, staged)
        except PodmanError as exc:
            fig.kube_skipped, podman = f"podman stopped after an error: {exc}", None
        trial = drop_pod(box, daemon, name, staged)
        if listed_running(box, name) != len(POD_CONTAINERS):
            fig.mismatches += 1
        drop_pod_out(box, daemon, name)
        return floor, kube, trial

    fig.bare_cold, fig.kube_cold, fig.cold = round_("pod-cold")
    fig.mismatches = 0  # only the counted trials
    for i in range(trials):
        floor, kube, trial = round_(f"pod-{i:02d}")
        fig.bare.append(floor)
        if kube is not None:
            fig.kube.append(kube)
        fig.trials.append(trial)
    return fig


# -- 3. crash -> first restart running -----------------------------------------------------


@dataclass
class CrashTrial:
    seconds: float  # runc kill -> the new PID running
    after_death: float  # the old PID's pidfd readable -> the new PID running
    crashes: int  # the daemon's consecutive crash count afterwards (1: a first crash)
    died_wall: float | None = None  # time.time() of the death and of the new PID running,
    running_wall: float | None = None  # to split the time with the daemon's stage lines


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
        results.append(CrashTrial(
            seconds=t1 - t0, after_death=t1 - (died or t0),
            crashes=int(record.get("history", {}).get("crashes", -1)),
            died_wall=died_wall, running_wall=died_wall + (t1 - died) if died_wall and died
            else None))
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


# -- 7. one fleet-wide etcd write -> running on every node ---------------------------------


class Node(Daemon):
    """One node of figure 7's fleet: ``reconciler run --source etcd --node NAME``, with its
    own state dir and runc root (``fleet/NAME/`` in the temp dir) and cgroup parent
    (``<bench parent>/fleet/NAME``). It has no label, so every fleet key is its own."""

    def __init__(self, box: Sandbox, name: str, endpoints: Sequence[str]) -> None:
        super().__init__(box, concurrency=DEFAULT_CONCURRENCY, label=f"fleet-{name}")
        self.name = name
        self.endpoints = tuple(endpoints)
        self.state = box.base / "fleet" / name / "state"
        self.runc_root = box.base / "fleet" / name / "runc"
        self.cgroup_parent = f"{box.cgroup_parent}/fleet/{name}"
        self.state.mkdir(parents=True)
        self.runc_root.mkdir()
        box.more_roots.append(self.runc_root)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "reconciler", "run", "--source", "etcd",
                "--node", self.name, "--etcd-endpoints", ",".join(self.endpoints),
                "--state-dir", str(self.state), "--runc-root", str(self.runc_root),
                "--cgroup-parent", self.cgroup_parent, "--settle", str(SETTLE),
                "--log-format", "json", "--log-level", "debug",  # the breakdown
                "--allow-empty"]  # each trial deletes the fleet's only key again


def start_nodes(nodes: Sequence[Node]) -> float:
    """All spawned at once, then each waited for until its status.json comes from a pass
    after the spawn (its etcd source has read the keys: a daemon plans nothing before
    every source was heard from). The seconds until the last was ready."""
    t0, wall = time.perf_counter(), time.time()
    for node in nodes:
        node.start()
    pending = list(nodes)

    def ready() -> bool:
        nonlocal pending
        for node in pending:
            node.check()
        pending = [n for n in pending
                   if status_after(n.state / "status.json", wall) is None]
        return not pending

    wait_for(ready, timeout=120, every=0.05, what=f"{len(nodes)} fleet daemons' first pass")
    return time.perf_counter() - t0


def etcd_txn(endpoints: Sequence[str], ops: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """One etcd transaction of ``ops``, as ``reconciler fleet apply`` makes one: (its round
    trip, time.perf_counter() at its return). The client and its connection are made
    before the round trip starts."""

    async def go() -> tuple[float, float]:
        async with etcdapi.Client(etcdapi.Settings(tuple(endpoints))) as client:
            t0 = time.perf_counter()
            await client.txn(ops)
            t1 = time.perf_counter()
            return t1 - t0, t1

    return anyio.run(go)


def fleet_key(name: str) -> str:
    return f"{FLEET_PREFIX}container-{name}"


@dataclass(frozen=True)
class FleetTrial:
    name: str
    wall: float  # time.time() at the txn's return, to match the daemons' logs
    txn: float  # the txn's own round trip (before the clock starts)
    seconds: dict[str, float]  # node -> the txn returned -> its container running


def fleet_write(nodes: Sequence[Node], name: str, rootfs: Path) -> FleetTrial:
    """ONE put of one Container under /reconciler/fleet/; the clock starts when the txn
    returns and stops, for each node, when its container counts as running in its root."""
    endpoints = nodes[0].endpoints
    txn, t0 = etcd_txn(endpoints, [etcdapi.put(fleet_key(name), manifest(name, rootfs))])
    wall = time.time() - (time.perf_counter() - t0)
    seconds: dict[str, float] = {}
    pending = list(nodes)
    deadline = t0 + 60
    while pending:
        for node in pending:
            if running_pid(node.runc_root, name) is not None:
                seconds[node.name] = time.perf_counter() - t0
        pending = [n for n in pending if n.name not in seconds]
        if pending:
            if time.perf_counter() > deadline:
                for node in pending:
                    node.check()
                raise TimeoutError(f"{name}: not running on {len(pending)} of {len(nodes)} "
                                   "nodes 60 s after the etcd write")
            time.sleep(BULK_POLL)
    return FleetTrial(name, wall, txn, seconds)


def fleet_delete(nodes: Sequence[Node], name: str) -> float:
    """Untimed: the key deleted, then wait until no node has the container or its depot."""
    t0 = time.perf_counter()
    etcd_txn(nodes[0].endpoints, [etcdapi.delete(fleet_key(name))])

    def all_gone() -> bool:
        for node in nodes:
            node.check()
        return all(gone_from(n.runc_root, n.state, name) for n in nodes)

    wait_for(all_gone, timeout=60, every=0.02, what=f"{name} deleted on {len(nodes)} nodes")
    return time.perf_counter() - t0


def together(argvs: Sequence[Sequence[str]]) -> list[int]:
    """Commands spawned at once, output to /dev/null; their exit codes."""
    procs = [subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for argv in argvs]
    return [proc.wait() for proc in procs]


def bare_fleet(bare: Bare, roots: Sequence[Path], tag: str, *,
               template: dict[str, Any] | None = None) -> list[float]:
    """The floor: a ``runc run -d`` of runc spec's config (figure 1's floor; or
    ``template``, the daemon's) in each of the N roots, all spawned at once, as the N
    daemons run side by side on the same cores. From before the first spawn to each
    container running (sorted). Then removed, untimed, with N ``runc delete -f`` at once."""
    names = [f"bare-{tag}-{i:02d}" for i in range(len(roots))]
    bundles = [bare.bundle(name, template=template) for name in names]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["runc", f"--root={root}", "run", "-d", "-b", str(bundle), name],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for root, bundle, name in zip(roots, bundles, names, strict=True)]
    seconds: list[float] = []
    pending = list(zip(roots, names, procs, strict=True))
    deadline = t0 + 60
    try:
        while pending:
            still = []
            for root, name, proc in pending:
                if running_pid(root, name) is not None:
                    seconds.append(time.perf_counter() - t0)
                elif proc.poll() not in (None, 0):
                    raise RuntimeError(f"runc run -d {name} failed (exit {proc.returncode})")
                else:
                    still.append((root, name, proc))
            pending = still
            if pending:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{len(pending)} bare containers not running after 60 s")
                time.sleep(BULK_POLL)
    finally:
        for proc in procs:
            proc.wait()
        together([["runc", f"--root={root}", "delete", "-f", name]
                  for root, name in zip(roots, names, strict=True)])
    return sorted(seconds)


@dataclass
class FleetPhase:
    nodes: int
    new: int  # nodes started for this phase (the others are the last phase's)
    started: float  # the new nodes spawned at once -> the last one ready
    cold: FleetTrial | None = None
    bare_cold: list[float] = field(default_factory=list)
    trials: list[FleetTrial] = field(default_factory=list)
    bare: list[list[float]] = field(default_factory=list)  # per trial, each container's
    bare_cfg: list[list[float]] = field(default_factory=list)  # the same, daemon's config
    deleted: list[float] = field(default_factory=list)  # the untimed deletions
    gaps: dict[str, list[float]] = field(default_factory=dict)  # stage_gaps, all nodes


@dataclass
class FleetFigure:
    skipped: str | None = None  # why there is no figure at all
    failed: str | None = None  # why the phases stop early
    endpoints: tuple[str, ...] = ()
    phases: list[FleetPhase] = field(default_factory=list)


def fleet_figure(box: Sandbox, bare: Bare, plan: Plan, daemons: list[Daemon]) -> FleetFigure:
    """A 3-member etcd on 127.0.0.1 (tests/etcd_cluster.py, what the fleet tests use),
    then, for each node count, the nodes it lacks started at once, and a cold round and
    ``plan.fleet_trials`` rounds of: the bare floor, one fleet write, the key deleted (and
    the floor's containers; untimed). The nodes are stopped and etcd killed at the end,
    with nothing of theirs left running; the bench's clean-up does it on any failure."""
    missing = [tool for tool in ("etcd", "etcdctl") if shutil.which(tool) is None]
    if missing:
        return FleetFigure(skipped=f"{', '.join(missing)} not installed")
    if str(REPO) not in sys.path:  # tests/ is no installed package
        sys.path.insert(0, str(REPO))
    from tests import etcd_cluster

    cluster = etcd_cluster.EtcdCluster(box.base / "etcd", members=FLEET_MEMBERS)
    box.closers.append(cluster.close)
    progress(f"7. a {FLEET_MEMBERS}-member etcd on 127.0.0.1")
    try:
        cluster.start()
    except (etcd_cluster.EtcdClusterError, OSError) as exc:
        return FleetFigure(skipped=f"etcd did not start: {exc}"[:600])
    fig = FleetFigure(endpoints=tuple(cluster.endpoints))
    nodes: list[Node] = []
    bare_roots: list[Path] = []
    try:
        for count in plan.fleet_nodes:
            new = [Node(box, f"n{i:02d}", cluster.endpoints) for i in range(len(nodes), count)]
            daemons.extend(new)
            nodes.extend(new)
            for i in range(len(bare_roots), count):
                bare_roots.append(box.base / "fleet-bare" / f"n{i:02d}")
                bare_roots[-1].mkdir(parents=True)
                box.more_roots.append(bare_roots[-1])
            progress(f"7. {len(new)} more fleet daemons started at once, for {count} nodes")
            phase = FleetPhase(count, len(new), start_nodes(new))
            fig.phases.append(phase)
            progress(f"7. {plan.fleet_trials} rounds of: {count} bare runc run -d at once, "
                     f"one fleet write to {count} nodes")
            fleet_rounds(box, bare, nodes, bare_roots, phase, plan.fleet_trials)
    except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        fig.failed = f"{len(nodes)} nodes: {type(exc).__name__}: {exc}"
    for node in nodes:  # nothing of theirs runs now: each trial deleted its container
        node.terminate()
    for node in nodes:
        node.stop()
    cluster.close()
    return fig


def fleet_rounds(box: Sandbox, bare: Bare, nodes: Sequence[Node], bare_roots: Sequence[Path],
                 phase: FleetPhase, trials: int) -> None:
    """A cold round, then ``trials`` rounds of: the floor, the floor of the daemon's config
    (for context; taken from the cold round's container, as figure 1 does), the write."""
    n = len(nodes)
    config: dict[str, Any] | None = None
    for i in range(-1, trials):  # -1: the cold round, not counted
        label = "cold" if i < 0 else f"{i:02d}"
        floor = bare_fleet(bare, bare_roots[:n], f"fleet{n}-{label}")
        if config is not None:
            phase.bare_cfg.append(bare_fleet(bare, bare_roots[:n], f"fleet{n}-cfg-{label}",
                                             template=config))
        trial = fleet_write(nodes, f"fleet{n}-{label}", box.rootfs)
        if config is None:
            config = json.loads((nodes[0].state / "containers" / f"{trial.name}.1" / "bundle"
                                 / "config.json").read_text())
        deleted = fleet_delete(nodes, trial.name)
        if i < 0:
            phase.cold, phase.bare_cold = trial, floor
        else:
            phase.trials.append(trial)
            phase.bare.append(floor)
            phase.deleted.append(deleted)
    gaps: dict[str, list[float]] = {}
    for node in nodes:
        spans = [(t.name, t.wall, t.wall + t.seconds[node.name]) for t in phase.trials]
        for stage, values in stage_gaps(node.log_records(), spans, FLEET_STAGES).items():
            gaps.setdefault(stage, []).extend(values)
    phase.gaps = gaps


def report_fleet(fig: FleetFigure, plan: Plan) -> list[Row]:
    """Figure 7's lines and rows: per node count, the median over trials of the p50 over
    nodes, and the worst trial's last node, beside the concurrent bare floor."""
    out(f"7. one fleet-wide etcd write -> the container running on every node "
        f"({plan.fleet_trials} rounds after one cold one, for each node count; a round: "
        "N bare runc run -d at once, then the write)")
    target = f"p50 < {FLEET_P50:g} s with {FLEET_TARGET_NODES} nodes"
    if fig.skipped:
        out(f"   skipped: {fig.skipped}")
        return [("7. one etcd write -> running on every node", f"n/a ({fig.skipped})", "",
                 "no peer", target, "n/a")]
    out(f"   a {FLEET_MEMBERS}-member etcd on {','.join(fig.endpoints)}; the nodes: "
        f"reconciler run --source etcd --node nNN --settle {SETTLE:g} --allow-empty "
        "--log-format json --log-level debug, each its own state dir, runc root and cgroup "
        "parent; the clock starts when the txn (one put of a Container) returns")
    rows: list[Row] = []
    for phase in fig.phases:
        n = phase.nodes
        out(f"   {n} nodes ({phase.new} daemons spawned at once: all ready after "
            f"{phase.started:.1f} s)")
        if not phase.trials:
            continue
        p50s = [pct(list(t.seconds.values()), 0.5) for t in phase.trials]
        maxes = [max(t.seconds.values()) for t in phase.trials]
        r50, rmax = statistics.median(p50s), max(maxes)
        b50 = statistics.median([pct(b, 0.5) for b in phase.bare])
        bmax = max(max(b) for b in phase.bare)
        cold = ""
        if phase.cold is not None:
            cs = list(phase.cold.seconds.values())
            cold = f"cold p50 {ms(pct(cs, 0.5)).strip()} max {ms(max(cs)).strip()}; "
        txn = statistics.median([t.txn for t in phase.trials])
        out(f"     reconciler  p50 {ms(r50)}  max {ms(rmax)}   ({len(phase.trials)} trials: "
            f"median of the trials' p50 over nodes, worst last node; {cold}the txn's round "
            f"trip, before the clock, p50 {ms(txn).strip()})")
        out(f"       trials' p50 {' '.join(f'{v * 1000:.0f}' for v in p50s)} ms, "
            f"max {' '.join(f'{v * 1000:.0f}' for v in maxes)} ms; "
            f"deleting took {statistics.median(phase.deleted):.1f} s (untimed)")
        bare_cold = (f"cold p50 {ms(pct(phase.bare_cold, 0.5)).strip()} max "
                     f"{ms(max(phase.bare_cold)).strip()}; " if phase.bare_cold else "")
        out(f"     bare runc   p50 {ms(b50)}  max {ms(bmax)}   ({bare_cold}{n} runc run -d "
            "spawned at once, one in each of N runc roots, runc spec's config; the same rule)")
        if phase.bare_cfg:
            c50 = statistics.median([pct(b, 0.5) for b in phase.bare_cfg])
            cmax = max(max(b) for b in phase.bare_cfg)
            out(f"     bare runc   p50 {ms(c50)}  max {ms(cmax)}   (the same, of the "
                "config.json the daemon wrote (seccomp etc.), for context)")
        out("     where it goes, from the txn's return: "
            + medians(phase.gaps, FLEET_STAGES))
        is_target = n == FLEET_TARGET_NODES
        row_target = f"p50 < {FLEET_P50:g} s" if is_target else "none (for information)"
        rows.append((f"7. one etcd write -> running on {n} nodes, p50 / max",
                     f"{ms(r50).strip()} / {ms(rmax).strip()}",
                     f"{ms(b50).strip()} / {ms(bmax).strip()} {n} bare runc run -d at once",
                     "no peer", row_target, verdict(r50 < FLEET_P50) if is_target else ""))
    if fig.failed:
        out(f"   stopped: {fig.failed}")
    out("   no peer: podman and compose have no fleet (nothing that runs one write on many "
        "hosts)")
    ten = next((p for p in fig.phases if p.nodes == FLEET_TARGET_NODES and p.trials), None)
    if ten is None:
        out(f"   target: {target}: not measured")
        rows.insert(0, (f"7. one etcd write -> running on {FLEET_TARGET_NODES} nodes",
                        "n/a", "", "no peer", target, "n/a"))
    else:
        r50 = statistics.median([pct(list(t.seconds.values()), 0.5) for t in ten.trials])
        out(f"   target: {target}: {ms(r50).strip()} -> {verdict(r50 < FLEET_P50)}")
    return rows


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    trials: int
    kube_trials: int  # podman kube play, spread evenly over figure 1's rounds
    n: int
    crash_trials: int
    idle_seconds: float
    resync_window: float  # 0: skip the window that holds a periodic relist
    pod_trials: int  # 6: rounds of bare floor, podman kube play, Pod drop
    fleet_nodes: tuple[int, ...]  # 7: the node counts, each phase adding nodes to the last
    fleet_trials: int  # 7: rounds of N bare runc run -d at once, one fleet write
    only_fleet: bool = False  # --only 7


def progress(text: str) -> None:
    sys.stderr.write(f"  ... {text}\n")
    sys.stderr.flush()


def measure(box: Sandbox, plan: Plan, daemons: list[Daemon], peers: list[Podman]
            ) -> dict[str, Any]:
    """Every figure (with --only 7, that one); each floor and peer measured right beside (or
    interleaved with) its figure. Figure 7 goes first, on the quietest machine, and leaves
    nothing running."""
    r: dict[str, Any] = {}
    bare = Bare(box)
    r["fleet"] = fleet_figure(box, bare, plan, daemons)
    if plan.only_fleet:
        return r
    podman, peer_figures = start_podman(box, peers)
    progress("6. the Pod's image: built as an OCI layout, imported into the daemon's store"
             + ("" if podman is None else " and pulled into podman's"))
    kube_skipped = peer_figures.skipped
    try:
        layout, pod_skipped = pod_image(box)
    except (OSError, subprocess.SubprocessError) as exc:
        layout, pod_skipped = None, f"the image: {exc}"
    pod_podman = podman
    if layout is not None and podman is not None:
        try:
            podman.load_layout(layout)
        except (PodmanError, OSError, subprocess.SubprocessError) as exc:
            kube_skipped, pod_podman = f"podman's copy of the image failed: {exc}", None
    daemon = Daemon(box, concurrency=DEFAULT_CONCURRENCY, label="c4")
    daemons.append(daemon)
    started = time.time()
    daemon.start()
    wait_ready(box, daemon, since=started)
    progress(f"1. {plan.trials} rounds of: bare run, bare run of the daemon's config, "
             + ("" if podman is None else
                f"podman run -d (and kube play in {plan.kube_trials} of them), ")
             + "drop")
    r["single"] = single_trials(box, daemon, bare, plan, podman, peer_figures)
    r["breakdown"] = breakdown(daemon, r["single"].trials)
    if layout is None:
        r["pod"] = PodFigure(skipped=pod_skipped)
    else:
        if peer_figures.skipped and pod_podman is not None:  # podman failed in figure 1
            kube_skipped, pod_podman = peer_figures.skipped, None
        progress(f"6. {plan.pod_trials} rounds of: bare infra + 2 runc run -d, "
                 + ("" if pod_podman is None else "podman kube play, ") + "Pod drop")
        r["pod"] = pod_trials(box, daemon, bare, plan.pod_trials, box.bundles / "infra-root",
                              pod_podman, kube_skipped)
    progress(f"3. {plan.crash_trials} rounds of: bare kill + delete + run, daemon crash")
    r["crash"], r["bare_crash"] = crash_trials(box, daemon, bare, plan.crash_trials)
    r["crash_log"] = daemon.log_records()
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


Row = tuple[str, str, str, str, str, str]  # figure, reconciler, floor, peer, target, verdict


def report(r: dict[str, Any], plan: Plan) -> list[Row]:
    """Print every figure; return the summary table's rows."""
    if plan.only_fleet:
        return report_fleet(r["fleet"], plan)
    rows: list[Row] = []
    one: Singles = r["single"]
    drop, bare, cfg = [t.seconds for t in one.trials], one.bare, one.bare_cfg
    d50, b50, c50 = pct(drop, 0.5), pct(bare, 0.5), pct(cfg, 0.5)
    out(f"1. one manifest dropped -> running ({plan.trials} trials after one cold one, "
        "interleaved with the floors and peers)")
    out(f"   reconciler   p50 {ms(d50)}  p99 {ms(pct(drop, 0.99))}   "
        f"(cold {ms(one.cold).strip()})")
    out(f"   bare runc    p50 {ms(b50)}  p99 {ms(pct(bare, 0.99))}   "
        f"(cold {ms(one.bare_cold).strip()})   runc run -d, runc spec's config")
    out(f"   bare runc    p50 {ms(c50)}  p99 {ms(pct(cfg, 0.99))}   "
        "runc run -d of the config.json the daemon wrote (seccomp etc.), for context")
    limit = SINGLE_OVER_BARE * 1000
    out(f"   target: p50 within {limit:g} ms of bare runc: {(d50 - b50) * 1000:+.1f} ms over "
        f"runc spec's config -> {verdict(d50 - b50 <= SINGLE_OVER_BARE)}; "
        f"{(d50 - c50) * 1000:+.1f} ms over the same config (the same work) -> "
        f"{verdict(d50 - c50 <= SINGLE_OVER_BARE)}")
    out(r["breakdown"])
    if one.mismatches:
        out(f"   WARNING: `runc state` disagreed with the state-file poll in {one.mismatches} "
            "trials")
    rows.append(("1. drop -> running, p50", ms(d50).strip(),
                 f"{ms(b50).strip()} bare runc ({ms(c50).strip()} with the daemon's config)",
                 "", f"<= bare + {limit:g} ms: {(d50 - b50) * 1000:+.1f} ms",
                 verdict(d50 - b50 <= SINGLE_OVER_BARE)))
    rows += report_peers(one.peers, d50)
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
    out(f"   target: within {BULK_OVER_LOOP:g}x the bare loop at the default concurrency: "
        f"{all4 / loop4:.2f}x runc spec's config -> {verdict(all4 / loop4 <= BULK_OVER_LOOP)}; "
        f"{all4 / loopc:.2f}x the same config -> {verdict(all4 / loopc <= BULK_OVER_LOOP)}")
    out(f"   (deleting the {n} again took {r['removed']:.1f} s; not a target)")
    rows.append((f"2. {n} at once, concurrency {DEFAULT_CONCURRENCY} / 8",
                 f"{all4:.2f} s / {all8:.2f} s",
                 f"{loop4:.2f} s / {loop8:.2f} s sequential bare loop", "",
                 f"<= {BULK_OVER_LOOP:g}x the loop: {all4 / loop4:.2f}x",
                 verdict(all4 / loop4 <= BULK_OVER_LOOP)))
    out()

    crash = [t.seconds for t in r["crash"]]
    k50 = pct(crash, 0.5)
    crashes = [t.crashes for t in r["crash"]]
    after_death = pct([t.after_death for t in r["crash"]], 0.5)
    floor = r["bare_crash"]
    f50 = pct([f[0] for f in floor], 0.5)
    out(f"3. runc kill NAME KILL -> first restart running ({plan.crash_trials} trials, "
        "interleaved with the floor)")
    out(f"   reconciler   p50 {ms(k50)}  max {ms(max(crash))}   "
        f"(from the death seen by pidfd: p50 {ms(after_death).strip()})")
    out(f"   bare runc    p50 {ms(f50)}   kill, wait, delete, "
        f"run -d (delete + run -d alone: p50 {ms(pct([f[1] for f in floor], 0.5)).strip()})")
    out(f"   podman       p50 {ms(PODMAN_RESTART_MS / 1000)}   --restart=always after SIGKILL "
        "(shared/notes/runtime-facts.md; not re-measured)")
    first = all(c == 1 for c in crashes)
    out(f"   each a first crash (--backoff-reset {BACKOFF_RESET:g}, killed after "
        f"{BACKOFF_RESET + 0.1:g} s up; the daemon's crash count was 1 every time): "
        f"{'yes' if first else f'NO {crashes}'}")
    out(f"   target: first restart p50 within {CRASH_OVER_BARE * 1000:g} ms of the bare kill + "
        f"delete + run: {(k50 - f50) * 1000:+.1f} ms -> {verdict(k50 - f50 <= CRASH_OVER_BARE)}")
    spans = [("crash", t.died_wall, t.running_wall) for t in r["crash"]
             if t.died_wall is not None and t.running_wall is not None]
    if spans:
        out("   where it goes, from the death: "
            + split_stages(r["crash_log"], spans, CRASH_STAGES))
    rows.append(("3. crash -> first restart, p50", ms(k50).strip(),
                 f"{ms(f50).strip()} bare kill + delete + run",
                 f"{PODMAN_RESTART_MS:.0f} ms podman --restart=always (notes)",
                 f"<= bare + {CRASH_OVER_BARE * 1000:g} ms: {(k50 - f50) * 1000:+.1f} ms",
                 verdict(k50 - f50 <= CRASH_OVER_BARE)))
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
    ok = rs["converged"] < RESTART_CONVERGED and not rs["restarted"]
    out(f"   target: converged in under {RESTART_CONVERGED * 1000:g} ms with zero restarts "
        f"caused: {verdict(ok)}")
    rows.append((f"4. daemon restart with {n} running",
                 f"{ms(rs['converged']).strip()}, {len(rs['restarted'])} restarts", "", "",
                 f"< {RESTART_CONVERGED * 1000:g} ms, 0 restarts", verdict(ok)))
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
    short_total = short["cpu"] + short["cpu_children"]
    target = f"< {IDLE_CPU:g}% of a core over a --resync period"
    if long is not None:
        out(f"   target: idle CPU under {IDLE_CPU:g}% of a core over a full --resync period, "
            f"runc children included: {total:.2f}% -> {verdict(total < IDLE_CPU)}")
        rows.append((f"5. idle CPU with {n}",
                     f"{total:.2f}% over {long['seconds']:.0f} s ({short_total:.2f}% in "
                     f"{short['seconds']:.0f} s)", "", "", target, verdict(total < IDLE_CPU)))
    else:
        out(f"   target: idle CPU under {IDLE_CPU:g}% of a core over a full --resync period: "
            f"not measured (--quick has no such window; {short_total:.2f}% with children "
            f"over {short['seconds']:.0f} s)")
        rows.append((f"5. idle CPU with {n}",
                     f"{short_total:.2f}% in {short['seconds']:.0f} s", "", "", target,
                     "n/a (--quick)"))
    out()
    rows += report_pod(r["pod"], plan)
    out()
    rows += report_fleet(r["fleet"], plan)
    return rows


def report_pod(fig: PodFigure, plan: Plan) -> list[Row]:
    """Figure 6's lines, and its row: podman kube play's p50 (to its return) / ours."""
    names = " + ".join(c for c, _ in POD_CONTAINERS)
    out(f"6. a 2-container Pod ({names}, {POD_IMAGE}) dropped -> both running "
        f"({plan.pod_trials} rounds after one cold one, interleaved with the floor and peer)")
    if fig.skipped or not fig.trials:
        out(f"   skipped: {fig.skipped}")
        return [("6. 2-container Pod drop -> all running", f"n/a ({fig.skipped})", "", "",
                 f">= {FASTER_THAN_KUBE_PLAY_POD:g}x faster than podman kube play", "n/a")]
    drop = [t.seconds for t in fig.trials]
    d50 = pct(drop, 0.5)
    boxes = [t.sandbox for t in fig.trials if t.sandbox is not None]
    cold = f"cold {ms(fig.cold.seconds).strip()}; " if fig.cold else ""
    out(f"   reconciler        p50 {ms(d50)}  p99 {ms(pct(drop, 0.99))}   ({cold}the sandbox "
        f"running after p50 {ms(pct(boxes, 0.5)).strip() if boxes else '?'})")
    b50 = pct(fig.bare, 0.5)
    bare_cold = f"cold {ms(fig.bare_cold).strip()}; " if fig.bare_cold is not None else ""
    out(f"   bare runc         p50 {ms(b50)}  p99 {ms(pct(fig.bare, 0.99))}   ({bare_cold}"
        "3 runc run -d: catatonit -P, then 2 joining its net, ipc, uts by /proc/PID/ns)")
    row_peer, row_target, row_verdict = "", "", "n/a"
    if fig.kube:
        returned = [t.returned for t in fig.kube]
        k50 = pct(returned, 0.5)
        kube_cold = (f"cold {ms(fig.kube_cold.returned).strip()}; " if fig.kube_cold else "")
        out(f"   podman kube play  p50 {ms(k50)}  p99 {ms(pct(returned, 0.99))}   ({kube_cold}"
            f"{len(fig.kube)} trials, to the command's return; both containers running "
            f"after p50 {ms(pct([t.running for t in fig.kube], 0.5)).strip()}; the same file)")
        ratio = k50 / d50
        ok = ratio >= FASTER_THAN_KUBE_PLAY_POD
        out(f"   target: reconciler Pod drop->all running p50 is {ratio:.1f}x faster than "
            f"podman kube play (at least {FASTER_THAN_KUBE_PLAY_POD:g}x) -> {verdict(ok)}; "
            f"{(d50 - b50) * 1000:+.1f} ms over the bare floor (not a target)")
        row_peer = f"{ms(k50).strip()} podman kube play (returned)"
        row_target = f">= {FASTER_THAN_KUBE_PLAY_POD:g}x faster: {ratio:.1f}x"
        row_verdict = verdict(ok)
    else:
        out(f"   podman kube play: {fig.kube_skipped or 'no trials'}; no peer figure "
            f"({(d50 - b50) * 1000:+.1f} ms over the bare floor)")
        row_target = f">= {FASTER_THAN_KUBE_PLAY_POD:g}x faster than podman kube play"
    if fig.kube and fig.kube_skipped:
        out(f"   podman: {fig.kube_skipped}")
    if fig.mismatches:
        out(f"   WARNING: `runc list` did not show both containers running in "
            f"{fig.mismatches} trials")
    return [("6. 2-container Pod drop -> all running, p50", ms(d50).strip(),
             f"{ms(b50).strip()} bare runc (infra + 2 joining)", row_peer, row_target,
             row_verdict)]


def report_peers(peers: Peers, d50: float) -> list[Row]:
    """podman's lines under figure 1, and the ratios: podman's p50 / the reconciler's."""
    rows: list[Row] = []
    if peers.skipped and not peers.run:
        out(f"   podman: {peers.skipped}; no peer figures")
        return rows
    figures = (("podman run -d", peers.run, peers.run_cold, FASTER_THAN_PODMAN_RUN, ""),
               ("podman kube play", peers.kube, peers.kube_cold, FASTER_THAN_KUBE_PLAY,
                "; a Pod with its infra container"))
    for label, trials, cold, _, note in figures:
        if not trials:
            continue
        running = [t.running for t in trials]
        returned = pct([t.returned for t in trials], 0.5)
        p50 = pct(running, 0.5)
        cold_text = f"cold {ms(cold.running).strip()}; " if cold else ""
        out(f"   {label:16s} p50 {ms(p50)}  p99 {ms(pct(running, 0.99))}   ({cold_text}"
            f"{len(trials)} trials; the command returned after p50 {ms(returned).strip()}"
            f"{note})")
    for label, trials, _, target, _ in figures:
        if not trials:
            continue
        ratio = pct([t.running for t in trials], 0.5) / d50
        out(f"   reconciler drop->running p50 is {ratio:.1f}x faster than {label} "
            f"(target at least {target:g}x) -> {verdict(ratio >= target)}")
        rows.append((f"1. drop -> running vs {label}, p50", ms(d50).strip(), "",
                     f"{ms(ratio * d50).strip()} {label}",
                     f">= {target:g}x faster: {ratio:.1f}x", verdict(ratio >= target)))
    if peers.skipped:
        out(f"   podman: {peers.skipped}")
    return rows


def summary(rows: Sequence[Row]) -> None:
    """The figures as one Markdown table, to paste into a note."""
    out("| figure | reconciler | floor | peer | target | PASS/MISS |")
    out("|---|---|---|---|---|---|")
    for row in rows:
        out("| " + " | ".join(cell or "-" for cell in row) + " |")


def run(box: Sandbox, plan: Plan, daemons: list[Daemon], peers: list[Podman]) -> list[Row]:
    out(f"reconciler bench: rootfs {box.rootfs}")
    fleet = (f"fleets of {' and '.join(map(str, plan.fleet_nodes))} nodes, "
             f"{plan.fleet_trials} rounds each")
    if plan.only_fleet:
        out(f"  figure 7 only (--only 7): {fleet}; "
            f"{os.cpu_count()} CPUs; {runc_version()}; temp dir {box.base}")
    else:
        out(f"  {plan.trials} trials, N = {plan.n}, {plan.crash_trials} crash trials, "
            f"{plan.pod_trials} Pod rounds, {fleet}; "
            f"{os.cpu_count()} CPUs; {runc_version()}; temp dir {box.base}")
    out("  'running' = runc's own rule read from R/<name>/state.json, exec.fifo and "
        f"/proc/<pid>/stat, polled every {POLL * 1000:g} ms ({BULK_POLL * 1000:g} ms in bulk)")
    if not plan.only_fleet:  # figure 7's daemons are printed with it
        out(f"  daemon: --settle {SETTLE:g} --backoff-reset {BACKOFF_RESET:g} --allow-empty "
            "--log-format json --log-level debug; a drop is a rename from a staging dir on "
            "the same filesystem")
    out(f"  tree {revision()}; load average before {loadavg()}")
    results = measure(box, plan, daemons, peers)
    out(f"  load average after {loadavg()} (other work on this machine skews every figure)")
    out()
    return report(results, plan)


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
    parser.add_argument("--quick", action="store_true",
                        help="N = 20, 10 trials (5 of podman kube play, 8 Pod rounds, "
                        "fleets of 10 and 20 nodes, 3 rounds)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir's logs (containers are removed anyway)")
    # Figures 1 to 6 share one daemon and build on each other's set-up (2 on 1's config,
    # 4 and 5 on 2's containers); figure 7 needs none of it.
    parser.add_argument("--only", choices=("7",),
                        help="run one figure alone: 7, the fleet (etcd and its nodes)")
    args = parser.parse_args(argv)
    rootfs = args.rootfs.resolve()
    if not (rootfs / "bin" / "sleep").exists():
        parser.error(f"{rootfs} has no /bin/sleep; build it with `make rootfs`")
    if os.geteuid() != 0:
        parser.error("needs root (runc, overlay mounts, cgroups)")
    # The long idle window holds one relist: --resync is 30 s (the daemon's default).
    plan = (Plan(trials=10, kube_trials=5, n=20, crash_trials=5, idle_seconds=5,
                 resync_window=0, pod_trials=8, fleet_nodes=(10, 20), fleet_trials=3,
                 only_fleet=args.only == "7")
            if args.quick else
            Plan(trials=30, kube_trials=10, n=100, crash_trials=10, idle_seconds=10,
                 resync_window=31, pod_trials=20, fleet_nodes=(10, 50), fleet_trials=5,
                 only_fleet=args.only == "7"))
    box = Sandbox(Path(tempfile.mkdtemp(prefix="reconciler-bench-")), rootfs)
    daemons: list[Daemon] = []
    peers: list[Podman] = []
    started = time.perf_counter()
    try:
        with interrupts_as_keyboard():
            rows = run(box, plan, daemons, peers)
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
            for member in (box.base / "etcd").glob("*.log"):  # figure 7's etcd
                shutil.copy(member, kept / "logs" / f"etcd-{member.name}")
            for podman in peers:  # podman's output and the Pod YAML, per trial
                shutil.copytree(podman.dir / "out", kept / "podman", dirs_exist_ok=True)
            out(f"logs kept in {kept}")
        cleanup(box, daemons, peers)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    out(f"total {time.perf_counter() - started:.0f} s")
    out()
    summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
