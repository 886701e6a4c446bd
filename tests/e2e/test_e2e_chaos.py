"""Chaos: the daemon SIGKILLed at random moments while containers, pods and networks churn
under it; its last start converges on the last manifests written, and nothing of what
went before is left on the host.

One seeded ``random.Random`` drives every change and every pause. ``CHAOS_SEED``
overrides the default seed and ``CHAOS_ROUNDS`` the number of rounds; every failure
message names both and tells the run's story (each round's changes, and when its kill
landed), so a failing run can be replayed: the same changes and pauses (the daemon's own
timing varies from run to run, so a bug in a narrow window may need a few tries).

The daemon runs in the test's own network namespace (``net_e2e``: ``--networks on``)
over a pool of six objects: four ``kind: Container`` and two v1 Pods of two containers
each, on the ``default`` network, on a user ``kind: Network`` ``net1``, or on both. Each
round writes a random batch of changes into the manifests directory (in place or by an
atomic rename): an object added; its env or command changed, so it is made again; its
networks changed, live; it deleted; ``net1``'s MTU changed, so every object on it is
re-attached in place; ``hostUsers`` of ``c2``, ``c3`` or ``p1`` toggled, so it is made
again in a user namespace of its own (or back out of it). Then a random 0-1.5 s, a
SIGKILL, and a new daemon (which the next round mostly does not wait for, so later kills
land in its start-up and recovery too). The daemon takes its id ranges from subuid and
subgid files of the test's own (user ``reconciler``, 100 ranges from 2,000,000,000).

Every revision written carries tokens of its own: ``CHAOS_TOKEN`` in each container's
environment and ``: TOKEN;`` at the head of its shell command. At the end one more
daemon starts, and the host must hold exactly the objects of the last manifests, each
from its last revision (``/proc/PID/environ`` and ``cmdline``), each pod whole in one
network namespace, each object with one address on exactly the networks its manifest
names (in ``reconciler get`` and on its own interfaces, ``net1``'s at ``net1``'s MTU),
each ``hostUsers: false`` object's processes as the first host uid of the range its slot
in ``userns.json`` names (a pod's all in one user namespace), no two objects on one slot,
the others as host root. And nothing else of ours: no runc container, conmon, depot,
overlay, idmapped lower, ``/run/reconciler/userns`` bind or pod mount, netns pin,
attachment record, cgroup, id range of a deleted object, host-local reservation,
address-book entry, hosts dir, veth or iptables rule that no live instance explains (the
readers of the namespace and of the network state are test_e2e_network_leaks's). A
range stays with an object until it is deleted (docs/security.md), so an object toggled
back to ``hostUsers: true`` may keep its slot.

A run that hits a known product bug (``KNOWN_BUGS``: each has a test of its own at the
bottom that makes it happen every time, a strict xfail) ends as xfail and lists what it
saw with its seed; any other problem fails it.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from reconciler.runtime import idmap

from .harness import (
    CGROUP_ROOT,
    E2E,
    SLEEP_LOOP,
    Daemon,
    cmdline,
    current_entries,
    environ,
    instance_name,
    logical_name,
    mounts_under,
    pid_alive,
    skip_without,
    wait_until,
)
from .test_e2e_network_leaks import (
    STATIC_CHAINS,
    book,
    ipam,
    last_problems,
    names_in,
    pins,
    records,
    rules,
    shown,
    veths,
)

CNI = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.runc,
    skip_without("umoci", "skopeo", "catatonit"),
    pytest.mark.skipif(not (CNI / "bridge").exists(), reason=f"needs the CNI plugins in {CNI}"),
]

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("CHAOS_SEED", "20261201"))
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "10"))
MAX_PAUSE = 1.5  # the longest a round lets the daemon work before the kill
CONVERGE_WITHIN = 20.0  # from the last start
WAIT_READY = 1 / 3  # how often a round waits for the new daemon's first pass

CONTAINERS = ("c0", "c1", "c2", "c3")
PODS = ("p0", "p1")  # namespace default: units default_p0, default_p0_a, default_p0_b
POD_CONTAINERS = ("a", "b")
IMAGE = "busybox:1.36"
NET = "net1"
SUBNETS = {"default": ipaddress.ip_network("10.92.0.0/16"),
           NET: ipaddress.ip_network("10.93.0.0/24")}
BRIDGES = {"rc-default", f"rc-{NET}"}
ATTACHMENTS = (("default",), (NET,), ("default", NET))
MTUS = (1400, 1450, 1500)
TOKEN = "CHAOS_TOKEN"
USERNS = ("c2", "c3", "p1")  # the objects that may run with hostUsers: false
USERNS_USER = "reconciler"
FIRST_ID = 2_000_000_000  # far above any real user on the test host
RANGE = 65536  # the daemon's slot: this many uids and gids
SLOTS = 100
# each kind of change, by weight
OPS = {"add": 3, "recreate": 3, "renet": 3, "delete": 2, "retune": 1, "toggle": 2}

_RULE_ID_RE = re.compile(r'id: \\"([^"\\]+)\\"')
_IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_JUMP_RE = re.compile(r" -j (\S+)")

# What this file found wrong in the product: each bug by the problem lines it causes at the
# end of a chaos run, which hits it only when a kill lands in its window; a test of its own
# at the bottom makes it happen every time (a strict xfail). A run whose only problems are
# of these ends as xfail and lists them with its seed; any other problem fails it. Delete
# an entry once its bug is fixed.
KNOWN_BUGS: dict[str, tuple[re.Pattern[str], ...]] = {
}


# -- what the manifests ask ------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """What one container's process shows of the revision that made it."""

    env: str  # the value of CHAOS_TOKEN
    mark: str  # the command is ``: MARK; SLEEP_LOOP``


