"""Kubernetes Pods in the CLI: a pod's units grouped back into one pod, shown as kubectl does.

Where it sits: the CLI layer, beside ``cli/daemon.py`` (get, describe, events) and
``cli/inspect.py`` (logs, exec, stats, top), which do the reading (status.json, runc, the
depot, the manifest file) and hand the records here. This module is pure: records in,
rows and lines out.

    status.json records (one per unit, each with its ``pod`` place)
        ─▶ group() ─▶ Pod (sandbox, init containers, containers)
        ─▶ status(), ready(), restarts(), row(), to_json(), describe()
    status records ─▶ record_json() (``get -o json``: times in RFC 3339)

A pod ``default/web`` is the units ``default_web`` (its sandbox), ``default_web_server``
and so on; each has a status record like any ``kind: Container`` object. What a pod shows
follows kubectl's rules (``printPod``): READY counts running app containers and sidecars;
STATUS is ``Init:i/n`` while init containers run, then the reason of the first container
that has one (``CrashLoopBackOff``, ``Completed``, ``Error``), else the pod's phase.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.instance import ANN_MANIFEST

DEFAULT_NAMESPACE = "default"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"  # kubectl logs/exec honour it
POD_WORDS = frozenset({"pods", "pod", "po"})
CONTAINER_WORDS = frozenset({"containers", "container"})

Record = Mapping[str, Any]
When = Callable[[float | None], str]  # a time as describe prints it


@dataclass(frozen=True)
class Layout:
    """What a Pod's manifest says that status.json does not: the order of its containers
    (init containers first, as written) and the pod's annotations."""

    order: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Member:
    """One container of a pod: its name in the pod, its role, its unit's status record."""

    container: str
    role: str  # init, sidecar or app
    record: Record

    @property
    def unit(self) -> str:
        return str(self.record["name"])


@dataclass(frozen=True)
class Pod:
    key: str  # namespace/name
    sandbox: Record | None
    init: tuple[Member, ...]  # init containers and sidecars, in the pod's order
    containers: tuple[Member, ...]  # app containers, in the pod's order
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def name(self) -> str:
        return self.key.partition("/")[2]

    @property
    def members(self) -> tuple[Member, ...]:
        return self.init + self.containers

    @property
    def records(self) -> list[Record]:
        return ([self.sandbox] if self.sandbox is not None else []) + [
            m.record for m in self.members]

    @property
    def units(self) -> set[str]:
        return {str(r["name"]) for r in self.records}

    @property
    def source(self) -> str | None:
        return next((str(r["source"]) for r in self.records if r.get("source")), None)

    def member(self, container: str) -> Member | None:
        return next((m for m in self.members if m.container == container), None)


# -- names -----------------------------------------------------------------------------


def display(key: str) -> str:
    """``default/web`` -> ``web``; another namespace stays in: ``tools/web``."""
    namespace, _, name = key.partition("/")
    return name if namespace == DEFAULT_NAMESPACE else key


@dataclass(frozen=True)
class Target:
    """A name as typed: ``web``, ``pod/web``, ``container/web``, or ``tools/web``."""

    kind: str | None  # "pod", "container", or None: either
    name: str
    namespace: str
    shown: str  # how errors name it: as typed, less its TYPE/


    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def target(text: str, *, namespace: str | None = None, kind: str | None = None) -> Target:
    """``text`` read kubectl's way: ``TYPE/NAME``, or ``NAMESPACE/NAME`` for a pod (as
    ``get`` shows one outside the default namespace)."""
    ns = namespace or DEFAULT_NAMESPACE
    head, slash, tail = text.partition("/")
    if slash and head in POD_WORDS:
        return target(tail, namespace=namespace, kind="pod")
    if slash and head in CONTAINER_WORDS:
        return Target("container", tail, ns, tail)
    if slash:  # a container name is a DNS label: no slash, so this is a pod's key
        return Target("pod", tail, head, text)
    return Target(kind, text, ns, text)


