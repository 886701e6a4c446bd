"""Assembles the subcommands of the ``reconciler`` command and maps errors to exit codes.

Each subcommand module exposes ``register(subparsers)`` and sets ``func`` on its parser;
``func(args) -> int`` is the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from reconciler import __version__, errors

# Subcommand modules, in help order. A module missing here is simply not offered.
_MODULES = ("validate", "daemon", "inspect", "image")
# Which module defines each command: `reconciler get` imports only cli/daemon.py (and so
# neither pydantic nor the runtime), which keeps the readers quick to start.
_OWNER = {"validate": "validate", "schema": "validate", "run": "daemon", "get": "daemon",
          "describe": "daemon", "events": "daemon", "diff": "daemon", "logs": "inspect",
          "exec": "inspect", "stats": "inspect", "inspect": "inspect", "top": "inspect",
          "image": "image"}


def _modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    command = next((a for a in argv if not a.startswith("-")), None)
    owner = _OWNER.get(command or "")
    return (owner,) if owner in _MODULES else _MODULES


def build_parser(modules: Sequence[str] = _MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Converge real runc containers to the YAML manifests in a directory.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(f"reconciler.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reconciler.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_modules_for(argv))
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except errors.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except errors.ReconcilerError as exc:  # one style, kubectl's: no class names
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reconciler events | head -1`: the reader has gone, quietly
        _silence_stdout()
        return 128 + 13  # as a shell reports a command killed by SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
