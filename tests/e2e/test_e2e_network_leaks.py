"""Networking leaves nothing behind: many create/delete cycles, and daemon SIGKILLs in the
middle of CNI operations, checked against the test's network namespace and the state dir.

Every daemon runs inside the namespace ``net_e2e`` makes, so its bridge, veths, iptables
rules, published ports and host-port reservations are all read there (``nsenter --net``),
never on this machine's network. No packet is sent anywhere: published ports are checked
by their DNAT rules and by binding the host port inside the namespace (which fails while
the daemon holds it).

What a network leaves for good once it has been used (the baseline is taken after one
warm-up create/delete, not before): the bridge ``rc-default``; in ``filter`` the chains
``CNI-FORWARD`` (with its jump from ``FORWARD``) and ``CNI-ADMIN``, made by the firewall
plugin; in ``nat`` the chains ``CNI-HOSTPORT-DNAT`` (jumped to from ``PREROUTING`` and
``OUTPUT``), ``CNI-HOSTPORT-MASQ`` (from ``POSTROUTING``) and ``CNI-HOSTPORT-SETMARK``,
made by the portmap plugin; and host-local's ``lock`` and ``last_reserved_ip.0`` files.
Everything else — a veth, a ``CNI-<hash>`` masquerade chain and its ``POSTROUTING`` jump,
a ``CNI-DN-<hash>`` DNAT chain and its ``CNI-HOSTPORT-DNAT`` jump, ``CNI-FORWARD`` rules
for an address, a host-local reservation, an attachment record, a netns pin, an entry in
the address book, a hosts file, a held host port — belongs to one object and must go
with it.

The kills are timed by watching the daemon's children: each lands while a given CNI
plugin runs a given command (``kill_during``). A SIGKILL does not stop the plugin, so
what it does is done and its result never recorded: the window a crash leaves.

Product bugs these tests found are listed in ``KNOWN_BUGS`` by the problem lines they
cause: a run whose only problems are those ends as xfail and lists them; any other
problem fails the test at once.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from .harness import E2E, Daemon, instance_name, mounts_under, wait_until

pytestmark = pytest.mark.runc

SUBNET = ipaddress.ip_network("10.92.0.0/16")  # the default network
GATEWAY = ipaddress.ip_address("10.92.0.1")
BRIDGE = "rc-default"
CONTAINER_PORT = 8080
CNI_DIR = "/usr/lib/cni/"
STATIC_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING", "CNI-ADMIN",
                 "CNI-FORWARD", "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ",
                 "CNI-HOSTPORT-SETMARK"}

_ID_RE = re.compile(r'id: \\"([^"\\]+)\\"')
_IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_DNAT_RE = re.compile(r"--dport (\d+) -j DNAT --to-destination ([\d.]+):(\d+)")
_JUMP_RE = re.compile(r" -j (\S+)")
_COUNTERS_RE = re.compile(r"\s*\[\d+:\d+\]")

Snapshot = dict[str, list[str]]


# -- reading the namespace -------------------------------------------------------------------


def in_netns(netns: str, *argv: str) -> str:
    """``argv``'s output, run in the network namespace at path ``netns`` (only the network
    namespace is entered: /sys and the mounts stay this process's)."""
    res = subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 0, f"{' '.join(argv)} in {netns}: {res.stderr}"
    return res.stdout


def ns_path(e2e: E2E) -> str:
    assert e2e.netns is not None
    return f"/var/run/netns/{e2e.netns}"


def links(e2e: E2E) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(in_netns(ns_path(e2e), "ip", "-j", "-d", "link"))
    return found


def veths(e2e: E2E) -> dict[int, dict[str, Any]]:
    """ifindex -> link, of every veth in the test namespace."""
    return {int(link["ifindex"]): link for link in links(e2e)
            if (link.get("linkinfo") or {}).get("info_kind") == "veth"}


