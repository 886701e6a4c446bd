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
  ``Desired`` it defined, and the planner deletes nothing that source defined; a source
  unavailable from the start defines what its offline copy holds (etcd's last good state,
  for a device that boots without network), and still deletes nothing.

The planner must also leave alone a container whose name is in ``conflicts`` but not in
``specs`` (a conflict seen before any definition was applied): it is contested, not gone.
Decide on actions by ``spec_hash`` (and the live fields of ``container``), never by
comparing whole states.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.core import dependencies, pods
from reconciler.manifest import loader, model, network

if TYPE_CHECKING:
    from reconciler.manifest import kube


@dataclass(frozen=True)
class SourceSnapshot:
    """One source at one moment: its origins (origin key -> what it holds), or why it is
    unavailable. An unavailable snapshot's ``origins`` are the last good state the source
    kept offline (etcd's copy in the state dir), used only while nothing of that source is
    known yet (a daemon booted without network); otherwise they say nothing."""

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
    pod: pods.PodInfo | None = None  # a unit of a v1 Pod (its sandbox or a container)

    @property
    def key(self) -> tuple[str, str]:
        """The object that defined it: (kind, name), ``("Pod", "default/web")``."""
        return ("Pod", self.pod.key) if self.pod is not None else ("Container", self.name)

    @functools.cached_property
    def manifest_json(self) -> str:
        """The manifest as the runtime records it (``applied.json``)."""
        return model.canonical_json(self.container)


@dataclass(frozen=True)
class ConfigObject:
    """A ConfigMap or Secret as a source defines it: data pods take env and files from."""

    document: kube.ConfigMap | kube.Secret | network.Network
    source: str
    source_id: str = "directory"

    @property
    def key(self) -> tuple[str, str]:
        return self.document.kind, self.document.key


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
    config: Mapping[tuple[str, str], ConfigObject] = field(default_factory=dict)
    held: Mapping[str, str] = field(default_factory=dict)  # pod key -> why it is not made
    networks: Mapping[str, network.Network] = field(default_factory=dict)  # the default too
    # objects (kind, key) a policy with ``enforce: evict`` forbids: deleted, not kept
    evicted: frozenset[tuple[str, str]] = frozenset()

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


DEFAULT_PODS_DIR = "/var/lib/reconciler/pods"