def unit_prefix(key: str) -> str:
    """``default/web`` -> ``default_web``: the sandbox's unit name, and its containers'
    units' prefix (core.pods.unit_name: ``_`` is in no DNS label, so it splits back)."""
    return key.replace("/", "_")


def of_pod(unit: str | None, key: str) -> bool:
    """Whether ``unit`` (an event's or a record's name) is one of pod ``key``'s units."""
    base = unit_prefix(key)
    return unit is not None and (unit == base or unit.startswith(base + "_"))


# -- grouping ----------------------------------------------------------------------------


def layout_of(documents: Iterable[object], key: str) -> Layout | None:
    """The layout of the Pod ``key`` among a manifest file's parsed documents."""
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "Pod":
            continue
        meta = doc.get("metadata") or {}
        if f"{meta.get('namespace') or DEFAULT_NAMESPACE}/{meta.get('name')}" != key:
            continue
        spec = doc.get("spec") or {}
        names = [c.get("name") for part in ("initContainers", "containers")
                 for c in spec.get(part) or [] if isinstance(c, dict)]
        annotations = meta.get("annotations") or {}
        return Layout(tuple(str(n) for n in names if n),
                      {str(k): str(v) for k, v in annotations.items()})
    return None


def pod_key(record: Record) -> str | None:
    """The pod a status record belongs to; None for a ``kind: Container`` object."""
    place = record.get("pod") or {}
    return str(place["pod"]) if place.get("pod") else None


def group(records: Iterable[Record], *, layouts: Mapping[str, Layout] | None = None
          ) -> tuple[list[Record], list[Pod]]:
    """(the ``kind: Container`` records, the pods), pods sorted by key."""
    plain: list[Record] = []
    units: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        key = pod_key(r)
        if key is None:
            plain.append(r)
        else:
            units[key].append(r)
    layouts = layouts or {}
    return plain, [_pod(key, units[key], layouts.get(key) or Layout()) for key in sorted(units)]


def _pod(key: str, records: Sequence[Record], layout: Layout) -> Pod:
    sandbox = next((r for r in records if r["pod"].get("role") == "sandbox"), None)
    members = [Member(str(r["pod"].get("container") or ""), str(r["pod"].get("role")), r)
               for r in records if r is not sandbox]
    rank = {name: i for i, name in enumerate(layout.order)}

    def order(m: Member) -> tuple[int, float, str]:
        index = m.record["pod"].get("index")  # the daemon's: the pod's own order
        if isinstance(index, int):
            return index, 0.0, m.container
        # without the manifest, init containers ran in the order they were made
        made = float(m.record.get("created") or float("inf")) if m.role != "app" else 0.0
        return rank.get(m.container, len(rank)), made, m.container

    init = tuple(sorted((m for m in members if m.role != "app"), key=order))
    apps = tuple(sorted((m for m in members if m.role == "app"), key=order))
    labels = next((r["pod"].get("labels") for r in ([sandbox] if sandbox else []) + list(records)
                   if r["pod"].get("labels")), None) or {}
    noted = next((r["pod"].get("annotations") for r in records
                  if r["pod"].get("annotations") is not None), None)
    return Pod(key, sandbox, init, apps, labels=dict(labels),
               annotations=dict(layout.annotations if noted is None else noted))


# -- kubectl's words -----------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A container as the kubelet would report it."""

    kind: str  # running, waiting or terminated
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    started: float | None = None
    finished: float | None = None
    probed_ready: bool = True  # the daemon's READY (its probes); an older daemon's: running

    @property
    def ready(self) -> bool:  # running and its probes say so (paused is not)
        return self.kind == "running" and self.reason != "Paused" and self.probed_ready


