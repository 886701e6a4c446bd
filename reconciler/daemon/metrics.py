"""Prometheus metrics, /healthz and /readyz for the daemon (``run --metrics-addr``).

The daemon's counters live here and the loop bumps them; per-container gauges are
collected at scrape time from the last published ``ControllerView`` (a frozen value: the
metrics thread never reads the loop's live maps) and the cgroup files, so a scrape never
waits on the event loop. Served by the standard library's WSGI server in one thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler import errors
from reconciler.daemon.view import Viewed, health

if TYPE_CHECKING:
    pass


Metric = GaugeMetricFamily


class DaemonMetrics:
    """The daemon's own series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.passes = Counter("reconciler_reconcile_passes", "Planning passes run.",
                              registry=self.registry)
        self.pass_seconds = Histogram(
            "reconciler_reconcile_pass_duration_seconds", "Time to plan and dispatch a pass.",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.actions = Counter("reconciler_actions", "Actions executed, by kind and outcome.",
                               ["kind", "outcome"], registry=self.registry)
        self.action_seconds = Histogram(
            "reconciler_action_duration_seconds", "Time to execute an action, by kind.",
            ["kind"], registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

    def attach(self, ctl: Viewed) -> None:
        self.registry.register(_StateCollector(ctl))


# (row key, metric name, help) of the per-container gauges, labelled by name
_CONTAINER_GAUGES = (
    ("up", "reconciler_container_up", "1 when the container is running."),
    ("ready", "reconciler_container_ready", "1 when the container is READY (its probes)."),
    ("restarts", "reconciler_container_restarts", "Restarts since it was defined."),
    ("exit", "reconciler_container_last_exit_code", "Exit code of the last run."),
    ("cpu", "reconciler_container_cpu_seconds", "CPU time used (cgroup)."),
    ("mem", "reconciler_container_memory_bytes", "Memory in use (cgroup)."),
    ("memlimit", "reconciler_container_memory_limit_bytes", "Memory limit (cgroup)."),
    ("cpulimit", "reconciler_container_cpu_limit_cores", "CPU quota in cores (cgroup)."),
    ("pids", "reconciler_container_pids", "Processes in the container."),
    ("pidslimit", "reconciler_container_pids_limit", "Process limit (cgroup)."),
)


class _StateCollector(Collector):
    def __init__(self, ctl: Viewed) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        view = self.ctl.view  # one frozen view for the whole scrape
        desired = view.desired
        yield _gauge("reconciler_source_available",
                     "1 when every manifests source is available (directory, etcd).",
                     [([], 1.0 if desired is None or desired.available else 0.0)])
        yield _gauge("reconciler_manifest_errors", "Manifest problems found in the last scan.",
                     [([], float(len(desired.problems) if desired else 0))])
        waiting = len(view.plan.waiting) if view.plan else 0
        yield _gauge("reconciler_queue_depth", "Actions running plus retries waiting.",
                     [([], float(len(view.busy) + waiting))])
        yield _gauge("reconciler_ready", "1 once the first full pass is done.",
                     [([], 1.0 if view.ready else 0.0)])
        rows: dict[str, list[tuple[list[str], float]]] = {k: [] for k, _, _ in
                                                          _CONTAINER_GAUGES}
        reader = self.ctl.stats_reader
        for name, obs in sorted(view.observed.items()):
            hist = view.history.get(name)
            rows["up"].append(([name], 1.0 if obs.status.value == "running" else 0.0))
            r = view.readiness.get(name)
            ready = r is not None and r.instance == obs.id and r.ready \
                and obs.status.value == "running"
            rows["ready"].append(([name], 1.0 if ready else 0.0))
            rows["restarts"].append(([name], float(hist.restarts if hist else 0)))
            if hist is not None and hist.last_exit is not None:
                rows["exit"].append(([name], float(hist.last_exit.exit_code)))
            try:
                stats = reader(obs.id) if reader is not None else None
            except (OSError, errors.ReconcilerError):
                continue
            if stats is None:
                continue
            st, limits = stats
            rows["cpu"].append(([name], st.cpu_usage_ns / 1e9))
            rows["mem"].append(([name], float(st.memory_usage)))
            rows["pids"].append(([name], float(st.pids_current)))
            if limits.memory_bytes is not None:
                rows["memlimit"].append(([name], float(limits.memory_bytes)))
            if limits.cpu_quota_us is not None and limits.cpu_period_us:
                rows["cpulimit"].append(([name], limits.cpu_quota_us / limits.cpu_period_us))
            if limits.pids is not None:
                rows["pidslimit"].append(([name], float(limits.pids)))
        for key, name, doc in _CONTAINER_GAUGES:
            yield _gauge(name, doc, rows[key], ["name"])


def _gauge(name: str, doc: str, rows: Iterable[tuple[list[str], float]],
           labels: list[str] | None = None) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels or [])
    for values, value in rows:
        g.add_metric(values, value)
    return g


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


def readiness(view: Any) -> tuple[bool, str]:
    """Ready: the first full pass is done and every manifests source is readable (a
    daemon on a missing directory is running, not ready)."""
    if not view.ready:
        return False, "first full pass not done"
    desired = view.desired
    if desired is not None and not desired.available:
        return False, f"manifests source unavailable: {desired.reason}"
    if view.disk:
        return False, f"state dir: {view.disk}"
    return True, "first full pass done, every source readable"


class MetricsServer:
    """/metrics, /healthz, /readyz on HOST:PORT in one daemon thread."""

    def __init__(self, addr: str, ctl: Viewed, metrics: DaemonMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise errors.UsageError(f"--metrics-addr must be HOST:PORT, got {addr!r}")
        prom = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path in ("/healthz", "/readyz"):
                if path == "/healthz":
                    ok, why = health(ctl, clock())
                else:
                    ok, why = readiness(ctl.view)
                start("200 OK" if ok else "503 Service Unavailable",
                      [("Content-Type", "text/plain; charset=utf-8")])
                return [f"{'ok' if ok else 'not ok'}: {why}\n".encode()]
            return prom(environ, start)  # type: ignore[no-any-return]

        try:
            self.server: WSGIServer = make_server(host.strip("[]"), int(port), app,
                                                  handler_class=_Quiet)
        except OSError as exc:
            raise errors.UsageError(f"cannot listen on {addr}: {exc.strerror}") from exc
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics",
                                       daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
