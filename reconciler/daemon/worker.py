"""One worker per logical object: it owns the object's serial steps and its exit watcher.

    loop ─Action (typed steps)─▶ worker (this module) ─▶ resolve ─▶ runtime
                                   ▲  │
                  exit (pidfd) ────┘  └─▶ observed/history of its own object, events

Never two operations on one object at a time, many objects at once (kopf's per-object
queues). The worker executes the planner's steps in order and decides nothing: a live
change the runtime refuses is recorded in the history, and the next plan makes a new
instance. A worker holds one of the loop's ``--concurrency`` slots while it works (runc
and conmon are the CPU-bound part), and lets it go while a grace period runs out. The
worker is the only writer of its object's entries in the loop's ``observed``,
``history`` and ``actual`` maps (the relist writes only an idle object's).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reconciler import atomic, errors
from reconciler.core import planner
from reconciler.core.history import History
from reconciler.core.instance import ANN_POD
from reconciler.core.observed import ExitStatus, Limits, Observed, Status
from reconciler.core.planner import Action, Cause, Kind
from reconciler.manifest.model import Resources, RunState

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.core.backoff import Backoff
    from reconciler.core.desired import Desired, DesiredState
    from reconciler.daemon.network import Networks
    from reconciler.daemon.probes import Probers
    from reconciler.daemon.status import Store
    from reconciler.daemon.userns import IdRanges
    from reconciler.manifest.model import Container
    from reconciler.resolve.spec import Resolver
    from reconciler.runtime.types import Runtime


class Loop(Protocol):
    """What a worker uses of the loop that owns it (``loop.Controller``): the maps whose
    entries for its own object it writes, the runtime and resolver, and a few calls back."""

    runtime: Runtime
    resolver: Resolver
    network: Networks | None
    id_ranges: IdRanges
    probers: Probers
    store: Store
    effective: DesiredState | None
    backoff: Backoff
    clock: Callable[[], float]
    observed: dict[str, Observed]
    history: dict[str, History]
    actual: dict[str, dict[str, Any]]
    ready: anyio.Event

    @property
    def slots(self) -> anyio.CapacityLimiter: ...

    def kick(self) -> None: ...

    def touch(self, name: str) -> None: ...

    def event(self, name: str | None, reason: str, message: str, *,
              warning: bool = False) -> None: ...

    def action_done(self, action: Action, outcome: str, seconds: float) -> None: ...

    async def record_exit(self, name: str, instance: str, *, by_us: bool,
                          known: ExitStatus | None) -> None: ...

    async def read_state(self, name: str, instance: str) -> Observed: ...

    async def readback(self, name: str, instance: str, container: Container | None, *,
                       pid: int | None = None) -> None: ...

log = logging.getLogger("reconciler")

_DONE_EVENT = {Kind.CREATE: "Created", Kind.RECREATE: "Recreated", Kind.RESTART: "Restarted",
               Kind.START: "Started"}


@dataclass(frozen=True)
class _Exited:
    instance: str
    exit: ExitStatus | None


class Worker:
    def __init__(self, name: str, ctl: Loop) -> None:
        self.name = name
        self.ctl = ctl
        self.busy: Kind | None = None
        self.in_grace = False  # waiting out a stop's grace period: nothing to do but wait
        self._inbox: tuple[MemoryObjectSendStream[Action | _Exited],
                           MemoryObjectReceiveStream[Action | _Exited]] | None = None
        self._watching: tuple[str, anyio.CancelScope] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    def _streams(self) -> tuple[MemoryObjectSendStream[Action | _Exited],
                                MemoryObjectReceiveStream[Action | _Exited]]:
        if self._inbox is None:  # made when first used: a worker a test drives has none
            self._inbox = anyio.create_memory_object_stream[Action | _Exited](math.inf)
        return self._inbox

    @property
    def _send(self) -> MemoryObjectSendStream[Action | _Exited]:
        return self._streams()[0]

    def submit(self, action: Action) -> None:
        self.busy = action.kind
        self._send.send_nowait(action)

    def watch(self, instance: str) -> None:
        """Watch ``instance``'s init for an exit (once; a new instance replaces the watch)."""
        if self._watching is not None:
            if self._watching[0] == instance:
                return
            self.unwatch()
        if self._tg is None:
            return
        scope = anyio.CancelScope()
        self._watching = (instance, scope)
        self._tg.start_soon(self._watcher, instance, scope)

    def unwatch(self, instance: str | None = None) -> None:
        """Stop watching (``instance``: only if that is the one watched)."""
        if self._watching is not None and instance in (None, self._watching[0]):
            self._watching[1].cancel()
            self._watching = None

    def close(self) -> None:
        """No more work: the run loop ends (or, never started, the inbox is closed here)."""
        if self._inbox is None:
            return
        self._inbox[0].close()
        if self._tg is None:
            self._inbox[1].close()

    async def run(self) -> None:
        send, receive = self._streams()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            async with send, receive:
                async for item in receive:
                    if isinstance(item, _Exited):
                        await self._exited(item)
                    else:
                        await self.execute(item)
            tg.cancel_scope.cancel()

    # -- exits -------------------------------------------------------------------------------

    async def _watcher(self, instance: str, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                exit_ = await self.ctl.runtime.wait_exit(instance)
            except errors.RuntimeFailure:
                exit_ = None
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(_Exited(instance, exit_))
        if self._watching is not None and self._watching[1] is scope:
            self._watching = None

    async def _exited(self, item: _Exited) -> None:
        """An exit is recorded between steps, never during one (an exit during a pause or
        a create is seen once that step is done)."""
        ctl = self.ctl
        obs = ctl.observed.get(self.name)
        if obs is None or obs.id != item.instance:
            return  # an instance this worker has since replaced or removed
        if obs.status is not Status.STOPPED:
            ctl.observed[self.name] = replace(obs, status=Status.STOPPED, pid=None)
        await ctl.record_exit(self.name, item.instance, by_us=False, known=item.exit)
        ctl.touch(self.name)
        ctl.kick()

    # -- steps -------------------------------------------------------------------------------

    async def execute(self, action: Action) -> None:
        ctl = self.ctl
        outcome = "error"
        started = time.perf_counter()
        log.info("%s %s: %s", action.kind.value, self.name, action.reason,
                 extra={"stage": "action", "object": self.name,
                        "action": action.kind.value})
        try:
            async with ctl.slots:
                await self._steps(action)
            outcome = "success"
        except RolledBack as exc:
            ctl.event(self.name, exc.reason, str(exc), warning=exc.reason == "UpdateFailed")
            outcome = "rolledback"
        except errors.LiveUpdateImpossible as exc:
            assert action.desired is not None
            ctl.history[self.name] = planner.on_live_impossible(
                ctl.history.get(self.name, History()), action.desired.manifest_json)
            ctl.event(self.name, "LiveUpdateImpossible", f"{exc}; recreating instead",
                      warning=True)
            outcome = "replanned"
        except errors.RuntimeFailure as exc:
            self._failed(action, exc)
        except Exception as exc:  # a bug must not take the other objects down
            if isinstance(exc, OSError) and exc.errno in FULL:  # a full disk: no traceback
                self._failed(action, errors.RuntimeFailure(
                    f"{exc.strerror}{f' ({exc.filename})' if exc.filename else ''}"))
            else:
                log.exception("%s %s failed unexpectedly", action.kind.value, self.name,
                              extra={"object": self.name, "action": action.kind.value})
                self._failed(action, exc)
        finally:
            self.busy = None
            self.in_grace = False
            ctl.touch(self.name)
            ctl.action_done(action, outcome, time.perf_counter() - started)

    def _failed(self, action: Action, exc: Exception) -> None:
        message = str(exc)
        log.warning("%s %s failed: %s", action.kind.value, self.name, message,
                    extra={"stage": "failed", "object": self.name,
                           "action": action.kind.value})
        ctl = self.ctl
        if action.desired is not None and action.cause is not Cause.STRAY:
            ctl.history[self.name] = planner.on_failure(
                ctl.history.get(self.name, History()), action.desired.spec_hash, message,
                ctl.clock())
        ctl.event(self.name, "Failed", f"{action.kind.value}: {message}", warning=True)

    async def _steps(self, action: Action) -> None:
        ctl, name, rt = self.ctl, self.name, self.ctl.runtime
        if any(isinstance(s, planner.Create) for s in action.steps):
            _room(ctl.store.dir)  # before anything stops: the old revision keeps running
        told: list[tuple[str, str]] = []  # live changes, told once recorded
        made: Observed | None = None
        rollout = next((s for s in action.steps if isinstance(s, planner.AwaitReady)), None)
        for step in action.steps:
            if isinstance(step, planner.Stop):
                exit_ = await self._stop(step)
                if action.kind is Kind.STOP:
                    ctl.observed[name] = await rt.state(step.instance)
                    if exit_ is not None:
                        ctl.history[name] = planner.on_exit(
                            ctl.history.get(name, History()), exit_, by_us=True,
                            backoff=ctl.backoff)
                    ctl.event(name, "Stopped", action.reason)
            elif isinstance(step, planner.Delete):
                self.unwatch(step.instance)
                await self._release(step.instance)
                await rt.delete(step.instance, keep_logs=step.keep_logs,
                                pod_gone=step.pod_gone)
                if action.cause is Cause.STRAY:
                    ctl.event(name, "InstanceRemoved", f"{step.instance}: {action.reason}")
                    continue
                if rollout is not None:  # the old instance, after the handover
                    _rollout_file(ctl.store, name).unlink(missing_ok=True)
                    continue
                gone = ctl.observed.pop(name, None)
                if action.kind is Kind.DELETE and gone is not None:
                    if ANN_POD not in gone.annotations or step.pod_gone:  # gone: its ids too
                        ctl.id_ranges.release("/".join(planner.object_key(gone)))
                if action.kind is Kind.DELETE:
                    if action.cause is not Cause.SANDBOX_GONE:  # made again: same counts
                        ctl.history.pop(name, None)
                    ctl.actual.pop(name, None)
                    ctl.event(name, "Deleted", action.reason)
                    await ctl.resolver.digests.gc(ctl.observed.values())
            elif isinstance(step, planner.Create):
                assert action.desired is not None
                spec = await ctl.resolver.instance(action.desired, step)
                if not action.desired.container.spec.host_users:
                    key = "/".join(action.desired.key)
                    spec = replace(spec, id_map=ctl.id_ranges.range_for(key, name=name))
                if ctl.network is not None:
                    spec = replace(spec, etc_files=ctl.network.etc_files(action.desired))
                if rollout is not None:  # which one serves, for a daemon killed meanwhile
                    _write_rollout(ctl.store, name, old=rollout.old, new=step.instance,
                                   serving=rollout.old)
                made = await rt.create(spec)
                ctl.observed[name] = made
                await self._attach(action.desired, step.instance, made.pid,
                                   publish=rollout is None)
            elif isinstance(step, planner.Start):
                assert made is not None and action.desired is not None
                await rt.start(step.instance)
                made = replace(made, status=Status.RUNNING)
                ctl.observed[name] = made
                assert made.spec_hash is not None
                ctl.history[name] = planner.on_started(
                    ctl.history.get(name, History()), made.spec_hash, ctl.clock(),
                    restart=action.kind is Kind.RESTART, generation=made.generation)
                self.watch(step.instance)
                await ctl.readback(name, step.instance, action.desired.container,
                                   pid=made.pid)
            elif isinstance(step, planner.UpdateMounts):
                told += await rt.update_mounts(step.instance, step.old, step.new)
            elif isinstance(step, planner.UpdateLimits):
                limits = await rt.update_resources(step.instance, step.after)
                told.append(("ResourcesUpdated",
                             _resources_text(step.before, step.after, limits)))
            elif isinstance(step, planner.RecordApplied):
                # Recorded before anything is told: a crash in between makes the next daemon
                # re-apply the change, which is idempotent (a mount is swapped for the same).
                await rt.set_applied(step.instance, step.container)
                if step.metadata_changed:
                    told.append(("MetadataUpdated", "labels/annotations"))
                for reason, message in told:
                    ctl.event(name, reason, message)
                obs = await ctl.read_state(name, step.instance)
                await ctl.readback(name, step.instance, step.container, pid=obs.pid)
            elif isinstance(step, planner.AwaitReady):
                assert action.desired is not None
                waited = await self._await_ready(step, action.desired.spec_hash)
                told.append(("Ready", f"{step.instance} ready after {waited:.1f}s; handing"
                                      f" over from {step.old}"))
            elif isinstance(step, planner.Handover):
                assert action.desired is not None
                if ctl.network is not None:
                    told += await ctl.network.handover(name, step.old, step.new,
                                                       action.desired.container)
                _write_rollout(ctl.store, name, old=step.old, new=step.new, serving=step.new)
                for reason, message in told:
                    ctl.event(name, reason, message)
                told = []
                ctl.event(name, "HandedOver", f"{step.new} serves; {step.old} stops after"
                                              f" {HANDOVER_DRAIN:g}s for what it still serves")
                await anyio.sleep(HANDOVER_DRAIN)  # connections made before the switch end
            elif isinstance(step, planner.UpdateNetworks):
                if ctl.network is not None:
                    assert action.desired is not None
                    pid = ctl.observed[name].pid if name in ctl.observed else None
                    told += await ctl.network.ensure(
                        name, step.container, step.instance, pid,
                        sandbox_member=_member(action.desired))
            elif isinstance(step, planner.SyncVolumes):
                assert action.desired is not None and action.desired.pod is not None
                changed = await rt.sync_volumes(step.instance, action.desired.pod)
                if changed:
                    told.append(("VolumesUpdated", f"files of {', '.join(changed)} swapped"
                                 " in place (..data)"))
            elif isinstance(step, planner.SetRunState):
                if step.state is RunState.PAUSED:
                    await rt.pause(step.instance)
                else:
                    await rt.resume(step.instance)
                if action.kind in _DONE_EVENT:
                    assert made is not None
                    made = replace(made, status=Status.PAUSED)
                    ctl.observed[name] = made
                else:
                    ctl.event(name, "Paused" if step.state is RunState.PAUSED else "Resumed",
                              action.reason)
                    await ctl.read_state(name, step.instance)
        if action.kind in _DONE_EVENT:
            ctl.event(name, _DONE_EVENT[action.kind], action.reason)

    async def _await_ready(self, step: planner.AwaitReady, spec_hash: str) -> float:
        """Until the new instance is READY; a deadline passed or a newer manifest rolls
        back: the new instance is deleted, the old one is the object's again."""
        ctl = self.ctl
        started = anyio.current_time()
        while True:
            r = ctl.probers.readiness.get(self.name)
            if r is not None and r.instance == step.instance and r.ready:
                return anyio.current_time() - started
            want = ctl.effective.specs.get(self.name) if ctl.effective is not None else None
            if want is None or want.spec_hash != spec_hash:
                await self._roll_back(step)
                raise RolledBack("UpdateSuperseded", f"{step.instance} deleted before its"
                                 f" handover: the manifest changed again; {step.old} runs on")
            if anyio.current_time() - started >= step.deadline:
                why = (f"{step.instance} not ready within progressDeadlineSeconds"
                       f" ({step.deadline:g}s)" + (f": {r.message}" if r and r.message else ""))
                await self._roll_back(step)
                ctl.history[self.name] = planner.on_update_failed(
                    ctl.history.get(self.name, History()), spec_hash, why)
                raise RolledBack("UpdateFailed", f"{why}; rolled back, {step.old} runs on"
                                 " (this revision is not tried again until the manifest"
                                 " changes)")
            await anyio.sleep(0.05)

    async def _roll_back(self, step: planner.AwaitReady) -> None:
        ctl, rt = self.ctl, self.ctl.runtime
        with anyio.CancelScope(shield=True):
            self.unwatch(step.instance)
            await self._release(step.instance)
            with contextlib.suppress(errors.RuntimeFailure):
                await rt.signal(step.instance, "SIGKILL")
            await rt.delete(step.instance, keep_logs=True)
            _rollout_file(ctl.store, self.name).unlink(missing_ok=True)
            old = await rt.state(step.old)
            ctl.observed[self.name] = old
            if old.status is Status.RUNNING:
                self.watch(step.old)

    async def _attach(self, want: Desired, instance: str, pid: int | None, *,
                      publish: bool = True) -> None:
        """The network step between create and start; a failure deletes the instance
        again (the object is Failed with the plugin's words, and retried with backoff)."""
        net = self.ctl.network
        if net is None:
            return
        try:
            told = await net.ensure(self.name, want.container, instance, pid,
                                    sandbox_member=_member(want), publish=publish)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(instance)
                await self.ctl.runtime.delete(instance, keep_logs=True)
                self.ctl.observed.pop(self.name, None)
            raise
        for reason, message in told:
            self.ctl.event(self.name, reason, message)

    async def _release(self, instance: str) -> None:
        """An instance's interfaces, addresses and ports let go, before it is deleted; a
        plugin that fails is told, and the next start's recovery tries again."""
        net = self.ctl.network
        if net is None:
            return
        try:
            await net.release(instance)
        except errors.NetworkError as exc:
            self.ctl.event(self.name, "NetworkReleaseFailed", str(exc), warning=True)

    async def _pre_stop(self, step: planner.Stop) -> float:
        """Run the preStop hook within the grace period; the grace left for the signal."""
        started = anyio.current_time()
        what = " ".join(step.pre_stop)
        try:
            with anyio.fail_after(step.grace):
                result = await self.ctl.runtime.exec(step.instance, step.pre_stop,
                                                     timeout=step.grace + 1)
            if result.exit_code != 0:
                tail = result.stderr.decode(errors="replace").strip()[-200:]
                self.ctl.event(self.name, "FailedPreStopHook",
                               f"{what}: exit {result.exit_code}{': ' + tail if tail else ''}",
                               warning=True)
        except TimeoutError:
            self.ctl.event(self.name, "FailedPreStopHook",
                           f"{what}: still running after the grace period", warning=True)
        except errors.RuntimeFailure as exc:
            self.ctl.event(self.name, "FailedPreStopHook", f"{what}: {exc}", warning=True)
        left = step.grace - (anyio.current_time() - started)
        return max(left, PRE_STOP_MIN_GRACE)

    async def _stop(self, step: planner.Stop) -> ExitStatus | None:
        """Stop signal, the grace period (no slot held), then SIGKILL to every process.
        A preStop hook runs first, within the grace period, with the slot let go."""
        rt = self.ctl.runtime
        self.unwatch(step.instance)
        hook = bool(step.pre_stop) and step.grace > 0
        if not hook:
            with contextlib.suppress(errors.RuncError):
                await rt.signal(step.instance, step.signal)
        self.in_grace = True
        if not self.ctl.ready.is_set():
            self.ctl.kick()  # readiness does not wait out grace periods
        self.ctl.slots.release()  # nor does anyone else: the slot is free meanwhile
        grace = step.grace
        try:
            if hook:  # the kubelet's order: the hook, then the signal
                grace = await self._pre_stop(step)
                with contextlib.suppress(errors.RuncError):
                    await rt.signal(step.instance, step.signal)
            with anyio.move_on_after(grace):
                try:
                    return await rt.wait_exit(step.instance)
                except errors.RuntimeFailure:
                    return None
        finally:
            self.in_grace = False
            with anyio.CancelScope(shield=True):
                await self.ctl.slots.acquire()
        log.info("instance %s ignored %s for %gs; sending SIGKILL", step.instance,
                 step.signal, grace, extra={"object": self.name, "action": "kill"})
        with contextlib.suppress(errors.RuncError):
            await rt.signal(step.instance, "SIGKILL", every=True)
        try:
            return await rt.wait_exit(step.instance)
        except errors.RuntimeFailure:
            return None


PRE_STOP_MIN_GRACE = 2.0  # seconds the signal still gets after a slow hook (the kubelet's)


HANDOVER_DRAIN = 1.0  # seconds between the handover and the old instance's stop signal


class RolledBack(Exception):  # noqa: N818 - an outcome, with its event's reason
    """A make-before-break that ended with the old instance still serving."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _rollout_file(store: Store, name: str) -> Path:
    return store.dir / "rollouts" / f"{name}.json"


def _write_rollout(store: Store, name: str, *, old: str, new: str, serving: str) -> None:
    """Which instance serves while an object has two (loop._relist reads it at a start)."""
    atomic.write(_rollout_file(store, name),
                 json.dumps({"old": old, "new": new, "serving": serving}).encode())


def _member(want: Desired) -> bool:
    """A pod's init, sidecar or app container: it joins its sandbox's network namespace."""
    return want.pod is not None and want.pod.role.value != "sandbox"


def _resources_text(before: Resources | None, after: Resources, limits: Limits) -> str:
    """``memory 64Mi→128Mi, pids 64→128`` (what changed), read back from the cgroup."""
    parts = []
    for field_name in ("memory", "cpu", "pids"):
        old: Any = getattr(before, field_name, None) if before is not None else None
        new: Any = getattr(after, field_name)
        if old != new:
            parts.append(f"{field_name} {old if old is not None else 'unlimited'}\u2192"
                         f"{new if new is not None else 'unlimited'}")
    got = (f"cgroup now: memory {limits.memory_bytes or 'max'}, cpu quota "
           f"{limits.cpu_quota_us or 'max'}/{limits.cpu_period_us}, pids {limits.pids or 'max'}")
    return f"{', '.join(parts) or 'unchanged'} ({got})"


FULL = (errno.ENOSPC, errno.EDQUOT)
ROOM = 1 << 20  # bytes free in the state dir's filesystem that a create needs, at least


def _room(state_dir: Path) -> None:
    """Refuse an action that makes an instance when the state dir's filesystem is full:
    a recreate would stop the running revision and then fail to make the new one."""
    try:
        st = os.statvfs(state_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < ROOM or (st.f_files and st.f_favail == 0):
        raise errors.RuntimeFailure(
            f"{os.strerror(errno.ENOSPC)}: the state dir {state_dir} has {free // 1024} KiB"
            f" free ({ROOM // 1024} KiB needed); the running revision is kept until there is"
            " room")