def _terminated(record: Record) -> State:
    last = record.get("lastExit") or {}
    code = last.get("code")
    # the kubelet's reasons; an unknown code (runc's word only, no exit file) as success
    reason = "OOMKilled" if last.get("oomKilled") else "Completed" if not code else "Error"
    return State("terminated", reason, exit_code=code, signal=last.get("signal"),
                 started=record.get("created"), finished=last.get("finishedAt"))


def container_state(record: Record, *, pending: str = "ContainerCreating") -> State:
    """One unit's phase in the kubelet's words; ``pending``: the reason while not made."""
    phase = record.get("phase")
    if phase in ("Running", "Paused") or (phase == "Terminating" and record.get("pid")):
        return State("running", "Paused" if phase == "Paused" else "",
                     started=record.get("created"),
                     probed_ready=bool(record.get("ready", True)))
    if phase == "BackOff":
        return State("waiting", "CrashLoopBackOff")
    if phase == "Failed":  # never made: the runtime refused it
        return State("waiting", "CreateContainerError")
    if phase in ("Exited", "Stopped", "Terminating"):
        return _terminated(record)
    return State("waiting", pending)  # Pending, Creating


def state(pod: Pod, m: Member) -> State:
    if m.role != "app":  # kubectl shows Init:i/n while one is made, not its reason
        pending = "PodInitializing"
    elif m.record.get("phase") == "Pending" and pod.init:
        pending = "PodInitializing"
    else:
        pending = "ContainerCreating"
    return container_state(m.record, pending=pending)


def member_ready(pod: Pod, m: Member) -> bool:
    """Ready as describe and ``-o json`` show it: the kubelet calls a finished init step
    ready too."""
    s = state(pod, m)
    return s.ready or (m.role == "init" and s.reason == "Completed")


def _up(record: Record | None) -> bool:
    return record is not None and record.get("phase") in ("Running", "Paused")


def phase(pod: Pod) -> str:
    """The pod's phase (Kubernetes' ``status.phase``)."""
    if not _up(pod.sandbox):
        return "Pending"
    states = [state(pod, m) for m in pod.containers]
    if any(s.kind == "running" for s in states):
        return "Running"
    if states and all(s.kind == "terminated" for s in states):
        return "Succeeded" if all(not s.exit_code for s in states) else "Failed"
    return "Pending"


def _initializing(pod: Pod) -> str | None:
    """kubectl's STATUS while init containers are not done; None once they are."""
    for i, m in enumerate(pod.init):
        s = state(pod, m)
        if m.role == "sidecar" and s.kind == "running":
            continue
        if s.kind == "terminated" and s.reason == "Completed":
            continue
        if s.kind == "terminated" or (s.kind == "waiting" and s.reason != "PodInitializing"):
            return f"Init:{s.reason}"
        return f"Init:{i}/{len(pod.init)}"
    return None


def status(pod: Pod) -> str:
    """kubectl's STATUS column (``printPod``)."""
    if any(r.get("phase") == "Terminating" for r in pod.records):
        return "Terminating"
    if not _up(pod.sandbox):
        return "Pending"
    init = _initializing(pod)
    if init is not None:
        return init
    reason, running = phase(pod), False
    for m in reversed(pod.containers):  # the first container's reason wins
        s = state(pod, m)
        if s.kind != "running" and s.reason:
            reason = s.reason
        elif s.ready:
            running = True
    if reason == "Completed" and running:
        return "NotReady"  # some done, some running: the pod is not Ready
    return reason


def ready(pod: Pod) -> tuple[int, int]:
    """(ready, total): app containers and sidecars; init containers do not count."""
    counted = [m for m in pod.members if m.role in ("app", "sidecar")]
    return sum(state(pod, m).ready for m in counted), len(counted)


def restarts(pod: Pod) -> int:
    """kubectl's RESTARTS: the init containers' while they run, then the containers' and
    sidecars' (a retried init step no longer counts once the pod is up)."""
    if _up(pod.sandbox) and _initializing(pod) is not None:
        members: Iterable[Member] = pod.init
    else:
        members = [m for m in pod.members if m.role in ("app", "sidecar")]
    return sum(int(m.record.get("restarts") or 0) for m in members)


