"""The published view and its readers: status.json's document, the Prometheus collector and
the health check, each from a hand-made frozen ``ControllerView`` (no loop, no runtime)."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, generate_latest

from reconciler.core.desired import Desired, DesiredState
from reconciler.core.history import History
from reconciler.core.observed import ExitStatus, Limits, Observed, Stats, Status
from reconciler.core.planner import Kind, Plan
from reconciler.daemon import metrics, view
from reconciler.manifest import model

NOW = 5000.0


def desired(name: str) -> Desired:
    c = model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
        "spec": {"rootfs": "/r", "command": ["/bin/serve"]}})
    return Desired(name, c, f"/m/{name}.yaml", model.spec_hash(c))


def observed(d: Desired, status: Status = Status.RUNNING, generation: int = 2) -> Observed:
    return Observed(name=d.name, status=status, pid=4242 if status is Status.RUNNING else None,
                    spec_hash=d.spec_hash, source=d.source, created=NOW - 60,
                    applied=d.manifest_json, instance=f"{d.name}.{generation}",
                    generation=generation, source_id="directory")


WEB, DB, OLD = desired("web"), desired("db"), desired("old")


def a_view(**changes: object) -> view.ControllerView:
    state = DesiredState(
        specs=types.MappingProxyType({"web": WEB, "db": DB}),
        broken_sources=frozenset(), conflicts=types.MappingProxyType({}), problems=(),
        sources=frozenset({"directory"}), defined=types.MappingProxyType({"directory": 2}))
    base = view.ControllerView(
        desired=state,
        observed=types.MappingProxyType({"web": observed(WEB), "old": observed(OLD)}),
        history=types.MappingProxyType({
            "web": History(spec_hash=WEB.spec_hash, restarts=3, generation=2,
                           last_exit=ExitStatus(code=1, signal=None, finished_at=NOW - 9))}),
        busy=types.MappingProxyType({"old": Kind.DELETE}),
        plan=Plan(actions=(), waiting=types.MappingProxyType({"db": NOW + 4})),
        actual=types.MappingProxyType({}),
        passes=7, last_pass_at=NOW - 1, ready=True, cgroup_parent="/reconciler-0a1b2c3d",
        taken_at=NOW)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_status_document_names_instances_phases_and_the_cgroup_parent() -> None:
    doc = view.status_document(a_view(), view.PhaseClock())
    daemon = doc["daemon"]
    assert (daemon["passes"], daemon["ready"], daemon["cgroupParent"]) == (
        7, True, "/reconciler-0a1b2c3d")
    assert daemon["sources"] == {"directory": {"available": True, "reason": None}}
    web, db, old = (doc["containers"][n] for n in ("web", "db", "old"))
    assert (web["phase"], web["instance"], web["restarts"], web["lastExitCode"]) == (
        "Running", "web.2", 3, 1)
    assert web["history"]["generation"] == 2
    assert db["phase"] == "BackOff" and db["instance"] is None
    assert db["message"].startswith("retry in 4s")
    assert (old["phase"], old["instance"]) == ("Terminating", "old.2")


def test_phase_since_holds_while_the_phase_does() -> None:
    clock = view.PhaseClock()
    first = view.status_document(a_view(), clock)["containers"]["web"]["since"]
    later = view.status_document(a_view(taken_at=NOW + 30), clock)["containers"]["web"]
    assert first == later["since"] == NOW
    stopped = a_view(taken_at=NOW + 40, observed=types.MappingProxyType(
        {"web": observed(WEB, Status.STOPPED)}))
    assert view.status_document(stopped, clock)["containers"]["web"]["since"] == NOW + 40


def test_an_unavailable_source_shows_in_the_document() -> None:
    v = a_view()
    assert v.desired is not None
    down = replace(v.desired, unavailable={"directory": "directory /m does not exist"})
    daemon = view.status_document(a_view(desired=down), view.PhaseClock())["daemon"]
    assert daemon["source"] == {"available": False, "reason": "directory /m does not exist"}
    assert daemon["sources"]["directory"]["available"] is False


@dataclass
class Loop:
    """What the collector and the health check read: a view, a stats reader, the resync."""

    view: view.ControllerView
    stats_reader: Callable[[str], tuple[Stats, Limits] | None] | None = None
    resync: float = 30.0


def scrape(loop: Loop) -> str:
    m = metrics.DaemonMetrics()
    m.attach(loop)
    registry: CollectorRegistry = m.registry
    return generate_latest(registry).decode()


def test_collector_reads_the_view_and_the_cgroup_by_instance() -> None:
    asked: list[str] = []

    def reader(instance: str) -> tuple[Stats, Limits]:
        asked.append(instance)
        return (Stats(cpu_usage_ns=2_000_000_000, memory_usage=1 << 20, memory_limit=None,
                      memory_max_usage=None, pids_current=3, pids_limit=64),
                Limits(memory_bytes=64 << 20, cpu_quota_us=50_000, cpu_period_us=100_000,
                       pids=64))

    text = scrape(Loop(a_view(), reader))
    assert 'reconciler_container_up{name="web"} 1.0' in text
    assert 'reconciler_container_restarts{name="web"} 3.0' in text
    assert 'reconciler_container_last_exit_code{name="web"} 1.0' in text
    assert 'reconciler_container_cpu_limit_cores{name="web"} 0.5' in text
    assert 'reconciler_container_pids{name="old"} 3.0' in text
    assert "reconciler_ready 1.0" in text
    assert "reconciler_queue_depth 2.0" in text  # one delete running, one retry waiting
    assert set(asked) == {"old.2", "web.2"}  # cgroups are the instances'


def test_collector_before_the_first_pass() -> None:
    text = scrape(Loop(view.empty(None)))
    assert "reconciler_ready 0.0" in text
    assert "reconciler_source_available 1.0" in text
    assert "reconciler_container_up{" not in text


def test_health_follows_the_last_published_pass() -> None:
    assert view.health(Loop(view.empty(None)), NOW) == (False, "no pass yet")
    ok, why = view.health(Loop(a_view()), NOW)
    assert ok and "1.0s ago" in why
    stale, _ = view.health(Loop(a_view(), resync=1.0), NOW + 100)
    assert not stale


def test_not_ready_while_a_source_is_unavailable() -> None:
    from reconciler.core.desired import DesiredState
    from reconciler.daemon.metrics import readiness

    down = DesiredState(specs={}, broken_sources=frozenset(), conflicts={}, problems=(),
                        unavailable={"directory": "manifests directory /m does not exist"})
    assert readiness(types.SimpleNamespace(ready=False, desired=None, disk=None))[0] is False
    ok, why = readiness(types.SimpleNamespace(ready=True, desired=down, disk=None))
    assert not ok and "does not exist" in why
    up = DesiredState(specs={}, broken_sources=frozenset(), conflicts={}, problems=())
    assert readiness(types.SimpleNamespace(ready=True, desired=up, disk=None))[0] is True
    full = "cannot write status in /s: No space left on device"
    ok, why = readiness(types.SimpleNamespace(ready=True, desired=up, disk=full))
    assert not ok and why == f"state dir: {full}"
