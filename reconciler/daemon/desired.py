"""The desired state: what the manifests ask for, decided from one snapshot and the last state.

    source (a Snapshot of the directory) → desired (this module) → planner → executor

Pure: no I/O, no clock. ``build`` folds a ``source.Snapshot`` into a ``DesiredState`` with
three rules that keep a mistake in the directory from deleting or changing a container:

- a file with findings changes nothing it defined before: every ``Desired`` of the previous
  state whose source is that file is carried over unchanged;
- a name defined in two places (two files, twice in one file, or a valid file and a broken
  file that defined it before) applies neither definition: the previous ``Desired`` for that
  name, if any, is kept, and the name is listed in ``conflicts``;
- a source that is unavailable (directory missing or unreadable) keeps the previous state
  whole: ``available`` is False and the planner must delete nothing.

The planner must also leave alone a container whose name is in ``conflicts`` but not in
``specs`` (a conflict seen before any definition was applied): it is contested, not gone.

Equality: two states are equal when every field is; a renamed file changes ``source`` and
so the state, even though no spec changed. Decide on actions by ``spec_hash`` (and the live
fields of ``container``), never by comparing whole states.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.manifest import loader, model

if TYPE_CHECKING:
    from reconciler.daemon import source


@dataclass(frozen=True)
class Desired:
    """One container as the manifests define it, with the file that says so."""

    name: str
    container: model.Container
    source: str
    spec_hash: str

    @functools.cached_property
    def manifest_json(self) -> str:
        """The manifest as the runtime records it (``applied.json``): compact JSON, defaults
        left out, keys sorted. Equal text means nothing to change live."""
        return json.dumps(self.container.model_dump(mode="json", exclude_defaults=True),
                          sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DesiredState:
    """Every container the manifests ask for, and what got in the way of the rest."""

    available: bool
    reason: str | None
    specs: Mapping[str, Desired]
    broken_sources: frozenset[str]
    conflicts: Mapping[str, tuple[str, ...]]
    problems: tuple[loader.Finding, ...]


def build(snapshot: source.Snapshot, previous: DesiredState | None) -> DesiredState:
    """The desired state for ``snapshot``, given the one built from the snapshot before it."""
    if not snapshot.available:
        return _unavailable(snapshot.reason, previous)
    before: Mapping[str, Desired] = previous.specs if previous is not None else {}
    files = sorted(snapshot.files.items())
    results = [result for _, result in files]
    broken = frozenset(key for key, result in files if not result.ok)
    claims = _claims(files, carried=[d for d in before.values() if d.source in broken])
    specs: dict[str, Desired] = {}
    conflicts: dict[str, tuple[str, ...]] = {}
    for name, defs in sorted(claims.items()):
        if len(defs) == 1:
            specs[name] = defs[0]
            continue
        conflicts[name] = tuple(sorted({d.source for d in defs}))
        if name in before:
            specs[name] = before[name]
    problems = [f for r in results for f in r.findings]
    problems += loader.check_duplicates(r for r in results if r.ok)
    problems += _carried_conflicts(claims, broken)
    return DesiredState(
        available=True,
        reason=None,
        specs=types.MappingProxyType(specs),
        broken_sources=broken,
        conflicts=types.MappingProxyType(conflicts),
        problems=tuple(problems),
    )


def _claims(
    files: Iterable[tuple[str, loader.FileResult]], *, carried: Iterable[Desired]
) -> dict[str, list[Desired]]:
    """Every definition of every name: documents of valid files, then carried-over specs."""
    claims: dict[str, list[Desired]] = {}
    for key, result in files:
        for doc in result.documents:
            found = Desired(
                name=doc.container.name,
                container=doc.container,
                source=key,
                spec_hash=model.spec_hash(doc.container),
            )
            claims.setdefault(found.name, []).append(found)
    for old in carried:
        claims.setdefault(old.name, []).append(old)
    return claims


def _carried_conflicts(
    claims: Mapping[str, list[Desired]], broken: frozenset[str]
) -> list[loader.Finding]:
    """A finding for each definition in a valid file of a name a broken file defined before.

    Duplicates among valid files are ``loader.check_duplicates``'s to report.
    """
    findings = []
    for name, defs in sorted(claims.items()):
        held = sorted({d.source for d in defs if d.source in broken})
        if not held or len(defs) < 2:
            continue
        message = (
            f'container "{name}" was defined in {", ".join(held)}, which has errors now;'
            " the definition from before stays in force until that file is fixed"
        )
        findings += [
            loader.Finding(d.source, None, "metadata.name", message)
            for d in defs if d.source not in broken
        ]
    return findings


def _unavailable(reason: str | None, previous: DesiredState | None) -> DesiredState:
    if previous is None:
        return DesiredState(
            available=False,
            reason=reason,
            specs=types.MappingProxyType({}),
            broken_sources=frozenset(),
            conflicts=types.MappingProxyType({}),
            problems=(),
        )
    return DesiredState(
        available=False,
        reason=reason,
        specs=previous.specs,
        broken_sources=previous.broken_sources,
        conflicts=previous.conflicts,
        problems=previous.problems,
    )
