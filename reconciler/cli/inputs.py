"""Manifests given on a command line (``-f FILE|DIR|-``), read as the daemon reads files.

Where it sits: the CLI layer, shared by the verbs that take ``-f``: ``apply``/``delete``
(``cli/verbs.py``, into the directory) and ``fleet apply``/``fleet delete``
(``cli/fleet.py``, into etcd). Each input is loaded by the daemon's own loader; the plain
data of each document is kept too, in the YAML's own key order, for writing it out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors

if TYPE_CHECKING:
    from reconciler.manifest import loader

STDIN = "<stdin>"
stdin_text: dict[str, str] = {}  # what ``-`` read, once: stdin cannot be read again


class Refused(errors.ReconcilerError):
    """A verb that will not go on (exit 1); nothing has been written."""


def read_inputs(paths: list[str]) -> list[loader.FileResult]:
    """Each ``-f`` PATH loaded: a file, every manifest file of a directory, or ``-``."""
    from reconciler.manifest import files, loader

    results = []
    for path in paths:
        if path == "-":
            data = sys.stdin.buffer.read()
            stdin_text[STDIN] = data.decode("utf-8", errors="replace")
            results.append(loader.load_bytes(data, file=STDIN, base_dir=os.getcwd()))
            continue
        if os.path.isdir(path):
            scanned = files.scan(path)
            if not scanned:
                raise Refused(f"{path}: no manifest files in it")
            results += [loader.load_file(p) for p in scanned]
        elif os.path.exists(path):
            results.append(loader.load_file(path))
        else:
            raise errors.UsageError(f"{path}: no such file or directory")
    return results


def raw_documents(inputs: list[loader.FileResult]) -> dict[tuple[str, int], Any]:
    """(file, index) -> the plain data of each document, as the YAML says it (key order)."""
    import yaml

    out: dict[tuple[str, int], Any] = {}
    for result in inputs:
        text = text_of(result.file)
        for index, data in enumerate(yaml.safe_load_all(text)):
            out[(result.file, index)] = data
    return out


def text_of(file: str) -> str:
    if file == STDIN:
        return stdin_text[file]
    text = Path(file).read_bytes().decode("utf-8")
    return text.replace("\t", " ") if file.lower().endswith(".json") else text


def lines(findings: list[loader.Finding]) -> str:
    """Findings as one message, one ``error:`` line each (the first one's is the CLI's)."""
    return "\nerror: ".join(str(f) for f in findings)
