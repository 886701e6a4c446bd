"""dependsOn, pure: ``core.dependencies`` (references, cycles, what a dependency waits for),
``desired.build``'s checks (unknown names and cycles are findings, and the object keeps
what it had), a Pod's ``reconciler.io/depends-on`` annotation, and ``planner.plan`` with
``ready``: creation waits, deletion goes in reverse order, ``restart: true`` restarts a
dependent whose dependency started again.

Documents go through ``loader.load_bytes`` and ``desired.build`` as the daemon's do;
``Observed`` values are built as the fake runtime records them (the applied manifest in
the annotations, which ``_dependent_left`` reads). No runtime at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from reconciler.core import dependencies, desired, planner
from reconciler.core.history import History
from reconciler.core.instance import (
    ANN_MANIFEST,
    ANN_POD,
    ANN_POD_ROLE,
    ANN_POD_SPEC,
    ANN_SANDBOX,
    ANN_SOURCE,
    ANN_SPEC_HASH,
)
from reconciler.core.observed import ExitStatus, Observed, Status
from reconciler.core.planner import Cause, Kind
from reconciler.manifest import loader, model

NOW = 1000.0
PODS = "/var/lib/r/pods"
ANN = dependencies.POD_ANNOTATION
ANN_PATH = f"metadata.annotations['{ANN}']"

Docs = Mapping[str, list[dict[str, Any]]]


# -- building values -------------------------------------------------------------------------


def ctr(name: str, *deps: dict[str, Any] | str, **spec: Any) -> dict[str, Any]:
    """A ``kind: Container`` document; each dep a name or a Dependency's fields."""
    depends = [{"name": d} if isinstance(d, str) else d for d in deps]
    return {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
            "spec": {"rootfs": "/nonexistent/rootfs", "command": [f"/bin/{name}"],
                     **({"dependsOn": depends} if depends else {}), **spec}}


def pod(name: str, depends_on: str | None = None, *, sidecar: bool = False,
        namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if depends_on is not None:
        meta["annotations"] = {ANN: depends_on}
    inits = [{"name": "prep", "image": "busybox:1.36", "command": ["/bin/prep"]}]
    if sidecar:
        inits.append({"name": "side", "image": "busybox:1.36", "restartPolicy": "Always"})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"initContainers": inits,
                     "containers": [{"name": "app", "image": "busybox:1.36"}]}}


def build(files: Docs, previous: desired.DesiredState | None = None) -> desired.DesiredState:
    origins = {}
    for file, docs in files.items():
        result = loader.load_bytes(yaml.safe_dump_all(docs).encode(), file=file, base_dir="/m")
        assert result.ok, result.findings
        origins[file] = result
    snap = desired.SourceSnapshot("directory", True, None, origins)
    return desired.build(snap, previous, pods_dir=PODS)


def said(state: desired.DesiredState) -> list[tuple[str, int | None, str, str]]:
    return [(f.file, f.line, f.path, f.message) for f in state.problems]


def seen(d: desired.Desired, status: Status = Status.RUNNING, *,
         sandbox: str | None = None) -> Observed:
    """``d`` as generation 1 on the host, as the fake runtime records it."""
    ann = {ANN_SOURCE: d.source, ANN_SPEC_HASH: d.spec_hash, ANN_MANIFEST: d.manifest_json}
    if d.pod is not None:
        ann |= {ANN_POD: d.pod.key, ANN_POD_ROLE: d.pod.role.value,
                ANN_POD_SPEC: d.pod.identity_doc or ""}
        if sandbox is not None:
            ann[ANN_SANDBOX] = sandbox
    return Observed(d.name, status, None if status is Status.STOPPED else 42, d.spec_hash,
                    d.source, NOW - 100, ann, d.manifest_json, instance=f"{d.name}.1",
                    generation=1)


def observe(state: desired.DesiredState, *names: str,
            status: Mapping[str, Status] | None = None) -> dict[str, Observed]:
    """The named units (every unit if none) running in place; a pod's in its sandbox."""
    status = status or {}
    out = {}
    for n in names or tuple(state.specs):
        d = state.specs[n]
        box = f"{d.pod.sandbox}.1@42" if d.pod is not None else None
        out[n] = seen(d, status.get(n, Status.RUNNING), sandbox=box)
    return out


