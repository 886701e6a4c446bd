"""The desired state: what the sources ask for, decided from their snapshots and the last state.

    sources (a SourceSnapshot each) → desired (this module) → planner → daemon workers

Pure: no I/O, no clock. A *source* (the manifests directory; an etcd prefix later) yields
snapshots of its *origins* (a file, a key), each with the documents it holds and what is
wrong with it. ``build`` folds the latest snapshot of every source into one
``DesiredState`` with rules that keep a mistake from deleting or changing a container:

- an origin with findings changes nothing it defined before: every ``Desired`` of the
  previous state from that origin is carried over unchanged (keep-last-good);
- a name defined in two places (two origins of one source or of two sources, twice in one
  origin, or a valid origin and a broken one that defined it before) applies neither: the
  previous ``Desired`` for that name, if any, is kept, and the name is listed in
  ``conflicts``;
- a source that is unavailable (directory missing, etcd unreachable) keeps every previous
  ``Desired`` it defined, and the planner deletes nothing that source defined.

The planner must also leave alone a container whose name is in ``conflicts`` but not in
``specs`` (a conflict seen before any definition was applied): it is contested, not gone.
Decide on actions by ``spec_hash`` (and the live fields of ``container``), never by
comparing whole states.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.manifest import loader, model


@dataclass(frozen=True)
class SourceSnapshot:
    """One source at one moment: its origins (origin key -> what it holds), or why it is
    unavailable (then ``origins`` is empty and says nothing)."""

    source: str  # the source's id, stable across daemon restarts ("directory")
    available: bool
    reason: str | None
    origins: Mapping[str, loader.FileResult]
    detail: Mapping[str, str | None] = field(default_factory=dict)  # e.g. the directory


@dataclass(frozen=True)
class Desired:
    """One object as a source defines it, with the origin that says so."""

    name: str
    container: model.Container
    source: str  # the origin: a file path, later an etcd key
    spec_hash: str
    source_id: str = "directory"

    @functools.cached_property
    def manifest_json(self) -> str:
        """The manifest as the runtime records it (``applied.json``)."""
        return model.canonical_json(self.container)


@dataclass(frozen=True)
class DesiredState:
    """Every object the sources ask for, and what got in the way of the rest."""

    specs: Mapping[str, Desired]
    broken_sources: frozenset[str]  # origins with findings
    conflicts: Mapping[str, tuple[str, ...]]
    problems: tuple[loader.Finding, ...]
    unavailable: Mapping[str, str | None] = field(default_factory=dict)  # source -> why
    sources: frozenset[str] = frozenset()  # every source heard from
    defined: Mapping[str, int] = field(default_factory=dict)  # source -> objects it defines

    @property
    def available(self) -> bool:
        """Every source is."""
        return not self.unavailable

    @property
    def reason(self) -> str | None:
        """Why not, in words."""
        return "; ".join(str(r) for r in self.unavailable.values()) or None

    def source_available(self, source_id: str | None) -> bool:
        """``None``: a record older than source ids, held while any source is down."""
        return source_id not in self.unavailable if source_id else self.available


def build(
    snapshots: SourceSnapshot | Mapping[str, SourceSnapshot], previous: DesiredState | None
) -> DesiredState:
    """The desired state for the latest snapshot of each source, given the state before."""
    if isinstance(snapshots, SourceSnapshot):
        snapshots = {snapshots.source: snapshots}
    before: Mapping[str, Desired] = previous.specs if previous is not None else {}
    unavailable = {sid: s.reason for sid, s in sorted(snapshots.items()) if not s.available}
    origins = sorted((key, sid, result) for sid, s in snapshots.items() if s.available
                     for key, result in s.origins.items())
    broken = frozenset(key for key, _, result in origins if not result.ok)
    carried = [d for d in before.values()
               if d.source in broken or d.source_id in unavailable]
    claims = _claims(origins, carried=carried)
    specs: dict[str, Desired] = {}
    conflicts: dict[str, tuple[str, ...]] = {}
    for name, defs in sorted(claims.items()):
        if len(defs) == 1:
            specs[name] = defs[0]
            continue
        conflicts[name] = tuple(sorted({d.source for d in defs}))
        if name in before:
            specs[name] = before[name]
    results = [result for _, _, result in origins]
    problems = [f for r in results for f in r.findings]
    problems += loader.check_duplicates(r for r in results if r.ok)
    problems += _carried_conflicts(claims, broken)
    seen = {key for key, _, _ in origins}
    kept_broken: frozenset[str] = frozenset()
    if unavailable and previous is not None:  # what an unavailable source had stays known
        problems += [p for p in previous.problems if p.file not in seen]
        kept_broken = frozenset(k for k in previous.broken_sources if k not in seen)
    defined: dict[str, int] = dict.fromkeys(snapshots, 0)
    for d in specs.values():
        defined[d.source_id] = defined.get(d.source_id, 0) + 1
    return DesiredState(
        specs=types.MappingProxyType(specs),
        broken_sources=broken | kept_broken,
        conflicts=types.MappingProxyType(conflicts),
        problems=tuple(dict.fromkeys(problems)),
        unavailable=types.MappingProxyType(unavailable),
        sources=frozenset(snapshots) | (previous.sources if previous else frozenset()),
        defined=types.MappingProxyType(defined),
    )


def _claims(
    origins: Iterable[tuple[str, str, loader.FileResult]], *, carried: Iterable[Desired]
) -> dict[str, list[Desired]]:
    """Every definition of every name: documents of valid origins, then carried-over specs."""
    claims: dict[str, list[Desired]] = {}
    for key, sid, result in origins:
        for doc in result.documents:
            found = Desired(
                name=doc.container.name,
                container=doc.container,
                source=key,
                spec_hash=model.spec_hash(doc.container),
                source_id=sid,
            )
            claims.setdefault(found.name, []).append(found)
    for old in carried:
        claims.setdefault(old.name, []).append(old)
    return claims


def _carried_conflicts(
    claims: Mapping[str, list[Desired]], broken: frozenset[str]
) -> list[loader.Finding]:
    """A finding for each definition in a valid origin of a name a broken one defined before.

    Duplicates among valid origins are ``loader.check_duplicates``'s to report.
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
