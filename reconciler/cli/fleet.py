"""``reconciler fleet ...``: desired state into etcd, the fleet's status out of it.

    fleet apply/delete ─▶ /reconciler/fleet/… or /reconciler/nodes/NODE/… (one transaction)
    fleet get          ◀─ those keys
    fleet status/nodes ◀─ /reconciler/status/NODE/… (what each daemon reports, daemon/fleet.py)

Also the etcd connection options every etcd command shares (``run --source etcd`` too):
flags, else ``RECONCILER_ETCD_*`` variables. An object's key is named as ``apply`` names
its file (``container-web``, ``pod-default-site``), under the fleet prefix or a node's.
Local checks are the daemon's own (the loader, with the key as the origin), so a value
that ``fleet apply`` writes is one every node can read.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler import errors
from reconciler.cli import pods
from reconciler.cli.inputs import Refused, lines, raw_documents, read_inputs

if TYPE_CHECKING:
    from reconciler.sources import etcdapi

_ENV = {"endpoints": "RECONCILER_ETCD_ENDPOINTS", "cacert": "RECONCILER_ETCD_CACERT",
        "cert": "RECONCILER_ETCD_CERT", "key": "RECONCILER_ETCD_KEY",
        "user": "RECONCILER_ETCD_USER", "password_file": "RECONCILER_ETCD_PASSWORD_FILE"}
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops




def etcd_options(p: argparse.ArgumentParser) -> None:
    """The etcd connection flags (``run`` and every ``fleet`` command)."""
    p.add_argument("--etcd-endpoints", metavar="URLS",
                   default=os.environ.get(_ENV["endpoints"], DEFAULT_ENDPOINTS),
                   help="comma-separated client URLs of the etcd members (default:"
                        f" %(default)s; {_ENV['endpoints']})")
    p.add_argument("--etcd-cacert", metavar="FILE", default=os.environ.get(_ENV["cacert"]),
                   help=f"the CA that signed etcd's server certificates ({_ENV['cacert']})")
    p.add_argument("--etcd-cert", metavar="FILE", default=os.environ.get(_ENV["cert"]),
                   help=f"this client's TLS certificate ({_ENV['cert']})")
    p.add_argument("--etcd-key", metavar="FILE", default=os.environ.get(_ENV["key"]),
                   help=f"this client's TLS key ({_ENV['key']})")
    p.add_argument("--etcd-user", metavar="NAME", default=os.environ.get(_ENV["user"]),
                   help=f"an etcd user, when etcd's auth is on ({_ENV['user']})")
    p.add_argument("--etcd-password-file", metavar="FILE",
                   default=os.environ.get(_ENV["password_file"]),
                   help=f"a file holding that user's password ({_ENV['password_file']})")


def node_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", metavar="NAME", default=None,
                   help="this node's name in etcd (default: the host name)")


def etcd_settings(args: argparse.Namespace) -> etcdapi.Settings:
    from reconciler.sources import etcdapi

    endpoints = tuple(e.strip().rstrip("/") for e in args.etcd_endpoints.split(",")
                      if e.strip())
    for e in endpoints:
        if not e.startswith(("http://", "https://")):
            raise errors.UsageError(f"--etcd-endpoints: {e!r} is not an http:// or https://"
                                    " URL")
    if not endpoints:
        raise errors.UsageError("--etcd-endpoints: no endpoint given")
    if bool(args.etcd_cert) != bool(args.etcd_key):
        raise errors.UsageError("--etcd-cert and --etcd-key go together")
    password = None
    if args.etcd_password_file:
        try:
            with open(args.etcd_password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise errors.UsageError(f"--etcd-password-file {args.etcd_password_file}: "
                                    f"{exc.strerror or exc}") from exc
    if bool(args.etcd_user) != (password is not None):
        raise errors.UsageError("--etcd-user and --etcd-password-file go together")
    return etcdapi.Settings(endpoints, cacert=args.etcd_cacert, cert=args.etcd_cert,
                            key=args.etcd_key, user=args.etcd_user, password=password)


def node_name(args: argparse.Namespace) -> str:
    name: str = args.node or socket.gethostname()
    if not name or "/" in name or name.strip() != name:
        raise errors.UsageError(f"--node: {name!r} cannot be a key segment")
    return name


def labels(items: list[str]) -> dict[str, str]:
    """``--node-label KEY=VALUE`` (repeatable), checked as Kubernetes label rules."""
    from reconciler.manifest import selectors

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            selectors.parse(f"{key}={value}" if sep else "=")
        except selectors.SelectorError as exc:
            raise errors.UsageError(f"--node-label {item!r}: not KEY=VALUE with a label's"
                                    f" key and value ({exc})") from exc
        out[key] = value
    return out


# -- the command line ----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = subparsers.add_parser(
        "fleet", help="desired state for many nodes in etcd, and their status",
        description="Write objects for every node (--fleet) or one (--node) into etcd,"
                    " where each node's daemon (run --source etcd) reads them, and read"
                    " back what the nodes report.")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    p = sub.add_parser("apply", help="check manifests, then write them into etcd in one"
                                     " transaction")
    p.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="a manifest file, a directory of them, or - for stdin (repeatable)")
    _target(p)
    etcd_options(p)
    p.set_defaults(func=run_apply)

    p = sub.add_parser("delete", help="remove objects from etcd")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="TYPE/NAME (container/web, pod/NAMESPACE/NAME) or a key's last part")
    p.add_argument("-f", "--filename", action="append", metavar="PATH",
                   help="delete every object this file (or - for stdin) defines")
    _target(p)
    etcd_options(p)
    p.set_defaults(func=run_delete)

    p = sub.add_parser("get", help="the desired objects in etcd, for the fleet or a node")
    p.add_argument("--node", metavar="NAME", help="only this node's own objects")
    p.add_argument("--fleet", action="store_true", help="only the fleet-wide objects")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table",
                   help="yaml: the values as stored")
    etcd_options(p)
    p.set_defaults(func=run_get)

    p = sub.add_parser("status", help="every node's objects with phase and age"
                                      " (kubectl get pods -A)")
    p.add_argument("--node", metavar="NAME", help="only this node")
    p.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                   help="wide: the spec hash applied (* while it differs from the desired"
                        " one) and the message")
    etcd_options(p)
    p.set_defaults(func=run_status)

    p = sub.add_parser("nodes", help="the nodes, their labels and last heartbeat")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="json: each node's last heartbeat record")
    etcd_options(p)
    p.set_defaults(func=run_nodes)


def _target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--node", metavar="NAME", help="for this node only")
    group.add_argument("--fleet", action="store_true",
                       help="for every node (each object's reconciler.io/nodeSelector"
                            " annotation narrows it)")


def _prefix(args: argparse.Namespace) -> str:
    from reconciler.sources import etcd

    if args.fleet:
        return etcd.FLEET
    return etcd.node_prefix(node_name(args))


def _run(coro: Any) -> Any:
    import anyio

    return anyio.run(lambda: coro)


# -- apply / delete -------------------------------------------------------------------------


def object_key(key: tuple[str, str]) -> str:
    """An object's key under a prefix: ``container-web``, ``pod-default-site``."""
    kind, name = key
    return f"{kind.lower()}-{name.replace('/', '-')}"