def created(pod: Pod) -> float | None:
    box = pod.sandbox or {}
    value = box.get("created") or box.get("since")
    return float(value) if value else None


def message(pod: Pod) -> str:
    """The first unit's message that says something is wrong (a broken manifest, a
    backoff), the sandbox's first; an init step's "exited with code 0" is not trouble."""
    for r in pod.records:
        done = r is not pod.sandbox and container_state(r).reason == "Completed"
        if r.get("message") and not done:
            return str(r["message"])
    return ""


def age(since: float | None, *, now: float | None = None) -> str:
    if not since:
        return "-"
    s = int(max(0, (time.time() if now is None else now) - since))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


HEAD = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
WIDE = ["SANDBOX", "PID", "SOURCE", "MESSAGE"]


def table(rows: list[list[str]]) -> str:
    """Rows as kubectl prints them: columns padded, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def row(pod: Pod, *, wide: bool = False, now: float | None = None) -> list[str]:
    up, total = ready(pod)
    out = [display(pod.key), f"{up}/{total}", status(pod), str(restarts(pod)),
           age(created(pod), now=now)]
    if wide:
        box = pod.sandbox or {}
        out += [box.get("instance") or "-", str(box.get("pid") or "-"), pod.source or "-",
                message(pod)]
    return out


def rfc3339(t: float | str | None) -> str | None:
    """``2026-12-01T08:59:59.123Z`` (UTC, ms) from epoch seconds, as kubectl and ``image ls
    -o json`` write times; a time already written so is kept."""
    if t is None or isinstance(t, str):
        return t
    from datetime import UTC, datetime  # only JSON output needs it: `get` starts quicker

    return datetime.fromtimestamp(float(t), UTC).isoformat(timespec="milliseconds"
                                                           ).replace("+00:00", "Z")


_RECORD_TIMES = ("created", "since")
# the history's times, and an older daemon's snake_case names for them
_HISTORY_TIMES = ("startedAt", "failedAt", "started_at", "failed_at")
_EXIT_TIMES = ("finishedAt", "finished_at")


def record_json(record: Record) -> dict[str, Any]:
    """A status record as ``get -o json`` shows it: its times in RFC 3339. status.json is
    the daemon's and keeps epoch seconds (the planner reads them back); only the output
    changes."""
    out: dict[str, Any] = {k: rfc3339(v) if k in _RECORD_TIMES else v
                           for k, v in record.items()}
    if isinstance(out.get("lastExit"), Mapping):
        out["lastExit"] = _times(out["lastExit"], _EXIT_TIMES)
    history = out.get("history")
    if isinstance(history, Mapping):
        history = _times(history, _HISTORY_TIMES)
        for key in ("lastExit", "last_exit"):
            if isinstance(history.get(key), Mapping):
                history[key] = _times(history[key], _EXIT_TIMES)
        out["history"] = history
    return out


def _times(doc: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: rfc3339(v) if k in keys else v for k, v in doc.items()}


def to_json(pod: Pod) -> dict[str, Any]:
    """One pod for ``get -o json``: kubectl's summary and every unit's status record, times
    in RFC 3339."""
    up, total = ready(pod)
    return {
        "kind": "Pod",
        "name": pod.name,
        "namespace": pod.namespace,
        "ready": f"{up}/{total}",
        "readyContainers": up,
        "totalContainers": total,
        "status": status(pod),
        "phase": phase(pod),
        "restarts": restarts(pod),
        "created": rfc3339(created(pod)),
        "labels": dict(pod.labels),
        "source": pod.source,
        "message": message(pod),
        "sandbox": None if pod.sandbox is None else record_json(pod.sandbox),
        "initContainers": [record_json(m.record) for m in pod.init],
        "containers": [record_json(m.record) for m in pod.containers],
        "containerStatuses": [_status_json(pod, m) for m in pod.members],
    }


def _status_json(pod: Pod, m: Member) -> dict[str, Any]:
    s = state(pod, m)
    return {"name": m.container, "role": m.role, "unit": m.unit, "ready": member_ready(pod, m),
            "state": s.kind, "reason": s.reason, "exitCode": s.exit_code,
            "restartCount": int(m.record.get("restarts") or 0),
            "instance": m.record.get("instance"), "pid": m.record.get("pid")}


# -- choosing a container (logs, exec) -------------------------------------------------------


def names(pod: Pod) -> str:
    """``server, client, prepare (init)``: kubectl's list, containers first."""
    return ", ".join([m.container for m in pod.containers] +
                     [f"{m.container} (init)" for m in pod.init])