def build(
    snapshots: SourceSnapshot | Mapping[str, SourceSnapshot], previous: DesiredState | None,
    *, pods_dir: str = DEFAULT_PODS_DIR, default_subnet: str = network.DEFAULT_SUBNET,
) -> DesiredState:
    """The desired state for the latest snapshot of each source, given the state before.
    ``pods_dir``: where pods' volumes live on the host (the runtime's, under its state dir);
    ``default_subnet``: the default network's, unless a manifest defines ``default``.
    """
    if isinstance(snapshots, SourceSnapshot):
        snapshots = {snapshots.source: snapshots}
    before: Mapping[str, Desired] = previous.specs if previous is not None else {}
    before_config = previous.config if previous is not None else {}
    unavailable = {sid: s.reason for sid, s in sorted(snapshots.items()) if not s.available}
    known = previous.sources if previous is not None else frozenset()
    origins = sorted((key, sid, result) for sid, s in snapshots.items()
                     if s.available or sid not in known  # not known: its offline copy
                     for key, result in s.origins.items())
    broken = frozenset(key for key, _, result in origins if not result.ok)
    evicted = frozenset(f.evicts for _, _, result in origins for f in result.findings
                        if f.evicts is not None)

    def held(source: str, source_id: str) -> bool:
        return source in broken or source_id in unavailable

    claims = _claims(origins,
                     units=[d for d in before.values()
                            if held(d.source, d.source_id) and d.key not in evicted],
                     config=[c for c in before_config.values() if held(c.source, c.source_id)])
    chosen: dict[tuple[str, str], _Claim] = {}
    conflicts: dict[str, tuple[str, ...]] = {}
    for okey, defs in sorted(claims.items()):
        if len(defs) == 1:
            chosen[okey] = defs[0]
            continue
        conflicts[_conflict_name(okey)] = tuple(sorted({d.source for d in defs}))
        earlier = _earlier(okey, before, before_config)
        if earlier is not None:
            chosen[okey] = earlier
    config = {k: c.config for k, c in chosen.items() if c.config is not None}
    for k, c in chosen.items():
        if c.doc is not None and c.doc.document.kind in (*pods.CONFIG_KINDS, "Network"):
            config[k] = ConfigObject(typing.cast("kube.ConfigMap | kube.Secret", c.doc.document),
                                     c.source, c.source_id)
    problems: list[loader.Finding] = []
    networks = _networks(config, default_subnet, problems,
                         previous.networks if previous is not None else {})
    from_manifests = {k[1] for k in config if k[0] == "Network"} & set(networks)
    documents = {k: c.document for k, c in config.items()
                 if not isinstance(c.document, network.Network)}
    specs: dict[str, Desired] = {}
    unmade: dict[str, str] = {}
    for okey, c in chosen.items():
        made = _units(okey, c, before, documents, pods_dir, problems, unmade)
        if made and c.doc is not None:
            made = _attached(okey, c.doc, made, networks, from_manifests, before, problems,
                             unmade)
        for unit in made:
            specs[unit.name] = unit
    specs = _dependencies(chosen, specs, before, problems, unmade)
    results = [result for _, _, result in origins]
    problems = [f for r in results for f in r.findings] + problems
    problems += loader.check_duplicates(r for r in results if r.ok)
    problems += _carried_conflicts(claims, broken)
    seen = {key for key, _, _ in origins}
    kept_broken: frozenset[str] = frozenset()
    if unavailable and previous is not None:  # what an unavailable source had stays known
        problems += [p for p in previous.problems if p.file not in seen]
        kept_broken = frozenset(k for k in previous.broken_sources if k not in seen)
    defined: dict[str, int] = dict.fromkeys(snapshots, 0)
    for sid in [d.source_id for d in specs.values()] + [c.source_id for c in config.values()]:
        defined[sid] = defined.get(sid, 0) + 1
    return DesiredState(
        specs=types.MappingProxyType(dict(sorted(specs.items()))),
        broken_sources=broken | kept_broken,
        conflicts=types.MappingProxyType(conflicts),
        problems=tuple(dict.fromkeys(problems)),
        unavailable=types.MappingProxyType(unavailable),
        sources=frozenset(snapshots) | (previous.sources if previous else frozenset()),
        defined=types.MappingProxyType(defined),
        config=types.MappingProxyType(config),
        held=types.MappingProxyType(unmade),
        networks=types.MappingProxyType(networks),
        evicted=evicted,
    )


def _networks(config: Mapping[tuple[str, str], ConfigObject], default_subnet: str,
              problems: list[loader.Finding], before: Mapping[str, network.Network]
              ) -> dict[str, network.Network]:
    """The networks in force: the manifests', the default one, none whose subnets overlap
    another's (a finding on the later one: ``default`` first, then those in force
    before, then by name, so a new network never displaces one in use). A network
    in force before that a change makes overlap keeps its previous definition
    (keep-last-good), if that one still fits."""
    defined = {k[1]: c for k, c in config.items() if k[0] == "Network"}
    nets = {name: typing.cast("network.Network", c.document) for name, c in defined.items()}
    nets.setdefault(network.DEFAULT_NAME, network.default_network(default_subnet))
    refused = network.overlapping(list(nets.values()), first=before)
    for name, why in refused.items():
        del nets[name]
        if name in defined:
            what = ("is not changed (its previous definition stays in force)"
                    if name in before else "is not made")
            problems.append(loader.Finding(defined[name].source, None, "spec.subnets",
                                           f"network {name!r} {what}: {why}"))
    for name in refused:
        if name in before:
            nets[name] = before[name]
            if name in network.overlapping(list(nets.values()), first=before):
                del nets[name]
    return dict(sorted(nets.items()))


