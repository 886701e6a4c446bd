"""``get networks`` and ``describe network/NAME``: the daemon's networks, from status.json.

    cli.daemon (get, describe) ─▶ networks (this module) ─▶ status.json "networks"
                                                           (daemon.network's view)

Pure reading and wording: the daemon writes each network's subnets, bridge and the
objects attached (interface, addresses, instance), and each object's published ports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.cli import pods

NETWORK_WORDS = frozenset({"networks", "network", "net"})


def is_network_target(name: str) -> bool:
    """``network/NAME`` (or ``networks/``, ``net/``) for ``describe``."""
    kind, slash, _ = name.partition("/")
    return bool(slash) and kind.lower() in NETWORK_WORDS


def _view(status: Mapping[str, Any]) -> Mapping[str, Any]:
    view = status.get("networks") or {}
    if not view:
        raise errors.ReconcilerError("the daemon reports no networks: it runs with "
                                     "--networks off, or is older than networks")
    return view


def records(status: Mapping[str, Any], names: list[str]) -> tuple[list[dict[str, Any]],
                                                                  list[str]]:
    """One record per network (``names``: those only), and the names not found."""
    view = _view(status)
    nets: Mapping[str, Any] = view.get("networks") or {}
    ports: Mapping[str, Any] = view.get("ports") or {}
    out = []
    for name in sorted(nets):
        if names and name not in names:
            continue
        entry = nets[name]
        attached = entry.get("attached") or {}
        out.append({
            "name": name, "subnets": entry.get("subnets") or [],
            "gateways": entry.get("gateways") or [], "bridge": entry.get("bridge"),
            "internal": bool(entry.get("internal")), "dns": entry.get("dns", True),
            "mtu": entry.get("mtu"), "error": entry.get("error"),
            "attached": {obj: {**a, "ports": ports.get(obj, [])}
                         for obj, a in sorted(attached.items())},
        })
    return out, [n for n in names if n not in nets]


def cmd_get(output: str, status: Mapping[str, Any], names: list[str]) -> int:
    found, missing = records(status, names)
    if output in ("json", "yaml"):
        doc: Any = found[0] if len(names) == 1 and len(found) == 1 else {
            "kind": "List", "items": found}
        if output == "json":
            print(json.dumps(doc, indent=2, sort_keys=True))  # noqa: T201
        else:
            import yaml

            print(yaml.safe_dump(doc, sort_keys=True), end="")  # noqa: T201
    elif output == "name":
        for r in found:
            print(f"network/{r['name']}")  # noqa: T201
    elif found or not missing:
        rows = [["NAME", "SUBNETS", "GATEWAY", "INTERNAL", "DNS", "ATTACHED"]]
        rows += [[r["name"], ",".join(r["subnets"]) or "-", ",".join(r["gateways"]) or "-",
                  str(r["internal"]).lower(), str(r["dns"]).lower(), str(len(r["attached"]))]
                 for r in found]
        print(pods.table(rows))  # noqa: T201
    for name in missing:
        print(f'error: network "{name}" not found', file=sys.stderr)  # noqa: T201
    return 1 if missing else 0


def describe(status: Mapping[str, Any], name: str) -> list[str]:
    found, _ = records(status, [name])
    if not found:
        raise errors.ReconcilerError(f'network "{name}" not found')
    r = found[0]
    out = [f"Name:        {r['name']}",
           f"Subnets:     {', '.join(r['subnets']) or '-'}",
           f"Gateways:    {', '.join(r['gateways']) or '-'}",
           f"Bridge:      {r['bridge'] or '-'}",
           f"Internal:    {str(r['internal']).lower()} "
           f"({'no route out, no NAT' if r['internal'] else 'outbound NAT'})",
           f"DNS:         {str(r['dns']).lower()} (names in each object's /etc/hosts)",
           f"MTU:         {r['mtu'] or 'default'}"]
    if r["error"]:
        out.append(f"Error:       {r['error']}")
    out.append("Attached:")
    rows = [["OBJECT", "INTERFACE", "ADDRESSES", "INSTANCE", "PORTS"]]
    for obj, a in r["attached"].items():
        ports = ",".join(f"{p.get('hostIP', '')}:{p['hostPort']}->{p['containerPort']}/"
                         f"{p['protocol']}" for p in a.get("ports") or []) or "-"
        rows.append([f"pod/{pods.display(obj.replace('_', '/', 1))}" if "_" in obj else obj,
                     a.get("interface", "-"), ",".join(a.get("ips") or []),
                     a.get("instance", "-"), ports])
    out += (["  " + line for line in pods.table(rows).splitlines()] if len(rows) > 1
            else ["  <none>"])
    return out
