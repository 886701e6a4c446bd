"""Subcommands around the daemon: run, get, describe, events, diff (kubectl's habits).

``run`` starts the daemon; the others read its status files and the live runc state, so
they work while it runs (and after it stopped). All take ``--state-dir`` and
``--runc-root`` with the daemon's defaults, so several daemons can share a host.

Kubernetes Pods: each of a pod's units has a status record like a ``kind: Container``
object; ``get``, ``describe`` and ``events`` show them as one pod (``cli/pods.py`` groups
and words them). The reading is here: the records (or, with no status.json, the runc
instances' pod annotations), and each pod's manifest for its containers' order and its
annotations, which the status does not carry.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors, paths
from reconciler.cli import pods
from reconciler.core.instance import ANN_POD, ANN_POD_CONTAINER, ANN_POD_ROLE
from reconciler.daemon.status import Store
from reconciler.paths import DEFAULT_MANIFESTS, DEFAULT_RUNC_ROOT, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from reconciler import proc
    from reconciler.core.observed import Observed

# The runtime, the planner and pydantic are imported by the commands that need them, so
# `get`, `describe` and `events` start fast.


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="default: %(default)s")
    p.add_argument("--runc-root", default=DEFAULT_RUNC_ROOT, help="default: %(default)s")


def namespace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", metavar="NS",
                   help=f"the namespace of a pod NAME (default: {pods.DEFAULT_NAMESPACE})")


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
    p.add_argument("--runtime-class", action="append", default=[], metavar="NAME=COMMAND",
                   help="a pod's runtimeClassName NAME runs under the OCI runtime COMMAND"
                        " (a binary and its global flags, e.g. 'gvisor=runsc --network=none',"
                        " the default); repeat for more; 'NAME=' removes one")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="pull from this registry without TLS verification (loopback always)")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve /metrics, /healthz, /readyz (off by default; e.g. 127.0.0.1:9477)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("get", help="list containers and pods with their status")
    _common(p)
    p.add_argument("what", nargs="*", metavar="[TYPE] [NAME]",
                   help="pods (pod, po) or containers, a NAME, or TYPE/NAME")
    namespace_option(p)
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, last exit, errors and events of one")
    _common(p)
    p.add_argument("name", help="a container, a pod, or pod/NAME")
    namespace_option(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("events", help="the event history")
    _common(p)
    p.add_argument("name", nargs="?", help="a container, or a pod: all its containers' events")
    namespace_option(p)
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("diff", help="what the daemon would do now; exit 0 converged, 1 not,"
                                    " 2 manifest errors or an unavailable source")
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
        runtime_classes=_runtime_classes(args.runtime_class),
    )
    anyio.run(serve, opts)
    return 0


# -- get / describe / events -----------------------------------------------------------------


def _age(since: float | None) -> str:
    return pods.age(since)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _kind_and_name(words: list[str]) -> tuple[str | None, str | None]:
    """``get``'s words: ``[TYPE] [NAME]``, kubectl's way (``pods``, ``po web``)."""
    kind = None
    if words and words[0] in pods.POD_WORDS | pods.CONTAINER_WORDS:
        kind = "pod" if words[0] in pods.POD_WORDS else "container"
        words = words[1:]
    if len(words) > 1:
        raise errors.UsageError("get takes one NAME: reconciler get [TYPE] [NAME]")
    return kind, (words[0] if words else None)


def _not_found(t: pods.Target) -> errors.ReconcilerError:
    what = {"pod": "pod", "container": "container"}.get(t.kind or "", "container or pod")
    return errors.ReconcilerError(f'{what} "{t.shown}" not found')


def _daemon_state(state_dir: str) -> dict[str, Any]:
    """The daemon's status.json; a state dir no daemon ever used is an error that says so
    (not an empty list: the wrong --state-dir must not look like no containers)."""
    store = Store(state_dir)
    status = store.read_status()
    if not status and not (Path(state_dir) / paths.DAEMON_FILE).exists():
        raise errors.ReconcilerError(
            f"no reconciler daemon has used the state dir {state_dir} (give the daemon's"
            " --state-dir)")
    return status


def cmd_get(args: argparse.Namespace) -> int:
    kind, name = _kind_and_name(args.what)
    status = _daemon_state(args.state_dir)
    raw = list((status.get("containers") or {}).values())
    plain, every_pod = grouped(args, status)
    if name is None:
        rows = [] if kind == "pod" else plain  # a pod's units show as its one row
        shown = [] if kind == "container" else [
            p for p in every_pod if args.namespace in (None, p.namespace)]
        listed = raw if kind is None else rows  # -o json: every record, as it always was
    else:
        t = pods.target(name, namespace=args.namespace, kind=kind)
        # a unit's own name (default_web_server) is a record like any container's
        rows = [] if t.kind == "pod" else [c for c in raw if c["name"] == t.name]
        shown = [] if t.kind == "container" else [p for p in every_pod if p.key == t.key]
        listed = rows
        if not rows and not shown:
            raise _not_found(t)
    if args.output in ("json", "yaml"):
        doc = listed + [pods.to_json(p) for p in shown]
        if args.output == "json":
            print(json.dumps(doc, indent=2, sort_keys=True))  # noqa: T201
            return 0
        import yaml

        print(yaml.safe_dump(doc, sort_keys=True), end="")  # noqa: T201
        return 0
    wide = args.output == "wide"
    tables = [_container_table(rows, wide=wide)] if rows else []
    if shown:
        head = pods.HEAD + (pods.WIDE if wide else [])
        tables.append(_table([head] + [pods.row(p, wide=wide) for p in shown]))
    if not tables:
        print("No pods." if kind == "pod" else "No containers.", file=sys.stderr)  # noqa: T201
        return 0
    print("\n\n".join(tables))  # noqa: T201
    if wide:
        parent = (status.get("daemon") or {}).get("cgroupParent")
        print(f"cgroup parent: {parent or '-'}")  # noqa: T201
    return 0


def _container_table(items: list[dict[str, Any]], *, wide: bool) -> str:
    head = ["NAME", "STATUS", "DESIRED", "RESTARTS", "AGE", "SOURCE", "MESSAGE"]
    if wide:
        head += ["PID", "INSTANCE", "SPEC HASH"]
    rows = [head]
    for c in items:
        row = [c["name"], c["phase"], c.get("desiredState") or "-", str(c["restarts"]),
               _age(c.get("created") or c.get("since")), c.get("source") or "-",
               c.get("message") or ""]
        if wide:
            row += [str(c.get("pid") or "-"), c.get("instance") or "-",
                    c.get("specHash") or "-"]
        rows.append(row)
    return _table(rows)


def cmd_describe(args: argparse.Namespace) -> int:
    store = Store(args.state_dir)
    whole = _daemon_state(args.state_dir)
    t = pods.target(args.name, namespace=args.namespace)
    if t.kind != "pod":  # a container (or a pod's unit by its own name) comes first
        found = [c for c in (whole.get("containers") or {}).values() if c["name"] == t.name]
        if found:
            return _describe_container(store, whole, found[0])
    pod = find_pod(args, t, status=whole)
    if pod is None:
        raise _not_found(t)
    events = [e for e in store.events() if pods.of_pod(e.get("name"), pod.key)][-20:]
    lines = pods.describe(pod, specs=_specs(args, pod), events=events, when=_when)
    print("\n".join(lines))  # noqa: T201
    return 0


def _describe_container(store: Store, whole: dict[str, Any], c: dict[str, Any]) -> int:
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


def _event_filter(args: argparse.Namespace) -> Callable[[dict[str, Any]], bool]:
    """Which events ``events NAME`` shows: the container NAME's, and the pod NAME's units'
    (by name, so a deleted pod's history shows too)."""
    if not args.name:
        return lambda e: True
    t = pods.target(args.name, namespace=args.namespace)
    own = t.name if t.kind != "pod" else None
    key = t.key if t.kind != "container" else None
    return lambda e: e.get("name") == own or (key is not None and pods.of_pod(e.get("name"),
                                                                               key))


def cmd_events(args: argparse.Namespace) -> int:
    _daemon_state(args.state_dir)
    store = Store(args.state_dir)
    wanted = _event_filter(args)
    seen = 0
    for e in store.events():
        if wanted(e):
            _print_event(e)
        seen += 1
    while args.follow:
        time.sleep(0.2)
        events = list(store.events())
        for e in events[seen:]:
            if wanted(e):
                _print_event(e)
        seen = max(seen, len(events))
    return 0


# -- pods: where their records and manifests are read ---------------------------------------


def records(args: argparse.Namespace, status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every unit's status record; with no status.json at all (no daemon ever wrote one
    here), the pods' instances as runc lists them, grouped by their annotations."""
    found = list((status.get("containers") or {}).values())
    if found or status.get("daemon"):
        return found
    return _runc_records(args)


_PHASES = {"running": "Running", "paused": "Paused", "stopped": "Exited"}


def _runc_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    import anyio

    from reconciler.runtime.runc import RuncRuntime

    rt = RuncRuntime(state_dir=args.state_dir, runc_root=args.runc_root)
    try:
        listed = anyio.run(rt.list)
    except (OSError, errors.ReconcilerError):  # no runc here: nothing to group
        return []
    newest: dict[str, Observed] = {}  # a unit's current instance: its newest generation
    for o in listed:
        if o.annotations.get(ANN_POD) and o.generation >= getattr(newest.get(o.name),
                                                                  "generation", -1):
            newest[o.name] = o
    return [_record_of(o) for _, o in sorted(newest.items())]


def _record_of(o: Observed) -> dict[str, Any]:
    """A status record for a unit the daemon has not written one for (runc's view)."""
    a = o.annotations
    return {"name": o.name, "instance": o.id, "source": o.source, "desiredState": None,
            "phase": _PHASES.get(o.status.value, "Creating"), "pid": o.pid, "restarts": 0,
            "lastExitCode": None, "lastExit": None, "specHash": o.spec_hash, "message": "",
            "created": o.created, "since": o.created, "actual": None,
            "pod": {"pod": a[ANN_POD], "role": a.get(ANN_POD_ROLE, ""),
                    "container": a.get(ANN_POD_CONTAINER, ""), "labels": {}}}


def grouped(args: argparse.Namespace, status: dict[str, Any] | None = None
            ) -> tuple[list[dict[str, Any]], list[pods.Pod]]:
    """(the ``kind: Container`` records, the pods), each pod in its manifest's order."""
    if status is None:
        status = Store(args.state_dir).read_status()
    found = records(args, status)
    plain, grouped_pods = pods.group(found, layouts=_layouts(found))
    return [dict(r) for r in plain], grouped_pods


def find_pod(args: argparse.Namespace, t: pods.Target, *, status: dict[str, Any] | None = None
             ) -> pods.Pod | None:
    pod = next((p for p in grouped(args, status)[1] if p.key == t.key), None)
    if pod is None or pod.annotations:
        return pod
    # no manifest to read them from (gone, or broken): its containers were made with them
    for m in pod.containers:
        spec = _specs(args, pod, only=m.unit).get(m.unit)
        if spec is not None:
            return dataclasses.replace(pod, annotations=dict(spec.annotations))
    return pod


def _runtime_classes(given: list[str]) -> dict[str, tuple[str, ...]]:
    """``--runtime-class NAME=COMMAND`` over the defaults (``gvisor=runsc ...``)."""
    import shlex

    from reconciler.runtime.runc import DEFAULT_CLASSES

    classes = {k: tuple(v) for k, v in DEFAULT_CLASSES.items()}
    for item in given:
        name, sep, command = item.partition("=")
        if not sep or not name or "/" in name:
            raise errors.UsageError(f"--runtime-class {item!r}: give NAME=COMMAND, e.g."
                                    " gvisor=runsc")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise errors.UsageError(f"--runtime-class {item!r}: {exc}") from None
        if argv:
            classes[name] = tuple(argv)
        else:
            classes.pop(name, None)
    return classes


def _layouts(found: list[dict[str, Any]]) -> dict[str, pods.Layout]:
    """Each pod's layout from its manifest file, each file parsed once."""
    wanted: dict[str, set[str]] = {}
    for r in found:
        key = pods.pod_key(r)
        if key is not None and r.get("source") and "index" not in r["pod"]:
            # an older daemon's status: the order is only in the manifest file
            wanted.setdefault(str(r["source"]), set()).add(key)
    out: dict[str, pods.Layout] = {}
    for source, keys in wanted.items():
        documents = _documents(source)
        for key in keys:
            layout = pods.layout_of(documents, key)
            if layout is not None:
                out[key] = layout
    return out


def _documents(path: str) -> list[object]:
    """A manifest file's documents, or none (removed, being written, not a file)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, "rb") as f:
            return list(yaml.load_all(f, Loader=loader))
    except (OSError, ValueError, yaml.YAMLError):
        return []


def _specs(args: argparse.Namespace, pod: pods.Pod, *, only: str | None = None
           ) -> dict[str, pods.Spec]:
    """What each unit's instance runs, from its config.json (unit name -> Spec)."""
    from reconciler.runtime.depot import Depot

    out: dict[str, pods.Spec] = {}
    for r in pod.records:
        if not r.get("instance") or only not in (None, r["name"]):
            continue
        try:
            config = json.loads(Depot.of(args.state_dir, str(r["instance"])).config.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            out[str(r["name"])] = pods.spec_of(config)
    return out


# -- diff ------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    import anyio

    from reconciler.core import changes, planner
    from reconciler.core import desired as desired_mod
    from reconciler.core import pods as pods_core
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
            doc = json.loads(action.desired.manifest_json)
            change = changes.classify(have.applied, doc)
            if action.desired.pod is not None:  # a Secret's values are never printed
                env = doc.get("spec", {}).get("env", [])
                change = changes.Change(
                    live=tuple(pods_core.masked(change.live, action.desired.pod, env)),
                    recreate=tuple(pods_core.masked(change.recreate, action.desired.pod, env)))
            for line in change.lines():
                print(f"    {line}")  # noqa: T201
    for note in plan.notes:
        print(f"note: {note}")  # noqa: T201
    if want.problems or not want.available:  # kubectl diff's 2: the diff cannot be trusted
        return 2
    if not plan.actions and not plan.waiting:
        print("converged: nothing to do")  # noqa: T201
        return 0
    return 1