def _dependencies(chosen: Mapping[tuple[str, str], _Claim], specs: dict[str, Desired],
                  before: Mapping[str, Desired], problems: list[loader.Finding],
                  held: dict[str, str]) -> dict[str, Desired]:
    """``specs`` where every dependsOn names a defined object and none is in a cycle; an
    object that fails either gets a finding and keeps what it had (keep-last-good)."""
    known = {d.key for d in specs.values()}
    graph: dict[tuple[str, str], list[tuple[str, str]]] = {}
    refs: dict[tuple[str, str], list[Any]] = {}
    for d in specs.values():
        if d.container.spec.depends_on:
            refs[d.key] = list(d.container.spec.depends_on)
            graph[d.key] = [dependencies.key_of(r.name) for r in d.container.spec.depends_on]
    bad: dict[tuple[str, str], tuple[str, str]] = {}  # object -> (path, message)
    for okey, deps in refs.items():
        for i, dep in enumerate(deps):
            if dependencies.key_of(dep.name) not in known:
                bad[okey] = (_dep_path(okey, i), f"dependsOn: {dep.name!r} is not defined in"
                                                 " any manifest")
                break
    for cycle in dependencies.cycles(graph):
        files = sorted({chosen[k].source for k in cycle if k in chosen})
        text = " -> ".join(_conflict_name(k) for k in [*cycle, cycle[0]])
        for okey in cycle:
            bad.setdefault(okey, (_dep_path(okey, None),
                                  f"dependsOn: a cycle ({text}; files: {', '.join(files)})"))
    if not bad:
        return specs
    out = {n: d for n, d in specs.items() if d.key not in bad}
    for okey, (path, message) in sorted(bad.items()):
        claim = chosen.get(okey)
        if claim is not None and claim.doc is not None:
            problems.append(loader.Finding(claim.doc.file, claim.doc.line, path,
                                           message + "; the object keeps what it had"))
        if okey[0] == "Pod":
            held[okey[1]] = message
        out.update({d.name: d for d in before.values() if d.key == okey})
    return dict(sorted(out.items()))


def _dep_path(okey: tuple[str, str], i: int | None) -> str:
    if okey[0] == "Pod":
        return f"metadata.annotations['{dependencies.POD_ANNOTATION}']"
    return "spec.dependsOn" if i is None else f"spec.dependsOn[{i}].name"


def _attached(okey: tuple[str, str], doc: loader.Loaded, units: list[Desired],
              networks: Mapping[str, network.Network], from_manifests: set[str],
              before: Mapping[str, Desired], problems: list[loader.Finding],
              held: dict[str, str]) -> list[Desired]:
    """``units`` if every network they name exists; else a finding on the object, which
    keeps what it had (keep-last-good). A unit on networks that manifests define carries
    their config hashes (``ANN_NETWORKS``, a live annotation): a network's change
    re-attaches its objects in place."""
    out = []
    for unit in units:
        for i, ref in enumerate(unit.container.spec.networks or ()):
            if ref.name in networks:
                continue
            path = (f"metadata.annotations['{network.POD_ANNOTATION}']" if unit.pod is not None
                    else f"spec.networks[{i}].name")
            known = ", ".join(networks) or "none"
            message = (f"network {ref.name!r} is not defined (networks: {known}); the object"
                       " keeps what it had until it is")
            problems.append(loader.Finding(doc.file, doc.line, path, message))
            if unit.pod is not None:
                held[okey[1]] = message
            return [d for d in before.values() if d.key == okey]
        joined = [n for n in network.wanted(unit.container, sandbox_member=unit.pod is not None
                                            and unit.pod.role is not pods.Role.SANDBOX)
                  if n in from_manifests]
        if joined:
            marks = ",".join(f"{n}={networks[n].config_hash()}" for n in joined)
            meta = unit.container.metadata
            container = unit.container.model_copy(update={"metadata": meta.model_copy(
                update={"annotations": {**meta.annotations, network.ANN_NETWORKS: marks}})})
            unit = dataclasses.replace(unit, container=container)
        out.append(unit)
    return out


