"""Subcommands that look into one container: logs, exec, stats, inspect, top.

Where it sits: the CLI layer, beside ``cli/daemon.py``. These talk to the runtime adapter
and the depot directly, not to the daemon, so they work whether or not a daemon runs.
Log parsing and following live in ``reconciler.logs``; this module only prints. All take
``--state-dir`` and ``--runc-root`` with the defaults ``cli/daemon.py`` gives them
(``reconciler.config``: flag > RECONCILER_* > config file > built-in).

NAME is a container, a pod's unit by its own name (``default_web_server``), or a pod
(``web``, ``pod/web``, ``-n NS``): then ``-c CONTAINER`` picks one of its containers, and
without it kubectl's default container is taken (``cli/pods.py`` chooses, and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import pwd
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import anyio

from reconciler import errors, logs
from reconciler.cli import daemon as daemon_cli
from reconciler.cli import pods
from reconciler.core.instance import ANN_SANDBOX
from reconciler.core.observed import Observed, Stats, Status
from reconciler.runtime import runc
from reconciler.runtime.depot import Depot

POLL_SECONDS = 0.1  # how often ``logs -f`` looks at the file
STATS_SECONDS = 1.0  # the CPU sample window, and the refresh period of ``stats``
_CLEAR = "\x1b[2J\x1b[H"  # erase the screen, cursor home


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("logs", help="print a container's output (stdout and stderr)")
    daemon_cli._common(p)
    p.add_argument("name", help="a container, or a pod (its default container, or -c)")
    _pod_options(p)
    p.add_argument("--all-containers", action="store_true",
                   help="every container of the pod, each line prefixed [CONTAINER]")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new output, across restarts of the container")
    p.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    p.add_argument("--since", type=_duration, metavar="DURATION",
                   help="only lines newer than this, e.g. 10s, 5m, 1h")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the output of the previous run, before the last restart")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("exec", help="run a command in a running container")
    _exec_options(p)
    p.add_argument("name", help="a container, a pod's container unit, or a pod (-c picks one)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                   help="the command and its arguments, after --")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("stats", help="CPU, memory and PIDs of containers, like docker stats")
    daemon_cli._common(p)
    p.add_argument("name", nargs="?", help="a container, or a pod: one row per container")
    daemon_cli.namespace_option(p)
    p.add_argument("--no-stream", action="store_true", help="print once and exit")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="a table (default) or JSON")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("inspect", help="the effective OCI config.json a container runs with")
    daemon_cli._common(p)
    p.add_argument("name", help="a container, or a pod's unit name")
    _pod_options(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("top", help="the processes of a container (of each, for a pod)")
    daemon_cli._common(p)
    p.add_argument("name", help="a container, or a pod: the processes of each container")
    daemon_cli.namespace_option(p)
    p.set_defaults(func=cmd_top)


def _exec_options(p: argparse.ArgumentParser) -> None:
    daemon_cli._common(p)
    p.add_argument("-i", "--stdin", action="store_true",
                   help="pass our stdin to the command (without it, the command reads nothing)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the command a terminal, sized and resized as ours, with our TERM")
    p.add_argument("-e", "--env", action="append", metavar="NAME=VALUE",
                   help="set an environment variable (repeatable); a bare NAME takes our value")
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="run as this user (and group)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="run in this directory")
    _pod_options(p)


def _pod_options(p: argparse.ArgumentParser) -> None:
    daemon_cli.namespace_option(p)
    p.add_argument("-c", "--container", metavar="CONTAINER",
                   help="which container of the pod NAME (default: kubectl's default one)")


def _by_name(command: Callable[[argparse.Namespace], int]
             ) -> Callable[[argparse.Namespace], int]:
    """Errors name the container as the user typed it, not the instance id (``web.2``);
    a pod's container as ``POD/CONTAINER``."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except errors.RuntimeFailure as exc:
            if not getattr(args, "name", None):
                raise
            shown = getattr(args, "shown", None) or args.name
            raise exc.for_container(shown, instead=True) from None
    return run


class _Unit(NamedTuple):
    """One object a command acts on: its unit name, and its container name in its pod."""

    unit: str
    container: str = ""  # "" for a ``kind: Container`` object or a unit typed directly
    role: str = ""  # in its pod: init, sidecar or app

    @property
    def label(self) -> str:
        return self.container or self.unit