def exit_(code: int = 0, at: float = NOW - 5) -> ExitStatus:
    return ExitStatus(code=code, signal=None, oom_killed=False, finished_at=at)


def ran(at: float) -> History:
    return History(started_at=at)


def plan(state: desired.DesiredState, observed: Mapping[str, Observed],
         history: Mapping[str, History] | None = None, *,
         ready: Mapping[str, bool] | None = None, allow_empty: bool = False) -> planner.Plan:
    return planner.plan(state, observed, history or {}, NOW, ready=ready,
                        allow_empty=allow_empty)


def kinds(p: planner.Plan) -> list[tuple[Kind, str]]:
    return [(a.kind, a.name) for a in p.actions]


def dep(name: str, condition: str = "Started", *, restart: bool = False) -> model.Dependency:
    return model.Dependency.model_validate({"name": name, "condition": condition,
                                            "restart": restart})


# -- core.dependencies: references and units ---------------------------------------------------


@pytest.mark.parametrize(("ref", "key"), [
    ("db", ("Container", "db")),
    ("pod/web", ("Pod", "default/web")),
    ("pod/infra/dns", ("Pod", "infra/dns")),
    ("pod", ("Container", "pod")),  # a Container named pod
])
def test_key_of(ref: str, key: dependencies.Key) -> None:
    assert dependencies.key_of(ref) == key


def test_units_a_pod_stands_for_its_app_containers_and_sidecars() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("web", sidecar=True),
                                 pod("dns", namespace="infra")]})
    specs = state.specs
    assert dependencies.units("db", specs) == ["db"]
    assert dependencies.units("pod/web", specs) == ["default_web_app", "default_web_side"]
    assert dependencies.units("pod/infra/dns", specs) == ["infra_dns_app"]
    assert dependencies.units("pod/dns", specs) == []  # default/dns: none
    assert dependencies.units("nothing", specs) == []
    assert dependencies.units("default_web_app", specs) == []  # a unit is no Container


CYCLES: list[tuple[str, dict[str, list[str]], list[list[str]]]] = [
    ("none", {"a": ["b"], "b": ["c"]}, []),
    ("empty", {}, []),
    ("itself", {"a": ["a"]}, [["a"]]),
    ("two", {"a": ["b"], "b": ["a"]}, [["a", "b"]]),
    ("three with a tail", {"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a", "d"]},
     [["a", "b", "c"]]),
    ("two apart", {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": ["a"]},
     [["a", "b"], ["c", "d"]]),
    ("diamond, no cycle", {"a": ["b", "c"], "b": ["d"], "c": ["d"]}, []),
    ("figure eight", {"a": ["b"], "b": ["a", "c"], "c": ["b"]}, [["a", "b", "c"]]),
]


@pytest.mark.parametrize(("graph", "expect"),
                         [pytest.param(g, e, id=i) for i, g, e in CYCLES])
def test_cycles(graph: dict[str, list[str]], expect: list[list[str]]) -> None:
    def k(n: str) -> dependencies.Key:
        return ("Container", n)

    got = dependencies.cycles({k(n): [k(m) for m in ms] for n, ms in graph.items()})
    assert got == [[k(n) for n in c] for c in expect]


def test_cycles_of_a_long_chain_do_not_hit_the_recursion_limit() -> None:
    """Tarjan is recursive here: a chain of 300 objects is well within Python's limit."""
    chain = {("Container", f"c{i:03}"): [("Container", f"c{i + 1:03}")] for i in range(300)}
    assert dependencies.cycles(chain) == []


# -- core.dependencies: waiting_for -------------------------------------------------------------


WORLD = build({"/m/a.yaml": [ctr("db"), ctr("job"), ctr("web"), pod("cache", sidecar=True)]})


@dataclass(frozen=True)
class Wait:
    id: str
    dep: model.Dependency
    status: Mapping[str, Status] = field(default_factory=dict)  # absent: not on the host
    history: Mapping[str, History] = field(default_factory=dict)
    ready: Mapping[str, bool] = field(default_factory=dict)
    expect: str | None = None


