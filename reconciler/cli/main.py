"""Assembles the subcommands of the ``reconciler`` command and maps errors to exit codes.

Each subcommand module exposes ``register(subparsers)`` and sets ``func`` on its parser;
``func(args) -> int`` is the exit code.

Start-up is kept short: ``--version`` answers before any parser is built, and the top-level
help (``reconciler``, ``--help``, an unknown command) is drawn from ``_COMMANDS``, a static
table, so no subcommand module is imported; ``reconciler COMMAND ...`` imports only the
module that defines COMMAND. tests/ops/test_ops_packaging.py holds ``_COMMANDS`` to the
real parser, so the table cannot drift.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from reconciler import __version__, errors

# Subcommand modules, in help order. A module missing here is simply not offered.
_MODULES = ("validate", "verbs", "daemon", "inspect", "cp", "image", "fleet", "config_cmd")
# Which module defines each command: `reconciler get` imports only cli/daemon.py (and so
# neither pydantic nor the runtime), which keeps the readers quick to start.
_OWNER = {"validate": "validate", "schema": "validate", "apply": "verbs",
          "delete": "verbs", "restart": "verbs", "run": "daemon", "get": "daemon",
          "describe": "daemon", "unlock": "daemon", "events": "daemon", "diff": "daemon",
          "logs": "inspect",
          "exec": "inspect", "stats": "inspect", "inspect": "inspect", "top": "inspect",
          "cp": "cp",
          "image": "image", "fleet": "fleet", "config": "config_cmd"}
# Every command and its one-line help, in help order, exactly as its module registers it:
# the top-level help is printed from here without importing a single subcommand module.
_COMMANDS = {
    "validate": "check manifest files without running anything",
    "schema": "print the JSON Schema of a manifest document",
    "apply": "write manifests into the watched directory, one file per object",
    "delete": "remove objects from the watched directory",
    "restart": "recreate a container or a whole pod by annotating its manifest",
    "run": "watch a manifests directory and converge containers to it",
    "get": "list containers and pods with their status",
    "describe": "spec, status, last exit, errors and events of one",
    "unlock": "let a change through a container's held update lock",
    "events": "the event history",
    "diff": "what the daemon would do now; exit 0 converged, 1 not,"
            " 2 manifest errors or an unavailable source",
    "logs": "print a container's output (stdout and stderr)",
    "exec": "run a command in a running container",
    "stats": "CPU, memory and PIDs of containers, like docker stats",
    "inspect": "the effective OCI config.json a container runs with",
    "top": "the processes of a container (of each, for a pod)",
    "cp": "copy files into or out of a running container",
    "image": "manage the local image store (import, pull, ls, rm, prune)",
    "fleet": "desired state for many nodes in etcd, and their status",
    "config": "show the settings in force and where each comes from",
}


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _leading_options(argv: Sequence[str]) -> list[str]:
    """The options before the command: the top-level parser's own."""
    options: list[str] = []
    for arg in argv:
        if not arg.startswith("-"):
            break
        options.append(arg)
    return options


def _modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    owner = _OWNER.get(_command(argv) or "")
    return (owner,) if owner in _MODULES else _MODULES


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[
        argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Converge real runc containers to the YAML manifests in a directory.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def build_parser(modules: Sequence[str] = _MODULES) -> argparse.ArgumentParser:
    """The real parser, with every subcommand of ``modules`` (all of them by default).

    shtab and argparse-manpage read it at build time (``make completions``)."""
    parser, sub = _top_parser()
    for name in modules:
        try:
            module = importlib.import_module(f"reconciler.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reconciler.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def static_parser() -> argparse.ArgumentParser:
    """The top level alone, its commands from ``_COMMANDS``: for help and usage errors."""
    parser, sub = _top_parser()
    for name, help_ in _COMMANDS.items():
        sub.add_parser(name, help=help_)
    return parser


def _quick_parser(argv: Sequence[str]) -> argparse.ArgumentParser | None:
    """The static parser when no subcommand module is needed: no command (bare, ``-h``),
    ``-h`` before the command, or a command nobody defines (argparse's usage error)."""
    if set(_OWNER) - set(_COMMANDS):  # a command missing from the table: be right, not quick
        return None
    command = _command(argv)
    if command is None or command not in _OWNER:
        return static_parser()
    if {"-h", "--help"} & set(_leading_options(argv)):
        return static_parser()
    return None


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, but an option a subcommand does not know is that subcommand's
    usage error (``reconciler get: error: unrecognized arguments: --bogus``, with get's
    usage): argparse hands a subparser's leftovers up to the top level, whose usage names
    none of the command's options."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        # everything after the command is the subcommand's: only the options before it
        # are the top level's own
        before = set(_leading_options(argv))
        owner = parser if before & set(extras) else _innermost(parser, args)
        owner.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace
               ) -> argparse.ArgumentParser:
    """The parser of the deepest subcommand ``args`` were parsed by (``image ls``'s)."""
    while True:
        action = next((a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, action.dest, None) if action is not None else None
        if action is None or chosen not in action.choices:
            return parser
        parser = action.choices[chosen]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--version" in _leading_options(argv):  # before any parser: the quickest answer
        sys.stdout.write(f"reconciler {__version__}\n")
        return 0
    parser = _quick_parser(argv) or build_parser(_modules_for(argv))
    args = _parse(parser, argv)
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