def choose(pod: Pod, container: str | None, *, shown: str) -> tuple[Member, str | None]:
    """The member ``container`` (``-c``), else kubectl's default: the container the
    ``kubectl.kubernetes.io/default-container`` annotation names, else the first one,
    with a note saying so. Raises LookupError with the message for the user."""
    if container is not None:
        found = pod.member(container)
        if found is None:
            raise LookupError(f'pod "{shown}" has no container "{container}"'
                              f" (it has: {names(pod) or 'none yet'})")
        return found, None
    wanted = pod.annotations.get(DEFAULT_CONTAINER)
    chosen = pod.member(wanted) if wanted else None
    if chosen is not None:
        return chosen, None
    if not pod.containers:
        raise LookupError(f'pod "{shown}" has no containers yet')
    first = pod.containers[0]
    return first, f'Defaulted container "{first.container}" out of: {names(pod)}'


# -- describe ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What a unit's instance runs, from its config.json (the CLI reads the file)."""

    image: str | None = None
    command: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)


def spec_of(config: Mapping[str, Any]) -> Spec:
    """A unit's ``Spec`` from its OCI config.json: the argv it runs, and the image and
    annotations of the manifest it was made from (the ``io.reconciler.manifest``)."""
    args = (config.get("process") or {}).get("args") or []
    try:
        manifest = json.loads((config.get("annotations") or {}).get(ANN_MANIFEST) or "{}")
    except ValueError:
        manifest = {}
    spec, meta = manifest.get("spec") or {}, manifest.get("metadata") or {}
    return Spec(image=spec.get("image"), command=tuple(str(a) for a in args),
                annotations=dict(meta.get("annotations") or {}))


def describe(pod: Pod, *, specs: Mapping[str, Spec], events: Sequence[Record],
             when: When) -> list[str]:
    """kubectl describe's sections for ``pod``; ``specs`` by unit name, ``events`` of its
    units, ``when``: a time formatter."""
    box = pod.sandbox or {}
    labels = [f"{k}={v}" for k, v in sorted(pod.labels.items())] or ["<none>"]
    annotations = [f"{k}: {v}" for k, v in sorted(pod.annotations.items())] or ["<none>"]
    out = [f"Name:         {pod.name}", f"Namespace:    {pod.namespace}",
           f"Labels:       {labels[0]}", *[f"              {x}" for x in labels[1:]],
           f"Annotations:  {annotations[0]}", *[f"              {x}" for x in annotations[1:]],
           f"Status:       {status(pod)}", f"Source:       {pod.source or '-'}",
           f"Sandbox:      {_sandbox(box)}", f"Created:      {when(created(pod))}"]
    if message(pod):
        out.append(f"Message:      {message(pod)}")
    if pod.init:
        out.append("Init Containers:")
        out += [ln for m in pod.init for ln in _member(pod, m, specs.get(m.unit), when)]
    out.append("Containers:")
    out += [ln for m in pod.containers for ln in _member(pod, m, specs.get(m.unit), when)] \
        or ["  <none>"]
    out.append("Events:")
    who = {m.unit: m.container for m in pod.members}
    out += [f"  {when(e['time'])}  {e['type']:<7}  {who.get(e.get('name') or '', 'sandbox'):<12}"
            f"  {e['reason']:<12}  {e['message']}" for e in events] or ["  <none>"]
    return out