R, S = Status.RUNNING, Status.STOPPED
BOTH = ("default_cache_app", "default_cache_side")
WAITS = [
    Wait("not defined", dep("nope"), expect="waits for nope (not defined)"),
    Wait("started: not on the host", dep("db"), expect="waits for db to start"),
    Wait("started: running", dep("db"), {"db": R}),
    Wait("started: created only", dep("db"), {"db": Status.CREATED},
         expect="waits for db to start"),
    Wait("started: paused is not running", dep("db"), {"db": Status.PAUSED},
         expect="waits for db to start"),
    Wait("started: a failed create", dep("db"), history={"db": History(
        failures=2, last_error="runc create: no such file")},
         expect="dependency db failed to start: runc create: no such file"),
    Wait("started: crashing", dep("db"), {"db": S}, {"db": History(
        crashes=3, last_exit=exit_(2))}, expect="dependency db failed to start: it exits (code 2)"),
    Wait("started: exited 0 is waited for", dep("db"), {"db": S}, {"db": History(
        crashes=1, last_exit=exit_(0))}, expect="waits for db to start"),
    Wait("ready: running, not ready", dep("db", "Ready"), {"db": R}, ready={"db": False},
         expect="waits for db to be ready"),
    Wait("ready: running, unknown", dep("db", "Ready"), {"db": R},
         expect="waits for db to be ready"),
    Wait("ready: ready", dep("db", "Ready"), {"db": R}, ready={"db": True}),
    Wait("ready: ready but stopped", dep("db", "Ready"), {"db": S}, ready={"db": True},
         expect="waits for db to start"),
    Wait("completed: running", dep("job", "Completed"), {"job": R},
         expect="waits for job to complete"),
    Wait("completed: not there", dep("job", "Completed"), expect="waits for job to complete"),
    Wait("completed: exited 0", dep("job", "Completed"), {"job": S},
         {"job": History(last_exit=exit_(0))}),
    Wait("completed: exited 3", dep("job", "Completed"), {"job": S},
         {"job": History(last_exit=exit_(3))},
         expect="dependency job failed to complete (exit code 3)"),
    Wait("completed: stopped without an exit status", dep("job", "Completed"), {"job": S},
         expect="waits for job to complete"),
    Wait("pod started: every unit runs", dep("pod/cache"), dict.fromkeys(BOTH, R)),
    Wait("pod started: one is not running", dep("pod/cache"), {"default_cache_app": R},
         expect="waits for pod/cache to start"),
    Wait("pod ready: one is not ready", dep("pod/cache", "Ready"), dict.fromkeys(BOTH, R),
         ready={"default_cache_app": True, "default_cache_side": False},
         expect="waits for pod/cache to be ready"),
    Wait("pod ready: both", dep("pod/cache", "Ready"), dict.fromkeys(BOTH, R),
         ready=dict.fromkeys(BOTH, True)),
]


@pytest.mark.parametrize("case", WAITS, ids=lambda c: c.id)
def test_waiting_for(case: Wait) -> None:
    observed = {n: seen(WORLD.specs[n], st) for n, st in case.status.items()}
    got = dependencies.waiting_for(case.dep, WORLD.specs, observed, case.history, case.ready)
    assert got == case.expect


def test_restarted_since() -> None:
    specs = WORLD.specs
    hist = {"db": ran(NOW - 10), "default_cache_app": ran(NOW - 30),
            "default_cache_side": ran(NOW - 5)}
    rs = dependencies.restarted_since
    assert rs(dep("db", restart=True), specs, hist, NOW - 20)
    assert not rs(dep("db", restart=True), specs, hist, NOW - 10)  # not later: no
    assert not rs(dep("db", restart=True), specs, hist, NOW - 1)
    assert not rs(dep("db"), specs, hist, NOW - 20)  # restart: false
    assert not rs(dep("db", restart=True), specs, hist, None)  # never started itself
    assert not rs(dep("db", restart=True), specs, {}, NOW - 20)  # no history: never
    assert rs(dep("pod/cache", restart=True), specs, hist, NOW - 20)  # any unit of it
    assert not rs(dep("pod/cache", restart=True), specs, hist, NOW - 2)
    assert not rs(dep("nope", restart=True), specs, hist, NOW - 20)


# -- a Pod's annotation --------------------------------------------------------------------