@dataclass(frozen=True)
class Obj:
    """One object as its last manifest asks: its containers (``""`` for a ``kind:
    Container``, else the pod's container names), its networks, and whether it runs in a
    user namespace of its own (``hostUsers: false``)."""

    name: str
    procs: tuple[tuple[str, Proc], ...]
    networks: tuple[str, ...]
    userns: bool = False

    @property
    def pod(self) -> bool:
        return self.name in PODS

    @property
    def key(self) -> str:
        """Its key in ``userns.json``."""
        return f"Pod/default/{self.name}" if self.pod else f"Container/{self.name}"

    @property
    def holder(self) -> str:
        """The unit that holds the object's network namespace (a pod's sandbox), and the
        name its addresses go by."""
        return f"default_{self.name}" if self.pod else self.name

    def units(self) -> dict[str, Proc | None]:
        """Unit -> what its process must show (None: a pod's sandbox, catatonit)."""
        if not self.pod:
            return {self.name: dict(self.procs)[""]}
        return {self.holder: None, **{f"{self.holder}_{c}": p for c, p in self.procs}}


def script(mark: str) -> str:
    return f": {mark}; {SLEEP_LOOP}"


def network_text(mtu: int) -> str:
    doc = {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": NET},
           "spec": {"subnets": [{"subnet": str(SUBNETS[NET])}], "mtu": mtu}}
    return yaml.safe_dump(doc, sort_keys=False)


def manifest_text(e2e: E2E, obj: Obj) -> str:
    users: dict[str, bool] = {"hostUsers": False} if obj.userns else {}
    if not obj.pod:
        proc = dict(obj.procs)[""]
        return e2e.manifest(obj.name, script(proc.mark), env=[{"name": TOKEN, "value": proc.env}],
                            networks=[{"name": n} for n in obj.networks], **users)
    doc = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": obj.name,
                     "annotations": {"reconciler.io/networks": ",".join(obj.networks)}},
        "spec": {"terminationGracePeriodSeconds": 2, **users, "containers": [
            {"name": c, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
             "command": ["sh", "-c", script(p.mark)], "env": [{"name": TOKEN, "value": p.env}]}
            for c, p in obj.procs]},
    }
    return yaml.safe_dump(doc, sort_keys=False)


class Chaos:
    """The desired state, changed at random; every change written to the directory."""

    def __init__(self, e2e: E2E, rng: random.Random) -> None:
        self.e2e = e2e
        self.rng = rng
        self.want: dict[str, Obj] = {}
        self.mtu = 1500
        self.story: list[str] = []
        self.ever_userns: set[str] = set()  # names written with hostUsers: false at least once
        self._tokens = 0

    def token(self) -> str:
        self._tokens += 1
        return f"t{self._tokens:03d}"

    def put(self, filename: str, text: str) -> None:
        """Write a manifest in place or by an atomic rename (a hidden temp file is never
        read), as an editor or a sync tool would."""
        if self.rng.random() < 0.5:
            self.e2e.write(filename, text)
        else:
            tmp = self.e2e.manifests / f".{filename}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.e2e.manifests / filename)

    def save(self, obj: Obj) -> None:
        self.want[obj.name] = obj
        if obj.userns:
            self.ever_userns.add(obj.name)
        self.put(f"{obj.name}.yaml", manifest_text(self.e2e, obj))

    def fresh(self, name: str) -> Obj:
        procs = tuple((c, Proc(self.token(), self.token()))
                      for c in (POD_CONTAINERS if name in PODS else ("",)))
        return Obj(name, procs, self.rng.choice(ATTACHMENTS),
                   userns=name in USERNS and self.rng.random() < 0.5)

    # -- the changes: each returns what it did, for the story --

    def add(self) -> str:
        name = self.rng.choice(sorted(set(CONTAINERS + PODS) - set(self.want)))
        self.save(obj := self.fresh(name))
        return f"add {name} on {','.join(obj.networks)}{' (hostUsers: false)' * obj.userns}"

    def recreate(self) -> str:
        obj = self.want[self.rng.choice(sorted(self.want))]
        which = [c for c, _ in obj.procs]
        if obj.pod and self.rng.random() < 0.7:  # mostly one container of a pod
            which = [self.rng.choice(which)]
        field = self.rng.choice(("env", "command"))
        procs = tuple((c, replace(p, **{"env" if field == "env" else "mark": self.token()})
                       if c in which else p) for c, p in obj.procs)
        self.save(replace(obj, procs=procs))
        return f"{field} of {obj.name}{'/' + ','.join(which) if obj.pod else ''}"

    def renet(self) -> str:
        obj = self.want[self.rng.choice(sorted(self.want))]
        nets = self.rng.choice([a for a in ATTACHMENTS if a != obj.networks])
        self.save(replace(obj, networks=nets))
        return f"{obj.name} onto {','.join(nets)}"

    def delete(self) -> str:
        name = self.rng.choice(sorted(self.want))
        del self.want[name]
        (self.e2e.manifests / f"{name}.yaml").unlink()
        return f"delete {name}"

    def retune(self) -> str:
        self.mtu = self.rng.choice([m for m in MTUS if m != self.mtu])
        self.put(f"{NET}.yaml", network_text(self.mtu))
        return f"{NET} mtu {self.mtu}"

    def toggle(self) -> str:
        """hostUsers flipped: the object is made again, in or out of a user namespace."""
        obj = self.want[self.rng.choice(sorted(set(self.want) & set(USERNS)))]
        self.save(replace(obj, userns=not obj.userns))
        return f"{obj.name} hostUsers: {'false' if not obj.userns else 'true'}"

    def batch(self) -> list[str]:
        """One to three random changes."""
        done = []
        for _ in range(self.rng.randint(1, 3)):
            possible = {op: w for op, w in OPS.items()
                        if (op == "add" and len(self.want) < len(CONTAINERS + PODS))
                        or (op in ("recreate", "renet", "delete") and self.want)
                        or (op == "toggle" and set(self.want) & set(USERNS))
                        or op == "retune"}
            op = self.rng.choices(list(possible), weights=list(possible.values()))[0]
            change = {"add": self.add, "recreate": self.recreate, "renet": self.renet,
                      "delete": self.delete, "retune": self.retune, "toggle": self.toggle}[op]
            done.append(change())
        return done

    # -- what the end must be --

    def units(self) -> dict[str, Proc | None]:
        return {u: p for obj in self.want.values() for u, p in obj.units().items()}

    def told(self) -> str:
        want = "; ".join(f"{o.name} on {','.join(o.networks)}{' (userns)' * o.userns}"
                         for o in sorted(self.want.values(), key=lambda o: o.name))
        return (f"\nseed {SEED} (CHAOS_SEED={SEED} CHAOS_ROUNDS={ROUNDS} to replay)"
                f"\nwhat happened:{shown(self.story)}\nwanted at the end: {want or 'nothing'};"
                f" {NET} mtu {self.mtu}")


