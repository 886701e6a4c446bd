"""Subcommands around the daemon: run, get, describe, events, diff (kubectl's habits).

``run`` starts the daemon; the others read its status files and the live runc state, so
they work while it runs (and after it stopped). All take ``--state-dir`` and
``--runc-root``, so several daemons can share a host; their defaults come from
``reconciler.config`` (RECONCILER_* variables, then the config file), a flag still winning.
``get -l`` reads label selectors with ``manifest/selectors.py``.

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
import os
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import config, errors, paths
from reconciler.cli import fleet as fleet_cli
from reconciler.cli import networks, pods
from reconciler.core.instance import ANN_POD, ANN_POD_CONTAINER, ANN_POD_ROLE
from reconciler.daemon.status import Store
from reconciler.manifest import selectors

if TYPE_CHECKING:
    from datetime import timedelta

    from reconciler import proc
    from reconciler.cli import jsonpath
    from reconciler.core.observed import Observed

# The runtime, the planner and pydantic are imported by the commands that need them, so
# `get`, `describe` and `events` start fast.


def _common(p: argparse.ArgumentParser) -> None:
    _setting_option(p, "--state-dir", "state_dir")
    _setting_option(p, "--runc-root", "runc_root")


def _setting_option(p: argparse.ArgumentParser, flag: str, name: str) -> None:
    """A flag whose default comes from ``reconciler.config`` (environment, config file),
    the help naming where else it can be set; the flag itself still wins."""
    env = config.SETTINGS[name][0]
    p.add_argument(flag, default=_default(name),
                   help=f"default: %(default)s ({env} or config file)")


def _policy_arg(value: str) -> str:
    """A level's name as it is; a file's path made absolute (the daemon may chdir)."""
    from reconciler.manifest.policy import LEVELS

    return value if value in LEVELS else os.path.abspath(value)


def _default(name: str) -> str:
    """A setting's value before flags. A broken config file is a usage error here: the
    parser is built before main() handles errors, and a traceback helps no one."""
    try:
        return config.default(name)
    except errors.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def namespace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", metavar="NS",
                   help=f"the namespace of a pod NAME (default: {pods.DEFAULT_NAMESPACE})")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="watch a manifests directory and converge containers to it")
    _common(p)
    _setting_option(p, "--manifests", "manifests")
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
    p.add_argument("--manifests-owner", type=_owner, default=0, metavar="USER|UID",
                   help="besides root, the one user who may write the manifests directory,"
                        " its files and its parents (default: root)")
    p.add_argument("--policy", metavar="FILE|LEVEL", default=_default("policy"),
                   help="the security policy (docs/security.md): a file (kind: Policy, read"
                        " again when it changes) or a built-in level: privileged, baseline,"
                        " restricted; what it forbids is an error on that object (default:"
                        " %(default)s; RECONCILER_POLICY or config file)")
    p.add_argument("--userns-user", default="reconciler", metavar="USER",
                   help="hostUsers: false objects get id ranges from this user's lines in"
                        " /etc/subuid and /etc/subgid (default: %(default)s)")
    p.add_argument("--subuid-file", default="/etc/subuid", metavar="FILE",
                   help="where the subordinate uids are (default: %(default)s)")
    p.add_argument("--subgid-file", default="/etc/subgid", metavar="FILE",
                   help="where the subordinate gids are (default: %(default)s)")
    p.add_argument("--insecure-manifests-dir", action="store_true",
                   help="read the manifests directory even if others can write it, or its"
                        " files or parents, or its links lead outside it (a WARNING at"
                        " every start: whoever can write a manifest is root)")
    p.add_argument("--cgroup-parent", default=None,
                   help="default: /reconciler-<hash of the state dir>, one tree per daemon")
    p.add_argument("--backoff-initial", type=float, default=1.0, metavar="SECONDS",
                   help="the wait before the second restart of a crashing container"
                        " (the first is at once; default: %(default)s)")
    p.add_argument("--backoff-max", type=float, default=300.0, metavar="SECONDS",
                   help="the longest wait between restarts, the backoff doubling up to it"
                        " (default: %(default)s)")
    p.add_argument("--backoff-reset", type=float, default=600.0, metavar="SECONDS",
                   help="a run this long forgets earlier crashes (default: %(default)s)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text lines, or one JSON object a line for log shippers (with"
                        " container and action fields; default: %(default)s)")
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
    p.add_argument("--networks", choices=("auto", "on", "off"), default=_default("networks"),
                   help="give containers networks with the CNI plugins: on, off, or auto "
                        "(on if the plugins are installed); default: %(default)s "
                        "(RECONCILER_NETWORKS or config file)")
    p.add_argument("--default-subnet", default="10.92.0.0/16", metavar="CIDR",
                   help="the default network's subnet, unless a Network manifest named "
                        "default sets it (default: %(default)s)")
    p.add_argument("--cni-path", default="/usr/lib/cni", metavar="DIR",
                   help="where the CNI plugins are (default: %(default)s)")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve /metrics, /healthz, /readyz (off by default; e.g. 127.0.0.1:9477)")
    p.add_argument("--source", action="append", choices=("directory", "etcd"),
                   help="where desired state comes from; repeat for both (default:"
                        " directory). etcd: this node's keys and the fleet's (docs/fleet.md)")
    fleet_cli.node_option(p)
    p.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label of this node, for fleet objects' node selectors (repeatable)")
    p.add_argument("--status-ttl", type=int, default=15, metavar="SECONDS",
                   help="the lease of this node's status in etcd: a dead node shows as down"
                        " this long after (default: %(default)s)")
    fleet_cli.etcd_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("get", help="list containers and pods with their status")
    _common(p)
    p.add_argument("what", nargs="*", metavar="[TYPE] [NAME]",
                   help="pods (pod, po) or containers, NAMEs, or TYPE/NAMEs")
    namespace_option(p)
    p.add_argument("-l", "--selector", metavar="SELECTOR", type=_selector,
                   default=selectors.Selector(),
                   help="only those whose labels match, e.g. 'app=web,tier!=db',"
                        " 'env in (prod,staging)', '!canary' (Kubernetes' syntax)")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="print no header row")
    p.add_argument("-w", "--watch", action="store_true",
                   help="after the list, print each row again when it changes (read from the"
                        " daemon's status as it writes it), until interrupted")
    p.add_argument("-o", "--output", type=_get_output, default="table", metavar="FORMAT",
                   help="table (default), wide, json, yaml (times in RFC 3339), name (one"
                        " TYPE/NAME a line, e.g. container/web, pod/site), or"
                        " jsonpath=TEMPLATE (kubectl's: e.g. '{.items[*].name}'; with one"
                        " NAME, the object itself: '{.phase}')")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, last exit, errors and events of one")
    _common(p)
    p.add_argument("name", help="a container, a pod, or pod/NAME")
    namespace_option(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("unlock", help="let a change through a container's held update lock")
    _common(p)
    p.add_argument("name", help="a container with spec.updateLock")
    p.add_argument("--force", action="store_true",
                   help="required: the lock is the app's, this overrides it (an event)")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("events", help="the event history")
    _common(p)
    p.add_argument("name", nargs="?", help="a container, or a pod: all its containers' events")
    namespace_option(p)
    p.add_argument("-f", "--follow", "-w", "--watch", dest="follow", action="store_true",
                   help="keep printing new events as they happen")
    p.add_argument("--since", type=_duration, metavar="DURATION",
                   help="only events newer than this, e.g. 10s, 5m, 1h")
    p.add_argument("--tail", type=_count, metavar="N",
                   help="only the last N events (then the new ones, with -f)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="json: one object a line, times in RFC 3339 (UTC)")
    p.add_argument("--all", action="store_true",
                   help="with NAME: the events of earlier objects of that name too (deleted"
                        " ones; by default only the current object's)")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("diff", help="what the daemon would do now; exit 0 converged, 1 not,"
                                    " 2 manifest errors or an unavailable source")
    _common(p)
    _setting_option(p, "--manifests", "manifests")
    p.add_argument("--allow-empty", action="store_true",
                   help="plan as the daemon would with --allow-empty")
    p.add_argument("-o", "--output", choices=("text", "diff"), default="text",
                   help="text: each change as old \u2192 new (default); diff: a unified diff"
                        " of each changed manifest")
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
    sources = tuple(dict.fromkeys(args.source or ["directory"]))
    fleet = None
    if "etcd" in sources:
        from reconciler.daemon.fleet import FleetOptions

        if args.status_ttl < 2:
            raise errors.UsageError("--status-ttl must be >= 2")
        fleet = FleetOptions(fleet_cli.etcd_settings(args), fleet_cli.node_name(args),
                             fleet_cli.labels(args.node_label), lease_ttl=args.status_ttl)
    setup_logging(args.log_format, args.log_level.upper())
    opts = Options(
        sources=sources, fleet=fleet,
        manifests=args.manifests, state_dir=args.state_dir, runc_root=args.runc_root,
        cgroup_parent=args.cgroup_parent, resync=args.resync, settle=args.settle,
        concurrency=args.concurrency, allow_empty=args.allow_empty, poll=args.poll,
        manifests_owner=args.manifests_owner,
        insecure_manifests_dir=args.insecure_manifests_dir,
        policy=_policy_arg(args.policy),
        userns=(args.userns_user, os.path.abspath(args.subuid_file),
                os.path.abspath(args.subgid_file)),
        backoff=Backoff(initial=args.backoff_initial, cap=args.backoff_max,
                        reset_after=args.backoff_reset),
        metrics_addr=args.metrics_addr,
        insecure_registries=tuple(args.insecure_registry),
        seccomp_root=args.seccomp_root, first_list=first_list,
        runtime_classes=_runtime_classes(args.runtime_class),
        networks=args.networks, default_subnet=_subnet(args.default_subnet),
        cni_path=args.cni_path,
    )
    anyio.run(serve, opts)
    return 0


def _subnet(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise errors.UsageError(f"--default-subnet {text}: {exc}") from None


def _owner(text: str) -> int:
    """``--manifests-owner``: a user name or a uid."""
    import pwd

    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user: {text!r}") from None


# -- get / describe / events -----------------------------------------------------------------


def _age(since: float | None) -> str:
    return pods.age(since)


def _table(rows: list[list[str]]) -> str:
    return pods.table(rows)


def _kind_and_names(words: list[str]) -> tuple[str | None, list[str]]:
    """``get``'s words: ``[TYPE] [NAME ...]``, kubectl's way (``pods``, ``po web db``)."""
    kind = None
    if words and words[0] in pods.POD_WORDS | pods.CONTAINER_WORDS:
        kind = "pod" if words[0] in pods.POD_WORDS else "container"
        words = words[1:]
    return kind, list(dict.fromkeys(words))  # a NAME given twice is shown once


GET_OUTPUTS = ("table", "wide", "json", "yaml", "name")
JSONPATH = "jsonpath="


def _get_output(text: str) -> str:
    """``get -o``: one of GET_OUTPUTS, or ``jsonpath=TEMPLATE`` (parsed by cmd_get, so a
    bad template is a usage error that names its position, and only then imported)."""
    if text in GET_OUTPUTS or (text.startswith(JSONPATH) and text != JSONPATH):
        return text
    if text in ("jsonpath", JSONPATH):
        raise argparse.ArgumentTypeError("give a template: -o jsonpath='{.items[*].name}'")
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(GET_OUTPUTS)}, jsonpath=TEMPLATE)")


def _selector(text: str) -> selectors.Selector:
    try:
        return selectors.parse(text)
    except selectors.SelectorError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _not_found(t: pods.Target) -> errors.ReconcilerError:
    what = {"pod": "pod", "container": "container"}.get(t.kind or "", "container or pod")
    return errors.ReconcilerError(f'{what} "{t.shown}" not found')


STALE_MARGIN = 10.0  # seconds past two resync periods before status.json is called stale


def _honest(args: argparse.Namespace, status: dict[str, Any]) -> dict[str, Any]:
    """The status as it can be trusted: an unavailable source said first; with the daemon
    gone or its status stale, each phase read from runc now (a killed container must not
    show Running from an old file)."""
    daemon = status.get("daemon") or {}
    for sid, source in sorted((daemon.get("sources") or {}).items()):
        if isinstance(source, dict) and source.get("available") is False:
            print(f"warning: manifests source {sid} is unavailable ({source.get('reason')});"  # noqa: T201
                  " nothing it defined is deleted while it is", file=sys.stderr)
    if daemon.get("stateDir"):
        print(f"warning: the daemon {daemon['stateDir']}; nothing new can be made until"  # noqa: T201
              " there is room, and what runs keeps running", file=sys.stderr)
    why = _stale(args.state_dir, daemon)
    if why is None or not status.get("containers"):
        return status
    print(f"warning: {why}: the phases below are read from runc now",  # noqa: T201
          file=sys.stderr)
    import anyio

    from reconciler.runtime.runc import RuncRuntime

    rt = RuncRuntime(state_dir=args.state_dir, runc_root=args.runc_root)
    try:
        live = {o.id: o for o in anyio.run(rt.list)}
    except (OSError, errors.ReconcilerError):
        return status
    records = {}
    for name, record in (status.get("containers") or {}).items():
        obs = live.get(str(record.get("instance")))
        record = {**record, "pid": obs.pid if obs else None,
                  "phase": _PHASES.get(obs.status.value, "Created") if obs else "Gone"}
        records[name] = record
    return {**status, "containers": records}


def _stale(state_dir: str, daemon: dict[str, Any]) -> str | None:
    """Why status.json cannot be trusted now, or None: its daemon is not running, or it
    was written longer ago than the daemon's resync period allows."""
    pid = daemon.get("pid")
    if pid is None:
        try:
            pid = json.loads((Path(state_dir) / paths.DAEMON_FILE).read_text()).get("pid")
        except (OSError, ValueError, AttributeError):
            pid = None
    if isinstance(pid, int) and not _is_daemon(pid):
        return f"the daemon (pid {pid}) is not running"
    written, resync = daemon.get("writtenAt"), daemon.get("resyncSeconds")
    if isinstance(written, int | float) and isinstance(resync, int | float):
        age = time.time() - written
        if age > 2 * resync + STALE_MARGIN:
            return f"the status is {age:.0f}s old (the daemon writes it every {resync:g}s)"
    return None