def test_pod_annotation_becomes_the_sandboxs_depends_on() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("cache"), pod(
        "web", " db:Ready , pod/cache:Started,, pod/cache:Completed ,")]})
    assert state.problems == ()
    box = state.specs["default_web"].container.spec.depends_on
    assert [(d.name, d.condition, d.restart) for d in box] == [
        ("db", "Ready", False), ("pod/cache", "Started", False),
        ("pod/cache", "Completed", False)]
    for name in ("default_web_app", "default_web_prep"):  # the sandbox alone waits
        assert state.specs[name].container.spec.depends_on == []


def test_pod_annotation_default_condition() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("web", "db")]})
    (d,) = state.specs["default_web"].container.spec.depends_on
    assert (d.name, d.condition, d.restart) == ("db", "Started", False)


@pytest.mark.parametrize(("text", "message"), [
    ("db:Healthy", "'db:Healthy': the condition is Started, Ready or Completed"),
    ("db:Ready:again", "'db:Ready:again': restart is not supported on a Pod's dependencies"
                       " yet (give NAME or NAME:CONDITION)"),
    ("db:Ready:restart", "'db:Ready:restart': restart is not supported on a Pod's"
                         " dependencies yet (give NAME or NAME:CONDITION)"),
    ("db:ready", "'db:ready': the condition is Started, Ready or Completed"),
])
def test_pod_annotation_mistakes_are_findings_at_the_annotation(text: str,
                                                               message: str) -> None:
    state = build({"/m/a.yaml": [pod("web", text), ctr("db")]})
    assert said(state) == [("/m/a.yaml", 1, ANN_PATH, message)]
    assert not any(n.startswith("default_web") for n in state.specs)
    assert "default/web" in state.held


BAD_NAMES = ["DB", "a/b:Ready", ":Ready"]


@pytest.mark.parametrize("text", BAD_NAMES)
def test_pod_annotation_bad_names_are_findings(text: str) -> None:
    state = build({"/m/a.yaml": [pod("web", text)]})
    ((file, _, _, message),) = said(state)
    assert file == "/m/a.yaml"
    assert "is not a Container's name, pod/NAME or pod/NAMESPACE/NAME" in message
    assert not any(n.startswith("default_web") for n in state.specs)


@pytest.mark.parametrize("text", BAD_NAMES)
def test_pod_annotation_bad_names_are_findings_at_the_annotation(text: str) -> None:
    state = build({"/m/a.yaml": [pod("web", text)]})
    assert [f[2] for f in said(state)] == [ANN_PATH]


# -- desired.build: names and cycles -------------------------------------------------------


def test_unknown_name_is_a_finding_at_its_index() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db", "nope")]})
    assert said(state) == [("/m/a.yaml", 10, "spec.dependsOn[1].name",
                            "dependsOn: 'nope' is not defined in any manifest; the object"
                            " keeps what it had")]
    assert "web" not in state.specs  # nothing to keep: nothing made
    assert "db" in state.specs


def test_unknown_name_keeps_the_previous_desired() -> None:
    first = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    then = build({"/m/a.yaml": [ctr("db"), ctr("web", "db", command=["/bin/v2"]),
                                ctr("web2", "db")]}, first)
    assert then.problems == ()
    broken = build({"/m/a.yaml": [ctr("db"), ctr("web", "db", "pod/gone", command=["/bin/v3"])]},
                   then)
    assert [p[2:] for p in said(broken)] == [(
        "spec.dependsOn[1].name", "dependsOn: 'pod/gone' is not defined in any manifest; the"
        " object keeps what it had")]
    assert broken.specs["web"] == then.specs["web"]  # the v2 it had
    assert "web2" not in broken.specs  # gone from the file: gone


def test_a_reference_to_a_pod_checks_the_namespace() -> None:
    ok = build({"/m/a.yaml": [pod("dns", namespace="infra"), ctr("web", "pod/infra/dns")]})
    assert ok.problems == ()
    bad = build({"/m/a.yaml": [pod("dns", namespace="infra"), ctr("web", "pod/dns")]})
    assert [p[3] for p in said(bad)] == [
        "dependsOn: 'pod/dns' is not defined in any manifest; the object keeps what it had"]


