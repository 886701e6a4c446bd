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

    def lines(self) -> list[str]:
        """``~ spec.resources.memory: "128Mi"  (live)`` — one line per operation."""
        out = []
        for tag, ops in (("live", self.live), ("recreate", self.recreate)):
            for op in ops:
                path = op["path"].lstrip("/").replace("/", ".")
                sign = {"add": "+", "remove": "-", "replace": "~"}.get(op["op"], op["op"])
                value = "" if op["op"] == "remove" else f": {json.dumps(op.get('value'))}"
                out.append(f"{sign} {path}{value}  ({tag})")
        return out


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