def run_apply(args: argparse.Namespace) -> int:
    import yaml

    from reconciler.manifest import loader
    from reconciler.sources import etcd

    prefix = _prefix(args)
    inputs = read_inputs(args.filename)
    findings = [f for r in inputs for f in r.findings]
    findings += loader.check_duplicates(r for r in inputs if r.ok)
    if findings:
        raise Refused(lines(findings))
    raw = raw_documents(inputs)
    values: dict[str, tuple[tuple[str, str], bytes]] = {}
    problems: list[loader.Finding] = []
    for result in inputs:
        for doc in result.documents:
            key = prefix + object_key(doc.key)
            text = yaml.safe_dump(raw[(doc.file, doc.index)], sort_keys=False).encode()
            again = etcd.select(loader.load_bytes(text, file=etcd.origin(key), base_dir=None),
                                {})  # as a node reads it: a bad node selector, too
            problems += [loader.Finding(doc.file, doc.line, f.path, f.message)
                         for f in again.findings]
            if key in values:  # pod a-b/c and pod a/b-c: one key name
                raise Refused(f"{_display(doc.key)} and {_display(values[key][0])} would"
                              f" both be written to {key}; apply them one at a time, or write"
                              " one under a key of your own")
            values[key] = (doc.key, text)
    if problems:  # a relative host path: an etcd value has no directory to anchor it
        raise Refused(lines(problems))
    if not values:
        raise Refused("no objects passed to apply")
    if len(values) > MAX_TXN_OPS:
        raise Refused(f"{len(values)} objects in one apply: etcd takes at most {MAX_TXN_OPS}"
                      " in one transaction (its --max-txn-ops); split the input")
    words = _run(_apply(etcd_settings(args), prefix, values))
    for key, (okey, _) in values.items():
        print(f"{_display(okey)} {words[key]} ({key})")  # noqa: T201
    return 0


