"""Probes: one prober per running instance that has any, the owner of readiness.

    loop (each pass: sync) ─▶ Probers (this module) ─▶ runtime.exec_probe (exec probes)
                                                    └─▶ runtime.probe (tcp, http, grpc)
        readiness ─▶ view (READY, status.json, metrics) and the planner (dependsOn Ready)

Kubernetes' semantics (the kubelet's prober): a startup probe holds the others until it
succeeds; ``failureThreshold`` failures in a row of a startup or liveness probe stop the
container (its probe's ``terminationGracePeriodSeconds``, else the container's), and its
restart policy and the usual backoff restart it, with the probe's output in the events;
a readiness probe sets READY after ``successThreshold`` successes in a row and clears it
after ``failureThreshold`` failures. Without a readiness probe a running container whose
startup probe (if any) passed is ready. Each prober is a task of the loop's task group
with its own cancel scope: a new instance, a new PID or changed probes replace it, and a
stopped instance ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from reconciler import errors
from reconciler.core.observed import Status
from reconciler.runtime import probe as netprobe

if TYPE_CHECKING:
    from reconciler.core.desired import Desired, DesiredState
    from reconciler.core.observed import Observed
    from reconciler.manifest.model import Container
    from reconciler.manifest.probes import Probe
    from reconciler.runtime.types import Runtime

log = logging.getLogger("reconciler")
_OUTPUT = 512  # characters of a probe's output in an event


@dataclass(frozen=True)
class Readiness:
    """An object's READY condition as its prober last set it."""

    ready: bool
    since: float
    message: str | None = None
    started: bool = True  # its startup probe passed (or it has none)
    instance: str | None = None
    pid: int | None = None  # a restart keeps the instance id, not the process


class Host(Protocol):
    """What probers use of the loop (``loop.Controller``)."""

    runtime: Runtime

    def event(self, name: str | None, reason: str, message: str, *,
              warning: bool = False) -> None: ...

    def kick(self) -> None: ...

    def probe_address(self, want: Desired) -> str: ...