def test_pod_annotation_naming_nothing_is_a_finding_at_the_annotation() -> None:
    state = build({"/m/a.yaml": [pod("web", "db:Ready")]})
    assert said(state) == [("/m/a.yaml", 1, ANN_PATH, "dependsOn: 'db' is not defined in any"
                            " manifest; the object keeps what it had")]
    assert not any(n.startswith("default_web") for n in state.specs)
    assert state.held["default/web"] == "dependsOn: 'db' is not defined in any manifest"


def test_a_cycle_is_a_finding_on_each_member_naming_the_files() -> None:
    state = build({"/m/a.yaml": [ctr("a", "b"), ctr("free")],
                   "/m/b.yaml": [ctr("b", "c"), ctr("c", "a"), ctr("tail", "a")]})
    text = "dependsOn: a cycle (a -> b -> c -> a; files: /m/a.yaml, /m/b.yaml); the object" \
           " keeps what it had"
    assert sorted(said(state)) == [("/m/a.yaml", 1, "spec.dependsOn", text),
                                   ("/m/b.yaml", 1, "spec.dependsOn", text),
                                   ("/m/b.yaml", 12, "spec.dependsOn", text)]
    assert sorted(state.specs) == ["free", "tail"]  # tail waits for a, which is not made


def test_a_cycle_through_a_pod_names_the_pod() -> None:
    state = build({"/m/web.yaml": [pod("web", "db")], "/m/db.yaml": [ctr("db", "pod/web")]})
    text = "dependsOn: a cycle (db -> default/web -> db; files: /m/db.yaml, /m/web.yaml)"
    assert sorted((f[0], f[2]) for f in said(state)) == [("/m/db.yaml", "spec.dependsOn"),
                                                         ("/m/web.yaml", ANN_PATH)]
    assert all(f[3].startswith(text) for f in said(state))
    assert state.specs == {}


def test_depending_on_itself_is_a_cycle() -> None:
    state = build({"/m/a.yaml": [ctr("a", "a")]})
    assert [f[3] for f in said(state)] == [
        "dependsOn: a cycle (a -> a; files: /m/a.yaml); the object keeps what it had"]


def test_a_cycle_made_by_an_edit_keeps_what_ran() -> None:
    first = build({"/m/a.yaml": [ctr("a", "b"), ctr("b")]})
    cyc = build({"/m/a.yaml": [ctr("a", "b"), ctr("b", "a")]}, first)
    assert len(cyc.problems) == 2
    assert cyc.specs == first.specs


def test_unknown_and_cycle_on_one_object_say_the_unknown_name() -> None:
    state = build({"/m/a.yaml": [ctr("a", "b", "zz"), ctr("b", "a")]})
    got = {f[2]: f[3] for f in said(state)}
    assert got["spec.dependsOn[1].name"].startswith("dependsOn: 'zz' is not defined")
    assert got["spec.dependsOn"].startswith("dependsOn: a cycle (a -> b -> a")


# -- the plan: creation waits ---------------------------------------------------------------


def test_creation_waits_for_a_dependency_to_start() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    p = plan(state, {})
    assert kinds(p) == [(Kind.CREATE, "db")]
    assert p.blocked == {"web": "waits for db to start"}
    assert "web: waits for db to start" in p.notes
    p = plan(state, observe(state, "db"))
    assert kinds(p) == [(Kind.CREATE, "web")]
    assert p.blocked == {}


def test_creation_waits_for_ready() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", {"name": "db", "condition": "Ready"})]})
    running = observe(state, "db")
    assert plan(state, running).blocked == {"web": "waits for db to be ready"}
    assert plan(state, running, ready={"db": False}).blocked == {
        "web": "waits for db to be ready"}
    assert kinds(plan(state, running, ready={"db": True})) == [(Kind.CREATE, "web")]


def test_creation_waits_for_completion() -> None:
    state = build({"/m/a.yaml": [ctr("migrate", restartPolicy="Never"),
                                 ctr("web", {"name": "migrate", "condition": "Completed"})]})
    stopped = observe(state, "migrate", status={"migrate": Status.STOPPED})
    p = plan(state, observe(state, "migrate"))
    assert p.blocked == {"web": "waits for migrate to complete"}
    p = plan(state, stopped, {"migrate": History(last_exit=exit_(1))})
    assert p.blocked == {"web": "dependency migrate failed to complete (exit code 1)"}
    assert p.actions == ()
    p = plan(state, stopped, {"migrate": History(last_exit=exit_(0))})
    assert kinds(p) == [(Kind.CREATE, "web")]