# -- reading the host ------------------------------------------------------------------------


@dataclass(frozen=True)
class Iface:
    name: str
    cidrs: tuple[str, ...]  # IPv4
    mtu: int
    peer: int | None  # the ifindex of a veth's peer in the test namespace


def interfaces_of(pid: int) -> list[Iface] | None:
    """The interfaces but lo in the network namespace of ``pid``; None if it cannot be
    read (the process went)."""
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "addr", "show"],
                         capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        return None
    out = []
    for link in json.loads(res.stdout or "[]"):
        if link.get("ifname") == "lo":
            continue
        cidrs = tuple(sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                             if a.get("family") == "inet"))
        peer = link.get("link_index")
        out.append(Iface(str(link["ifname"]), cidrs, int(link["mtu"]),
                         int(peer) if peer is not None else None))
    return out


def netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def monitored(e2e: E2E) -> collections.Counter[str]:
    """Instance id -> how many live conmon processes run its bundle (this world's)."""
    found: collections.Counter[str] = collections.Counter()
    for instances in e2e.conmons().values():
        found.update(instances)
    return found


def hierarchies() -> list[Path]:
    """The cgroup hierarchy roots: the one tree on v2, each mounted v1 hierarchy once."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    roots: dict[str, Path] = {}
    for entry in sorted(CGROUP_ROOT.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            roots.setdefault(os.path.realpath(entry), entry)
    return list(roots.values())


def cgroups_under(parent: str) -> dict[str, set[str]]:
    """Hierarchy (a v1 controller's name, ``/`` on v2) -> the cgroup dirs below ``parent``
    in it, as paths relative to it."""
    out: dict[str, set[str]] = {}
    for root in hierarchies():
        base = root / parent.strip("/")
        found: set[str] = set()
        for dirpath, _dirs, _files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            if rel != ".":
                found.add(rel)
        out["/" if root == CGROUP_ROOT else root.name] = found
    return out


def host_ids(pid: int) -> tuple[list[int], list[int]]:
    """The Uid and Gid lines of ``/proc/PID/status`` (real, effective, saved, fs)."""
    lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                 .splitlines() if ":" in line)
    return [int(x) for x in lines["Uid"].split()], [int(x) for x in lines["Gid"].split()]


def user_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return None


def held_slots(e2e: E2E) -> tuple[dict[str, int], list[str]]:
    """``userns.json``'s slots (object key -> slot; {} while there is no file), and the
    problem if it cannot be read."""
    path = e2e.state_dir / "userns.json"
    try:
        data = json.loads(path.read_text())
        slots = {str(k): int(v) for k, v in data["slots"].items()}
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, [f"{path} is unreadable: {exc!r}"]
    if data.get("user") != USERNS_USER:
        return slots, [f"{path} is of user {data.get('user')!r}, not {USERNS_USER}"]
    return slots, []


def userns_run_dir(e2e: E2E) -> Path:
    """Where this world's user namespace instances' roots are bound for runc."""
    return idmap.visible_root(e2e.state_dir, "any").parent


# -- the end state ---------------------------------------------------------------------------


def state_problems(e2e: E2E, chaos: Chaos) -> list[str]:
    """What differs from the last manifests: the units in runc, each one's revision, the
    daemon's view, and each object's addresses on its own interfaces. [] when converged."""
    want = chaos.units()
    entries = e2e.runc_entries()
    count = collections.Counter(logical_name(e) for e in entries)
    problems = [f"runc has {k} instance(s) of {n}, which no manifest asks for"
                for n, k in sorted(count.items()) if n not in want]
    current = current_entries(entries)
    pids: dict[str, int] = {}
    for unit, proc in sorted(want.items()):
        e = current.get(unit)
        if e is None:
            problems.append(f"{unit}: not in runc")
            continue
        if count[unit] != 1:
            problems.append(f"{unit}: {count[unit]} instances in runc")
        pid = int(e.get("pid") or 0)
        if e.get("status") != "running" or not pid_alive(pid):
            problems.append(f"{unit}: {e['id']} is {e.get('status')} (pid {pid})")
            continue
        pids[unit] = pid
        if proc is None:
            continue
        try:
            env, argv = environ(pid).get(TOKEN), cmdline(pid)
        except OSError as exc:
            problems.append(f"{unit}: cannot read pid {pid}: {exc}")
            continue
        if env != proc.env:
            problems.append(f"{unit}: runs {TOKEN}={env}, its last manifest says {proc.env}")
        if not argv or not argv[-1].startswith(f": {proc.mark};"):
            problems.append(f"{unit}: runs {argv[-1:]}, its last manifest's marker is "
                            f"{proc.mark}")
    if problems:
        return problems

    listed = e2e.get_all()  # every unit's record, and each pod's summary by its name
    views = {n: v for n, v in listed.items() if v.get("kind") != "Pod"}
    problems += [f"get lists {n}, which no manifest asks for" for n in sorted(views)
                 if n not in want]
    summaries = {n: v for n, v in listed.items() if v.get("kind") == "Pod"}
    pods = {o.name for o in chaos.want.values() if o.pod}
    problems += [f"get lists pod {n}, which no manifest asks for" for n in sorted(summaries)
                 if n not in pods]
    problems += [f"get: pod {n} is {(summaries.get(n) or {}).get('phase')}, READY "
                 f"{(summaries.get(n) or {}).get('ready')}" for n in sorted(pods)
                 if (summaries.get(n) or {}).get("phase") != "Running"
                 or summaries[n].get("ready") != f"{len(POD_CONTAINERS)}/{len(POD_CONTAINERS)}"]
    problems += [f"get: {u} is {views[u]['phase']}" for u in sorted(want)
                 if u in views and views[u]["phase"] != "Running"]
    problems += [f"get does not list {u}" for u in sorted(want) if u not in views]
    daemon_problems = (e2e.status().get("daemon") or {}).get("problems") or []
    problems += [f"the daemon reports: {p}" for p in daemon_problems]
    for obj in sorted(chaos.want.values(), key=lambda o: o.name):
        if obj.pod:  # every container in its sandbox's network namespace
            box = netns_of(pids[obj.holder])
            problems += [f"{u}: not in {obj.holder}'s network namespace ({box})"
                         for u in obj.units() if box is None or netns_of(pids[u]) != box]
        seen: dict[str, list[str]] = (views.get(obj.holder) or {}).get("addresses") or {}
        if sorted(seen) != sorted(obj.networks):
            problems.append(f"get shows {obj.holder} on {sorted(seen)}, its manifest names "
                            f"{sorted(obj.networks)}")
        for net, cidrs in seen.items():
            if net not in SUBNETS or len(cidrs) != 1 or \
                    ipaddress.ip_interface(cidrs[0]).ip not in SUBNETS[net]:
                problems.append(f"get shows {obj.holder} on {net} at {cidrs}")
        ifaces = interfaces_of(pids[obj.holder])
        if ifaces is None:
            problems.append(f"{obj.holder}: cannot read its interfaces")
            continue
        have = sorted(c for i in ifaces for c in i.cidrs)
        if have != sorted(c for cs in seen.values() for c in cs):
            problems.append(f"{obj.holder}: its interfaces have {have}, get shows {seen}")
        problems += [f"{obj.holder}: {i.name} on {NET} has mtu {i.mtu}, {NET}'s is {chaos.mtu}"
                     for i in ifaces if i.mtu != chaos.mtu
                     and any(ipaddress.ip_interface(c).ip in SUBNETS[NET] for c in i.cidrs)]
    return problems + id_problems(e2e, chaos, pids)


def id_problems(e2e: E2E, chaos: Chaos, pids: dict[str, int]) -> list[str]:
    """Each ``hostUsers: false`` object holds a slot of its own in ``userns.json``, and
    every process of it runs as that range's first id, a pod's all in one user namespace;
    the others run as host root in the host's."""
    slots, problems = held_slots(e2e)
    by_slot: dict[int, list[str]] = collections.defaultdict(list)
    for key, n in slots.items():
        by_slot[n].append(key)
    problems += [f"userns.json: slot {s} is held by {sorted(keys)}"
                 for s, keys in sorted(by_slot.items()) if len(keys) > 1]
    problems += [f"userns.json: {k} holds slot {s}, outside the {SLOTS} ranges given"
                 for k, s in sorted(slots.items()) if not 0 <= s < SLOTS]
    host_ns = user_ns(os.getpid())
    for obj in sorted(chaos.want.values(), key=lambda o: o.name):
        slot = slots.get(obj.key)
        if obj.userns and slot is None:
            problems.append(f"{obj.key} has hostUsers: false and holds no slot in userns.json"
                            f" ({slots})")
            continue
        want_id = FIRST_ID + RANGE * slot if obj.userns and slot is not None else 0
        spaces: set[str | None] = set()
        for unit in obj.units():
            pid = pids[unit]
            try:
                (uids, gids), space = host_ids(pid), user_ns(pid)
            except (OSError, KeyError, ValueError) as exc:
                problems.append(f"{unit}: cannot read pid {pid}'s ids: {exc!r}")
                continue
            spaces.add(space)
            if set(uids) != {want_id} or set(gids) != {want_id}:
                how = (f"hostUsers: false and slot {slot} of userns.json (ids from {want_id})"
                       if obj.userns else "hostUsers: true")
                problems.append(f"{unit}: pid {pid} runs as host uids {uids}, gids {gids}; "
                                f"its manifest has {how}")
        if obj.userns and (len(spaces) != 1 or host_ns in spaces):
            problems.append(f"{obj.name}: its containers are in user namespaces {spaces}, "
                            f"want one of its own (the host's is {host_ns})")
        if not obj.userns and spaces - {host_ns}:
            problems.append(f"{obj.name}: has hostUsers: true, its containers are in user "
                            f"namespaces {spaces}, not the host's {host_ns}")
    return problems


def leak_problems(e2e: E2E, chaos: Chaos) -> list[str]:
    """Everything of ours on the host that no live instance of the last manifests
    explains (and what a live one lacks). [] when nothing leaked."""
    want = chaos.units()
    current = current_entries(e2e.runc_entries())
    live = {u: str(current[u]["id"]) for u in want if u in current}
    if len(live) != len(want):
        return [f"not converged: runc has {sorted(live.values())}"]
    ids = set(live.values())
    objs = sorted(chaos.want.values(), key=lambda o: o.name)
    holders = {live[o.holder]: o for o in objs}  # instance id -> its object
    mapped = {live[u] for o in objs if o.userns for u in o.units()}  # idmapped instances
    problems: list[str] = []

    # conmon: one per live instance, none else
    mons = monitored(e2e)
    problems += [f"{n} conmon process(es) for {i}, which is no live instance"
                 for i, n in sorted(mons.items()) if i not in ids]
    problems += [f"{i}: {mons[i]} conmon processes" for i in sorted(ids) if mons[i] != 1]

    # depots: a bundle only for live instances; nothing of an object no longer wanted
    containers = e2e.state_dir / "containers"
    for d in sorted(containers.iterdir()) if containers.is_dir() else []:
        if (d / "bundle").exists() and d.name not in ids:
            problems.append(f"depot {d.name} has a bundle, no live instance")
        elif instance_name(d.name) not in want:
            problems.append(f"depot {d.name} is left of a deleted object: "
                            f"{sorted(p.name for p in d.iterdir())}")

    # mounts under the state dir: each live instance's overlay, each network holder's
    # netns pin, each live pod's /dev/shm; once each, and nothing else
    state = str(e2e.state_dir) + "/"
    mounted = collections.Counter(m[len(state):] for m in mounts_under(e2e.state_dir)
                                  if m.startswith(state))
    expected = collections.Counter(
        [f"containers/{i}/bundle/rootfs" for i in ids]
        + [f"containers/{i}/layer/mapped" for i in mapped]
        + [f"networks/netns/{i}" for i in holders]
        + [f"pods/{o.holder}/shm" for o in objs if o.pod])
    problems += [f"mount {state}{m} x{k}: no live instance's" for m, k in
                 sorted((mounted - expected).items())]
    problems += [f"mount {state}{m} missing" for m in sorted((expected - mounted).elements())]

    # user namespaces: the roots bound for runc, the live idmapped instances' once each;
    # a range only for an object still wanted (freed on delete) that had hostUsers: false
    run = userns_run_dir(e2e)
    bound = collections.Counter(m[len(str(run)) + 1:] for m in mounts_under(run) if m != str(run))
    problems += [f"mount {run}/{m} x{k}: no live hostUsers: false instance's" for m, k in
                 sorted((bound - collections.Counter(mapped)).items())]
    problems += [f"mount {run}/{i} missing" for i in sorted(mapped) if not bound[i]]
    if names_in(run) != sorted(mapped):
        problems.append(f"{run} holds {names_in(run)}, live hostUsers: false instances "
                        f"{sorted(mapped)}")
    slots, unreadable = held_slots(e2e)
    problems += unreadable
    keys = {o.key: o for o in objs}
    for key, slot in sorted(slots.items()):
        obj = keys.get(key)
        if obj is None:
            problems.append(f"userns.json: {key} holds slot {slot}, and is deleted")
        elif obj.name not in chaos.ever_userns:
            problems.append(f"userns.json: {key} holds slot {slot}, and never had "
                            "hostUsers: false")

    # pod dirs: the live pods'
    pods_dirs = [p for p in names_in(e2e.state_dir / "pods") if p != "infra"]
    if pods_dirs != sorted(o.holder for o in objs if o.pod):
        problems.append(f"pod dirs {pods_dirs}, live pods "
                        f"{sorted(o.holder for o in objs if o.pod)}")

    # cgroups: the live instances' (from their configs) and their pod dirs, in every
    # hierarchy; none missing in the memory controller's (the tree on v2)
    for parent in e2e.cgroup_parents():
        paths: set[str] = set()
        for i in sorted(ids):
            try:
                cfg = json.loads((containers / i / "bundle" / "config.json").read_text())
                rel = str(cfg["linux"]["cgroupsPath"]).strip("/")
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"{i}: no cgroupsPath in its config.json: {exc!r}")
                continue
            if rel.startswith(parent.strip("/") + "/"):
                parts = rel[len(parent.strip("/")) + 1:].split("/")
                paths |= {"/".join(parts[:k]) for k in range(1, len(parts) + 1)}
        for hierarchy, found in cgroups_under(parent).items():
            problems += [f"cgroup {hierarchy}:{parent}/{p}: no live instance's"
                         for p in sorted(found - paths)]
            if hierarchy in ("memory", "/"):
                problems += [f"cgroup {hierarchy}:{parent}/{p} missing"
                             for p in sorted(paths - found)]

    # networks: records, pins, hosts dirs of the live holders; reservations and the
    # address book of their attachments; veths and iptables rules of their interfaces
    if records(e2e) != sorted(holders):
        problems.append(f"attachment records {records(e2e)}, live {sorted(holders)}")
    want_pins = sorted([f"file {i}" for i in holders] + [f"mount {i}" for i in holders])
    if pins(e2e) != want_pins:
        problems.append(f"netns pins {pins(e2e)}, want {want_pins}")
    etc = names_in(e2e.state_dir / "networks" / "etc")
    if etc != sorted(o.holder for o in objs):
        problems.append(f"hosts dirs {etc}, live {sorted(o.holder for o in objs)}")

    views = e2e.get_all()
    address = {(o.holder, net): cidrs[0].split("/")[0] for o in objs
               for net, cidrs in ((views.get(o.holder) or {}).get("addresses") or {}).items()}
    held: collections.Counter[tuple[str, str]] = collections.Counter()
    for key, owner in sorted(ipam(e2e).items()):
        net, ip = key.split("/", 1)
        obj = holders.get(owner)
        if obj is None:
            problems.append(f"ipam: {key} is reserved for {owner}, no live instance")
        elif address.get((obj.holder, net)) != ip:
            problems.append(f"ipam: {key} is reserved for {owner}, whose address on {net} "
                            f"is {address.get((obj.holder, net))}")
        else:
            held[(obj.holder, net)] += 1
    problems += [f"ipam: {h} holds {held[(h, net)]} reservations on {net}"
                 for h, net in sorted(address) if held[(h, net)] != 1]
    for net, entries in sorted(book(e2e).items()):
        for obj_name, ip in sorted(entries.items()):
            if obj_name not in {o.holder for o in objs}:
                problems.append(f"address book keeps {obj_name} = {ip} on {net}: no live object")
            elif (obj_name, net) in address and address[(obj_name, net)] != ip:
                problems.append(f"address book: {obj_name} = {ip} on {net}, get shows "
                                f"{address[(obj_name, net)]}")
    problems += [f"address book lacks {h} on {net}" for h, net in sorted(address)
                 if book(e2e).get(net, {}).get(h) is None]

    peers: set[int] = set()
    for obj in holders.values():
        ifaces = interfaces_of(int(current[obj.holder]["pid"])) or []
        peers |= {f.peer for f in ifaces if f.peer is not None}
    host_veths = veths(e2e)
    problems += [f"veth {v['ifname']} (ifindex {k}) is no live object's peer"
                 for k, v in sorted(host_veths.items()) if k not in peers]
    problems += [f"veth {v['ifname']} is on {v.get('master')}" for v in host_veths.values()
                 if v.get("master") not in BRIDGES]
    n_links = sum(len(o.networks) for o in objs)
    if len(host_veths) != n_links:
        problems.append(f"{len(host_veths)} veths for {n_links} attachments")

    live_ips = {ip for (_h, _n), ip in address.items()}
    lines = rules(e2e)
    jumped: set[str] = set()
    for ln in lines:
        if " chain " in ln:
            continue
        named = set(_RULE_ID_RE.findall(ln))
        problems += [f"rule names {i}, no live instance: {ln}" for i in sorted(named - ids)]
        for ip in _IPV4_RE.findall(ln):
            a = ipaddress.ip_address(ip)
            if any(a in s and a not in (s.network_address, s.broadcast_address, s[1])
                   for s in SUBNETS.values()) and ip not in live_ips:
                problems.append(f"rule names {ip}, no live object's address: {ln}")
        jump = _JUMP_RE.search(ln)
        if jump and named and named <= ids:
            jumped.add(jump.group(1))
    declared = {ln.split()[-1] for ln in lines if " chain " in ln}
    problems += [f"chain {c} is jumped to by no live instance's rule"
                 for c in sorted(declared - STATIC_CHAINS - jumped)]
    return problems


