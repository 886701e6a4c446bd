"""Classify a manifest change: which operations can be applied live, which need a recreate.

Pure. The last applied manifest and the new one (both as JSON, defaults left out) are
diffed as a JSON patch (``jsonpatch``); operations under ``spec.mounts``,
``spec.resources``, ``spec.state`` and ``metadata.labels``/``annotations`` are live, any
other means a new container. The planner carries the live patch in its action, and
``diff``/``describe`` print each operation marked live or recreate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from reconciler.manifest.model import LIVE_PATHS


@dataclass(frozen=True)
class Change:
    live: tuple[Mapping[str, Any], ...]
    recreate: tuple[Mapping[str, Any], ...]

    @property
    def empty(self) -> bool:
        return not self.live and not self.recreate

    def lines(self, before: Mapping[str, Any] | None = None) -> list[str]:
        """``~ spec.resources.memory: "64Mi" → "128Mi"  (live)`` — one line per operation,
        the old value taken from ``before`` (the manifest in force) when given."""
        out = []
        for tag, ops in (("live", self.live), ("recreate", self.recreate)):
            for op in ops:
                path = op["path"].lstrip("/").replace("/", ".")
                sign = {"add": "+", "remove": "-", "replace": "~"}.get(op["op"], op["op"])
                old = _at(before, op["path"]) if before is not None else _MISSING
                if op["op"] == "remove":
                    value = "" if old is _MISSING else f" (was {json.dumps(old)})"
                elif op["op"] == "replace" and old is not _MISSING:
                    value = f": {json.dumps(old)} \u2192 {json.dumps(op.get('value'))}"
                else:
                    value = f": {json.dumps(op.get('value'))}"
                out.append(f"{sign} {path}{value}  ({tag})")
        return out


_MISSING = object()


def _at(doc: Any, pointer: str) -> Any:
    """The value at a JSON pointer in ``doc``, or ``_MISSING``."""
    node = doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _is_live(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in LIVE_PATHS)


def classify(applied: Mapping[str, Any] | str | None, new: Mapping[str, Any]) -> Change:
    if isinstance(applied, str):
        try:
            applied = json.loads(applied)
        except ValueError:
            applied = None
    if not isinstance(applied, Mapping):
        return Change(live=(), recreate=({"op": "replace", "path": "/spec", "value": None},))
    ops = jsonpatch.make_patch(dict(applied), dict(new)).patch
    return Change(live=tuple(op for op in ops if _is_live(op["path"])),
                  recreate=tuple(op for op in ops if not _is_live(op["path"])))


def live_parts(change: Change) -> set[str]:
    """Which live areas change: {"mounts", "resources", "state", "metadata"}."""
    parts = set()
    for op in change.live:
        head = op["path"].split("/")[2]
        parts.add(head if op["path"].startswith("/spec/") else "metadata")
    return parts