def test_a_failed_dependency_says_failed_to_start() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    hist = {"db": History(spec_hash=state.specs["db"].spec_hash, failures=1, failed_at=NOW - 1,
                          last_error="runc create: exec format error")}
    p = plan(state, {}, hist)
    assert p.blocked["web"] == "dependency db failed to start: runc create: exec format error"
    assert "web: dependency db failed to start: runc create: exec format error" in p.notes
    crashing = {"db": History(crashes=4, last_exit=exit_(137), started_at=NOW - 30)}
    p = plan(state, observe(state, "db", status={"db": Status.STOPPED}), crashing)
    assert p.blocked["web"] == "dependency db failed to start: it exits (code 137)"


def test_every_dependency_is_waited_for_the_first_unmet_named() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("cache"), ctr("web", "db", {
        "name": "cache", "condition": "Ready"})]})
    assert plan(state, observe(state, "cache")).blocked["web"] == "waits for db to start"
    p = plan(state, observe(state, "cache", "db"))
    assert p.blocked["web"] == "waits for cache to be ready"
    assert kinds(plan(state, observe(state, "cache", "db"), ready={"cache": True})) == [
        (Kind.CREATE, "web")]


def test_a_stopped_dependent_is_not_restarted_until_its_dependency_runs() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    obs = observe(state, status={"db": Status.STOPPED, "web": Status.STOPPED})
    hist = {"db": History(crashes=1, last_exit=exit_(0)), "web": History(
        crashes=1, last_exit=exit_(1))}
    p = plan(state, obs, hist)
    assert kinds(p) == [(Kind.RESTART, "db")]
    assert p.blocked == {"web": "waits for db to start"}


def test_a_running_dependent_is_left_alone_when_its_dependency_stops() -> None:
    state = build({"/m/a.yaml": [ctr("db", restartPolicy="Never"), ctr("web", "db")]})
    obs = observe(state, status={"db": Status.STOPPED})
    p = plan(state, obs, {"db": History(last_exit=exit_(1))})
    assert p.actions == ()
    assert p.blocked == {}  # web runs: nothing to hold


def test_a_pod_waits_in_its_sandbox() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("web", "db:Ready")]})
    p = plan(state, {})
    assert kinds(p) == [(Kind.CREATE, "db")]
    assert p.blocked == {"default_web": "waits for db to start"}
    assert "default_web_prep: waits for its pod sandbox to run" in p.notes
    p = plan(state, observe(state, "db"), ready={"db": True})
    assert kinds(p) == [(Kind.CREATE, "default_web")]


def test_a_container_waits_for_a_pod_to_be_ready() -> None:
    state = build({"/m/a.yaml": [pod("cache", sidecar=True),
                                 ctr("web", {"name": "pod/cache", "condition": "Ready"})]})
    obs = observe(state, status={"default_cache_prep": Status.STOPPED})
    del obs["web"]
    hist = {"default_cache_prep": History(last_exit=exit_(0))}
    p = plan(state, obs, hist, ready={"default_cache_app": True})
    assert p.blocked == {"web": "waits for pod/cache to be ready"}
    p = plan(state, obs, hist, ready={"default_cache_app": True, "default_cache_side": True})
    assert kinds(p) == [(Kind.CREATE, "web")]


def test_an_undefined_dependency_of_a_kept_object_blocks_it() -> None:
    """web keeps its previous Desired (naming db); with db gone from the manifests, web is
    not made again on the host until db is back."""
    first = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    later = build({"/m/a.yaml": [ctr("web", "db")]}, first)
    assert "web" in later.specs
    p = plan(later, {})
    assert p.blocked == {"web": "waits for db (not defined)"}
    assert p.actions == ()


def test_a_desired_stopped_object_waits_for_nothing() -> None:
    state = build({"/m/a.yaml": [ctr("db", state="Stopped"),
                                 ctr("web", "db", state="Stopped")]})
    p = plan(state, {})
    assert p.actions == ()
    assert p.blocked == {}


# -- the plan: live changes of dependsOn ------------------------------------------------------