def _units(args: argparse.Namespace, rt: runc.RuncRuntime, *, every: bool = False
           ) -> list[_Unit]:
    """What NAME means: a container (or a pod's unit typed directly), as it always did;
    or a pod's container: ``-c``, else kubectl's default one (said on stderr). ``every``:
    all of the pod's containers, init containers first."""
    t = pods.target(args.name, namespace=getattr(args, "namespace", None))
    container = getattr(args, "container", None)
    plain = t.kind != "pod" and container is None
    if plain and (t.kind == "container" or rt.depot(rt.locate(t.name)).root.is_dir()):
        return [_Unit(t.name)]
    pod = daemon_cli.find_pod(args, t)
    if pod is None:
        if plain:  # neither: the container's own errors, as before pods
            return [_Unit(t.name)]
        raise errors.ReconcilerError(f'pod "{t.shown}" not found')
    if every:
        return [_Unit(m.unit, m.container, m.role) for m in pod.members]
    try:
        member, note = pods.choose(pod, container, shown=t.shown)
    except LookupError as exc:
        raise errors.ReconcilerError(str(exc)) from None
    if note:
        print(note, file=sys.stderr)  # noqa: T201
    args.shown = f"{t.shown}/{member.container}"
    return [_Unit(member.unit, member.container, member.role)]


def _runtime(args: argparse.Namespace) -> runc.RuncRuntime:
    return runc.RuncRuntime(state_dir=args.state_dir, runc_root=args.runc_root)


_count = functools.partial(daemon_cli._count, what="a number of lines")


def _duration(text: str) -> timedelta:
    try:
        return logs.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- logs ------------------------------------------------------------------------------------


@_by_name
def cmd_logs(args: argparse.Namespace) -> int:
    if args.follow and args.previous:
        raise errors.UsageError("--follow and --previous do not go together: "
                                "the previous run has ended")
    if args.all_containers and args.container:
        raise errors.UsageError("--all-containers and -c do not go together")
    rt = _runtime(args)
    every = args.all_containers
    found: list[tuple[Depot, bytes]] = []  # each log, and the prefix of its lines
    for u in _units(args, rt, every=every):
        d = rt.depot(rt.locate(u.unit))
        if d.root.is_dir():
            found.append((d, f"[{u.label}] ".encode() if every else b""))
        elif not every:  # with --all-containers, one not made yet has printed nothing
            raise errors.ContainerNotFound("container does not exist", container=args.name)
    since = datetime.now(UTC) - args.since if args.since is not None else None

    def chosen(lines: Sequence[logs.Line]) -> list[logs.Line]:
        return logs.select(lines, tail=args.tail, since=since)

    try:
        if args.follow:
            _follow(found, chosen, timestamps=args.timestamps)
            return 0
        for d, prefix in found:
            if args.previous:
                if not d.previous_log.exists():
                    if every:
                        continue
                    raise errors.ContainerNotFound("has no previous run (it never restarted)",
                                                   container=args.name)
                data = d.previous_log.read_bytes()
            else:
                try:
                    data = d.log.read_bytes()
                except FileNotFoundError:
                    data = b""
            _emit(chosen(logs.parse(data)), args.timestamps, prefix=prefix)
    except BrokenPipeError:  # `reconciler logs web | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _follow(found: Sequence[tuple[Depot, bytes]],
            chosen: Callable[[Sequence[logs.Line]], list[logs.Line]], *,
            timestamps: bool) -> None:
    """Print new lines of every log until every container is deleted for good."""
    with contextlib.ExitStack() as stack:
        followers = [(stack.enter_context(logs.Follower(d.log)), prefix) for d, prefix in found]
        for follower, prefix in followers:
            _emit(chosen(follower.poll()), timestamps, prefix=prefix)
        while not all(follower.gone for follower, _ in followers):
            time.sleep(POLL_SECONDS)
            for follower, prefix in followers:
                _emit(follower.poll(), timestamps, prefix=prefix)


def _emit(lines: Sequence[logs.Line], timestamps: bool, *, prefix: bytes = b"") -> None:
    """stdout lines to our stdout, stderr lines to our stderr, in the order written;
    ``prefix``: ``[container] `` before each (``--all-containers``)."""
    for line in lines:
        out = sys.stdout if line.stream == "stdout" else sys.stderr
        out.flush()
        out.buffer.write(prefix + logs.render(line, timestamps=timestamps))
        out.buffer.flush()


# -- exec ------------------------------------------------------------------------------------