def _is_daemon(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"run" in argv and any(b"reconciler" in a for a in argv)


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


@dataclasses.dataclass
class _Found:
    """What ``get`` shows: container records (table rows), pods, the records ``-o json``
    lists, and the NAMEs not found."""

    rows: list[dict[str, Any]]
    pods: list[pods.Pod]
    listed: list[dict[str, Any]]
    missing: list[errors.ReconcilerError] = dataclasses.field(default_factory=list)


def cmd_get(args: argparse.Namespace) -> int:
    if args.what and args.what[0].lower() in networks.NETWORK_WORDS:
        if args.output not in ("table", "wide", "json", "yaml", "name"):
            raise errors.UsageError(f"get networks: -o {args.output} is not supported "
                                    "(table, json, yaml, name)")
        return networks.cmd_get(args.output, _daemon_state(args.state_dir),
                                list(dict.fromkeys(args.what[1:])))
    kind, names = _kind_and_names(args.what)
    if names and args.selector.requirements:  # kubectl refuses the same
        raise errors.UsageError("give NAMEs or -l/--selector, not both")
    template = _template(args.output)
    status = _honest(args, _daemon_state(args.state_dir))
    if _needs_labels(args):
        status = _with_labels(args.state_dir, status)
    raw = list((status.get("containers") or {}).values())
    plain, every_pod = grouped(args, status)
    if names:
        found = _named(names, kind=kind, namespace=args.namespace, raw=raw, every_pod=every_pod)
    else:
        found = _everything(kind, args=args, raw=raw, plain=plain, every_pod=every_pod)
    if template is not None:
        if found.rows or found.pods or not found.missing:
            _print_jsonpath(args.output, template, _json_doc(found), single=len(names) == 1)
    elif found.rows or found.pods or not found.missing:
        _print_found(args, found, kind=kind, status=status)
    for exc in found.missing:  # kubectl's way: what was found, then each NAME that was not
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
    if args.watch and args.output in ("table", "wide", "name"):
        sys.stdout.flush()
        _watch(args, kind=kind, names=names, shown=_rows_by_key(args, found))
    return 1 if found.missing else 0


def _needs_labels(args: argparse.Namespace) -> bool:
    """Whether ``get`` reads each ``kind: Container`` object's labels (from its depot or
    manifest: status.json does not carry them): to select, to show, or to print them."""
    return bool(args.selector.requirements or args.show_labels or
                args.output in ("json", "yaml") or args.output.startswith(JSONPATH))


def _template(output: str) -> jsonpath.Template | None:
    """``-o jsonpath=TEMPLATE``'s template, parsed before anything is read; a bad one is
    a usage error naming the position of the fault."""
    if not output.startswith(JSONPATH):
        return None
    from reconciler.cli import jsonpath  # only here: `get` starts no slower

    try:
        return jsonpath.parse(output[len(JSONPATH):])
    except jsonpath.JSONPathError as exc:
        raise errors.UsageError(f"-o {output}: {exc}") from None


def _json_doc(found: _Found) -> list[dict[str, Any]]:
    """What ``-o json``, ``-o yaml`` and ``-o jsonpath`` show: the records (a pod's units
    too, without a NAME), then the pods; times in RFC 3339."""
    return [pods.record_json(r) for r in found.listed] + [pods.to_json(p) for p in found.pods]


def _print_jsonpath(output: str, template: jsonpath.Template, doc: list[dict[str, Any]], *,
                    single: bool) -> None:
    """kubectl's way: the template applied to a List of what was found, or, for one NAME,
    to that object itself; printed with no newline added."""
    from reconciler.cli import jsonpath

    target: object = doc[0] if single and len(doc) == 1 else {"kind": "List", "items": doc}
    try:
        text = jsonpath.render(template, target)
    except jsonpath.EvalError as exc:
        raise errors.ReconcilerError(f"-o {output}: {exc}") from None
    sys.stdout.write(text)


WATCH_EVERY = 0.1  # seconds between two looks at status.json's mtime (a stat, no read)


_WATCHED = ("phase", "restarts", "pid", "message", "desiredState", "instance", "labels")


def _rows_by_key(args: argparse.Namespace, found: _Found) -> dict[str, tuple[str, str]]:
    """Each object's row as ``get`` prints it (without a header), by ``TYPE/NAME``, with
    what a change is judged by: its records' state, not its AGE ticking on."""
    wide = args.output == "wide"
    out: dict[str, tuple[str, str]] = {}
    for r in found.rows:
        row = (f"container/{r['name']}" if args.output == "name" else
               _container_table([r], wide=wide, labels=args.show_labels, headers=False))
        out[f"container/{r['name']}"] = (json.dumps([r.get(k) for k in _WATCHED]), row)
    for p in found.pods:
        extra = [labels_text(p.labels)] if args.show_labels else []
        row = (f"pod/{pods.display(p.key)}" if args.output == "name" else
               _table([pods.row(p, wide=wide) + extra]))
        members = [p.sandbox or {}] + [m.record for m in p.members]
        state = json.dumps([[m.get(k) for k in _WATCHED] for m in members])
        out[f"pod/{p.key}"] = (state, row)
    return out


def _watch(args: argparse.Namespace, *, kind: str | None, names: list[str],
           shown: dict[str, tuple[str, str]]) -> None:
    """``get -w``: a row again whenever the daemon's status changes it (kubectl's way)."""
    path = Path(args.state_dir) / "status.json"
    last = _mtime(path)
    while True:
        time.sleep(WATCH_EVERY)
        now = _mtime(path)
        if now == last:
            continue
        last = now
        status = Store(args.state_dir).read_status()
        if _needs_labels(args):  # as the list was read: -l and --show-labels see them
            status = _with_labels(args.state_dir, status)
        raw = list((status.get("containers") or {}).values())
        plain, every_pod = grouped(args, status)
        found = (_named(names, kind=kind, namespace=args.namespace, raw=raw,
                        every_pod=every_pod) if names else
                 _everything(kind, args=args, raw=raw, plain=plain, every_pod=every_pod))
        for key, (state, row) in _rows_by_key(args, found).items():
            if key not in shown or shown[key][0] != state:
                print(row, flush=True)  # noqa: T201
                shown[key] = (state, row)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _everything(kind: str | None, *, args: argparse.Namespace, raw: list[dict[str, Any]],
                plain: list[dict[str, Any]], every_pod: list[pods.Pod]) -> _Found:
    """``get`` with no NAME: every container and pod of ``kind`` matching ``-l``."""
    match = args.selector.matches
    rows = [] if kind == "pod" else [r for r in plain if match(r.get("labels"))]
    shown = [] if kind == "container" else [
        p for p in every_pod if args.namespace in (None, p.namespace) and match(p.labels)]
    # -o json: every record (a pod's units too), as it always was
    listed = [r for r in raw if match(r.get("labels"))] if kind is None else rows
    return _Found(rows, shown, listed)


def _named(names: list[str], *, kind: str | None, namespace: str | None,
           raw: list[dict[str, Any]], every_pod: list[pods.Pod]) -> _Found:
    """``get NAME ...``: each NAME's container record or pod, in the order given."""
    found = _Found([], [], [])
    for name in names:
        t = pods.target(name, namespace=namespace, kind=kind)
        # a unit's own name (default_web_server) is a record like any container's
        rows = [] if t.kind == "pod" else [c for c in raw if c["name"] == t.name]
        shown = [] if t.kind == "container" else [p for p in every_pod if p.key == t.key]
        found.rows += [r for r in rows if r not in found.rows]
        found.pods += [p for p in shown if p not in found.pods]
        if not rows and not shown:
            found.missing.append(_not_found(t))
    found.listed = found.rows
    return found


def _print_found(args: argparse.Namespace, found: _Found, *, kind: str | None,
                 status: dict[str, Any]) -> None:
    if args.output in ("json", "yaml"):
        doc = _json_doc(found)
        if args.output == "json":
            print(json.dumps(doc, indent=2, sort_keys=True))  # noqa: T201
            return
        import yaml

        print(yaml.safe_dump(doc, sort_keys=True), end="")  # noqa: T201
        return
    if args.output == "name":  # what `describe`, `logs` and `get` read back
        lines = [f"container/{r['name']}" for r in found.rows]
        lines += [f"pod/{pods.display(p.key)}" for p in found.pods]
        if lines:
            print("\n".join(lines))  # noqa: T201
        return
    _print_tables(args, found, kind=kind, status=status)


def _print_tables(args: argparse.Namespace, found: _Found, *, kind: str | None,
                  status: dict[str, Any]) -> None:
    wide, headers = args.output == "wide", not args.no_headers
    tables = [_container_table(found.rows, wide=wide, labels=args.show_labels,
                               headers=headers)] if found.rows else []
    if found.pods:
        head = pods.HEAD + (pods.WIDE if wide else []) + (["LABELS"] if args.show_labels else [])
        rows = [pods.row(p, wide=wide) + ([labels_text(p.labels)] if args.show_labels else [])
                for p in found.pods]
        tables.append(_table(([head] if headers else []) + rows))
    if not tables:
        print("No pods." if kind == "pod" else "No containers.", file=sys.stderr)  # noqa: T201
        return
    # without headers, a script reads rows: no blank line between the two tables
    print(("\n\n" if headers else "\n").join(tables))  # noqa: T201
    if wide and headers:
        parent = (status.get("daemon") or {}).get("cgroupParent")
        print(f"cgroup parent: {parent or '-'}")  # noqa: T201


def _container_table(items: list[dict[str, Any]], *, wide: bool, labels: bool = False,
                     headers: bool = True) -> str:
    head = ["NAME", "READY", "STATUS", "DESIRED", "RESTARTS", "AGE", "SOURCE", "MESSAGE"]
    if wide:
        head += ["PID", "INSTANCE", "SPEC HASH"]
    if labels:
        head.append("LABELS")
    rows = [head] if headers else []
    for c in items:
        row = [c["name"], _ready_text(c), c["phase"], c.get("desiredState") or "-",
               str(c["restarts"]),
               _age(c.get("created") or c.get("since")), c.get("source") or "-",
               c.get("message") or ""]
        if wide:
            row += [str(c.get("pid") or "-"), c.get("instance") or "-",
                    c.get("specHash") or "-"]
        if labels:
            row.append(labels_text(c.get("labels")))
        rows.append(row)
    return _table(rows)


def _ready_words(c: dict[str, Any]) -> str:
    """describe's Ready line: yes or no, since when, and why not."""
    if c.get("ready") is None:
        return "-"
    since = f" since {_when(c['readySince'])}" if c.get("readySince") else ""
    why = f" ({c['readyMessage']})" if c.get("readyMessage") and not c["ready"] else ""
    return f"{'yes' if c['ready'] else 'no'}{since}{why}"


def _ready_text(c: dict[str, Any]) -> str:
    """READY of a ``kind: Container``: 1/1 or 0/1 (kubectl's column); a daemon older than
    probes says nothing of it: running is ready."""
    ready = c.get("ready")
    if ready is None:
        ready = c.get("phase") == "Running"
    return "1/1" if ready else "0/1"


def labels_text(labels: dict[str, str] | Any) -> str:
    """kubectl's LABELS column: ``app=web,tier=front``, sorted, or ``<none>``."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


# -- labels: where a record's are read -------------------------------------------------------


def _with_labels(state_dir: str, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` with ``labels`` on every record: a pod unit's are its pod's (in the
    record); a ``kind: Container`` object's are in its manifest, which the status does
    not carry (read from the instance's applied.json, else from its manifest file)."""
    files: dict[str, list[object]] = {}
    containers = {key: _labelled(state_dir, r, files=files)
                  for key, r in (status.get("containers") or {}).items()}
    return {**status, "containers": containers}


def _labelled(state_dir: str, r: dict[str, Any], *, files: dict[str, list[object]]
              ) -> dict[str, Any]:
    if isinstance(r.get("labels"), dict):  # a daemon that writes them already
        return r
    place = r.get("pod")
    labels = (dict(place.get("labels") or {}) if place else
              container_labels(state_dir, r, files=files))
    # none: no key, as Kubernetes leaves out empty labels (and -o json stays as it was)
    return {**r, "labels": labels} if labels else r


def container_labels(state_dir: str, r: dict[str, Any], *,
                     files: dict[str, list[object]] | None = None) -> dict[str, str]:
    """A ``kind: Container`` object's labels: those in force (applied.json, live changes
    included), else those its file asks for (not made yet, or its depot is gone)."""
    manifest = _applied(state_dir, r.get("instance"))
    if manifest is None and r.get("source"):
        manifest = _manifest_in(str(r["source"]), str(r["name"]), files=files)
    labels = ((manifest or {}).get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _applied(state_dir: str, instance: object) -> dict[str, Any] | None:
    from reconciler.runtime.depot import Depot

    if not instance:
        return None
    try:
        doc = json.loads(Depot.of(state_dir, str(instance)).applied.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _manifest_in(source: str, name: str, *, files: dict[str, list[object]] | None
                 ) -> dict[str, Any] | None:
    """The ``kind: Container`` document ``name`` of the file ``source``, parsed once."""
    documents = files.get(source) if files is not None else None
    if documents is None:
        documents = _documents(source)
        if files is not None:
            files[source] = documents
    for doc in documents:
        if (isinstance(doc, dict) and doc.get("kind") == "Container" and
                isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name") == name):
            return doc
    return None


def cmd_unlock(args: argparse.Namespace) -> int:
    """``unlock NAME --force``: what waits for NAME's update lock goes on (the daemon reads
    the override at its next look, within a second, and logs it as an event)."""
    from reconciler.daemon.locks import write_force

    if not args.force:
        raise errors.UsageError("the update lock is the app's: give --force to override it")
    record = (_daemon_state(args.state_dir).get("containers") or {}).get(args.name)
    if record is None:
        raise errors.ReconcilerError(f'container "{args.name}" not found')
    if record.get("phase") != "Locked":
        print(f"container/{args.name}: nothing waits for its lock now; the override"  # noqa: T201
              " holds for its current instance")
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or f"uid {os.getuid()}"
    write_force(args.state_dir, args.name, record.get("instance"), who)
    print(f"container/{args.name} unlocked (forced)")  # noqa: T201
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    store = Store(args.state_dir)
    whole = _honest(args, _daemon_state(args.state_dir))
    if networks.is_network_target(args.name):
        print("\n".join(networks.describe(whole, args.name.partition("/")[2])))  # noqa: T201
        return 0
    t = pods.target(args.name, namespace=args.namespace)
    if t.kind != "pod":  # a container (or a pod's unit by its own name) comes first
        found = [c for c in (whole.get("containers") or {}).values() if c["name"] == t.name]
        if found:
            return _describe_container(store, whole, _labelled(args.state_dir, found[0],
                                                               files={}))
    pod = find_pod(args, t, status=whole)
    if pod is None:
        raise _not_found(t)
    events = [e for e in this_life(list(store.events()), pod=pod.key)
              if pods.of_pod(e.get("name"), pod.key)][-20:]  # this pod's life, as `events`
    lines = pods.describe(pod, specs=_specs(args, pod), events=events, when=_when)
    print("\n".join(lines))  # noqa: T201
    return 0


def _describe_container(store: Store, whole: dict[str, Any], c: dict[str, Any]) -> int:
    labels = [f"{k}={v}" for k, v in sorted((c.get("labels") or {}).items())] or ["<none>"]
    out = [f"Name:          {c['name']}", f"Labels:        {labels[0]}",
           *[f"               {x}" for x in labels[1:]], f"Source:        {c.get('source')}",
           f"Desired state: {c.get('desiredState')}", f"Phase:         {c['phase']}",
           f"Message:       {c.get('message') or ''}",
           f"Ready:         {_ready_words(c)}",
           f"PID:           {c.get('pid') or '-'}",
           f"Restarts:      {c['restarts']}", f"Spec hash:     {c.get('specHash')}",
           f"Instance:      {c.get('instance') or '-'}",
           f"Cgroup:        {_cgroup(whole, c)}"]
    for net, ips in sorted((c.get("addresses") or {}).items()):
        out.append(f"Addresses:     {', '.join(ips)} on network {net}")
    last = c.get("lastExit")
    if last:
        how = ("OOM-killed" if last["oomKilled"] else
               f"signal {last['signal']}" if last["signal"] else f"code {last['code']}")
        out.append(f"Last exit:     {how} at {_when(last.get('finishedAt'))}")
    hist = c.get("history") or {}
    out += _running_as(store.dir, c, started=hist.get("startedAt") or hist.get("started_at"))
    actual = c.get("actual") or {}
    limits = actual.get("limits")
    if limits:
        out.append(f"Limits:        {_human_limits(limits)} (read back from the cgroup)")
    out += _mounts_lines(store.dir, c, actual.get("mounts") or [])
    err = hist.get("lastError") or hist.get("last_error")  # an older daemon's snake_case
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
    events = this_life(list(store.events(c["name"])))[-15:]
    out += [f"  {_when(e['time'])}  {e['type']:<7}  {e['reason']:<12}  {e['message']}"
            for e in events] or ["  <none>"]
    print("\n".join(out))  # noqa: T201
    return 0


def _depot_json(state_dir: Path, instance: str | None, *parts: str) -> dict[str, Any]:
    if not instance:
        return {}
    try:
        data = json.loads(state_dir.joinpath("containers", instance, *parts).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _running_as(state_dir: Path, c: dict[str, Any], *, started: float | None) -> list[str]:
    """Image (with the digest it runs), the command as run, start time: what the instance
    was made from (its depot), not the manifest as it may read now."""
    applied = _depot_json(state_dir, c.get("instance"), "applied.json").get("spec") or {}
    config = _depot_json(state_dir, c.get("instance"), "bundle", "config.json")
    digest = (config.get("annotations") or {}).get("io.reconciler.image-digest")
    image = applied.get("image") or applied.get("rootfs") or applied.get("bundle") or "-"
    argv = (config.get("process") or {}).get("args") or []
    return [f"Image:         {image}" + (f" ({digest})" if digest else ""),
            f"Command:       {' '.join(argv) if argv else '-'}",
            f"Started:       {_when(started)}"]


def _human_limits(limits: dict[str, Any]) -> str:
    """``memory 32Mi, cpu 250m, pids 64`` (max: no limit) from the cgroup's numbers."""
    memory = limits.get("memoryBytes")
    quota, period = limits.get("cpuQuotaUs"), limits.get("cpuPeriodUs") or 100_000
    pids = limits.get("pids")
    return (f"memory {_bytes(memory) if memory else 'max'}, "
            f"cpu {f'{round(quota * 1000 / period)}m' if quota else 'max'}, "
            f"pids {pids or 'max'}")


def _bytes(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _mounts_lines(state_dir: Path, c: dict[str, Any], seen: list[dict[str, Any]]
                  ) -> list[str]:
    """Each manifest mount with its source and kind as asked (a bind mount, a tmpfs and
    its size), and whether it is in place: mountinfo alone says ``ext4`` for a bind."""
    applied = _depot_json(state_dir, c.get("instance"), "applied.json").get("spec") or {}
    found = {m["destination"]: m for m in seen}
    out = []
    for m in applied.get("mounts") or []:
        mode = "ro" if m.get("readOnly") else "rw"
        what = (f"bind {m.get('source')}" if m.get("type") == "bind"
                else f"tmpfs size={m.get('sizeLimit') or 'default'}")
        here = "in place" if m.get("destination") in found else "not seen"
        out.append(f"Mount:         {m.get('destination')} {what} {mode} ({here})")
    return out


def _cgroup(status: dict[str, Any], c: dict[str, Any]) -> str:
    parent = (status.get("daemon") or {}).get("cgroupParent")
    if not parent or not c.get("instance"):
        return "-"
    return f"{parent.rstrip('/')}/{c['instance']}"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _print_event(e: dict[str, Any], *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(event_json(e)), flush=True)  # noqa: T201
        return
    print(f"{_when(e['time'])}  {e['type']:<7}  {e.get('name') or '-':<16}  "  # noqa: T201
          f"{e['reason']:<16}  {e['message']}", flush=True)


def event_json(e: dict[str, Any]) -> dict[str, Any]:
    """One event for ``events -o json``: camelCase, its time in RFC 3339 (UTC, ms)."""
    return {"time": rfc3339(e.get("time")), "type": e.get("type"), "name": e.get("name"),
            "reason": e.get("reason"), "message": e.get("message")}


# One way to write a time in JSON (``events``, ``get``): pods.py holds it, being pure.
rfc3339 = pods.rfc3339


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


def _pod_key(args: argparse.Namespace) -> str | None:
    """The key of the pod ``events NAME`` may name (None for ``container/NAME``)."""
    t = pods.target(args.name, namespace=args.namespace)
    return t.key if t.kind != "container" else None


def cmd_events(args: argparse.Namespace) -> int:
    _daemon_state(args.state_dir)
    store = Store(args.state_dir)
    wanted = _event_filter(args)
    as_json = args.output == "json"
    events = list(store.events())
    seen = len(events)
    shown = events if args.all or not args.name else this_life(events, pod=_pod_key(args))
    for e in _recent(shown, wanted, since=args.since, tail=args.tail):
        _print_event(e, as_json=as_json)
    while args.follow:
        time.sleep(0.2)
        events = list(store.events())
        for e in events[seen:]:
            if wanted(e):
                _print_event(e, as_json=as_json)
        seen = max(seen, len(events))
    return 0


def this_life(events: list[dict[str, Any]], *, pod: str | None = None
              ) -> list[dict[str, Any]]:
    """Each name's events since it was last deleted and made again: a new object with an
    old name does not inherit the deleted one's history (kubectl: a new UID). The events
    of an object deleted and not made again are its last life's.

    With ``pod`` (a pod's key), a pod's life is its sandbox's: its units' events from
    before the sandbox was last deleted and made again are gone too, so a container that
    only the earlier pod had does not show in the new one."""
    start: dict[str | None, int] = {}
    deleted_at: dict[str | None, int] = {}
    for i, e in enumerate(events):
        name = e.get("name")
        if name in deleted_at:  # something happened to the name after a delete: a new life
            start[name] = deleted_at.pop(name) + 1
        if e.get("reason") == "Deleted" and name is not None:
            deleted_at[name] = i
    born = start.get(pods.unit_prefix(pod), 0) if pod is not None else 0

    def first(name: str | None) -> int:
        own = start.get(name, 0)
        return max(own, born) if pod is not None and pods.of_pod(name, pod) else own

    return [e for i, e in enumerate(events) if i >= first(e.get("name"))]


def _recent(events: list[dict[str, Any]], wanted: Callable[[dict[str, Any]], bool], *,
            since: timedelta | None, tail: int | None) -> list[dict[str, Any]]:
    """The events ``events`` prints first: NAME's, newer than ``--since``, the last
    ``--tail`` of them."""
    oldest = time.time() - since.total_seconds() if since is not None else None
    chosen = [e for e in events if wanted(e) and (oldest is None or
                                                  float(e.get("time") or 0) >= oldest)]
    return chosen if tail is None else chosen[len(chosen) - tail:] if tail else []


def _duration(text: str) -> timedelta:
    from reconciler import logs  # light (no runtime), but only `events --since` needs it

    try:
        return logs.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str, *, what: str = "a number") -> int:
    """A ``--tail N``: ``what`` names N in the error (``a number of lines``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be {what} >= 0, got {text!r}")
    return value


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


def _unsecret(doc: dict[str, Any], names: Collection[str]) -> dict[str, Any]:
    """``doc`` with the values of the env variables ``names`` shown as ``<secret>``."""
    env = (doc.get("spec") or {}).get("env")
    if not names or not isinstance(env, list):
        return doc
    hidden = [{**v, "value": "<secret>"} if v.get("name") in names else v for v in env]
    return {**doc, "spec": {**doc["spec"], "env": hidden}}


def _unified(name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """``diff -o diff``: the manifest in force against the one wanted, as ``diff -u``."""
    import difflib

    import yaml

    def text(doc: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(doc, sort_keys=False).splitlines(keepends=True)

    sys.stdout.writelines(difflib.unified_diff(
        text(before), text(after), fromfile=f"a/{name} (running)",
        tofile=f"b/{name} (manifests)"))


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
            try:
                before = json.loads(have.applied or "{}")
            except ValueError:
                before = {}
            change = changes.classify(have.applied, doc)
            if action.desired.pod is not None:  # a Secret's values are never printed
                info, env = action.desired.pod, doc.get("spec", {}).get("env", [])
                change = changes.Change(
                    live=tuple(pods_core.masked(change.live, info, env)),
                    recreate=tuple(pods_core.masked(change.recreate, info, env)))
                doc, before = _unsecret(doc, info.secret_env), _unsecret(before, info.secret_env)
            if args.output == "diff":
                _unified(action.name, before, doc)
                continue
            for line in change.lines(before):
                print(f"    {line}")  # noqa: T201
    for note in plan.notes:
        print(f"note: {note}")  # noqa: T201
    if want.problems or not want.available:  # kubectl diff's 2: the diff cannot be trusted
        return 2
    if not plan.actions and not plan.waiting:
        print("converged: nothing to do")  # noqa: T201
        return 0
    return 1
