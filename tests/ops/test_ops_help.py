"""Every subcommand, option and argument of the CLI has help text (issue 17's packaging):
``reconciler X --help``, the completions and the man page are made from it."""

from __future__ import annotations

import argparse

from reconciler.cli.main import build_parser


def _without_help(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            said = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not said.get(name):
                    missing.append(f"{prefix} {name}")
                missing += _without_help(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_command_option_and_argument_has_help() -> None:
    assert _without_help(build_parser(), "reconciler") == []