def rules(e2e: E2E) -> list[str]:
    """Every chain and rule of iptables and ip6tables, one line each, prefixed with the tool
    and the table; counters dropped."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        table = "?"
        for line in in_netns(ns_path(e2e), tool).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                out.append(f"{tool} {table} chain {line.split()[0][1:]}")
            elif line.startswith("-A "):
                out.append(f"{tool} {table} {_COUNTERS_RE.sub('', line)}")
    return sorted(out)


def ports_held(e2e: E2E, ports: Iterable[int]) -> set[int]:
    """Of ``ports``, those a socket of the namespace holds: a plain bind (no SO_REUSEADDR)
    to 0.0.0.0:port fails with EADDRINUSE. Binding sends nothing."""
    wanted = sorted(set(ports))
    if not wanted:
        return set()
    script = (
        "import errno, json, socket, sys\n"
        "held = []\n"
        "for p in json.loads(sys.argv[1]):\n"
        "    s = socket.socket()\n"
        "    try:\n"
        "        s.bind(('0.0.0.0', p))\n"
        "    except OSError as e:\n"
        "        if e.errno != errno.EADDRINUSE: raise\n"
        "        held.append(p)\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps(held))\n"
    )
    out = in_netns(ns_path(e2e), sys.executable, "-c", script, json.dumps(wanted))
    return set(json.loads(out))


def plugins_running(pid: int) -> list[tuple[str, str, str]]:
    """(plugin, CNI_COMMAND, CNI_CONTAINERID) of each CNI plugin the daemon ``pid`` runs
    right now (its children whose executable is in /usr/lib/cni)."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                argv0 = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()
                env = dict(item.decode().partition("=")[::2] for item in
                           Path(f"/proc/{child}/environ").read_bytes().split(b"\0") if item)
            except OSError:
                continue
            if argv0.startswith(CNI_DIR):
                found.append((os.path.basename(argv0), env.get("CNI_COMMAND", ""),
                              env.get("CNI_CONTAINERID", "")))
    return found


# -- reading the state dir -------------------------------------------------------------------


def ipam(e2e: E2E) -> dict[str, str]:
    """host-local's reservations: ``network/address`` -> the container id holding it."""
    store = e2e.state_dir / "networks" / "ipam"
    out = {}
    for net_dir in sorted(store.iterdir()) if store.is_dir() else []:
        for f in net_dir.iterdir():
            if f.name == "lock" or f.name.startswith("last_reserved_ip"):
                continue
            text = f.read_text().split()
            out[f"{net_dir.name}/{f.name}"] = text[0] if text else ""
    return out


def book(e2e: E2E) -> dict[str, dict[str, str]]:
    """The address book: network -> object -> address."""
    try:
        data: dict[str, dict[str, str]] = json.loads(
            (e2e.state_dir / "networks" / "addresses.json").read_text())
    except FileNotFoundError:
        return {}
    return data


def names_in(d: Path, suffix: str = "") -> list[str]:
    if not d.is_dir():
        return []
    return sorted(p.name[:len(p.name) - len(suffix)] for p in d.iterdir()
                  if p.name.endswith(suffix))


def records(e2e: E2E) -> list[str]:
    """The instances with an attachment record."""
    return names_in(e2e.state_dir / "networks" / "attachments", ".json")


def pins(e2e: E2E) -> list[str]:
    """The instances whose netns is pinned: mounts under ``networks/netns`` and the files
    there (a pin is a bind mount on a file)."""
    root = e2e.state_dir / "networks" / "netns"
    mounted = [f"mount {Path(m).name}" for m in mounts_under(root) if m != str(root)]
    return sorted(mounted + [f"file {n}" for n in names_in(root)])


def snapshot(e2e: E2E) -> Snapshot:
    """What of networking there is, as comparable lines per kind."""
    links_now = sorted(
        f"{link['ifname']} ({(link.get('linkinfo') or {}).get('info_kind', 'device')})"
        for link in links(e2e))
    return {
        "links": links_now,
        "iptables": rules(e2e),
        "ipam reservations": sorted(f"{k} held by {v}" for k, v in ipam(e2e).items()),
        "attachment records": records(e2e),
        "netns pins": pins(e2e),
        "address book": sorted(f"{net}: {obj} = {addr}" for net, objs in book(e2e).items()
                               for obj, addr in objs.items()),
        "hosts files": names_in(e2e.state_dir / "networks" / "etc"),
    }


def diff(base: Snapshot, now: Snapshot) -> list[str]:
    """What ``now`` has that ``base`` has not (+) and the other way round (-), per kind."""
    out = []
    for kind in base.keys() | now.keys():
        was, is_ = collections.Counter(base.get(kind, [])), collections.Counter(now.get(kind, []))
        out += [f"{kind}: + {line}" for line in sorted((is_ - was).elements())]
        out += [f"{kind}: - {line}" for line in sorted((was - is_).elements())]
    return sorted(out)