def test_adding_depends_on_to_a_running_object_is_a_live_update() -> None:
    before = build({"/m/a.yaml": [ctr("db"), ctr("web")]})
    after = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]}, before)
    p = plan(after, observe(before))
    assert kinds(p) == [(Kind.UPDATE, "web")]


# -- the plan: deletion in reverse order -----------------------------------------------------


def test_deletion_goes_in_reverse_order() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db"), ctr("keep")]})
    gone = build({"/m/a.yaml": [ctr("keep")]}, state)
    obs = observe(state)
    p = plan(gone, obs)
    assert kinds(p) == [(Kind.DELETE, "web")]
    assert "db: delete waits for web (it depends on this)" in p.notes
    del obs["web"]
    assert kinds(plan(gone, obs)) == [(Kind.DELETE, "db")]


def test_a_dependency_deleted_alone_waits_for_its_dependent() -> None:
    """web still runs and depends on db (keeping its last good spec, with a finding): db's
    delete waits for it, in reverse order, whether web goes later or not at all."""
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    later = build({"/m/a.yaml": [ctr("web", "db")]}, state)
    got = plan(later, observe(state))
    assert kinds(got) == []
    assert "db: delete waits for web (it depends on this)" in got.notes


def test_deletion_of_a_chain() -> None:
    state = build({"/m/a.yaml": [ctr("a"), ctr("b", "a"), ctr("c", "b"), ctr("keep")]})
    gone = build({"/m/a.yaml": [ctr("keep")]}, state)
    obs = observe(state)
    order = []
    for _ in range(3):
        p = plan(gone, obs)
        assert len(p.actions) == 1
        order.append(p.actions[0].name)
        del obs[p.actions[0].name]
    assert order == ["c", "b", "a"]


def test_a_dependency_pod_waits_for_a_deleted_dependent_container() -> None:
    state = build({"/m/a.yaml": [pod("cache"), ctr("web", "pod/cache"), ctr("keep")]})
    gone = build({"/m/a.yaml": [ctr("keep")]}, state)
    obs = observe(state, status={"default_cache_prep": Status.STOPPED})
    p = plan(gone, obs)
    assert kinds(p) == [(Kind.DELETE, "web")]
    assert "default_cache_app: delete waits for web (it depends on this)" in p.notes
    del obs["web"]
    assert {a.name for a in plan(gone, obs).actions} == {"default_cache_app",
                                                         "default_cache_prep"}


def test_a_dependency_waits_for_a_deleted_dependent_pod() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("web", "db"), ctr("keep")]})
    gone = build({"/m/a.yaml": [ctr("keep")]}, state)
    obs = observe(state)
    p = plan(gone, obs)
    assert (Kind.DELETE, "db") not in kinds(p)
    assert "db: delete waits for default/web (it depends on this)" in p.notes
    for name in ("default_web_app", "default_web_prep"):  # the pod goes in its own order
        del obs[name]
    assert kinds(plan(gone, obs)) == [(Kind.DELETE, "default_web")]
    del obs["default_web"]
    assert kinds(plan(gone, obs)) == [(Kind.DELETE, "db")]


def test_deleting_everything_of_an_emptied_source_is_still_refused() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", "db")]})
    empty = build({}, state)
    p = plan(empty, observe(state))
    assert p.actions == ()
    assert any("refusing to delete all 2 containers" in w for w in p.warnings)
    p = plan(empty, observe(state), allow_empty=True)
    assert kinds(p) == [(Kind.DELETE, "web")]


# -- the plan: restart: true -----------------------------------------------------------------


def restart_world(restart: bool = True, condition: str = "Started"
                  ) -> tuple[desired.DesiredState, dict[str, Observed]]:
    state = build({"/m/a.yaml": [ctr("db"), ctr("web", {"name": "db", "condition": condition,
                                                         "restart": restart})]})
    return state, observe(state)