async def _apply(settings: etcdapi.Settings, prefix: str,
                 values: Mapping[str, tuple[tuple[str, str], bytes]]) -> dict[str, str]:
    from reconciler.manifest import loader
    from reconciler.sources import etcd, etcdapi

    # the other prefixes whose objects would meet these on a node: the fleet's for a
    # node, every node's for the fleet (a name defined twice applies neither)
    others = etcd.ROOT + "nodes/" if prefix == etcd.FLEET else etcd.FLEET
    async with etcdapi.Client(settings) as client:
        (existing, elsewhere), revision = await client.ranges(prefix, others)
        have = {kv.key: kv for kv in existing}
        wanted = {okey: key for key, (okey, _) in values.items()}
        for kv in existing + elsewhere:  # an object another key defines is refused
            result = loader.load_bytes(kv.value, file=etcd.origin(kv.key), base_dir=None)
            keys = [doc.key for doc in result.documents]
            if kv.key in values and result.ok and keys != [values[kv.key][0]]:
                raise Refused(f"{kv.key} holds {', '.join(map(_display, keys)) or 'nothing'},"
                              f" not only {_display(values[kv.key][0])}; apply writes a key"
                              " of its own: delete that one first, or edit it there")
            for okey in keys:
                if okey in wanted and kv.key != wanted[okey]:
                    raise Refused(f"{_display(okey)} is defined by {kv.key}; change it"
                                  " there, or delete it first")
        words = {k: "unchanged" if k in have and have[k].value == v
                 else "configured" if k in have else "created" for k, (_, v) in values.items()}
        puts = [etcdapi.put(k, v) for k, (_, v) in values.items() if words[k] != "unchanged"]
        if puts:
            # nothing under the prefix changed since the read: else say so, write nothing
            compare = [etcdapi.unchanged_since(prefix, revision)]
            ok, _ = await client.txn(puts, compare=compare)
            if not ok:
                raise Refused(f"{prefix} changed while applying; nothing written, try again")
        return words


def _display(key: tuple[str, str]) -> str:
    return f"{key[0].lower()}/{key[1]}"


def run_delete(args: argparse.Namespace) -> int:

    prefix = _prefix(args)
    wanted: list[str] = [_name_key(n) for n in args.names]
    if args.filename:
        for result in read_inputs(args.filename):
            if not result.ok:
                raise Refused(lines(list(result.findings)))
            wanted += [object_key(d.key) for d in result.documents]
    if not wanted:
        raise errors.UsageError("fleet delete: name the objects, or give -f")
    gone = _run(_delete(etcd_settings(args), prefix, wanted))
    for key in wanted:
        print(f"{prefix}{key} {'deleted' if key in gone else 'not found'}")  # noqa: T201
    return 0 if len(gone) == len(set(wanted)) else 1