def differences(e2e: E2E, base: Snapshot, *, kinds: Iterable[str] | None = None,
                timeout: float = 10.0) -> list[str]:
    """Until the namespace and the state dir are the baseline again (in ``kinds``, default
    all): the differences left when it gave up, [] once they are."""
    only = set(base) if kinds is None else set(kinds)
    want = {k: v for k, v in base.items() if k in only}
    deadline = time.monotonic() + timeout
    while True:
        now = {k: v for k, v in snapshot(e2e).items() if k in only}
        left = diff(want, now)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def shown(problems: list[str], limit: int = 60) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  " + "\n  ".join(problems[:limit]) + more


# -- known product bugs ------------------------------------------------------------------------

# What this file found wrong in the product, each as the problem lines it causes. A test
# whose only problems match these ends as xfail, listing them; any other problem fails it.
# Delete an entry once its bug is fixed (the test then fails if the bug comes back).
KNOWN_BUGS: dict[str, re.Pattern[str]] = {}  # none known now


class Findings:
    """Problems found along a test: an unknown one fails the test at once; the known
    ones are kept, and ``verdict`` ends the test as xfail with them."""

    def __init__(self) -> None:
        self.known: list[tuple[str, str]] = []  # (when, problem)
        self.story: list[str] = []  # what happened, told with every outcome

    def check(self, problems: list[str], what: str) -> None:
        unknown = [p for p in problems if not any(r.search(p) for r in KNOWN_BUGS.values())]
        known = [p for p in problems if p not in unknown]
        note = f"\n(and {len(known)} of known bugs:{shown(known, 10)})" if known else ""
        assert not unknown, (f"{what}: {len(unknown)} problems:{shown(unknown)}{note}"
                             f"{self._story()}")
        self.known += [(what, p) for p in known]

    def _story(self) -> str:
        return f"\nwhat happened:{shown(self.story)}" if self.story else ""

    def verdict(self) -> None:
        if self.known:
            bugs = [f"{sum(1 for _, p in self.known if r.search(p))} x {bug}"
                    for bug, r in KNOWN_BUGS.items() if any(r.search(p) for _, p in self.known)]
            pytest.xfail(f"{len(self.known)} problems, all of known product bugs:"
                         f"{shown(bugs)}\nthe problems:"
                         f"{shown([f'{when}: {p}' for when, p in self.known], 25)}"
                         f"{self._story()}")


# -- the world -------------------------------------------------------------------------------


def container_net(pid: int) -> tuple[str, int]:
    """(eth0's IPv4 address, the ifindex of its veth peer in the test namespace) of the
    container whose init is ``pid``."""
    out = json.loads(in_netns(f"/proc/{pid}/ns/net", "ip", "-j", "-d", "addr", "show",
                              "dev", "eth0"))
    assert len(out) == 1, out
    v4 = [a["local"] for a in out[0].get("addr_info", []) if a.get("family") == "inet"]
    assert len(v4) == 1, f"eth0 of pid {pid}: {out}"
    return v4[0], int(out[0]["link_index"])


def spec(port: int) -> dict[str, Any]:
    return {"ports": [{"containerPort": CONTAINER_PORT, "hostPort": port}]}


def write(e2e: E2E, name: str, port: int) -> None:
    e2e.write(f"{name}.yaml", e2e.manifest(name, **spec(port)))


def remove(e2e: E2E, name: str) -> None:
    (e2e.manifests / f"{name}.yaml").unlink()