def test_restart_when_the_dependency_started_again() -> None:
    state, obs = restart_world()
    p = plan(state, obs, {"db": ran(NOW - 10), "web": ran(NOW - 50)})
    assert kinds(p) == [(Kind.RESTART, "web")]
    (action,) = p.actions
    assert action.cause is Cause.DEPENDENCY
    assert action.reason == "its dependency db was started again (restart: true)"
    stop, delete, create, start = action.steps
    assert isinstance(stop, planner.Stop) and stop.instance == "web.1"
    assert isinstance(delete, planner.Delete) and delete.keep_logs
    assert isinstance(create, planner.Create) and create.instance == "web.1"  # same object
    assert isinstance(start, planner.Start)


@pytest.mark.parametrize(("restart", "hist", "condition", "ready"), [
    pytest.param(False, {"db": ran(NOW - 10), "web": ran(NOW - 50)}, "Started", {},
                 id="restart false"),
    pytest.param(True, {"db": ran(NOW - 50), "web": ran(NOW - 10)}, "Started", {},
                 id="the dependent started later"),
    pytest.param(True, {"db": ran(NOW - 10), "web": ran(NOW - 10)}, "Started", {},
                 id="at the same time"),
    pytest.param(True, {"db": ran(NOW - 10)}, "Started", {}, id="the dependent never started"),
    pytest.param(True, {"db": ran(NOW - 10), "web": ran(NOW - 50)}, "Ready", {"db": False},
                 id="the dependency is not ready yet"),
])
def test_no_restart(restart: bool, hist: dict[str, History], condition: str,
                    ready: dict[str, bool]) -> None:
    state, obs = restart_world(restart, condition)
    assert plan(state, obs, hist, ready=ready).actions == ()


def test_restart_waits_for_ready_then_happens() -> None:
    state, obs = restart_world(condition="Ready")
    hist = {"db": ran(NOW - 10), "web": ran(NOW - 50)}
    assert kinds(plan(state, obs, hist, ready={"db": True})) == [(Kind.RESTART, "web")]


def test_restart_waits_while_the_dependency_is_down() -> None:
    state, obs = restart_world()
    obs["db"] = seen(state.specs["db"], Status.STOPPED)
    hist = {"db": History(started_at=NOW - 10, crashes=1, last_exit=exit_(1, NOW - 8)),
            "web": ran(NOW - 50)}
    assert kinds(plan(state, obs, hist)) == [(Kind.RESTART, "db")]


def test_after_the_restart_nothing_more() -> None:
    state, obs = restart_world()
    p = plan(state, obs, {"db": ran(NOW - 10), "web": ran(NOW - 1)})
    assert p.actions == ()


def test_restart_of_a_pod_dependency_restarts_a_dependent() -> None:
    state = build({"/m/a.yaml": [pod("cache"), ctr("web", {"name": "pod/cache",
                                                           "restart": True})]})
    obs = observe(state, status={"default_cache_prep": Status.STOPPED})
    hist = {"default_cache_prep": History(last_exit=exit_(0)),
            "default_cache_app": ran(NOW - 10), "web": ran(NOW - 50)}
    p = plan(state, obs, hist)
    assert kinds(p) == [(Kind.RESTART, "web")]
    assert p.actions[0].reason == "its dependency pod/cache was started again (restart: true)"


def test_a_dependent_pods_sandbox_is_not_stopped_under_its_containers() -> None:
    state = build({"/m/a.yaml": [ctr("db"), pod("web", "db:Started:restart")]})
    obs = observe(state, status={"default_web_prep": Status.STOPPED})
    hist = {"db": ran(NOW - 10), "default_web": ran(NOW - 50),
            "default_web_app": ran(NOW - 49), "default_web_prep": History(last_exit=exit_(0))}
    p = plan(state, obs, hist)
    box = [a for a in p.actions if a.name == "default_web"]
    assert not any(isinstance(s, planner.Stop | planner.Delete) for a in box for s in a.steps)


# -- the planner's property: what a plan produced plans nothing -------------------------------


def test_a_world_where_every_dependency_holds_plans_nothing() -> None:
    state = build({"/m/a.yaml": [ctr("db"), ctr("cache"), ctr(
        "web", {"name": "db", "condition": "Ready", "restart": True}, "cache")]})
    hist = {"db": ran(NOW - 60), "cache": ran(NOW - 60), "web": ran(NOW - 30)}
    p = plan(state, observe(state), hist, ready=dict.fromkeys(state.specs, True))
    assert (p.actions, p.notes, p.blocked, p.wake_at) == ((), (), {}, None)