# -- the test --------------------------------------------------------------------------------


@pytest.fixture
def world(net_e2e: E2E, busybox_layout: Path) -> E2E:
    """``net_e2e`` whose image store has ``busybox:1.36`` (for the pods)."""
    net_e2e.import_image(busybox_layout, IMAGE)
    return net_e2e


def daemon_args(e2e: E2E) -> list[str]:
    """``--allow-empty`` (a batch may delete everything), a policy at ``privileged`` (the
    default policy, baseline, refuses ``rootfs:`` trees, and this file is not about
    policy), and subuid and subgid files of the test's own: ``SLOTS`` ranges for
    ``hostUsers: false``, never the host's."""
    policy = e2e.tmp / "policy.yaml"
    policy.write_text("apiVersion: reconciler/v1\nkind: Policy\nlevel: privileged\n")
    for kind in ("uid", "gid"):
        (e2e.tmp / f"sub{kind}").write_text(
            f"someoneelse:100000:65536\n{USERNS_USER}:{FIRST_ID}:{RANGE * SLOTS}\n")
    return ["--allow-empty", "--policy", str(policy), "--subuid-file", str(e2e.tmp / "subuid"),
            "--subgid-file", str(e2e.tmp / "subgid")]


def wait_ready(e2e: E2E, d: Daemon, chaos: Chaos, what: str) -> None:
    try:
        e2e.wait_ready(d, timeout=20)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}{chaos.told()}") from exc


