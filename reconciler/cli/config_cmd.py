"""``reconciler config view``: the settings every command starts from, and their origins.

Where it sits: the CLI layer; it only prints what ``reconciler.config`` merges (a flag
would still win over any of it, per command). Like ``kubectl config view``, it answers
"which state dir will ``get`` read?" without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from reconciler import config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="show the settings in force and where each comes from")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    view = verbs.add_parser(
        "view", help="each setting, its value and its origin (flag > RECONCILER_* >"
                     " config file > default)")
    view.add_argument("-o", "--output", choices=("table", "json"), default="table",
                      help="a table (default) or JSON")
    view.set_defaults(func=cmd_view)
    p.set_defaults(func=_usage(p))


def _usage(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Bare ``config``: its help, as a usage error."""
    def run(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2
    return run


def cmd_view(args: argparse.Namespace) -> int:
    merged = config.settings()
    if args.output == "json":
        doc = {"settings": {config.SETTINGS[name][1]: {
            "value": s.value, "origin": s.origin, "env": config.SETTINGS[name][0]}
            for name, s in merged.items()},
            "configFiles": [{"path": str(f), "exists": f.exists()} for f in config.files()]}
        print(json.dumps(doc, indent=2))  # noqa: T201
        return 0
    rows = [["SETTING", "VALUE", "ORIGIN"]] + [
        [config.SETTINGS[name][1], s.value, s.origin] for name, s in merged.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    table = "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                      for r in rows)
    print(table)  # noqa: T201
    files = [f"{f} ({'read' if f.exists() else 'absent'})" for f in config.files()]
    print(f"\nconfig files: {', '.join(files)}")  # noqa: T201
    return 0