@_by_name
def cmd_exec(args: argparse.Namespace) -> int:
    argv: list[str] = args.command
    if argv[:1] == ["--"]:
        argv = argv[1:]
    elif argv[:1] and argv[0].startswith("-"):
        # options after NAME (`exec web --state-dir X -- sh`): a command never starts
        # with a dash, so everything up to `--` is ours
        if "--" not in argv:
            raise errors.UsageError("end the options with --: reconciler exec NAME -- CMD")
        cut = argv.index("--")
        options = argparse.ArgumentParser(prog="reconciler exec", add_help=False)
        _exec_options(options)
        options.parse_args(argv[:cut], namespace=args)
        argv = argv[cut + 1:]
    if not argv:
        raise errors.UsageError("exec needs a command: reconciler exec NAME -- CMD [ARG...]")
    if args.tty and not sys.stdin.isatty():
        raise errors.UsageError("-t needs a terminal, and stdin is not one")
    env = _exec_env(args.env or [], tty=args.tty)
    if args.user is not None and not args.user:
        raise errors.UsageError("-u needs a user: UID[:GID]")
    if args.workdir is not None and not args.workdir.startswith("/"):
        raise errors.UsageError(f"-w needs an absolute path, not {args.workdir!r}")
    rt = _runtime(args)
    unit = _units(args, rt)[0].unit
    code = anyio.run(lambda: rt.exec_attached(
        rt.locate(unit), argv, tty=args.tty, stdin=args.stdin, env=env, user=args.user,
        cwd=args.workdir))
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def _exec_env(given: Sequence[str], *, tty: bool) -> list[str]:
    """``NAME=VALUE`` entries for the command, later ones winning (runc sets them in order,
    over the container's own): with a terminal first TERM, ours or xterm (as docker), so a
    shell or an editor knows what it talks to; then ``-e``, where a bare NAME takes our
    value and is left out when we have none (as ``docker exec -e``)."""
    env = [f"TERM={os.environ.get('TERM') or 'xterm'}"] if tty else []
    for entry in given:
        name, eq, _ = entry.partition("=")
        if not name or any(c.isspace() for c in name):
            raise errors.UsageError(f"-e needs NAME=VALUE, not {entry!r}")
        if eq:
            env.append(entry)
        elif name in os.environ:
            env.append(f"{name}={os.environ[name]}")
    return env


# -- stats -----------------------------------------------------------------------------------


class _Sample(NamedTuple):
    """One container's counters at one moment (``time.monotonic()``)."""

    stats: Stats
    when: float


@_by_name
def cmd_stats(args: argparse.Namespace) -> int:
    stream = not args.no_stream and args.output == "table" and sys.stdout.isatty()
    if not args.name:  # every container, as ``get``: not an empty table for a wrong dir
        daemon_cli._daemon_state(args.state_dir)
    # a pod's containers are found once, outside the event loop (the lookup may run one)
    named = _units(args, _runtime(args), every=True) if args.name else None
    anyio.run(_stats, args, named, stream)
    return 0


async def _stats(args: argparse.Namespace, named: Sequence[_Unit] | None, stream: bool
                 ) -> None:
    before = await _sample_all(args, named)
    while True:
        await anyio.sleep(STATS_SECONDS)
        after = await _sample_all(args, named)
        rows = [_row(name, before.get(name), s) for name, s in after.items()]
        if args.output == "json":
            print(json.dumps(rows, indent=2))  # noqa: T201
            return
        print((_CLEAR if stream else "") + _stats_table(rows), flush=True)  # noqa: T201
        if not stream:
            return
        before = after


def _own_limits(rt: runc.RuncRuntime, instance: str) -> tuple[int | None, int | None]:
    """A stopped instance's memory and pids limits, as its config.json sets them."""
    try:
        resources = (rt.config(instance).get("linux") or {}).get("resources") or {}
    except errors.ReconcilerError:
        return None, None
    memory = (resources.get("memory") or {}).get("limit")
    pids = (resources.get("pids") or {}).get("limit")
    return (memory if isinstance(memory, int) and memory > 0 else None,
            pids if isinstance(pids, int) and pids > 0 else None)


async def _sample_all(args: argparse.Namespace, named: Sequence[_Unit] | None
                      ) -> dict[str, _Sample]:
    """Counters of the named container (a pod's: each of its containers), or of every
    running or paused one; by the name the table shows."""
    rt = _runtime(args)
    if named is None:
        found = [(o.name, o) for o in await rt.list()
                 if o.status in (Status.RUNNING, Status.PAUSED)]
    else:
        found = await _states(rt, named)
    out: dict[str, _Sample] = {}
    for label, o in found:
        if o.status is Status.STOPPED:  # named, and stopped: nothing runs, nothing is used
            memory, pids = _own_limits(rt, o.id)  # its limits still: not the host's memory
            stats = Stats(cpu_usage_ns=0, memory_usage=0, memory_limit=memory,
                          memory_max_usage=None, pids_current=0, pids_limit=pids)
        else:
            try:
                stats = await rt.stats(o.id)
            except errors.ContainerNotFound:
                if named is not None and len(named) == 1:
                    raise
                continue  # removed between the list and the read
        out[label] = _Sample(stats, time.monotonic())
    return out