def known_bug(problem: str) -> str | None:
    return next((bug for bug, patterns in KNOWN_BUGS.items()
                 if any(p.search(problem) for p in patterns)), None)


class Verdict:
    """Problems found at the end of a run: an unknown one fails the test at once; those of
    known bugs are kept, and ``end`` makes the test an xfail that lists them."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.known: list[tuple[str, str]] = []  # (bug, problem)

    def check(self, problems: list[str], what: str) -> None:
        unknown = [p for p in problems if known_bug(p) is None]
        known = [p for p in problems if p not in unknown]
        note = f"\n(and of known bugs:{shown(known)})" if known else ""
        assert not unknown, f"{what}:{shown(unknown)}{note}{self.chaos.told()}"
        self.known += [(str(known_bug(p)), p) for p in known]

    def end(self) -> None:
        if self.known:
            bugs = sorted({bug for bug, _ in self.known})
            pytest.xfail(f"only known product bugs:{shown(bugs)}\nthe problems:"
                         f"{shown([p for _, p in self.known])}{self.chaos.told()}")


@pytest.mark.timeout(120)
def test_sigkills_under_churn_converge_on_the_last_manifests_and_leak_nothing(
        world: E2E, record: Callable[[str, float], None]) -> None:
    """ROUNDS rounds of random changes, each ended by a SIGKILL; then one more start, and
    the host is the last manifests, whole, and nothing else (see the module doc)."""
    e2e = world
    rng = random.Random(SEED)
    chaos = Chaos(e2e, rng)
    args = daemon_args(e2e)
    chaos.put(f"{NET}.yaml", network_text(chaos.mtu))
    for name in rng.sample(CONTAINERS + PODS, 3):
        chaos.save(chaos.fresh(name))
    chaos.story.append(f"start: {', '.join(sorted(chaos.want))}")
    daemon = e2e.start(*args, ready=False)
    wait_ready(e2e, daemon, chaos, "the first daemon")

    for r in range(ROUNDS):
        did = chaos.batch()
        pause = rng.uniform(0, MAX_PAUSE)
        time.sleep(pause)
        assert daemon.alive(), (f"round {r}: the daemon exited by itself with "
                                f"{daemon.proc.returncode}:\n{daemon.log()[-3000:]}"
                                f"{chaos.told()}")
        passed = (e2e.status().get("daemon") or {}).get("lastPassAt") or 0.0
        daemon.kill()
        when = "after" if passed >= daemon.started_wall else "before"
        chaos.story.append(f"round {r}: {'; '.join(did)}; SIGKILL after {pause:.2f}s "
                           f"({when} the daemon's first pass)")
        if r < ROUNDS - 1:
            daemon = e2e.start(*args, ready=False)
            if rng.random() < WAIT_READY:
                wait_ready(e2e, daemon, chaos, f"the daemon after round {r}'s kill")
                chaos.story.append("  (the next daemon's first pass waited for)")

    t0 = time.monotonic()
    daemon = e2e.start(*args, ready=False)
    wait_ready(e2e, daemon, chaos, "the last daemon")
    verdict = Verdict(chaos)
    wrong = last_problems(lambda: state_problems(e2e, chaos), CONVERGE_WITHIN)
    verdict.check(wrong, f"not the last manifests {time.monotonic() - t0:.0f}s after the "
                         "last start")
    if not wrong:
        record("last start -> the last manifests, on the host", time.monotonic() - t0)
    verdict.check(last_problems(lambda: leak_problems(e2e, chaos), 10), "left on the host")
    assert daemon.alive(), f"the last daemon exited:\n{daemon.log()[-3000:]}{chaos.told()}"
    verdict.end()


# -- the known bugs, each made to happen -------------------------------------------------------


def test_a_half_made_instance_of_an_object_deleted_meanwhile_leaves_nothing(
        e2e: E2E, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon is killed in h's create, with the depot and bundle written and conmon
    called but no runc container yet (a conmon stand-in holds it there, and never runs
    conmon); h's manifest is removed before the next start. The next daemon clears the
    leftovers, and h being gone, nothing of it may stay."""
    shim = tmp_path / "shim"
    shim.mkdir()
    hold, entered = tmp_path / "hold", tmp_path / "entered"
    hold.touch()
    (shim / "conmon").write_text(
        f"#!/bin/sh\ntouch {entered}\nwhile [ -e {hold} ]; do sleep 0.05; done\nexit 1\n")
    (shim / "conmon").chmod(0o755)
    args = daemon_args(e2e)
    e2e.write("h.yaml", e2e.manifest("h"))
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{shim}:{path}")
    d = e2e.start(*args, ready=False)
    try:
        wait_until(entered.exists, 10, what="conmon called for h")
        assert (e2e.state_dir / "containers" / "h.1" / "bundle").is_dir()
        d.kill()
    finally:
        hold.unlink()  # the stand-in exits
    monkeypatch.setenv("PATH", path)
    (e2e.manifests / "h.yaml").unlink()
    e2e.start(*args)
    assert not e2e.runc_names()
    depot = e2e.state_dir / "containers" / "h.1"
    deadline = time.monotonic() + 3  # three resyncs
    while depot.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(str(p.relative_to(depot)) for p in depot.rglob("*")) if depot.exists() else []
    assert not depot.exists(), f"h is deleted, and its depot {depot} is left: {left}"


