"""Dependencies between objects (``dependsOn``; a Pod's ``reconciler.io/depends-on``).

    desired.build (names and cycles checked) ─▶ planner (creation waits, deletion in
        reverse) ─▶ dependencies (this module)

Pure. A reference is a ``kind: Container``'s name or ``pod/NAME`` (``pod/NAMESPACE/NAME``);
a pod stands for its app containers and sidecars. Conditions are compose's:
``Started`` (each runs), ``Ready`` (each is READY: its probes, daemon.probes), and
``Completed`` (each exited 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from reconciler.core import pods
from reconciler.core.history import History
from reconciler.core.observed import Status

if TYPE_CHECKING:
    from reconciler.core.desired import Desired
    from reconciler.core.observed import Observed
    from reconciler.manifest.model import Dependency

POD_ANNOTATION = pods.DEPENDS_ON
Key = tuple[str, str]


def key_of(ref: str) -> Key:
    """``web`` -> (Container, web); ``pod/web`` -> (Pod, default/web)."""
    parts = ref.split("/")
    if parts[0] == "pod" and len(parts) in (2, 3):
        return "Pod", "/".join(parts[1:]) if len(parts) == 3 else f"default/{parts[1]}"
    return "Container", ref


def units(ref: str, specs: Mapping[str, Desired]) -> list[str]:
    """The units a reference stands for (none: it names nothing desired)."""
    kind, key = key_of(ref)
    if kind == "Container":
        want = specs.get(key)
        return [key] if want is not None and want.pod is None else []
    return sorted(n for n, d in specs.items() if d.pod is not None and d.pod.key == key
                  and d.pod.role in (pods.Role.APP, pods.Role.SIDECAR))


def cycles(graph: Mapping[Key, Iterable[Key]]) -> list[list[Key]]:
    """Every cycle's members (Tarjan's strongly connected components of more than one
    node, or one that depends on itself), each sorted."""
    index: dict[Key, int] = {}
    low: dict[Key, int] = {}
    stack: list[Key] = []
    on_stack: set[Key] = set()
    found: list[list[Key]] = []

    def visit(v: Key) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[Key] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


CRASH_LOOP = 2  # failed exits in a row (the backoff's count) that make a running one failing
STEADY = 1.0  # seconds a dependency must have run to count as started: one that exits at
#               once is seen failing, not started (its exit is recorded within this)


def waiting_for(dep: Dependency, specs: Mapping[str, Desired],
                observed: Mapping[str, Observed], history: Mapping[str, History],
                ready: Mapping[str, bool], now: float | None = None) -> str | None:
    """Why ``dep`` is not met yet, in words (a failed dependency says so); None: met.
    ``now``: Started and Ready also need the dependency to have run ``STEADY`` seconds."""
    names = units(dep.name, specs)
    if not names:
        return f"waits for {dep.name} (not defined)"
    for unit in names:
        have, hist = observed.get(unit), history.get(unit, History())
        running = have is not None and have.status is Status.RUNNING
        last = hist.last_exit
        if dep.condition == "Completed":
            if have is not None and have.status is Status.STOPPED and last is not None:
                if last.failed:
                    return (f"dependency {dep.name} failed to complete (exit code"
                            f" {last.exit_code})")
                continue
            return f"waits for {dep.name} to complete"
        if running and last is not None and last.failed and hist.crashes >= CRASH_LOOP:
            return f"dependency {dep.name} failed to start: it exits (code {last.exit_code})"
        if not running:
            if hist.last_error:
                return f"dependency {dep.name} failed to start: {hist.last_error}"
            if last is not None and last.failed and hist.crashes:
                return f"dependency {dep.name} failed to start: it exits (code {last.exit_code})"
            return f"waits for {dep.name} to start"
        if dep.condition == "Ready" and not ready.get(unit, False):
            return f"waits for {dep.name} to be ready"
        if now is not None and hist.started_at is not None and now - hist.started_at < STEADY:
            return f"waits for {dep.name} to have started"
    return None


def restarted_since(dep: Dependency, specs: Mapping[str, Desired],
                    history: Mapping[str, History], started_at: float | None) -> bool:
    """Whether ``dep`` (with ``restart: true``) was started again after ``started_at``."""
    if not dep.restart or started_at is None:
        return False
    return any((history.get(u, History()).started_at or 0.0) > started_at
               for u in units(dep.name, specs))