def live_problems(e2e: E2E, want: dict[str, int], *, pool: Iterable[int] = ()) -> list[str]:
    """Everything wrong with the networks of a world whose desired objects are ``want``
    (name -> host port), all running; ``pool``: host ports that must be free unless a live
    object publishes them. Empty: each live object has one address, one veth, its rules,
    its port, its record and pin, and nothing else is there."""
    problems: list[str] = []
    current = e2e.current()
    if set(current) != set(want):
        return [f"runc has {sorted(current)}, want {sorted(want)}"]
    instances = {n: str(e["id"]) for n, e in current.items()}
    live_ids = set(instances.values())
    addr: dict[str, str] = {}
    peers: dict[str, int] = {}
    for n, e in current.items():
        if e.get("status") != "running":
            return [f"{n} is {e.get('status')}"]
        addr[n], peers[n] = container_net(int(e["pid"]))

    # addresses: one each, distinct, in the subnet; host-local and the views agree
    dupes = [a for a, k in collections.Counter(addr.values()).items() if k > 1]
    problems += [f"address {a} is on more than one live object" for a in dupes]
    problems += [f"{n}: address {a} not in {SUBNET}" for n, a in addr.items()
                 if ipaddress.ip_address(a) not in SUBNET or ipaddress.ip_address(a) == GATEWAY]
    reserved = ipam(e2e)
    owners = collections.Counter(reserved.values())
    problems += [f"ipam: {ip} is reserved for {owner}, not a live instance"
                 for ip, owner in reserved.items() if owner not in live_ids]
    for n, inst in instances.items():
        if owners[inst] != 1:
            problems.append(f"ipam: {inst} ({n}) holds {owners[inst]} reservations")
        elif reserved.get(f"default/{addr[n]}") != inst:
            problems.append(f"ipam: {n}'s address {addr[n]} is not reserved for {inst}")
    views = e2e.get_all()
    for n in want:
        seen = ((views.get(n) or {}).get("addresses") or {}).get("default")
        if seen != [f"{addr[n]}/{SUBNET.prefixlen}"]:
            problems.append(f"get shows {n} at {seen}, eth0 has {addr[n]}")
    in_book = book(e2e).get("default", {})
    problems += [f"address book keeps {n} = {a}, not a live object"
                 for n, a in sorted(in_book.items()) if n not in want]
    problems += [f"address book lacks live {n}" for n in want if n not in in_book]
    problems += [f"address book: {n} = {in_book[n]}, eth0 has {addr[n]}" for n in want
                 if n in in_book and in_book[n] != addr[n]]

    # veths: exactly the peers of the live containers' eth0, all on the bridge
    host_veths = veths(e2e)
    problems += [f"veth {v['ifname']} (ifindex {i}) is no live container's peer"
                 for i, v in host_veths.items() if i not in peers.values()]
    problems += [f"{n}'s veth peer (ifindex {i}) is not in the namespace"
                 for n, i in peers.items() if i not in host_veths]
    problems += [f"veth {v['ifname']} is not on {BRIDGE}" for v in host_veths.values()
                 if v.get("master") != BRIDGE]

    # iptables: every id, address, chain and DNAT belongs to a live object
    lines = rules(e2e)
    live_addrs = set(addr.values())
    declared = {ln.split()[-1] for ln in lines if " chain " in ln}
    jumped_from_live: set[str] = set()
    dnat: set[tuple[int, str, int]] = set()
    for ln in lines:
        if " chain " in ln:
            continue
        ids = set(_ID_RE.findall(ln))
        problems += [f"rule names {i}, not a live instance: {ln}" for i in ids - live_ids]
        for ip in _IPV4_RE.findall(ln):
            a = ipaddress.ip_address(ip)
            if a in SUBNET and a not in (SUBNET.network_address, GATEWAY) \
                    and ip not in live_addrs:
                problems.append(f"rule names {ip}, no live object's address: {ln}")
        jump = _JUMP_RE.search(ln)
        if jump and ids and ids <= live_ids:
            jumped_from_live.add(jump.group(1))
        m = _DNAT_RE.search(ln)
        if m:
            dnat.add((int(m.group(1)), m.group(2), int(m.group(3))))
    problems += [f"chain {c} is not jumped to by a live instance's rule" for c in
                 sorted(declared - STATIC_CHAINS - jumped_from_live)]
    expected = {(want[n], addr[n], CONTAINER_PORT) for n in want}
    problems += [f"DNAT {p} -> {a}:{c} belongs to no live object"
                 for p, a, c in sorted(dnat - expected)]
    problems += [f"{n}: no DNAT {want[n]} -> {addr[n]}:{CONTAINER_PORT}" for n in want
                 if (want[n], addr[n], CONTAINER_PORT) not in dnat]
    problems += [f"{n}: no CNI-FORWARD rule for {addr[n]}" for n in want
                 if f"iptables-save filter -A CNI-FORWARD -s {addr[n]}/32 -j ACCEPT"
                 not in lines]

    # records and pins: exactly the live instances
    if set(records(e2e)) != live_ids:
        problems.append(f"attachment records {records(e2e)}, live {sorted(live_ids)}")
    want_pins = sorted([f"file {i}" for i in live_ids] + [f"mount {i}" for i in live_ids])
    if pins(e2e) != want_pins:
        problems.append(f"netns pins {pins(e2e)}, want {want_pins}")

    # host ports: held for the live objects, free for the rest of the pool
    ports = set(want.values()) | set(pool)
    held = ports_held(e2e, ports)
    problems += [f"host port {p} ({n}) is not held" for n, p in want.items() if p not in held]
    problems += [f"host port {p} is held, but no live object publishes it"
                 for p in sorted(held - set(want.values()))]
    return problems