@dataclass(frozen=True)
class _Claim:
    """One definition of an object: a document of a valid origin, or what a held origin
    (broken, or its source unavailable) made of it before (``units`` or ``config``)."""

    source: str
    source_id: str
    doc: loader.Loaded | None = None
    units: tuple[Desired, ...] = ()
    config: ConfigObject | None = None


def _claims(
    origins: Iterable[tuple[str, str, loader.FileResult]], *, units: Iterable[Desired],
    config: Iterable[ConfigObject],
) -> dict[tuple[str, str], list[_Claim]]:
    """Every definition of every object: documents of valid origins, then carried ones."""
    claims: dict[tuple[str, str], list[_Claim]] = {}
    for key, sid, result in origins:
        for doc in result.documents:
            claims.setdefault(doc.key, []).append(_Claim(key, sid, doc=doc))
    grouped: dict[tuple[str, str], list[Desired]] = {}
    for old in units:
        grouped.setdefault(old.key, []).append(old)
    for okey, olds in grouped.items():
        claims.setdefault(okey, []).append(
            _Claim(olds[0].source, olds[0].source_id, units=tuple(olds)))
    for obj in config:
        claims.setdefault(obj.key, []).append(_Claim(obj.source, obj.source_id, config=obj))
    return claims


def _conflict_name(okey: tuple[str, str]) -> str:
    """A Container's name, a pod's ``namespace/name``, ``ConfigMap namespace/name``."""
    return okey[1] if okey[0] in ("Container", "Pod") else f"{okey[0]} {okey[1]}"


def _earlier(okey: tuple[str, str], before: Mapping[str, Desired],
             before_config: Mapping[tuple[str, str], ConfigObject]) -> _Claim | None:
    """What the previous state had for a contested object: it stays in force."""
    if okey in before_config:
        obj = before_config[okey]
        return _Claim(obj.source, obj.source_id, config=obj)
    olds = tuple(d for d in before.values() if d.key == okey)
    return _Claim(olds[0].source, olds[0].source_id, units=olds) if olds else None


def _units(okey: tuple[str, str], claim: _Claim, before: Mapping[str, Desired],
           config: pods.ConfigObjects, pods_dir: str, problems: list[loader.Finding],
           held: dict[str, str]) -> list[Desired]:
    """The planner's units for one chosen definition (none for a ConfigMap or Secret)."""
    if claim.doc is None:
        return list(claim.units)
    document = claim.doc.document
    if isinstance(document, model.Container):
        return [Desired(name=document.name, container=document, source=claim.source,
                        spec_hash=model.spec_hash(document), source_id=claim.source_id)]
    if document.kind != "Pod":
        return []
    try:
        made = pods.expand(document, config=config, pods_dir=pods_dir)
    except pods.PodError as exc:  # the pod keeps what it had (keep-last-good), and what
        problems.append(pods.finding(claim.doc, exc))  # runs of it stays (a first build)
        held[okey[1]] = exc.message
        return [d for d in before.values() if d.key == okey]
    return [Desired(name=u.name, container=u.container, source=claim.source,
                    spec_hash=u.spec_hash, source_id=claim.source_id, pod=u.pod)
            for u in made]


def _carried_conflicts(
    claims: Mapping[tuple[str, str], list[_Claim]], broken: frozenset[str]
) -> list[loader.Finding]:
    """A finding for each definition in a valid origin of an object a broken one defined
    before.

    Duplicates among valid origins are ``loader.check_duplicates``'s to report.
    """
    findings = []
    for okey, defs in sorted(claims.items()):
        held = sorted({d.source for d in defs if d.source in broken})
        if not held or len(defs) < 2:
            continue
        message = (
            f"{loader.describe_key(okey)} was defined in {', '.join(held)}, which has errors"
            " now; the definition from before stays in force until that file is fixed"
        )
        findings += [
            loader.Finding(d.source, None, "metadata.name", message)
            for d in defs if d.source not in broken
        ]
    return findings