def _name_key(name: str) -> str:
    kind, sep, rest = name.partition("/")
    if not sep:
        return name
    kinds = {"container": "Container", "pod": "Pod", "configmap": "ConfigMap",
             "secret": "Secret"}
    if kind.lower() not in kinds:
        raise errors.UsageError(f"{name}: TYPE is one of {', '.join(kinds)}")
    if kind.lower() != "container" and "/" not in rest:
        rest = f"{pods.DEFAULT_NAMESPACE}/{rest}"
    return object_key((kinds[kind.lower()], rest))


async def _delete(settings: etcdapi.Settings, prefix: str, keys: list[str]) -> set[str]:
    from reconciler.sources import etcdapi

    async with etcdapi.Client(settings) as client:
        (existing,), _ = await client.ranges(prefix)
        present = {kv.key[len(prefix):] for kv in existing}
        gone = {k for k in keys if k in present}
        if gone:
            await client.txn([etcdapi.delete(prefix + k) for k in sorted(gone)])
        return gone


# -- get / status / nodes -------------------------------------------------------------------


def run_get(args: argparse.Namespace) -> int:
    from reconciler.manifest import loader
    from reconciler.sources import etcd

    prefixes = [etcd.FLEET] if args.fleet else [etcd.node_prefix(args.node)] if args.node \
        else [etcd.FLEET, etcd.ROOT + "nodes/"]
    groups = _run(_read(etcd_settings(args), prefixes))
    kvs = [kv for group in groups for kv in group]
    if args.output == "yaml":
        sys.stdout.write("".join(f"# {kv.key}\n---\n{kv.value.decode(errors='replace')}\n"
                                 for kv in kvs))
        return 0
    rows = []
    for kv in kvs:
        result = loader.load_bytes(kv.value, file=etcd.origin(kv.key), base_dir=None)
        target = "fleet" if kv.key.startswith(etcd.FLEET) else \
            "node/" + kv.key[len(etcd.ROOT + "nodes/"):].split("/", 1)[0]
        for doc in result.documents:
            sel = doc.document.metadata.annotations.get(etcd.NODE_SELECTOR, "")
            rows.append({"key": kv.key, "for": target, "kind": doc.key[0],
                         "name": doc.key[1], "nodeSelector": sel,
                         "modRevision": kv.mod_revision})
        if not result.ok:
            rows.append({"key": kv.key, "for": target, "kind": "-", "name": "-",
                         "nodeSelector": "", "modRevision": kv.mod_revision,
                         "error": str(result.findings[0])})
    if args.output == "json":
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    if not rows:
        print("No objects.", file=sys.stderr)  # noqa: T201
        return 0
    table = [["KIND", "NAME", "FOR", "NODE-SELECTOR", "KEY"]]
    table += [[r["kind"], r["name"], r["for"], r["nodeSelector"] or "<all>",
               r["key"] + (f"  ({r['error']})" if "error" in r else "")] for r in rows]
    print(pods.table(table))  # noqa: T201
    return 0


async def _read(settings: etcdapi.Settings, prefixes: list[str]) -> list[list[etcdapi.KV]]:
    from reconciler.sources import etcdapi

    async with etcdapi.Client(settings) as client:
        groups, _ = await client.ranges(*prefixes)
        return groups


def fleet_view(status: list[etcdapi.KV], desired_nodes: set[str]) -> dict[str, dict[str, Any]]:
    """Every node with its state (Ready, Down, Unreported), record and objects' status."""
    from reconciler.sources import etcd

    nodes: dict[str, dict[str, Any]] = {
        n: {"state": "Unreported", "record": None, "objects": {}} for n in desired_nodes}
    for kv in status:
        node, _, rest = kv.key[len(etcd.ROOT + "status/"):].partition("/")
        entry = nodes.setdefault(node, {"state": "Unreported", "record": None, "objects": {}})
        try:
            value = json.loads(kv.value)
        except ValueError:
            continue
        if rest == "node":
            entry["state"], entry["record"] = "Ready", value
        elif rest == "registered":
            if entry["record"] is None:
                entry["record"] = value
            if entry["state"] == "Unreported":
                entry["state"] = "Down"
        elif rest.startswith("objects/"):
            entry["objects"][rest[len("objects/"):]] = value
    for entry in nodes.values():
        if entry["state"] == "Down":
            entry["objects"] = {}  # a dead node's leased keys are gone; any left are stale
    return dict(sorted(nodes.items()))


