"""``reconciler validate PATH...`` and ``reconciler schema``: manifests checked offline.

Sits on top of ``manifest.loader`` and ``manifest.files``, the same code the daemon runs
on every change, so what passes here is what the daemon accepts. Exit codes: 0 all
valid, 1 any finding, 2 a usage error (a path that does not exist, a bad option).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import TYPE_CHECKING, Any

import pydantic

from reconciler import errors
from reconciler.manifest import files, loader, model, quantity

if TYPE_CHECKING:
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: _Subparsers) -> None:
    """Add the ``validate`` and ``schema`` subcommands."""
    parser = subparsers.add_parser(
        "validate",
        help="check manifest files without running anything",
        description=(
            "Check manifests: files, or directories scanned recursively for *.yaml, *.yml"
            " and *.json (hidden files and editor leftovers skipped). Prints each problem as"
            " FILE:LINE: FIELD: MESSAGE. Exit status: 0 all valid, 1 problems found,"
            " 2 usage error."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a manifest file or directory")
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text",
        help="text (default) or a JSON list of {file, line, path, message, severity}",
    )
    parser.add_argument(
        "--max-size", default=str(loader.MAX_SIZE), metavar="SIZE",
        help="refuse files larger than this, in bytes or as a quantity such as 512Ki"
        " (default: 1Mi)",
    )
    parser.add_argument(
        "--policy", metavar="FILE|LEVEL", default=None,
        help="check against this daemon policy (as run --policy does): a file, or a"
        " built-in level (privileged, baseline, restricted); a broken policy file is its own"
        " findings (default: the daemon's, RECONCILER_POLICY or config file, else baseline)")
    parser.add_argument(
        "--source", choices=("directory", "etcd"), default="directory",
        help="with --policy: check as the policy's rules for this source"
        " (default: %(default)s)")
    parser.set_defaults(func=run_validate)

    schema = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of a manifest document",
        description="Print the JSON Schema (draft 2020-12) of one manifest document.",
    )
    schema.set_defaults(func=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    max_size = _max_size(args.max_size)
    paths, findings = _collect(args.paths)
    check = None
    if args.policy is None:
        from reconciler import config

        args.policy = config.default("policy")
    if args.policy != "privileged":
        from reconciler.manifest import policy as policy_mod

        policy, problems = loader.policy_from(args.policy)
        if policy is None:
            findings += problems
        else:
            check = policy_mod.checker(policy.for_source(args.source))
    results = [loader.load_file(path, max_size=max_size, check=check) for path in paths]
    findings += [f for r in results for f in r.findings]
    findings += loader.check_duplicates(results)
    # What the daemon would make of them: file findings, names defined twice, and a pod
    # that cannot be expanded (a ConfigMap it names is in none of the files, a value it
    # cannot run) — so what passes here is what the daemon accepts.
    from reconciler.core import desired

    snap = desired.SourceSnapshot("validate", True, None, {r.file: r for r in results})
    seen = set(findings)
    findings += [p for p in desired.build(snap, None, pods_dir="/").problems if p not in seen]
    if args.output == "json":
        _write_json(findings)
    else:
        _write_text(findings, results)
    return 1 if findings else 0


def run_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(schema(), indent=2) + "\n")
    return 0


def schema() -> dict[str, Any]:
    """One schema for every kind: chosen by ``kind`` (if/then), so an editor or a CI
    linter reports the field that is wrong, not "matches none of four schemas"; a
    document of no known kind is checked as our Container (whose ``kind`` says so)."""
    from pydantic.json_schema import models_json_schema

    from reconciler.manifest import kube

    kinds: list[tuple[str, type[pydantic.BaseModel]]] = [
        ("Pod", kube.Pod), ("ConfigMap", kube.ConfigMap), ("Secret", kube.Secret)]
    models: list[type[pydantic.BaseModel]] = [model.Container, *(m for _, m in kinds)]
    refs, defs = models_json_schema([(m, "validation") for m in models], by_alias=True,
                                    ref_template="#/$defs/{model}")
    branch: dict[str, Any] = refs[(model.Container, "validation")]
    for kind, cls in reversed(kinds):
        branch = {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                  "then": refs[(cls, "validation")], "else": branch}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "reconciler manifest: Container (reconciler/v1), or Pod, ConfigMap, Secret (v1)",
        **branch, **defs,
    }


def _max_size(text: str) -> int:
    try:
        size = quantity.to_bytes(text)
    except ValueError as exc:
        raise errors.UsageError(f"--max-size: {exc}") from exc
    if size <= 0:
        raise errors.UsageError(f"--max-size: must be greater than zero, got {text!r}")
    return size


def _collect(paths: list[str]) -> tuple[list[str], list[loader.Finding]]:
    """The files to load, each once, in command-line order with directories expanded.

    A path that does not exist is a usage error, raised before anything is read; a
    directory that cannot be scanned is a finding.
    """
    kinds = []
    for path in paths:
        try:
            kinds.append((path, stat.S_ISDIR(os.stat(path).st_mode)))
        except OSError as exc:
            raise errors.UsageError(f"{path}: {exc.strerror or exc}") from exc
    found: list[str] = []
    findings: list[loader.Finding] = []
    for path, is_dir in kinds:
        if not is_dir:
            found.append(path)
            continue
        try:
            scanned = files.scan(path)
        except OSError as exc:
            message = f"cannot scan directory: {exc.strerror or exc}"
            findings.append(loader.Finding(path, None, "", message))
            continue
        if not scanned:
            sys.stderr.write(f"warning: no manifest files in {path}\n")
        found.extend(str(p) for p in scanned)
    seen: set[str] = set()
    unique = []
    for path in found:
        if (key := os.path.abspath(path)) not in seen:
            seen.add(key)
            unique.append(path)
    return unique, findings


def _write_json(findings: list[loader.Finding]) -> None:
    doc = [
        {"file": f.file, "line": f.line, "path": f.path, "message": f.message, "severity": "error"}
        for f in findings
    ]
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _write_text(findings: list[loader.Finding], results: list[loader.FileResult]) -> None:
    out = sys.stdout
    for finding in findings:
        out.write(f"{finding}\n")
    if findings:
        broken = len({f.file for f in findings})
        out.write(f"{_count(len(findings), 'problem')} in {_count(broken, 'file')}\n")
    else:
        documents = sum(len(r.documents) for r in results)
        verb = "is" if documents == 1 else "are"
        out.write(
            f"{_count(documents, 'document')} in {_count(len(results), 'file')} {verb} valid\n"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