class Probers:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.readiness: dict[str, Readiness] = {}  # written by the probers alone
        self._tasks: dict[str, tuple[object, anyio.CancelScope]] = {}  # name -> (key, scope)
        self._pids: dict[str, int] = {}  # name -> the process its prober probes
        self.killed: dict[str, str] = {}  # name -> the instance a failed probe stopped

    def sync(self, desired: DesiredState, observed: Mapping[str, Observed],
             tg: anyio.abc.TaskGroup) -> None:
        """A prober for each running instance with probes (a new one when the instance,
        its PID or its probes changed); none for the rest."""
        for name in list(self._tasks):
            if name not in desired.specs:
                self._stop(name)
        for name, want in desired.specs.items():
            obs = observed.get(name)
            spec = want.container.spec
            probes = (spec.startup_probe, spec.liveness_probe, spec.readiness_probe)
            running = obs is not None and obs.status is Status.RUNNING and obs.pid
            if not running or obs is None:
                self._stop(name)
                self.readiness.pop(name, None)
                continue
            if not any(probes):
                self._stop(name)
                cur = self.readiness.get(name)
                if cur is None or not cur.ready or cur.instance != obs.id:
                    self.readiness[name] = Readiness(True, time.time(), instance=obs.id,
                                                     pid=obs.pid)
                    self.host.kick()  # what waits for it to be ready is planned again
                continue
            key = (obs.id, obs.pid, probes)  # frozen models: compared, not serialised
            if name in self._tasks and self._tasks[name][0] == key:
                continue
            self._stop(name)
            scope = anyio.CancelScope()
            self._tasks[name] = (key, scope)
            tg.start_soon(self._run, name, want, obs, scope)

    def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task[1].cancel()

    def close(self) -> None:
        for name in list(self._tasks):
            self._stop(name)

    # -- one instance ----------------------------------------------------------------------

    async def _run(self, name: str, want: Desired, obs: Observed,
                   scope: anyio.CancelScope) -> None:
        spec = want.container.spec
        assert obs.pid is not None
        self._pids[name] = obs.pid
        old = self.readiness.get(name)  # the same process (its probes changed): kept
        keep = old is not None and (old.instance, old.pid) == (obs.id, obs.pid) and old.started
        started = anyio.Event()
        if spec.startup_probe is None or keep:
            started.set()
        self._set(name, obs.id, ready=bool(keep and old and old.ready and
                                           spec.readiness_probe is not None)
                  or (spec.readiness_probe is None and started.is_set()),
                  started=started.is_set(), message=None if keep else "probes starting")
        with scope:
            try:
                async with anyio.create_task_group() as tg:
                    if spec.startup_probe is not None and not started.is_set():
                        tg.start_soon(self._startup, name, want, obs, spec.startup_probe,
                                      started)
                    if spec.liveness_probe is not None:
                        tg.start_soon(self._liveness, name, want, obs, spec.liveness_probe,
                                      started)
                    if spec.readiness_probe is not None:
                        tg.start_soon(self._readiness, name, want, obs, spec.readiness_probe,
                                      started)
                    elif not started.is_set():
                        await started.wait()
                        self._set(name, obs.id, ready=True, started=True)
            except* _Killed:
                pass

    async def _startup(self, name: str, want: Desired, obs: Observed, p: Probe,
                       started: anyio.Event) -> None:
        await anyio.sleep(p.initial_delay_seconds)
        failures = 0
        while True:
            result = await self._probe(want, obs, p)
            if result.ok:
                self.host.event(name, "StartupProbeSucceeded", result.message)
                started.set()
                cur = self.readiness.get(name)
                self._set(name, obs.id, ready=bool(cur and cur.ready), started=True)
                return
            failures += 1
            self.host.event(name, "Unhealthy", f"Startup probe failed ({failures}/"
                                                f"{p.failure_threshold}): {result.message}",
                            warning=True)
            if failures >= p.failure_threshold:
                await self._kill(name, want, obs, p, f"startup probe failed {failures} times:"
                                                     f" {result.message}")
            await anyio.sleep(p.period_seconds)

    async def _liveness(self, name: str, want: Desired, obs: Observed, p: Probe,
                        started: anyio.Event) -> None:
        await started.wait()
        await anyio.sleep(p.initial_delay_seconds)
        failures = 0
        while True:
            result = await self._probe(want, obs, p)
            if result.ok:
                failures = 0
            else:
                failures += 1
                self.host.event(name, "Unhealthy", f"Liveness probe failed ({failures}/"
                                                    f"{p.failure_threshold}): {result.message}",
                                warning=True)
                if failures >= p.failure_threshold:
                    await self._kill(name, want, obs, p,
                                     f"liveness probe failed {failures} times: {result.message}")
            await anyio.sleep(p.period_seconds)

    async def _readiness(self, name: str, want: Desired, obs: Observed, p: Probe,
                         started: anyio.Event) -> None:
        await started.wait()
        await anyio.sleep(p.initial_delay_seconds)
        ok_run = bad_run = 0
        while True:
            result = await self._probe(want, obs, p)
            cur = self.readiness.get(name)
            ready = bool(cur and cur.ready)
            if result.ok:
                ok_run, bad_run = ok_run + 1, 0
                if not ready and ok_run >= p.success_threshold:
                    self._set(name, obs.id, ready=True, started=True, message=result.message)
                    self.host.event(name, "Ready", f"readiness probe: {result.message}")
            else:
                ok_run, bad_run = 0, bad_run + 1
                if bad_run >= p.failure_threshold:
                    self._set(name, obs.id, ready=False, started=True,
                              message=f"readiness probe failed: {result.message}")
                    if ready:
                        self.host.event(name, "NotReady", f"Readiness probe failed {bad_run}"
                                                          f" times: {result.message}",
                                        warning=True)
            await anyio.sleep(p.period_seconds)

    def _set(self, name: str, instance: str, *, ready: bool, started: bool,
             message: str | None = None) -> None:
        cur = self.readiness.get(name)
        if cur is not None and (cur.ready, cur.started, cur.instance, cur.message) == (
                ready, started, instance, message):
            return
        since = cur.since if cur is not None and cur.ready == ready else time.time()
        self.readiness[name] = Readiness(ready, since, message, started, instance,
                                         self._pids.get(name))
        self.host.kick()  # a pass publishes it, and plans what waited for it

    async def _probe(self, want: Desired, obs: Observed, p: Probe) -> netprobe.Result:
        """One probe, bounded by its timeoutSeconds; whatever goes wrong is its failure,
        never the daemon's."""
        try:
            return await self._probe_once(want, obs, p)
        except Exception as exc:
            log.warning("%s: a probe raised %r", want.name, exc)
            return netprobe.Result(False, f"{type(exc).__name__}: {exc}")

    async def _probe_once(self, want: Desired, obs: Observed, p: Probe) -> netprobe.Result:
        assert obs.pid is not None
        if p.exec is not None:
            try:
                res = await self.host.runtime.exec_probe(obs.id, p.exec.command,
                                                         timeout=p.timeout_seconds)
            except errors.RuntimeFailure as exc:
                return netprobe.Result(False, str(exc))
            if res is None:
                return netprobe.Result(False, f"timed out after {p.timeout_seconds}s")
            out = (res.stdout + res.stderr).decode(errors="replace").strip()[-_OUTPUT:]
            what = f"exit code {res.exit_code}" + (f": {out}" if out else "")
            return netprobe.Result(res.exit_code == 0, what)
        if p.http_get is not None:
            g = p.http_get
            assert isinstance(g.port, int)
            host = g.host or self.host.probe_address(want)
            headers = [(h.name, h.value) for h in g.http_headers]
            if g.scheme == "HTTP":  # on the event loop: no thread, no TLS
                return await netprobe.on_loop(netprobe.http_async, obs.pid, host, g.port,
                                              g.path, headers, timeout=p.timeout_seconds)
            return await netprobe.run(netprobe.http, obs.pid, host, g.port, g.path, g.scheme,
                                      headers, timeout=p.timeout_seconds)
        if p.tcp_socket is not None:
            t = p.tcp_socket
            assert isinstance(t.port, int)
            host = t.host or self.host.probe_address(want)
            return await netprobe.on_loop(netprobe.tcp_async, obs.pid, host, t.port,
                                          timeout=p.timeout_seconds)
        assert p.grpc is not None
        return await netprobe.run(netprobe.grpc, obs.pid, self.host.probe_address(want),
                                  p.grpc.port, p.grpc.service or "", timeout=p.timeout_seconds)

    async def _kill(self, name: str, want: Desired, obs: Observed, p: Probe, why: str) -> None:
        """Stop the instance for its restart policy to restart it: the stop signal, the
        grace period, SIGKILL (the kubelet's way); then this prober ends."""
        container: Container = want.container
        grace = p.termination_grace_period_seconds \
            or container.spec.termination_grace_period_seconds
        sig = obs.annotations.get("io.reconciler.stop-signal") or container.spec.stop_signal
        self.host.event(name, "Killing", f"{why}; stopping it ({sig}, {grace}s grace), its"
                                         f" restart policy decides what follows", warning=True)
        self._set(name, obs.id, ready=False, started=False, message=why)
        self.killed[name] = obs.id  # its exit is a failure, whatever its code (loop.record_exit)
        rt = self.host.runtime
        try:
            await rt.signal(obs.id, sig)
            with anyio.move_on_after(grace):
                await rt.wait_exit(obs.id)
                raise _Killed
            await rt.signal(obs.id, "SIGKILL")
        except errors.RuntimeFailure as exc:  # gone already: a worker replaced it
            log.info("%s: stopping after a failed probe: %s", name, exc)
        raise _Killed


class _Killed(Exception):  # noqa: N818 - control flow: this prober is done
    """The instance was stopped for a failed probe: its prober ends."""
