"""The controller: turns snapshots and container exits into plans, and plans into actions.

    source ─snapshots─▶ controller ─plan()─▶ executor (this module) ─▶ runtime
                           ▲                                │
                           └──── exits (pidfd), relists ◀───┘

One worker at a time per container name, many names at once (bounded); a failing container
is retried with backoff by the planner and never blocks the others. Exits arrive as events
(one watcher task per running container, waiting on the runtime's ``wait_exit``), and a
relist every resync period catches drift made by hand. The only caller of the runtime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from reconciler import changes, errors, planner
from reconciler.backoff import Backoff
from reconciler.daemon import desired as desired_mod
from reconciler.daemon import phases
from reconciler.daemon.imaging import ImageDigests
from reconciler.daemon.source import Snapshot
from reconciler.daemon.status import Store, history_from_json, history_to_json
from reconciler.manifest.model import Container, Resources, RunState
from reconciler.planner import Action, History, Kind
from reconciler.runtime.types import (
    ANN_MANIFEST,
    Limits,
    Observed,
    Runtime,
    Stats,
    Status,
)

if TYPE_CHECKING:
    from reconciler.daemon.metrics import DaemonMetrics
    from reconciler.images.store import ImageStore

log = logging.getLogger("reconciler")


class Controller:
    def __init__(
        self,
        runtime: Runtime,
        store: Store,
        *,
        concurrency: int = 4,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
        allow_empty: bool = False,
        resync: float = 30.0,
        clock: Callable[[], float] = time.time,
        metrics: DaemonMetrics | None = None,
        stats_reader: Callable[[str], tuple[Stats, Limits] | None] | None = None,
        images: ImageStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.backoff = backoff
        self.allow_empty = allow_empty
        self.resync = resync
        self.clock = clock
        self.limiter = anyio.CapacityLimiter(max(1, concurrency))
        self.metrics = metrics
        self._stats_reader = stats_reader
        self.images = ImageDigests(images, max_age=resync / 2)
        self.desired: desired_mod.DesiredState | None = None
        self.observed: dict[str, Observed] = {}
        self.history: dict[str, History] = {}
        self.busy: dict[str, Kind] = {}
        self.watchers: dict[str, anyio.CancelScope] = {}
        self.last_plan: planner.Plan | None = None
        self.passes = 0
        self.ready = anyio.Event()  # the first full pass is done
        self.last_pass_at: float | None = None
        self.phase_since: dict[str, tuple[str, float]] = {}
        self._status_due = anyio.Event()
        self.status_pass = -1  # the pass status.json was last written after
        self.actual: dict[str, dict[str, Any]] = {}  # limits and mounts read back
        self._kick = anyio.Event()
        self._disk_warned = False  # one warning per spell of a full disk
        self._last_notes: tuple[str, ...] = ()  # logged once, not every pass
        self._tg: anyio.abc.TaskGroup | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def run(
        self,
        snapshots: MemoryObjectReceiveStream[Snapshot],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self._load_history()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._relist()
            await self.images.gc(self.observed.values())
            tg.start_soon(self._status_writer)
            tg.start_soon(self._consume, snapshots)
            tg.start_soon(self._resync_loop)
            task_status.started()
            await self._loop()

    def kick(self) -> None:
        self._kick.set()

    async def _status_writer(self) -> None:
        """status.json after changes, at most every 50 ms: a burst of 100 creates writes it
        a few dozen times, not after each of a hundred passes. A last write on the way out."""
        try:
            while True:
                await self._status_due.wait()
                self._status_due = anyio.Event()
                self.write_status()
                await anyio.sleep(0.05)
        finally:
            self.write_status()

    async def _consume(self, snapshots: MemoryObjectReceiveStream[Snapshot]) -> None:
        async with snapshots:
            async for snap in snapshots:
                before = self.desired
                self.desired = desired_mod.build(snap, before)
                if before is None or before.available != self.desired.available:
                    if not self.desired.available:
                        self._event(None, "SourceUnavailable", str(self.desired.reason),
                                    warning=True)
                    elif before is not None:
                        self._event(None, "SourceAvailable", "manifests are readable again")
                self._report_problems(before)
                await self.images.refresh(self.desired, pull=False)
                self.kick()

    async def _resync_loop(self) -> None:
        while True:
            await anyio.sleep(self.resync)
            await self._relist()
            if self.desired is not None:
                await self.images.refresh(self.desired, pull=True)
            self.kick()

    async def _loop(self) -> None:
        wake_at: float | None = None
        while True:
            timeout = None if wake_at is None else max(0.0, wake_at - self.clock())
            with anyio.move_on_after(timeout):
                await self._kick.wait()
            self._kick = anyio.Event()
            if self.desired is None:
                continue
            wake_at = self._pass()

    def cgroup_stats(self, name: str) -> tuple[Stats, Limits] | None:
        """Usage and limits of one container, read synchronously (for metrics scrapes)."""
        return self._stats_reader(name) if self._stats_reader is not None else None

    def _pass(self) -> float | None:
        assert self.desired is not None
        now = self.clock()
        started = time.perf_counter()
        plan = planner.plan(self.images.with_digests(self.desired), self.observed,
                            self.history, now, allow_empty=self.allow_empty,
                            backoff=self.backoff)
        self.last_plan = plan
        for note in plan.notes:
            if note not in self._last_notes:
                log.info("%s", note)
        self._last_notes = plan.notes
        assert self._tg is not None
        for action in plan.actions:
            if action.name in self.busy:
                continue
            self.busy[action.name] = action.kind
            self._tg.start_soon(self._execute, action)
        self.passes += 1
        self.last_pass_at = now
        if not self.busy:
            self.ready.set()
        self._status_due.set()
        if self.metrics is not None:
            self.metrics.passes.inc()
            self.metrics.pass_seconds.observe(time.perf_counter() - started)
        return plan.wake_at

    # -- observing -------------------------------------------------------------------------

    async def _relist(self) -> None:
        try:
            listed = {o.name: o for o in await self.runtime.list()}
        except errors.RuntimeFailure as exc:
            log.warning("relist failed: %s", exc)
            return
        for name in list(self.observed):
            if name not in listed and name not in self.busy:
                self._event(name, "Vanished", "the container is gone from runc (drift)",
                            warning=True)
                self._stop_watch(name)
                del self.observed[name]
        for name, obs in listed.items():
            if name in self.busy:
                continue
            old = self.observed.get(name)
            self.observed[name] = obs
            if obs.status is Status.STOPPED:
                self._stop_watch(name)
                if old is None or old.status is not Status.STOPPED:
                    await self._record_exit(name, by_us=False, known=None)
            elif obs.status in (Status.RUNNING, Status.PAUSED):
                if old is not None and old.pid != obs.pid:
                    self._stop_watch(name)
                self._watch(name)
                if old is None or old.pid != obs.pid or name not in self.actual:
                    await self._readback(name, _applied_container(obs), pid=obs.pid)
                if name not in self.history or self.history[name].started_at is None:
                    self.history[name] = replace(self.history.get(name, History()),
                                                 spec_hash=obs.spec_hash,
                                                 started_at=obs.created)

    async def _record_exit(self, name: str, *, by_us: bool, known: Any) -> None:
        exit_ = known or await self.runtime.exit_status(name)
        hist = self.history.get(name, History())
        if exit_ is None or (hist.last_exit == exit_):
            return
        self.history[name] = planner.on_exit(hist, exit_, by_us=by_us, backoff=self.backoff)
        if not by_us:
            what = phases.exit_text(exit_)
            self._event(name, "Exited", what, warning=exit_.failed)

    def _watch(self, name: str) -> None:
        if name in self.watchers or self._tg is None:
            return
        scope = anyio.CancelScope()
        self.watchers[name] = scope
        self._tg.start_soon(self._watcher, name, scope)

    def _stop_watch(self, name: str) -> None:
        scope = self.watchers.pop(name, None)
        if scope is not None:
            scope.cancel()

    async def _watcher(self, name: str, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                exit_ = await self.runtime.wait_exit(name)
            except errors.RuntimeFailure:
                exit_ = None
        if scope.cancel_called:
            return
        if self.watchers.get(name) is scope:
            del self.watchers[name]
        # Stop, delete and the create-like actions cancel this watcher before they act, so a
        # worker still busy on the name is a pause/resume/update, or the create that started
        # this watch: let it finish, then the exit is ours to record.
        while name in self.busy:
            await anyio.sleep(0.005)
        obs = self.observed.get(name)
        if obs is not None and obs.status is not Status.STOPPED:
            self.observed[name] = replace(obs, status=Status.STOPPED, pid=None)
        await self._record_exit(name, by_us=False, known=exit_)
        self.kick()

    # -- acting ----------------------------------------------------------------------------

    async def _execute(self, action: Action) -> None:
        name = action.name
        outcome = "error"
        started = time.perf_counter()
        try:
            async with self.limiter:
                log.info("%s %s: %s", action.kind.value, name, action.reason)
                await self._apply(action)
            outcome = "success"
        except errors.RuntimeFailure as exc:
            self._failed(action, exc)
        except Exception as exc:  # a bug must not take the other containers down
            log.exception("%s %s failed unexpectedly", action.kind.value, name)
            self._failed(action, exc)
        finally:
            self.busy.pop(name, None)
            if self.metrics is not None:
                self.metrics.actions.labels(action.kind.value, outcome).inc()
                self.metrics.action_seconds.labels(action.kind.value).observe(
                    time.perf_counter() - started)
            self.kick()

    def _failed(self, action: Action, exc: Exception) -> None:
        name = action.name
        message = str(exc)
        log.warning("%s %s failed: %s", action.kind.value, name, message)
        if action.desired is not None:
            self.history[name] = planner.on_failure(self.history.get(name, History()),
                                                    action.desired.spec_hash, message,
                                                    self.clock())
        self._event(name, "Failed", f"{action.kind.value}: {message}", warning=True)

    async def _apply(self, action: Action) -> None:
        name, kind, want = action.name, action.kind, action.desired
        if kind is Kind.DELETE:
            await self._remove(name, graceful=True)
            self.observed.pop(name, None)
            self.history.pop(name, None)
            self.actual.pop(name, None)
            self._event(name, "Deleted", action.reason)
            await self.images.gc(self.observed.values())
            return
        assert want is not None
        spec = want.container.spec
        if kind is Kind.STOP:
            self._stop_watch(name)
            exit_ = await self.runtime.stop(name, sig=spec.stop_signal,
                                            grace=spec.termination_grace_period_seconds)
            self.observed[name] = await self.runtime.state(name)
            self.history[name] = planner.on_exit(self.history.get(name, History()), exit_,
                                                 by_us=True, backoff=self.backoff)
            self._event(name, "Stopped", action.reason)
            return
        if kind is Kind.UPDATE:
            try:
                await self._update_live(action, want)
            except errors.LiveUpdateImpossible as exc:
                self._event(name, "LiveUpdateImpossible", f"{exc}; recreating instead",
                            warning=True)
                kind = Kind.RECREATE
            else:  # and the run state with it, so that one plan is enough
                status = self.observed[name].status
                if spec.state is RunState.PAUSED and status is Status.RUNNING:
                    kind = Kind.PAUSE
                elif spec.state is RunState.RUNNING and status is Status.PAUSED:
                    kind = Kind.RESUME
                else:
                    return
        if kind is Kind.PAUSE:
            await self.runtime.pause(name)
            self._event(name, "Paused", action.reason)
            await self._read_state(name)
            return
        if kind is Kind.RESUME:
            await self.runtime.resume(name)
            self._event(name, "Resumed", action.reason)
            await self._read_state(name)
            return
        # create, recreate, restart, start: pull if need be, remove the old one, create
        spec_hash = await self.images.resolve(want)
        if name in self.observed:
            await self._remove(name, graceful=kind is Kind.RECREATE, keep_logs=True)
            self.observed.pop(name, None)
        obs = await self.runtime.create(want.container, source=want.source,
                                        spec_hash=spec_hash)
        self.observed[name] = obs
        self.history[name] = planner.on_started(self.history.get(name, History()),
                                                spec_hash, self.clock(),
                                                restart=kind is Kind.RESTART)
        self._watch(name)
        await self._readback(name, want.container, pid=obs.pid)
        if spec.state is RunState.PAUSED:
            await self.runtime.pause(name)
            self.observed[name] = replace(obs, status=Status.PAUSED)
        reason = {Kind.CREATE: "Created", Kind.RECREATE: "Recreated",
                  Kind.RESTART: "Restarted", Kind.START: "Started"}[kind]
        self._event(name, reason, action.reason)

    async def _update_live(self, action: Action, want: desired_mod.Desired) -> None:
        """Mounts and resources in place: same container, same init PID."""
        name = action.name
        obs = self.observed[name]
        old = _applied_container(obs)
        parts = changes.live_parts(changes.Change(live=action.patch, recreate=()))
        new_spec = want.container.spec
        said: list[str] = []
        limits = None
        if "mounts" in parts:
            if old is None:
                raise errors.LiveUpdateImpossible("the applied mounts are unknown",
                                                  container=name)
            said = await self.runtime.update_mounts(name, old.spec.mounts, new_spec.mounts)
        if "resources" in parts:
            limits = await self.runtime.update_resources(name, new_spec.resources)
        # Recorded before anything is told: a crash in between makes the next daemon
        # re-apply the change, which is idempotent (a mount is swapped for the same one).
        await self.runtime.set_applied(name, want.container)
        for line in said:
            reason, _, dest = line.partition(" ")
            self._event(name, reason, dest)
        if limits is not None:
            before = old.spec.resources if old is not None else None
            self._event(name, "ResourcesUpdated", _resources_text(before, new_spec.resources,
                                                                  limits))
        if "metadata" in parts:
            self._event(name, "MetadataUpdated", "labels/annotations")
        obs = await self._read_state(name)
        await self._readback(name, want.container, pid=obs.pid)

    async def _read_state(self, name: str) -> Observed:
        """The state after a pause/resume/update; an exit meanwhile is recorded now, so the
        next pass cannot take it for an exit of unknown status."""
        obs = self.observed[name] = await self.runtime.state(name)
        if obs.status is Status.STOPPED:
            await self._record_exit(name, by_us=False, known=None)
        return obs

    async def _readback(self, name: str, container: Container | None, *,
                        pid: int | None = None) -> None:
        """What the kernel enforces now: cgroup limits, and the manifest's mounts as seen
        from inside the container (``get``/``describe`` show these, not the request)."""
        try:
            limits = await self.runtime.limits(name)
            mounts = await self.runtime.mounts(name, pid=pid)
        except errors.RuntimeFailure:
            self.actual.pop(name, None)
            return
        wanted = {m.destination for m in container.spec.mounts} if container else set()
        self.actual[name] = {
            "limits": {"memoryBytes": limits.memory_bytes, "cpuQuotaUs": limits.cpu_quota_us,
                       "cpuPeriodUs": limits.cpu_period_us, "pids": limits.pids},
            "mounts": [{"destination": m.destination, "type": m.fstype, "source": m.source,
                        "readOnly": m.read_only} for m in mounts if m.destination in wanted],
        }

    async def _remove(self, name: str, *, graceful: bool, keep_logs: bool = False) -> None:
        self._stop_watch(name)
        obs = self.observed.get(name)
        if graceful and obs is not None and obs.status in (Status.RUNNING, Status.PAUSED):
            # the manifest it runs with: a deleted one is no longer among the desired
            applied = _applied_container(obs)
            spec = applied.spec if applied is not None else None
            with contextlib.suppress(errors.ContainerNotFound):
                await self.runtime.stop(
                    name, sig=spec.stop_signal if spec else "SIGTERM",
                    grace=spec.termination_grace_period_seconds if spec else 10)
        await self.runtime.delete(name, keep_logs=keep_logs)

    # -- status ----------------------------------------------------------------------------

    def _event(self, name: str | None, reason: str, message: str, *, warning: bool = False) -> None:
        try:
            self.store.event(name, reason, message, warning=warning, now=self.clock())
        except OSError as exc:  # a full disk must not stop the loop: containers come first
            self._disk_trouble("events", exc)

    def _report_problems(self, before: desired_mod.DesiredState | None) -> None:
        assert self.desired is not None
        old = set(before.problems) if before is not None else set()
        for finding in self.desired.problems:
            if finding not in old:
                log.warning("manifest error: %s", finding)
                self._event(None, "ManifestError", str(finding), warning=True)

    def _disk_trouble(self, what: str, exc: OSError) -> None:
        if not self._disk_warned:
            log.warning("cannot write %s in %s: %s (carrying on without)", what,
                        self.store.dir, exc.strerror or exc)
            self._disk_warned = True

    def _load_history(self) -> None:
        try:
            data = self.store.read_status().get("containers", {})
        except errors.ReconcilerError as exc:
            log.warning("ignoring the saved status: %s (restart counts start again; the "
                        "containers themselves are read from runc and the depot)", exc)
            return
        for name, record in data.items():
            with contextlib.suppress(TypeError, ValueError):
                self.history[name] = history_from_json(record.get("history", {}))

    def write_status(self) -> None:
        self.status_pass = self.passes
        try:
            self.store.write_status(phases.status_document(self))
        except OSError as exc:
            self._disk_trouble("status", exc)
            return
        self._disk_warned = False

    def history_json(self, name: str) -> dict[str, Any]:
        return history_to_json(self.history.get(name, History()))


def _applied_container(obs: Observed) -> Container | None:
    text = obs.applied or obs.annotations.get(ANN_MANIFEST)
    if not text:
        return None
    try:
        return Container.model_validate(json.loads(text))
    except ValueError:
        return None


def _resources_text(before: Resources | None, after: Resources, limits: Limits) -> str:
    """``memory 64Mi→128Mi, pids 64→128`` (what changed), read back from the cgroup."""
    parts = []
    for field_name in ("memory", "cpu", "pids"):
        old = getattr(before, field_name, None) if before is not None else None
        new = getattr(after, field_name)
        if old != new:
            parts.append(f"{field_name} {old if old is not None else 'unlimited'}\u2192"
                         f"{new if new is not None else 'unlimited'}")
    got = (f"cgroup now: memory {limits.memory_bytes or 'max'}, cpu quota "
           f"{limits.cpu_quota_us or 'max'}/{limits.cpu_period_us}, pids {limits.pids or 'max'}")
    return f"{', '.join(parts) or 'unchanged'} ({got})"