def last_problems(check: Callable[[], list[str]], timeout: float) -> list[str]:
    """Until ``check`` finds no problem: [] then, else the last problems found."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.25)


def nothing_per_instance(e2e: E2E) -> bool:
    """No record, pin or veth: every instance's network let go."""
    return not records(e2e) and not pins(e2e) and not veths(e2e)


def wait_host_exactly(e2e: E2E, names: Iterable[str], timeout: float = 60) -> None:
    """Until the host holds these containers and no other of ours: runc containers,
    overlays, depots with a bundle, cgroups (a depot of a half-made instance the daemon
    cleared keeps its logs dir: not counted, as in test_e2e_crash)."""
    want = sorted(names)

    def exactly() -> bool:
        inventory = e2e.inventory()
        return all(inventory[k] == want for k in ("runc", "overlays", "depots", "cgroups"))
    wait_until(exactly, timeout, what=f"exactly {want} on the host", interval=0.2)


def warm_up(e2e: E2E, port: int) -> Snapshot:
    """One object with a published port created and deleted, then the baseline: what
    stays for good once a network and a port mapping were made (see the module doc)."""
    write(e2e, "warm", port)
    e2e.wait_running("warm", timeout=20)
    problems = last_problems(lambda: live_problems(e2e, {"warm": port}), 10)
    assert not problems, f"the warm-up object:{shown(problems)}"
    remove(e2e, "warm")
    e2e.wait_gone("warm", timeout=20)
    wait_until(lambda: nothing_per_instance(e2e), 10, what="warm's network let go")
    base = snapshot(e2e)
    # the static parts this test counts on being created once and staying
    assert f"{BRIDGE} (bridge)" in base["links"], base["links"]
    for chain in ("filter chain CNI-FORWARD", "nat chain CNI-HOSTPORT-DNAT"):
        assert f"iptables-save {chain}" in base["iptables"], base["iptables"]
    assert not base["ipam reservations"], base
    return base


# -- the tests -------------------------------------------------------------------------------

ROUNDS, BATCH = 6, 10  # 60 create/delete cycles (the chaos test kills under churn too)
CYCLE_PORT = 18000
# what one round's instances have, all gone again after the round (the address book and
# the hosts files are compared at the end, with everything else)
PER_INSTANCE = ("links", "iptables", "ipam reservations", "attachment records", "netns pins")


@pytest.mark.timeout(240)
def test_create_delete_cycles_leak_nothing(net_e2e: E2E) -> None:
    """100 objects with the default network and a published port, created and deleted in
    rounds of 10, each round's names new and its host ports the last round's: while they
    run, each has exactly its address, veth, rules, port, record and pin; after each round
    its links, rules, reservations, records and pins are the baseline's and its ports are
    free; at the end all of the namespace and the state dir is the baseline."""
    e2e = net_e2e
    e2e.start("--allow-empty")
    base = warm_up(e2e, CYCLE_PORT)
    findings = Findings()
    ports = [CYCLE_PORT + i for i in range(BATCH)]
    cycles = 0
    for r in range(ROUNDS):
        want = {f"c{r}x{i}": ports[i] for i in range(BATCH)}
        for n, p in want.items():
            write(e2e, n, p)
        e2e.wait_all_running(want, timeout=60)
        findings.check(last_problems(functools.partial(live_problems, e2e, want, pool=ports),
                                     10), f"round {r}, all running")
        for n in want:
            remove(e2e, n)
        e2e.wait_all_gone(want, timeout=60)
        left = differences(e2e, base, kinds=PER_INSTANCE)
        left += [f"host port {p} still held" for p in sorted(ports_held(e2e, ports))]
        findings.check(left, f"round {r}, all deleted")
        cycles += len(want)
    assert cycles == ROUNDS * BATCH
    findings.check(differences(e2e, base), f"after {cycles} cycles, all deleted")
    findings.verdict()


POOL = [f"k{i:02d}" for i in range(12)]
POOL_PORT = 19000
KILLS = 12  # every TARGET at least once (the chaos test kills at random too)
# Where each kill lands, in turn: while the daemon runs this CNI plugin with this command;
# "revert": for an object this step began to create, which is deleted while the daemon is
# down (the next daemon is then let converge, and checked).
TARGETS = [("bridge", "ADD", False), ("firewall", "ADD", True), ("portmap", "ADD", False),
           ("portmap", "DEL", False), ("bridge", "ADD", True), ("firewall", "DEL", False),
           ("firewall", "ADD", False), ("portmap", "ADD", True), ("bridge", "DEL", False)]