async def _status(settings: etcdapi.Settings) -> tuple[list[etcdapi.KV], set[str]]:
    from reconciler.sources import etcd, etcdapi

    async with etcdapi.Client(settings) as client:
        (status, desired), _ = await client.ranges(etcd.ROOT + "status/", etcd.ROOT + "nodes/")
        names = {kv.key[len(etcd.ROOT + "nodes/"):].split("/", 1)[0] for kv in desired}
        return status, names


def run_status(args: argparse.Namespace) -> int:
    status, names = _run(_status(etcd_settings(args)))
    now = time.time()
    nodes = fleet_view(status, names)
    if args.node:
        nodes = {k: v for k, v in nodes.items() if k == args.node}
    if args.output == "json":
        print(json.dumps(nodes, indent=2, sort_keys=True))  # noqa: T201
        return 0
    if not nodes:
        print("No nodes.", file=sys.stderr)  # noqa: T201
        return 0
    head = ["NODE", "NAME", "PHASE", "READY", "RESTARTS", "AGE"]
    if args.output == "wide":
        head += ["SPEC", "MESSAGE"]
    rows = [head]
    for node, entry in nodes.items():
        if entry["state"] != "Ready":
            rows.append([node, "-", "Node" + entry["state"], "-", "-",
                         _heartbeat_age(entry, now)] + (["-", _why(entry, now)]
                                                       if args.output == "wide" else []))
            continue
        for name, obj in sorted(entry["objects"].items()):
            row = [node, name, str(obj.get("phase")), "1/1" if obj.get("ready") else "0/1",
                   str(obj.get("restarts", 0)), pods.age(obj.get("since"), now=now)]
            if args.output == "wide":
                spec = (obj.get("specHash") or "")[:12]
                if obj.get("specHash") != obj.get("desiredSpecHash"):
                    spec += "*"
                row += [spec or "-", obj.get("message") or ""]
            rows.append(row)
    print(pods.table(rows))  # noqa: T201
    return 0


def _heartbeat_age(entry: Mapping[str, Any], now: float) -> str:
    record = entry.get("record") or {}
    return pods.age(record.get("heartbeatAt"), now=now) if record else "-"


def _why(entry: Mapping[str, Any], now: float) -> str:
    if entry["state"] == "Down":
        return (f"no heartbeat for {_heartbeat_age(entry, now)}: its lease expired, or the"
                " daemon stopped")
    return "objects in etcd, but the node never reported"


def run_nodes(args: argparse.Namespace) -> int:
    status, names = _run(_status(etcd_settings(args)))
    now = time.time()
    nodes = fleet_view(status, names)
    if args.output == "json":
        print(json.dumps({n: {"state": e["state"], "record": e["record"]}  # noqa: T201
                          for n, e in nodes.items()}, indent=2, sort_keys=True))
        return 0
    if not nodes:
        print("No nodes.", file=sys.stderr)  # noqa: T201
        return 0
    rows = [["NAME", "STATUS", "OBJECTS", "LAST-HEARTBEAT", "VERSION", "LABELS"]]
    for node, e in nodes.items():
        record = e["record"] or {}
        labels_text = ",".join(f"{k}={v}" for k, v in sorted(record.get("labels", {}).items()))
        rows.append([node, e["state"], str(len(e["objects"])) if e["state"] == "Ready" else "-",
                     _heartbeat_age(e, now) + (" ago" if record else ""),
                     str(record.get("version", "-")), labels_text or "<none>"])
    print(pods.table(rows))  # noqa: T201
    return 0



