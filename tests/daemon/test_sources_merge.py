"""Two sources at once (the directory and, later, etcd): merge, conflicts, availability and
the prune guard are per source. Pure: desired.build and planner.plan, no I/O."""

from __future__ import annotations

from reconciler.core import desired, planner
from reconciler.core.observed import Observed, Status
from reconciler.manifest import loader, model

NOW = 100.0


def container(name: str, program: str = "/bin/serve") -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
        "spec": {"rootfs": "/r", "command": [program]}})


def snap(source: str, origins: dict[str, tuple[str, ...]] | None) -> desired.SourceSnapshot:
    """``origins``: origin key -> names it defines; None: the source is unavailable."""
    if origins is None:
        return desired.SourceSnapshot(source, False, f"{source} is unreachable", {})
    results = {}
    for key, names in origins.items():
        docs = tuple(loader.Loaded(container(n), key, 1 + 5 * i, i) for i, n in enumerate(names))
        results[key] = loader.FileResult(key, f"digest-{key}-{names}", docs, ())
    return desired.SourceSnapshot(source, True, None, results)


def on_host(state: desired.DesiredState, name: str) -> Observed:
    d = state.specs[name]
    return Observed(name=name, status=Status.RUNNING, pid=7, spec_hash=d.spec_hash,
                    source=d.source, created=NOW - 50, applied=d.manifest_json,
                    instance=f"{name}.1", generation=1, source_id=d.source_id)


def test_two_sources_merge_and_count_what_each_defines() -> None:
    got = desired.build({"directory": snap("directory", {"/m/a.yaml": ("a",)}),
                         "etcd": snap("etcd", {"/fleet/b": ("b", "c")})}, None)
    assert {n: (d.source, d.source_id) for n, d in got.specs.items()} == {
        "a": ("/m/a.yaml", "directory"), "b": ("/fleet/b", "etcd"), "c": ("/fleet/b", "etcd")}
    assert dict(got.defined) == {"directory": 1, "etcd": 2}
    assert got.available and got.sources == {"directory", "etcd"}


def test_a_name_in_two_sources_applies_neither_and_keeps_the_last_good() -> None:
    before = desired.build({"directory": snap("directory", {"/m/a.yaml": ("a",)}),
                            "etcd": snap("etcd", {})}, None)
    got = desired.build({"directory": snap("directory", {"/m/a.yaml": ("a",)}),
                         "etcd": snap("etcd", {"/fleet/a": ("a",)})}, before)
    assert got.conflicts == {"a": ("/fleet/a", "/m/a.yaml")}
    assert got.specs["a"] is before.specs["a"]  # the definition in force stays


def test_an_unavailable_source_keeps_its_objects_and_only_its_own() -> None:
    up = {"directory": snap("directory", {"/m/a.yaml": ("a",), "/m/x.yaml": ("x",)}),
          "etcd": snap("etcd", {"/fleet/b": ("b",)})}
    before = desired.build(up, None)
    host = {n: on_host(before, n) for n in ("a", "x", "b")}
    # etcd goes away; at the same moment x.yaml is removed from the directory
    down = desired.build({"directory": snap("directory", {"/m/a.yaml": ("a",)}),
                          "etcd": snap("etcd", None)}, before)
    assert not down.available and dict(down.unavailable) == {"etcd": "etcd is unreachable"}
    assert set(down.specs) == {"a", "b"}  # b carried over, x gone
    plan = planner.plan(down, host, {}, NOW)
    assert [(a.kind, a.name) for a in plan.actions] == [(planner.Kind.DELETE, "x")]
    b = down.specs["b"]
    assert b is before.specs["b"]
    # b vanishes from the host meanwhile: it is still desired, so it is made again
    plan = planner.plan(down, {n: o for n, o in host.items() if n != "b"}, {}, NOW)
    assert ("b", planner.Kind.CREATE) in [(a.name, a.kind) for a in plan.actions]


def test_the_prune_guard_is_per_source() -> None:
    before = desired.build({"directory": snap("directory", {"/m/a.yaml": ("a",)}),
                            "etcd": snap("etcd", {"/fleet/b": ("b",)})}, None)
    host = {n: on_host(before, n) for n in ("a", "b")}
    emptied = desired.build({"directory": snap("directory", {}),
                             "etcd": snap("etcd", {"/fleet/b": ("b",)})}, before)
    plan = planner.plan(emptied, host, {}, NOW)
    assert plan.actions == ()  # the directory defines none now: refused
    assert any("refusing to delete all 1 containers" in n for n in plan.notes)
    plan = planner.plan(emptied, host, {}, NOW, allow_empty=True)
    assert [(a.kind, a.name) for a in plan.actions] == [(planner.Kind.DELETE, "a")]