BRIDGE_DEL_HELD = """#!/bin/sh
# The real bridge plugin; its first DEL after ARMED appears is held until HOLD is gone.
if [ "$CNI_COMMAND" = DEL ] && rm {armed} 2>/dev/null; then
  echo "$CNI_IFNAME $CNI_CONTAINERID $$" > {entered}
  while [ -e {hold} ]; do sleep 0.05; done
  {real} "$@"
  rc=$?
  touch {done}
  exit $rc
fi
exec {real} "$@"
"""


def test_a_cni_plugin_of_a_killed_daemon_does_not_undo_the_next_daemons_work(
        net_e2e: E2E, tmp_path: Path) -> None:
    """c moves from net1 to default; the daemon is killed while the bridge plugin deletes
    c's eth0 on net1 (a stand-in holds that one DEL, as a slow iptables lock would). The
    next daemon finishes the move (DEL on net1, ADD eth0 on default); then the first
    daemon's DEL, still running, ends. c must still have its address on default."""
    e2e = net_e2e
    cni = tmp_path / "cni"
    cni.mkdir()
    armed, entered = tmp_path / "armed", tmp_path / "entered"
    hold, done = tmp_path / "hold", tmp_path / "done"
    for plugin in CNI.iterdir():
        if plugin.name != "bridge":
            (cni / plugin.name).symlink_to(plugin)
    (cni / "bridge").write_text(BRIDGE_DEL_HELD.format(
        armed=armed, entered=entered, hold=hold, done=done, real=CNI / "bridge"))
    (cni / "bridge").chmod(0o755)
    args = [*daemon_args(e2e), "--cni-path", str(cni)]
    e2e.write(f"{NET}.yaml", network_text(1500))
    e2e.write("c.yaml", e2e.manifest("c", networks=[{"name": NET}]))
    d = e2e.start(*args)
    pid = e2e.wait_running("c", 20)
    wait_until(lambda: NET in ((e2e.get("c") or {}).get("addresses") or {}), 10,
               what="c on net1")

    armed.touch()
    hold.touch()
    e2e.write("c.yaml", e2e.manifest("c", networks=[{"name": "default"}]))
    try:
        assert wait_until(entered.exists, 10, what="the bridge DEL held") and \
            entered.read_text().split()[:2] == ["eth0", "c.1"]
        held = int(entered.read_text().split()[2])
        d.kill()
        e2e.start(*args)

        def moved() -> tuple[str, list[Iface]] | None:
            seen = (e2e.get("c") or {}).get("addresses") or {}
            ifaces = interfaces_of(pid) or []
            have = [c for i in ifaces for c in i.cidrs]
            return (seen["default"][0], ifaces) if list(seen) == ["default"] \
                and have == seen["default"] else None
        address, _ = wait_until(moved, 10, what="the next daemon moved c to default")
    finally:
        hold.unlink(missing_ok=True)  # the first daemon's DEL goes on
    # The next daemon kills the plugins its predecessor left on its namespaces before it
    # touches a network; were it to let them run, this DEL would end now and undo its work.
    wait_until(lambda: done.exists() or not pid_alive(held), 10,
               what="the first daemon's bridge DEL ended or killed")
    assert f"CNI plugin pid {held} of the daemon before: killed" in [
        e["message"] for e in e2e.events() if e["reason"] == "NetworkLeftoverRemoved"]

    def kept() -> list[Iface] | None:
        ifaces = interfaces_of(pid) or []
        return ifaces if [c for i in ifaces for c in i.cidrs] == [address] else None
    deadline = time.monotonic() + 3  # three resyncs
    while not kept() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert e2e.running_pid("c") == pid
    seen = (e2e.get("c") or {}).get("addresses")
    assert kept(), (f"c's interfaces are {interfaces_of(pid)}; get shows {seen}, "
                    f"the address it had before the first daemon's DEL ended: {address}")
