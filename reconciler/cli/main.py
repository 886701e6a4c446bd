"""Assembles the subcommands of the ``reconciler`` command and maps errors to exit codes.

Each subcommand module exposes ``register(subparsers)`` and sets ``func`` on its parser;
``func(args) -> int`` is the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reconciler import __version__, errors

# Subcommand modules, in help order. A module missing here is simply not offered.
_MODULES = ("validate", "daemon", "inspect", "image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Converge real runc containers to the YAML manifests in a directory.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"reconciler.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reconciler.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except errors.UsageError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except errors.ReconcilerError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
