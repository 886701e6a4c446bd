"""The loop: source snapshots and exits in, plans out, one worker per object to run them.

    sources ─snapshots─▶ loop (this module) ─plan()─▶ workers (worker.py) ─▶ runtime
                            ▲                              │
                            └──── exits, relists ◀─────────┘
                            └──▶ view (a frozen ControllerView after every pass and step)
                                 ─▶ status.json, describe, Prometheus collector

The loop plans whenever it is kicked and hands each object's action to that object's
worker if the worker is idle. A relist every resync period catches drift made by hand; it
writes only objects no worker is busy with and that no worker touched since the list was
taken, so in-flight work is never mistaken for a half-made leftover. Everything outside
the loop (the status writer, the metrics thread) reads only the published view.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from reconciler import errors
from reconciler.core import desired as desired_mod
from reconciler.core import planner
from reconciler.core.backoff import Backoff
from reconciler.core.history import History
from reconciler.core.instance import ANN_POD_ROLE
from reconciler.core.observed import ExitStatus, Limits, Observed, Stats, Status
from reconciler.daemon import view as view_mod
from reconciler.daemon.locks import UpdateLocks
from reconciler.daemon.probes import Probers
from reconciler.daemon.status import Store, history_from_json
from reconciler.daemon.userns import IdRanges
from reconciler.daemon.worker import Worker
from reconciler.resolve.spec import Resolver

if TYPE_CHECKING:
    from reconciler.core.desired import SourceSnapshot
    from reconciler.daemon.metrics import DaemonMetrics
    from reconciler.daemon.network import Networks
    from reconciler.manifest.model import Container
    from reconciler.resolve.images import ImageDigests
    from reconciler.runtime.types import Runtime

log = logging.getLogger("reconciler")

STATUS_EVERY = 0.05  # seconds between two writes of status.json
LOCK_EVERY = 1.0  # seconds between two looks at a held update lock
STATUS_AFTER = 0.005  # ... and after the change: the workers it started go first


class Controller:
    def __init__(
        self,
        runtime: Runtime,
        store: Store,
        *,
        resolver: Resolver | None = None,
        concurrency: int = 4,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
        allow_empty: bool = False,
        resync: float = 30.0,
        clock: Callable[[], float] = time.time,
        metrics: DaemonMetrics | None = None,
        stats_reader: Callable[[str], tuple[Stats, Limits] | None] | None = None,
        cgroup_parent: str | None = None,
        pods_dir: str = desired_mod.DEFAULT_PODS_DIR,
        sources: tuple[str, ...] = (),
        network: Networks | None = None,
        default_subnet: str | None = None,
        id_ranges: IdRanges | None = None,
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.id_ranges = id_ranges or IdRanges(store.dir.as_posix())
        self.default_subnet = default_subnet
        self.sources = frozenset(sources)  # no pass before each has sent its first snapshot
        self.pods_dir = pods_dir
        self.store = store
        self.resolver = resolver or Resolver(None, cgroup_parent=cgroup_parent or "/",
                                             max_age=resync / 2)
        self.backoff = backoff
        self.concurrency = max(1, concurrency)
        self._slots: anyio.CapacityLimiter | None = None
        self.allow_empty = allow_empty
        self.resync = resync
        self.clock = clock
        self.metrics = metrics
        self.stats_reader = stats_reader
        self.cgroup_parent = cgroup_parent
        self.snapshots: dict[str, SourceSnapshot] = {}
        self.desired: desired_mod.DesiredState | None = None
        self.effective: desired_mod.DesiredState | None = None  # with digests, per pass
        self.observed: dict[str, Observed] = {}
        self.history: dict[str, History] = {}
        self.actual: dict[str, dict[str, Any]] = {}  # limits and mounts read back
        self.workers: dict[str, Worker] = {}
        self.last_plan: planner.Plan | None = None
        self.passes = 0
        self.ready = anyio.Event()  # the first full pass is done
        self.last_pass_at: float | None = None
        self.view = view_mod.empty(cgroup_parent)
        self.status_pass = -1  # the pass status.json was last written after
        self._since = view_mod.PhaseClock()
        self._status_due = anyio.Event()
        self._kick = anyio.Event()
        self._seq = 0  # bumped whenever a worker finishes something
        self._touched: dict[str, int] = {}
        self._disk_warned = False  # one warning per spell of a full disk
        self.disk_problem: str | None = None  # why the state dir cannot be written, now
        self._fell_back = False  # the status went to /run (paths.status_fallback)
        self._forget_due = True  # leftovers of gone objects: cleared after the next pass
        self._last_notes: tuple[str, ...] = ()  # logged once, not every pass
        self._tg: anyio.abc.TaskGroup | None = None
        self._network_recovered = False
        self.probers = Probers(self)
        self.locks = UpdateLocks(store.dir, lambda name, reason, message, warning: self.event(
            name, reason, message, warning=warning))

    # -- life cycle ------------------------------------------------------------------------

    async def run(
        self,
        snapshots: MemoryObjectReceiveStream[SourceSnapshot],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self._load_history()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._relist(first=True)
            await self.resolver.digests.gc(self.observed.values())
            tg.start_soon(self._status_writer)
            tg.start_soon(self._consume, snapshots)
            tg.start_soon(self._resync_loop)
            task_status.started()
            try:
                await self._loop()
            finally:
                self.probers.close()
                for w in self.workers.values():
                    w.close()

    @property
    def slots(self) -> anyio.CapacityLimiter:
        """How many objects do runtime work at once (``--concurrency``): a worker holds a
        slot for its steps, and lets it go while a stop's grace period runs out."""
        if self._slots is None:  # made in the event loop that uses it
            self._slots = anyio.CapacityLimiter(self.concurrency)
        return self._slots

    def kick(self) -> None:
        self._kick.set()

    @property
    def busy(self) -> Mapping[str, planner.Kind]:
        return {n: w.busy for n, w in self.workers.items() if w.busy is not None}

    def touch(self, name: str) -> None:
        self._seq += 1
        self._touched[name] = self._seq

    async def _status_writer(self) -> None:
        """status.json ``STATUS_AFTER`` after a change, then at most every ``STATUS_EVERY``:
        a burst of 100 creates writes it a few dozen times, not after each of a hundred
        passes. The short wait keeps the write off the critical path: the workers a pass
        started spawn conmon first, and the write runs while runc works. A last write on
        the way out.

        Nothing is written before the first pass: until then the previous daemon's file
        stays, which knows the desired state (a relist alone would not)."""
        try:
            while True:
                await self._status_due.wait()
                await anyio.sleep(STATUS_AFTER)
                self._status_due = anyio.Event()
                if self.passes:
                    self.write_status()
                    await anyio.sleep(STATUS_EVERY)
        finally:
            if self.passes:
                self.write_status()

    async def _consume(self, snapshots: MemoryObjectReceiveStream[SourceSnapshot]) -> None:
        async with snapshots:
            async for snap in snapshots:
                before = self.desired
                was_down = before is not None and snap.source in before.unavailable
                self.snapshots[snap.source] = snap
                self.desired = desired_mod.build(
                    self.snapshots, before, pods_dir=self.pods_dir,
                    **({"default_subnet": self.default_subnet} if self.default_subnet else {}))
                if self.network is not None:
                    self.network.set_desired(self.desired)
                    await self._prune_networks()
                if not snap.available and not was_down:  # told once per outage
                    log.warning("manifests source unavailable: %s (nothing it defined is"
                                " deleted while it is)", snap.reason)
                    self.event(None, "SourceUnavailable", str(snap.reason), warning=True)
                elif snap.available and was_down:
                    self.event(None, "SourceAvailable",
                               "manifests are readable again" if snap.source == "directory"
                               else f"manifests source {snap.source} is available again")
                self._report_problems(before)
                await self.resolver.digests.refresh(self.desired, pull=False)
                log.debug("desired state of %d objects", len(self.desired.specs),
                          extra={"stage": "desired"})
                self.kick()

    def probe_address(self, want: desired_mod.Desired) -> str:
        """Where a network probe of ``want`` connects: its (pod's) first address, else
        loopback (no network of its own, or the host's)."""
        if self.network is not None:
            unit = want.pod.sandbox if want.pod is not None else want.name
            for ips in self.network.addresses(unit).values():
                return ips[0].split("/")[0]
        return "127.0.0.1"

    async def _recover_networks(self) -> None:
        """Before the first pass: what a crash left of the networks cleared, and every live
        instance's interfaces and ports made what its applied manifest asks."""
        assert self.network is not None
        self._network_recovered = True
        live = await self.runtime.list()
        for what in await self.network.recover(live):
            self.event(None, "NetworkLeftoverRemoved", what)
        for obs in live:
            applied = _applied(obs)
            if applied is None or obs.pid is None or obs.status is not Status.RUNNING:
                continue
            current = self.observed.get(obs.name)
            if current is not None and current.id != obs.id:
                continue  # a stray (a make-before-break cut short): it is being removed
            member = obs.annotations.get(ANN_POD_ROLE, "sandbox") != "sandbox"
            try:
                told = await self.network.ensure(obs.name, applied, obs.id, obs.pid,
                                                 sandbox_member=member)
            except errors.RuntimeFailure as exc:
                self.event(obs.name, "NetworkFailed", str(exc), warning=True)
                continue
            for reason, message in told:
                self.event(obs.name, reason, message)

    async def _prune_networks(self) -> None:
        """Bridges of networks no longer desired nor used removed."""
        if self.network is None:
            return
        for name in await self.network.prune():
            self.event(None, "NetworkRemoved", f"network {name}: bridge and addresses removed")

    async def _resync_loop(self) -> None:
        while True:
            await anyio.sleep(self.resync)
            await self._prune_networks()
            await self._relist()
            if self.desired is not None:
                await self.resolver.digests.refresh(self.desired, pull=True)
            self.kick()

    async def _loop(self) -> None:
        wake_at: float | None = None
        while True:
            timeout = None if wake_at is None else max(0.0, wake_at - self.clock())
            with anyio.move_on_after(timeout):
                await self._kick.wait()
            self._kick = anyio.Event()
            if self.desired is None or not self.sources <= self.snapshots.keys():
                continue  # a source not heard from yet could own containers seen running
            if self.network is not None and not self._network_recovered:
                await self._recover_networks()
            wake_at = self._pass()

    def _pass(self) -> float | None:
        assert self.desired is not None
        now = self.clock()
        started = time.perf_counter()
        # with each image container's digest in its hash: what the plan and status.json use
        self.effective = self.resolver.digests.with_digests(self.desired)
        locks = self.locks.check(self.effective, self.observed, now)
        plan = planner.plan(self.effective, self.observed, self.history, now,
                            allow_empty=self.allow_empty, backoff=self.backoff, locks=locks,
                            ready={n: r.ready for n, r in self.probers.readiness.items()
                                   if self.observed.get(n) is not None
                                   and self.observed[n].id == r.instance})
        self.last_plan = plan
        for note in plan.notes:
            if note not in self._last_notes:
                log.log(logging.WARNING if note in plan.warnings else logging.INFO, "%s", note)
        self._last_notes = plan.notes
        if plan.actions:
            log.debug("plan of %d actions in %.1f ms", len(plan.actions),
                      (time.perf_counter() - started) * 1000, extra={"stage": "plan"})
        for action in plan.actions:
            self._dispatch(action)
        if self._tg is not None:
            self.probers.sync(self.effective, self.observed, self._tg)
        if self._forget_due and self.desired.available:  # after the first pass, each delete
            self._forget_due = False
            alive = set(self.desired.specs) | set(self.observed) | set(self.busy)
            for iid in self.runtime.forget(alive):
                log.info("cleared what was left of %s (its object is gone)", iid)
            keys = {"/".join(d.key) for d in self.desired.specs.values()}
            keys |= {"/".join(planner.object_key(o)) for o in self.observed.values()}
            with contextlib.suppress(errors.RuntimeFailure, OSError):
                for key in self.id_ranges.prune(keys):
                    log.info("user namespace ids of %s freed (the object is gone)", key)
        self.passes += 1
        self.last_pass_at = now
        if not any(w.busy is not None and not w.in_grace for w in self.workers.values()):
            self.ready.set()
        self._publish()
        if self.metrics is not None:
            self.metrics.passes.inc()
            self.metrics.pass_seconds.observe(time.perf_counter() - started)
        if self.locks.since:  # a held lock is looked at again every second
            return min(plan.wake_at or math.inf, now + LOCK_EVERY)
        return plan.wake_at

    def _dispatch(self, action: planner.Action) -> None:
        """To the object's worker, if it is idle (else the next pass plans again)."""
        if self._tg is None:  # not running (a test drives it with ``apply``)
            return
        worker = self._worker(action.name)
        if worker.busy is None:
            worker.submit(action)

    async def _run_worker(self, worker: Worker) -> None:
        try:
            await worker.run()
        finally:
            worker.close()
            if self.workers.get(worker.name) is worker:
                del self.workers[worker.name]

    def action_done(self, action: planner.Action, outcome: str, seconds: float) -> None:
        """A worker finished an action: retire it if its object is gone; plan again."""
        worker = self.workers.get(action.name)
        if (worker is not None and action.kind is planner.Kind.DELETE
                and action.cause is not planner.Cause.STRAY
                and action.name not in self.observed):
            del self.workers[action.name]  # a later create gets a new worker
            worker.close()
        if action.kind is planner.Kind.DELETE:
            self._forget_due = True
        if (action.kind is planner.Kind.DELETE and self.network is not None
                and self._tg is not None):
            self._tg.start_soon(self._prune_networks)
        if self.metrics is not None:
            self.metrics.actions.labels(action.kind.value, outcome).inc()
            self.metrics.action_seconds.labels(action.kind.value).observe(seconds)
        self.kick()

    def _publish(self) -> None:
        self.view = self._capture()
        self._status_due.set()

    def _capture(self) -> view_mod.ControllerView:
        """A frozen copy of the loop's state (shallow: the values are frozen already)."""
        # the last pass's (digests in the hashes): specHash and desiredSpecHash agree
        return view_mod.ControllerView(
            desired=self.effective or self.desired,
            observed=types.MappingProxyType(dict(self.observed)),
            history=types.MappingProxyType(dict(self.history)),
            busy=types.MappingProxyType(dict(self.busy)),
            plan=self.last_plan,
            actual=types.MappingProxyType(dict(self.actual)),
            passes=self.passes,
            last_pass_at=self.last_pass_at,
            ready=self.ready.is_set(),
            cgroup_parent=self.cgroup_parent,
            taken_at=self.clock(),
            resync=self.resync,
            networks=self.network.view() if self.network is not None else {},
            readiness=types.MappingProxyType(dict(self.probers.readiness)),
            disk=self.disk_problem,
        )

    # -- observing -------------------------------------------------------------------------

    async def _relist(self, *, first: bool = False) -> None:
        """What runc has now, merged into ``observed``; the first one also clears crash
        leftovers (one ``runc list`` for both: it is most of a restart's cost).

        The first one failing stops the daemon: a first pass over an empty ``observed``
        would start a second copy of every running container."""
        mark = self._seq
        started = time.perf_counter()
        try:
            found = await self.runtime.list()
        except errors.RuntimeFailure as exc:
            if first:
                raise
            log.warning("relist failed: %s", exc)
            return
        listed: dict[str, Observed] = {}
        later: list[tuple[str, Observed]] = []
        for obs in found:  # the newest generation is the object's; older ones are strays
            if obs.name in listed and _keeps(listed[obs.name], obs, self.store):
                self._stray(obs, mark)
                continue
            if obs.name in listed:
                self._stray(listed[obs.name], mark)
            listed[obs.name] = obs

        def mine(name: str) -> bool:  # no worker busy with it, none touched it meanwhile
            worker = self.workers.get(name)
            idle = worker is None or worker.busy is None
            return idle and self._touched.get(name, -1) <= mark

        for name in list(self.observed):
            if name not in listed and mine(name):
                self.event(name, "Vanished", "the container is gone from runc (drift)",
                           warning=True)
                self._worker(name).unwatch()
                gone = self.observed.pop(name)
                self._dispatch(planner.remove_stray(gone, vanished=True))
        for name, obs in listed.items():
            if not mine(name):
                continue
            old = self.observed.get(name)
            self.observed[name] = obs
            worker = self._worker(name)
            if obs.status is Status.STOPPED:
                worker.unwatch()
                if old is None or old.status is not Status.STOPPED or old.id != obs.id:
                    await self.record_exit(name, obs.id, by_us=False, known=None)
            elif obs.status in (Status.RUNNING, Status.PAUSED):
                worker.watch(obs.id)
                if old is None or old.pid != obs.pid or name not in self.actual:
                    if first:  # after the first pass: a restart's ready waits for nothing
                        later.append((name, obs))
                    else:
                        await self.readback(name, obs.id, _applied(obs), pid=obs.pid)
                hist = self.history.get(name, History())
                if hist.started_at is None or hist.generation < obs.generation:
                    self.history[name] = replace(
                        hist, spec_hash=obs.spec_hash,
                        started_at=hist.started_at or obs.created,
                        generation=max(hist.generation, obs.generation))
        log.debug("relist of %d instances in %.1f ms", len(found),
                  (time.perf_counter() - started) * 1000, extra={"stage": "relist"})
        if later and self._tg is not None:
            self._tg.start_soon(self._readback_adopted, later)
        if first:  # each leftover on its own: one that cannot be cleared blocks nothing
            for iid in await self.runtime.gc(known={o.id for o in found}):
                log.info("cleared leftovers of %s (no runc container owned them)", iid)
        self._publish()

    async def _readback_adopted(self, adopted: list[tuple[str, Observed]]) -> None:
        """What the kernel enforces for the instances the first relist adopted, once the
        first pass is done (until then status shows no read-back limits for them)."""
        await self.ready.wait()
        for name, obs in adopted:
            await anyio.lowlevel.checkpoint()  # one at a time: readiness is told first
            now = self.observed.get(name)
            if now is not None and now.id == obs.id and name not in self.actual:
                await self.readback(name, obs.id, _applied(obs), pid=obs.pid)
        self._publish()

    def _stray(self, obs: Observed, mark: int) -> None:
        worker = self.workers.get(obs.name)
        if (worker is None or worker.busy is None) and self._touched.get(obs.name, -1) <= mark:
            log.warning("%s: found an older instance %s beside a newer one", obs.name, obs.id,
                        extra={"object": obs.name, "action": "remove-stray"})
            self._dispatch(planner.remove_stray(obs))

    def _worker(self, name: str) -> Worker:
        worker = self.workers.get(name)
        if worker is None:
            worker = self.workers[name] = Worker(name, self)
            if self._tg is not None:  # else a test drives it with ``apply``
                self._tg.start_soon(self._run_worker, worker)
        return worker

    async def apply(self, action: planner.Action) -> None:
        """Run one action to its end, here and now (tests; ``run`` dispatches instead)."""
        worker = self._worker(action.name)
        worker.busy = action.kind
        await worker.execute(action)

    async def record_exit(self, name: str, instance: str, *, by_us: bool,
                          known: ExitStatus | None) -> None:
        exit_ = known or await self.runtime.exit_status(instance)
        hist = self.history.get(name, History())
        if exit_ is not None and self.probers.killed.get(name) == instance:
            del self.probers.killed[name]
            exit_ = dataclasses.replace(exit_, unhealthy=True)
        if exit_ is None or (hist.last_exit == exit_):
            return
        self.history[name] = planner.on_exit(hist, exit_, by_us=by_us, backoff=self.backoff)
        if not by_us:
            self.event(name, "Exited", exit_.text(), warning=exit_.failed)

    async def read_state(self, name: str, instance: str) -> Observed:
        """The state after a pause/resume/update; an exit meanwhile is recorded now, so the
        next pass cannot take it for an exit of unknown status."""
        obs = self.observed[name] = await self.runtime.state(instance)
        if obs.status is Status.STOPPED:
            await self.record_exit(name, instance, by_us=False, known=None)
        return obs

    async def readback(self, name: str, instance: str, container: Container | None, *,
                       pid: int | None = None) -> None:
        """What the kernel enforces now: cgroup limits, and the manifest's mounts as seen
        from inside the instance (``get``/``describe`` show these, not the request)."""
        wanted = {m.destination for m in container.spec.mounts} if container else set()
        try:
            limits = await self.runtime.limits(instance)
            mounts = await self.runtime.mounts(instance, pid=pid) if wanted else []
        except errors.RuntimeFailure:
            self.actual.pop(name, None)
            return
        self.actual[name] = {
            "limits": {"memoryBytes": limits.memory_bytes, "cpuQuotaUs": limits.cpu_quota_us,
                       "cpuPeriodUs": limits.cpu_period_us, "pids": limits.pids},
            "mounts": [{"destination": m.destination, "type": m.fstype, "source": m.source,
                        "readOnly": m.read_only} for m in mounts if m.destination in wanted],
        }

    # -- status ----------------------------------------------------------------------------

    def event(self, name: str | None, reason: str, message: str, *,
              warning: bool = False) -> None:
        try:
            self.store.event(name, reason, message, warning=warning, now=self.clock())
        except OSError as exc:  # a full disk must not stop the loop: containers come first
            self._disk_trouble("events", exc)
        self._publish()

    def _report_problems(self, before: desired_mod.DesiredState | None) -> None:
        """A new problem is a ManifestError event on each object its file defines (so
        ``events web`` and ``describe web`` show it), and a file whose problems are all
        gone a ManifestFixed one."""
        assert self.desired is not None
        old = set(before.problems) if before is not None else set()
        for finding in self.desired.problems:
            if finding not in old:
                names = self._defined_by(finding.file)
                log.warning("manifest error: %s", finding,
                            extra=_log_fields(names, "manifest-error"))
                for name in names:
                    self.event(name, "ManifestError", str(finding), warning=True)
        still = {p.file for p in self.desired.problems}
        for file in sorted({p.file for p in old} - still):
            names = self._defined_by(file)
            log.info("manifest fixed: %s", file, extra=_log_fields(names, "manifest-fixed"))
            for name in names:
                self.event(name, "ManifestFixed", f"{file} has no errors now")

    def _defined_by(self, origin: str) -> list[str | None]:
        """The objects an origin defines (a pod by its sandbox unit), or [None]."""
        assert self.desired is not None
        names = {d.name for d in self.desired.specs.values() if d.source == origin
                 and (d.pod is None or d.pod.role.value == "sandbox")}
        names |= {o.name for o in self.observed.values() if o.source == origin
                  and o.annotations.get(ANN_POD_ROLE) in (None, "sandbox")}
        found: list[str | None] = [*sorted(names)]
        return found or [None]

    def _disk_trouble(self, what: str, exc: OSError) -> None:
        self.disk_problem = f"cannot write {what} in {self.store.dir}: {exc.strerror or exc}"
        if not self._disk_warned:
            log.warning("%s (carrying on without)", self.disk_problem)
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
        self.view = self._capture()
        self.status_pass = self.view.passes
        doc = view_mod.status_document(self.view, self._since)
        try:
            self.store.write_status(doc)
        except OSError as exc:
            self._disk_trouble("status", exc)
            doc["daemon"]["stateDir"] = self.disk_problem  # said where the CLI looks
            try:
                self.store.write_status(doc, fallback=True)
                self._fell_back = True
            except OSError:
                pass
            return
        self._disk_warned = False
        self.disk_problem = None
        if self._fell_back:
            self._fell_back = False
            with contextlib.suppress(OSError):
                self.store.clear_fallback()


