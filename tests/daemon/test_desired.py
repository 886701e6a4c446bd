"""desired.build, table-driven: snapshots of files in, desired states out; no I/O.

Each case gives the previous state (as ``name: (file, program)``), the files of the new
snapshot (a file holds container names, each ``name`` or ``name@program``, or is BROKEN),
and the expected specs, conflicts and broken files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.core import desired
from reconciler.manifest import loader, model

BROKEN = ("<broken>",)
Files = dict[str, tuple[str, ...]]
Specs = dict[str, tuple[str, str]]  # name -> (file, program)


def container(name: str, program: str) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": name},
        "spec": {"rootfs": "/nonexistent/rootfs", "command": [program]},
    })


def result(file: str, names: tuple[str, ...]) -> loader.FileResult:
    if names == BROKEN:
        finding = loader.Finding(file, 3, "spec.command", "must be a list")
        return loader.FileResult(file, f"digest-{file}", (), (finding,))
    docs = []
    for index, spec in enumerate(names):
        name, _, program = spec.partition("@")
        made = container(name, program or "/bin/true")
        docs.append(loader.Loaded(made, file, 1 + 5 * index, index))
    return loader.FileResult(file, f"digest-{file}-{names}", tuple(docs), ())


def snapshot(files: Files | None) -> desired.SourceSnapshot:
    """A snapshot of ``files``; None: the directory is unavailable."""
    return desired.SourceSnapshot(
        source="directory",
        available=files is not None,
        reason=None if files is not None else "manifests directory /m does not exist",
        origins={f: result(f, names) for f, names in (files or {}).items()},
    )


def state(specs: Specs | None) -> desired.DesiredState | None:
    """A previous state made of ``specs``; None: there is none (the daemon just started)."""
    if specs is None:
        return None
    made = {}
    for name, (file, program) in specs.items():
        c = container(name, program)
        made[name] = desired.Desired(name, c, file, model.spec_hash(c))
    return desired.DesiredState(made, frozenset(), {}, ())


def summary(got: desired.DesiredState) -> Specs:
    return {
        name: (d.source, (d.container.spec.command or [""])[0]) for name, d in got.specs.items()
    }


@dataclass(frozen=True)
class Case:
    id: str
    previous: Specs | None
    files: Files | None
    specs: Specs
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    broken: frozenset[str] = frozenset()
    problems: int = 0


A, B = "/m/a.yaml", "/m/b.yaml"
V1, V2, V3 = "/bin/v1", "/bin/v2", "/bin/v3"
T = "/bin/true"

CASES = [
    Case("fresh", None, {A: ("web",), B: ("db",)}, {"web": (A, T), "db": (B, T)}),
    Case("a file removed drops its containers",
         {"web": (A, T), "db": (B, T)}, {A: ("web",)}, {"web": (A, T)}),
    Case("a changed file changes its containers",
         {"web": (A, V1)}, {A: ("web@/bin/v2",)}, {"web": (A, V2)}),
    Case("a broken file keeps what it defined",
         {"web": (A, V1), "db": (B, T)}, {A: BROKEN, B: ("db",)},
         {"web": (A, V1), "db": (B, T)}, broken=frozenset({A}), problems=1),
    Case("a broken file at start defines nothing",
         None, {A: BROKEN}, {}, broken=frozenset({A}), problems=1),
    Case("two files, one name: the previous definition stays",
         {"web": (A, V1)}, {A: ("web@/bin/v2",), B: ("web@/bin/v3",)},
         {"web": (A, V1)}, conflicts={"web": (A, B)}, problems=1),
    Case("two files, one name, nothing before: nothing applied",
         None, {A: ("web",), B: ("web",)}, {}, conflicts={"web": (A, B)}, problems=1),
    Case("one file, one name twice",
         None, {A: ("web", "web@/bin/v2")}, {}, conflicts={"web": (A,)}, problems=1),
    Case("a name moved out of a file that broke: a conflict, the old one stays",
         {"web": (A, V1)}, {A: BROKEN, B: ("web@/bin/v2",)},
         {"web": (A, V1)}, conflicts={"web": (A, B)}, broken=frozenset({A}), problems=2),
    Case("a renamed file: same spec, new source",
         {"web": (A, V1)}, {B: ("web@/bin/v1",)}, {"web": (B, V1)}),
    Case("a conflict fixed: the remaining definition applies",
         {"web": (A, V1)}, {B: ("web@/bin/v3",)}, {"web": (B, V3)}),
    Case("unavailable: everything stays", {"web": (A, V1), "db": (B, T)}, None,
         {"web": (A, V1), "db": (B, T)}),
    Case("unavailable at start: nothing", None, None, {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_build(case: Case) -> None:
    snap = snapshot(case.files)
    got = desired.build(snap, state(case.previous))
    assert summary(got) == case.specs
    assert dict(got.conflicts) == case.conflicts
    assert got.broken_sources == case.broken
    assert len(got.problems) == case.problems, got.problems
    assert got.available == snap.available
    assert got.reason == snap.reason
    for d in got.specs.values():
        assert d.name == d.container.name
        assert d.spec_hash == model.spec_hash(d.container)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_build_is_a_fixpoint(case: Case) -> None:
    """The same snapshot again, with the state it made as previous, changes nothing."""
    snap = snapshot(case.files)
    once = desired.build(snap, state(case.previous))
    assert desired.build(snap, once) == once


def test_problems_name_the_files_in_conflict() -> None:
    got = desired.build(snapshot({A: BROKEN, B: ("web@/bin/v2",)}), state({"web": (A, V1)}))
    messages = [str(p) for p in got.problems]
    assert messages[0] == f"{A}:3: spec.command: must be a list"
    assert messages[1].startswith(f'{B}: metadata.name: container "web" was defined in {A}')


def test_duplicates_are_reported_like_validate_does() -> None:
    got = desired.build(snapshot({A: ("web",), B: ("web",)}), None)
    assert [str(p) for p in got.problems] == [
        f'{B}:1: metadata.name: container "web" is already defined in {A}:1'
    ]


def test_a_rename_changes_only_the_source() -> None:
    before = desired.build(snapshot({A: ("web",)}), None)
    after = desired.build(snapshot({B: ("web",)}), before)
    assert after != before
    assert after.specs["web"].spec_hash == before.specs["web"].spec_hash
    assert after.specs["web"].container == before.specs["web"].container
    assert (before.specs["web"].source, after.specs["web"].source) == (A, B)


def test_unavailable_keeps_the_previous_problems() -> None:
    before = desired.build(snapshot({A: BROKEN, B: ("db",)}), None)
    after = desired.build(snapshot(None), before)
    assert not after.available
    assert after.reason == "manifests directory /m does not exist"
    assert (after.specs, after.broken_sources, after.problems) == (
        before.specs, before.broken_sources, before.problems,
    )
