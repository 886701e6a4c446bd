"""Subcommands around the daemon: run, get, describe, events, diff (kubectl's habits).

``run`` starts the daemon; the others read its status files and the live runc state, so
they work while it runs (and after it stopped). All take ``--state-dir`` and
``--runc-root`` with the daemon's defaults, so several daemons can share a host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors, paths
from reconciler.daemon.status import Store
from reconciler.paths import DEFAULT_MANIFESTS, DEFAULT_RUNC_ROOT, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from reconciler import proc

# The runtime, the planner and pydantic are imported by the commands that need them, so
# `get`, `describe` and `events` start fast.


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="default: %(default)s")
    p.add_argument("--runc-root", default=DEFAULT_RUNC_ROOT, help="default: %(default)s")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="watch a manifests directory and converge containers to it")
    _common(p)
    p.add_argument("--manifests", default=DEFAULT_MANIFESTS, help="default: %(default)s")
    p.add_argument("--resync", type=float, default=30.0, metavar="SECONDS",
                   help="full rescan and relist period (default: %(default)s)")
    p.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                   help="quiet time for files being written or removed (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="objects doing runc/conmon work at once; grace periods hold no slot"
                        " (default: %(default)s)")
    p.add_argument("--allow-empty", action="store_true",
                   help="allow deleting every container when the directory defines none")
    p.add_argument("--poll", action="store_true",
                   help="no inotify: rescan every settle period (NFS, SMB, FUSE)")
    p.add_argument("--cgroup-parent", default=None,
                   help="default: /reconciler-<hash of the state dir>, one tree per daemon")
    p.add_argument("--backoff-initial", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--backoff-max", type=float, default=300.0, metavar="SECONDS")
    p.add_argument("--backoff-reset", type=float, default=600.0, metavar="SECONDS",
                   help="a run this long forgets earlier crashes (default: %(default)s)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), default="info",
                   help="debug adds one line per stage of a change, for timing it"
                        " (default: %(default)s)")
    p.add_argument("--seccomp-root", default="/etc/reconciler/seccomp", metavar="DIR",
                   help="where a manifest's relative Localhost seccompProfile is found"
                        " (default: %(default)s)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="pull from this registry without TLS verification (loopback always)")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve /metrics, /healthz, /readyz (off by default; e.g. 127.0.0.1:9477)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("get", help="list containers with their status")
    _common(p)
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, last exit, errors and events of one")
    _common(p)
    p.add_argument("name")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("events", help="the event history")
    _common(p)
    p.add_argument("name", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("diff", help="what the daemon would do now; exit 1 when not converged")
    _common(p)
    p.add_argument("--manifests", default=DEFAULT_MANIFESTS, help="default: %(default)s")
    p.add_argument("--allow-empty", action="store_true")
    p.set_defaults(func=cmd_diff)


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    # The first `runc list` runs while Python imports the daemon below (~0.25 s): with 100
    # containers it takes ~0.1 s, which a restart then no longer waits for.
    import shutil

    from reconciler import proc

    first_list: proc.Spawned | None = None
    with contextlib.suppress(OSError):  # no runc, no temp file: the daemon says so itself
        first_list = proc.Spawned.start([shutil.which("runc") or "runc",
                                         f"--root={Path(args.runc_root).absolute()}",
                                         "list", "--format", "json"])
    try:
        return _run(args, first_list)
    finally:
        if first_list is not None:  # if never taken (a usage error, the state dir locked)
            proc.discard(first_list)


def _run(args: argparse.Namespace, first_list: proc.Spawned | None) -> int:
    import anyio

    from reconciler.core.backoff import Backoff
    from reconciler.daemon.run import Options, serve, setup_logging

    if args.concurrency < 1 or args.settle < 0 or args.resync <= 0:
        raise errors.UsageError("--concurrency must be >= 1, --settle >= 0, --resync > 0")
    setup_logging(args.log_format, args.log_level.upper())
    opts = Options(
        manifests=args.manifests, state_dir=args.state_dir, runc_root=args.runc_root,
        cgroup_parent=args.cgroup_parent, resync=args.resync, settle=args.settle,
        concurrency=args.concurrency, allow_empty=args.allow_empty, poll=args.poll,
        backoff=Backoff(initial=args.backoff_initial, cap=args.backoff_max,
                        reset_after=args.backoff_reset),
        metrics_addr=args.metrics_addr,
        insecure_registries=tuple(args.insecure_registry),
        seccomp_root=args.seccomp_root, first_list=first_list,
    )
    anyio.run(serve, opts)
    return 0


# -- get / describe / events -----------------------------------------------------------------


def _containers(args: argparse.Namespace, status: dict[str, Any] | None = None
                ) -> list[dict[str, Any]]:
    if status is None:
        status = Store(args.state_dir).read_status()
    items = list((status.get("containers") or {}).values())
    if getattr(args, "name", None):
        items = [c for c in items if c["name"] == args.name]
        if not items:
            raise errors.ReconcilerError(f'container "{args.name}" not found')
    return items


def _age(since: float | None) -> str:
    if not since:
        return "-"
    s = int(max(0, time.time() - since))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def cmd_get(args: argparse.Namespace) -> int:
    items = _containers(args)
    if args.output == "json":
        print(json.dumps(items, indent=2, sort_keys=True))  # noqa: T201
        return 0
    if args.output == "yaml":
        import yaml

        print(yaml.safe_dump(items, sort_keys=True), end="")  # noqa: T201
        return 0
    head = ["NAME", "STATUS", "DESIRED", "RESTARTS", "AGE", "SOURCE", "MESSAGE"]
    if args.output == "wide":
        head += ["PID", "INSTANCE", "SPEC HASH"]
    rows = [head]
    for c in items:
        row = [c["name"], c["phase"], c.get("desiredState") or "-", str(c["restarts"]),
               _age(c.get("created") or c.get("since")), c.get("source") or "-",
               c.get("message") or ""]
        if args.output == "wide":
            row += [str(c.get("pid") or "-"), c.get("instance") or "-",
                    c.get("specHash") or "-"]
        rows.append(row)
    if len(rows) == 1:
        print("No containers.", file=sys.stderr)  # noqa: T201
        return 0
    print(_table(rows))  # noqa: T201
    if args.output == "wide":
        parent = (Store(args.state_dir).read_status().get("daemon") or {}).get("cgroupParent")
        print(f"cgroup parent: {parent or '-'}")  # noqa: T201
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    store = Store(args.state_dir)
    whole = store.read_status()
    c = _containers(args, whole)[0]
    out = [f"Name:          {c['name']}", f"Source:        {c.get('source')}",
           f"Desired state: {c.get('desiredState')}", f"Phase:         {c['phase']}",
           f"Message:       {c.get('message') or ''}", f"PID:           {c.get('pid') or '-'}",
           f"Restarts:      {c['restarts']}", f"Spec hash:     {c.get('specHash')}",
           f"Instance:      {c.get('instance') or '-'}",
           f"Cgroup:        {_cgroup(whole, c)}"]
    last = c.get("lastExit")
    if last:
        how = ("OOM-killed" if last["oomKilled"] else
               f"signal {last['signal']}" if last["signal"] else f"code {last['code']}")
        out.append(f"Last exit:     {how} at {_when(last.get('finishedAt'))}")
    actual = c.get("actual") or {}
    limits = actual.get("limits")
    if limits:
        out.append("Limits (cgroup): memory {memoryBytes} bytes, cpu quota {cpuQuotaUs}/"
                   "{cpuPeriodUs} us, pids {pids}".format(**limits).replace("None", "max"))
    out += [f"Mount:         {m['destination']} {m['type']} {m['source']} "
            f"{'ro' if m['readOnly'] else 'rw'}" for m in actual.get("mounts") or []]
    err = (c.get("history") or {}).get("last_error")
    if err:
        out.append(f"Last error:    {err}")
    status = whole.get("daemon", {})
    source = c.get("source")
    out += [f"Manifest error: {p}" for p in status.get("problems", [])
            if source and p.startswith(str(source))]
    conflict = (status.get("conflicts") or {}).get(c["name"])
    if conflict:
        out.append(f"Defined in:    {', '.join(conflict)} (neither applied)")
    out.append("Events:")
    events = list(store.events(c["name"]))[-15:]
    out += [f"  {_when(e['time'])}  {e['type']:<7}  {e['reason']:<12}  {e['message']}"
            for e in events] or ["  <none>"]
    print("\n".join(out))  # noqa: T201
    return 0


def _cgroup(status: dict[str, Any], c: dict[str, Any]) -> str:
    parent = (status.get("daemon") or {}).get("cgroupParent")
    if not parent or not c.get("instance"):
        return "-"
    return f"{parent.rstrip('/')}/{c['instance']}"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _print_event(e: dict[str, Any]) -> None:
    print(f"{_when(e['time'])}  {e['type']:<7}  {e.get('name') or '-':<16}  "  # noqa: T201
          f"{e['reason']:<16}  {e['message']}", flush=True)


def cmd_events(args: argparse.Namespace) -> int:
    store = Store(args.state_dir)
    seen = 0
    for e in store.events(args.name):
        _print_event(e)
        seen += 1
    while args.follow:
        time.sleep(0.2)
        events = list(store.events(args.name))
        for e in events[seen:]:
            _print_event(e)
        seen = max(seen, len(events))
    return 0


# -- diff ------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    import anyio

    from reconciler.core import changes, planner
    from reconciler.core import desired as desired_mod
    from reconciler.core.backoff import Backoff
    from reconciler.daemon.loop import plan_once
    from reconciler.daemon.status import history_from_json
    from reconciler.images.store import ImageStore
    from reconciler.resolve.images import ImageDigests
    from reconciler.runtime.runc import RuncRuntime
    from reconciler.sources.directory import ManifestSource

    snap = ManifestSource(args.manifests).scan_once()
    want = desired_mod.build(snap, None, pods_dir=paths.pods_dir(args.state_dir))
    rt = RuncRuntime(state_dir=args.state_dir, runc_root=args.runc_root)
    observed = {o.name: o for o in anyio.run(rt.list)}
    # image containers: their hash covers the digest the local store gives each tag now
    digests = ImageDigests(ImageStore(Path(args.state_dir) / "images"), max_age=0)
    anyio.run(lambda: digests.refresh(want, pull=False))
    saved = Store(args.state_dir).read_status().get("containers", {})
    history = {n: history_from_json(c.get("history", {})) for n, c in saved.items()}
    plan = plan_once(want, observed, history, digests, now=time.time(),
                     allow_empty=args.allow_empty, backoff=Backoff())
    for problem in want.problems:
        print(f"error: {problem}", file=sys.stderr)  # noqa: T201
    if not want.available:
        print(f"source unavailable: {want.reason}", file=sys.stderr)  # noqa: T201
    for action in plan.actions:
        print(action)  # noqa: T201
        if action.kind in (planner.Kind.RECREATE, planner.Kind.UPDATE) and action.desired:
            have = observed[action.name]
            change = changes.classify(have.applied, json.loads(action.desired.manifest_json))
            for line in change.lines():
                print(f"    {line}")  # noqa: T201
    for note in plan.notes:
        print(f"note: {note}")  # noqa: T201
    if not plan.actions and not plan.waiting:
        print("converged: nothing to do")  # noqa: T201
        return 0
    return 1