def _sandbox(box: Record) -> str:
    if not box.get("instance"):
        return f"<none> ({box.get('phase') or 'not made'})"
    pid = f"PID {box['pid']}" if box.get("pid") else str(box.get("phase") or "not running")
    return f"{box['instance']} ({pid})"


def _member(pod: Pod, m: Member, spec: Spec | None, when: When) -> list[str]:
    r = m.record
    s = state(pod, m)
    spec = spec or Spec()
    role = " (sidecar)" if m.role == "sidecar" else ""
    out = [f"  {m.container}:{role}", f"    Unit:           {m.unit}",
           f"    Instance:       {r.get('instance') or '-'}",
           f"    PID:            {r.get('pid') or '-'}"]
    out += _state_lines("State:     ", s, when)
    last = r.get("lastExit")
    if last and s.kind != "terminated":
        out += _state_lines("Last State:", _terminated(r), when)
    out += [f"    Ready:          {member_ready(pod, m)}",
            f"    Restart Count:  {int(r.get('restarts') or 0)}",
            f"    Image:          {spec.image or '-'}"]
    out += ["    Command:", *[f"      {a}" for a in spec.command]] if spec.command else \
        ["    Command:        -"]
    limits = _limits((r.get("actual") or {}).get("limits") or {})
    out += ["    Limits:", *[f"      {k}: {v}" for k, v in limits]] if limits else \
        ["    Limits:         <none>"]
    requests = sorted(((r.get("pod") or {}).get("requests") or {}).items())
    if requests:  # accepted and shown; nothing enforces them
        out += ["    Requests:", *[f"      {k}: {v}" for k, v in requests]]
    mounts = [_mount(x, sandbox=str((pod.sandbox or {}).get("name") or ""))
              for x in (r.get("actual") or {}).get("mounts") or []]
    out += ["    Mounts:", *[f"      {x}" for x in mounts]] if mounts else \
        ["    Mounts:         <none>"]
    if r.get("message") and r.get("phase") not in ("Running", "Exited"):
        out.append(f"    Message:        {r['message']}")
    return out


def _state_lines(label: str, s: State, when: When) -> list[str]:
    out = [f"    {label}     {s.kind.capitalize()}"]
    if s.reason:
        out.append(f"      Reason:       {s.reason}")
    if s.kind == "terminated":
        out.append(f"      Exit Code:    {'-' if s.exit_code is None else s.exit_code}")
        if s.signal:
            out.append(f"      Signal:       {s.signal}")
    if s.started:
        out.append(f"      Started:      {when(s.started)}")
    if s.finished:
        out.append(f"      Finished:     {when(s.finished)}")
    return out


def _limits(limits: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cgroup's limits in Kubernetes' units: ``memory: 16Mi``, ``cpu: 500m``."""
    out = []
    memory = limits.get("memoryBytes")
    if memory:
        out.append(("memory", _quantity(int(memory))))
    quota, period = limits.get("cpuQuotaUs"), limits.get("cpuPeriodUs")
    if quota and period:
        out.append(("cpu", f"{round(int(quota) * 1000 / int(period))}m"))
    if limits.get("pids"):
        out.append(("pids", str(limits["pids"])))
    return out


def _quantity(n: int) -> str:
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _mount(m: Mapping[str, Any], *, sandbox: str) -> str:
    """``/work from work (rw)``: a pod volume by its name, anything else by its path."""
    source = str(m.get("source") or "")
    marker = f"/pods/{sandbox}/volumes/"
    origin = source.split(marker, 1)[1].split("/", 1)[0] if sandbox and marker in source \
        else source
    return f"{m.get('destination')} from {origin} ({'ro' if m.get('readOnly') else 'rw'})"