def _keeps(kept: Observed, other: Observed, store: Store) -> bool:
    """Of two instances of one object, whether ``kept`` stays (``other`` is a stray): the
    one a make-before-break says serves (a daemon killed in one), else the newer."""
    try:
        serving = json.loads((store.dir / "rollouts" / f"{kept.name}.json").read_text())
    except (OSError, ValueError):
        serving = None
    if isinstance(serving, dict) and serving.get("serving") in (kept.id, other.id):
        return bool(serving["serving"] == kept.id)
    return kept.generation > other.generation


def _log_fields(names: list[str | None], action: str) -> dict[str, str]:
    """``--log-format json``'s fields for a line about the objects a file defines."""
    named = [n for n in names if n]
    return {"action": action, **({"object": ",".join(named)} if named else {})}


def plan_once(desired: desired_mod.DesiredState, observed: Mapping[str, Observed],
              history: Mapping[str, History], digests: ImageDigests, *, now: float,
              allow_empty: bool, backoff: Backoff) -> planner.Plan:
    """One plan, as ``reconciler diff`` shows it (the loop does the same in ``_pass``):
    image containers' hashes cover the digest each tag names now."""
    return planner.plan(digests.with_digests(desired), observed, history, now,
                        allow_empty=allow_empty, backoff=backoff)


def _applied(obs: Observed) -> Container | None:
    return planner.applied_container(obs)