def kill_during(d: Daemon, target: tuple[str, str], *, jitter: float,
                of: Iterable[str] | None = None, timeout: float = 10.0) -> str | None:
    """SIGKILL the daemon ``jitter`` s after it is seen running the CNI plugin ``target``
    (plugin, command), for an instance of one of the objects ``of`` if given (else for
    any, once ``timeout`` passed without it; else at twice ``timeout`` anyway). What it was
    killed under (``firewall ADD k03.1``, and what else ran then), None if no plugin ran.
    The plugins run on: what they do is done, and the daemon never learns their result."""
    names = None if of is None else set(of)
    t0 = time.monotonic()
    seen: tuple[str, str, str] | None = None
    while seen is None and time.monotonic() - t0 < 2 * timeout:
        running = plugins_running(d.pid)
        wanted = [p for p in running if p[:2] == target
                  and (names is None or instance_name(p[2]) in names)]
        if wanted:
            seen = wanted[0]
        elif running and time.monotonic() - t0 >= timeout:
            seen = running[0]
        else:
            time.sleep(0.002)
    time.sleep(jitter)
    also = [" ".join(p) for p in plugins_running(d.pid) if p != seen]
    d.kill()
    if seen is None:
        return None
    return " ".join(seen) + (f" (also {', '.join(also)})" if also else "")


@pytest.mark.timeout(240)
def test_sigkills_during_network_operations_leak_nothing(net_e2e: E2E) -> None:
    """12 SIGKILLs, each while the daemon runs a CNI plugin (bridge, firewall or portmap,
    adding or deleting, see TARGETS) as objects with a published port are created and
    deleted, the daemon restarted after each (and often killed again in its recovery).
    After each kill that a deletion follows, the next daemon is let converge and checked:
    every reservation, address, veth, rule, port, record and pin is a live object's, once,
    and each live object has its own. At the end the same for one known desired set; then
    all deleted, and the namespace and the state dir are the baseline."""
    e2e = net_e2e
    e2e.start("--allow-empty")
    base = warm_up(e2e, POOL_PORT)
    findings = Findings()
    rng = random.Random(20261201)
    port_of = {n: POOL_PORT + i for i, n in enumerate(POOL)}
    desired: set[str] = set()
    daemon = e2e.daemons[-1]

    def converged(want: set[str], when: str, timeout: float) -> None:
        e2e.wait_all_running(want, timeout=60)
        wait_host_exactly(e2e, want)
        findings.check(last_problems(lambda: live_problems(
            e2e, {n: port_of[n] for n in want}, pool=port_of.values()), timeout), when)

    for k in range(KILLS):
        if not daemon.alive():
            daemon = e2e.start("--allow-empty", ready=False)
        absent = sorted(set(POOL) - desired)
        adds = rng.sample(absent, min(4, len(absent)))
        removes = rng.sample(sorted(desired), min(3, len(desired)))
        for n in adds:
            write(e2e, n, port_of[n])
        for n in removes:
            remove(e2e, n)
        desired = (desired | set(adds)) - set(removes)
        plugin, command, revert = TARGETS[k % len(TARGETS)]
        seen = kill_during(daemon, (plugin, command), of=adds if revert else None,
                           jitter=rng.choice([0.0, 0.003, 0.01, 0.03]))
        assert seen is not None, f"kill {k}: the daemon ran no CNI plugin"
        findings.story.append(f"kill {k}: {seen}")
        if revert:  # made half-way, then not wanted any more
            for n in adds:
                remove(e2e, n)
            desired -= set(adds)
            daemon = e2e.start("--allow-empty")
            converged(desired, f"kill {k} ({seen}), its objects deleted", 5)
    assert len(findings.story) == KILLS

    final = set(POOL[:6])
    for n in POOL:
        if n in final and n not in desired:
            write(e2e, n, port_of[n])
        elif n not in final and n in desired:
            remove(e2e, n)
    if not daemon.alive():
        e2e.start("--allow-empty")
    converged(final, f"after {KILLS} kills, converged on {sorted(final)}", 10)

    for n in final:
        remove(e2e, n)
    wait_host_exactly(e2e, ())
    left = differences(e2e, base)
    left += [f"host port {p} still held" for p in sorted(ports_held(e2e, port_of.values()))]
    findings.check(left, f"after {KILLS} kills, all deleted")
    findings.verdict()