async def _states(rt: runc.RuncRuntime, named: Sequence[_Unit]) -> list[tuple[str, Observed]]:
    """(label, state) of each named unit; of a pod's, those made, less finished init steps."""
    if len(named) == 1 and not named[0].role:  # a container: its own errors, as always
        return [(named[0].label, await rt.state(rt.locate(named[0].unit)))]
    out = []
    for u in named:
        try:
            o = await rt.state(rt.locate(u.unit))
        except errors.ContainerNotFound:
            continue  # not made yet
        if u.role != "init" or o.status is not Status.STOPPED:
            out.append((u.label, o))
    return out


def _row(name: str, before: _Sample | None, after: _Sample) -> dict[str, Any]:
    s = after.stats
    cpu = 0.0
    if before is not None and after.when > before.when:
        used = max(0, s.cpu_usage_ns - before.stats.cpu_usage_ns)
        cpu = used / ((after.when - before.when) * 1e9) * 100  # one busy core is 100 %
    limit = s.memory_limit or _host_memory()
    return {
        "name": name,
        "cpuPercent": round(cpu, 2),
        "cpuUsageNs": s.cpu_usage_ns,
        "memoryUsage": s.memory_usage,
        "memoryLimit": s.memory_limit,
        "memoryMaxUsage": s.memory_max_usage,
        "memoryPercent": round(s.memory_usage / limit * 100, 2) if limit else 0.0,
        "pids": s.pids_current,
        "pidsLimit": s.pids_limit,
    }


def _stats_table(rows: Sequence[dict[str, Any]]) -> str:
    table = [["NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]]
    for r in rows:
        limit = r["memoryLimit"] or _host_memory()
        table.append([r["name"], f"{r['cpuPercent']:.2f}%",
                      f"{_size(r['memoryUsage'])} / {_size(limit)}",
                      f"{r['memoryPercent']:.2f}%", str(r["pids"])])
    return daemon_cli._table(table)


def _host_memory() -> int:
    """Total RAM: the limit of a container without one, as docker shows it."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- inspect / top ---------------------------------------------------------------------------


@_by_name
def cmd_inspect(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    unit = _units(args, rt)[0].unit
    instance = rt.locate(unit)
    config = rt.config(instance)
    sandbox = (config.get("annotations") or {}).get(ANN_SANDBOX, "").partition("@")[0]
    addresses = _addresses(args.state_dir, sandbox or instance)
    if addresses:  # beside the OCI config: the interfaces its network namespace has
        config["networkAddresses"] = addresses
    print(json.dumps(config, indent=2, sort_keys=True))  # noqa: T201
    return 0


def _addresses(state_dir: str, instance: str) -> dict[str, dict[str, Any]]:
    """Network -> interface and addresses, from the daemon's attachment record."""
    path = os.path.join(state_dir, "networks", "attachments", f"{instance}.json")
    try:
        with open(path) as f:
            links = json.load(f).get("links") or {}
    except (OSError, ValueError):
        return {}
    return {net: {"interface": link.get("ifname"), "ips": link.get("ips") or []}
            for net, link in sorted(links.items())}


@_by_name
def cmd_top(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    named = _units(args, rt, every=True)
    pod = bool(named[0].role)  # a pod: one table, a CONTAINER column
    rows = [(["CONTAINER"] if pod else []) + ["PID", "USER", "TIME", "CMD"]]
    for u in named:
        try:
            pids: Sequence[int] = anyio.run(rt.pids, rt.locate(u.unit))
        except errors.RuntimeFailure:
            if not pod:
                raise
            continue  # not made yet, or done (an init step)
        for pid in sorted(pids):
            row = _proc_row(pid)
            if row is not None:  # None: it exited since runc listed it
                rows.append(([u.label] if pod else []) + row)
    print(daemon_cli._table(rows))  # noqa: T201
    return 0


def _proc_row(pid: int) -> list[str] | None:
    """PID, USER, TIME, CMD of a host PID, as ``ps -o pid,user,time,args`` shows them."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is the state, field 3 of stat
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    uid = next(int(ln.split()[2]) for ln in status.splitlines() if ln.startswith("Uid:"))
    args = cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return [str(pid), _user(uid), _cpu_time(ticks / os.sysconf("SC_CLK_TCK")),
            args or f"[{comm}]"]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _cpu_time(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}-{text}" if days else text
