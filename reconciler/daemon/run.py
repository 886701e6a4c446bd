"""``reconciler run``: wires source → controller → runtime under one task group.

Holds the state dir lock for its whole life, clears crash leftovers at start, and stops
on SIGTERM/SIGINT without touching a container (they are desired state, and conmon keeps
them), so a daemon upgrade is invisible to them. SIGHUP asks for a full rescan.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from reconciler import errors, paths, proc
from reconciler.core.backoff import Backoff
from reconciler.core.desired import SourceSnapshot
from reconciler.core.observed import Limits, Stats
from reconciler.daemon.loop import Controller
from reconciler.daemon.notify import Notifier
from reconciler.daemon.policy import PolicyWatch
from reconciler.daemon.status import Store
from reconciler.daemon.userns import IdRanges
from reconciler.daemon.view import health
from reconciler.images.store import ImageStore
from reconciler.resolve.spec import Resolver
from reconciler.runtime.runc import RuncRuntime
from reconciler.sources import Source, directory

if TYPE_CHECKING:
    from reconciler.daemon.fleet import FleetOptions
    from reconciler.daemon.network import Networks

log = logging.getLogger("reconciler")


@dataclass(frozen=True)
class Options:
    manifests: str
    state_dir: str
    runc_root: str
    cgroup_parent: str | None = None  # None: /reconciler-<hash of the state dir>
    resync: float = 30.0
    settle: float = 1.0
    concurrency: int = 4
    allow_empty: bool = False
    poll: bool = False
    manifests_owner: int = 0  # besides root, who may write the manifests directory
    insecure_manifests_dir: bool = False  # read it whoever can write it
    backoff: Backoff = field(default_factory=Backoff)
    metrics_addr: str | None = None
    insecure_registries: tuple[str, ...] = ()
    seccomp_root: str = "/etc/reconciler/seccomp"  # relative Localhost seccomp profiles
    first_list: proc.Spawned | None = None  # the first `runc list`, started before imports
    runtime_classes: dict[str, tuple[str, ...]] | None = None  # None: the runtime's defaults
    sources: tuple[str, ...] = ("directory",)  # and/or "etcd" (then ``fleet`` says where)
    fleet: FleetOptions | None = None
    policy: str = "baseline"  # a policy file (manifest/policy.py), or a built-in level
    userns: tuple[str, str, str] = ("reconciler", "/etc/subuid", "/etc/subgid")  # user, files
    networks: str = "off"  # on, off, auto (on if the CNI plugins are there); the CLI's: auto
    default_subnet: str | None = None  # None: network.DEFAULT_SUBNET
    cni_path: str = "/usr/lib/cni"


async def serve(
    opts: Options,
    *,
    task_status: anyio.abc.TaskStatus[Controller] = anyio.TASK_STATUS_IGNORED,
) -> None:
    notifier = Notifier()  # first: it takes systemd's variables out of our environment
    store = Store(opts.state_dir)
    store.lock()
    try:
        parent = "/" + (opts.cgroup_parent or paths.default_cgroup_parent(opts.state_dir)
                        ).strip("/")
        store.claim_cgroup_parent(parent, runtime_classes=opts.runtime_classes)
        images = ImageStore(Path(opts.state_dir) / "images",
                            insecure_registries=opts.insecure_registries)
        runtime = RuncRuntime(state_dir=opts.state_dir, runc_root=opts.runc_root,
                              cgroup_parent=parent, seccomp_root=opts.seccomp_root,
                              first_list=opts.first_list,
                              runtime_classes=opts.runtime_classes)
        sources = _sources(opts)
        resolver = Resolver(images, cgroup_parent=parent, max_age=opts.resync / 2)
        ctl = Controller(runtime, store, resolver=resolver, concurrency=opts.concurrency,
                         backoff=opts.backoff,
                         allow_empty=opts.allow_empty, resync=opts.resync,
                         stats_reader=lambda i: _cgroup_stats(runtime, i),
                         cgroup_parent=parent, pods_dir=paths.pods_dir(opts.state_dir),
                         sources=tuple(s.id for s in sources),
                         network=_networks(opts), default_subnet=opts.default_subnet,
                         id_ranges=IdRanges(opts.state_dir, user=opts.userns[0],
                                            subuid=opts.userns[1], subgid=opts.userns[2]))
        policy_watch = PolicyWatch(
            opts.policy, sources,
            event=lambda reason, message, warning: ctl.event(None, reason, message,
                                                             warning=warning))
        policy_watch.load_first()  # before any source looks: nothing unchecked gets in
        server = None
        if opts.metrics_addr:  # prometheus_client and the HTTP server only when asked for
            from reconciler.daemon.metrics import DaemonMetrics, MetricsServer

            ctl.metrics = metrics = DaemonMetrics()
            metrics.attach(ctl)
            server = MetricsServer(opts.metrics_addr, ctl, metrics)
        send, receive = anyio.create_memory_object_stream[SourceSnapshot](64)
        try:
            if server is not None:
                server.start()
                log.info("metrics on http://%s/metrics", opts.metrics_addr)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_signals, tg.cancel_scope, sources, policy_watch)
                tg.start_soon(policy_watch.run)
                # The first relist (runc) and the first look (the files) at the same time:
                # each is most of a restart's cost, and neither needs the other.
                async with anyio.create_task_group() as starting:
                    starting.start_soon(tg.start, ctl.run, receive)
                    for source in sources:
                        starting.start_soon(tg.start, source.run, send.clone())
                send.close()
                if opts.fleet is not None:
                    from reconciler.daemon.fleet import StatusReporter

                    tg.start_soon(StatusReporter(opts.fleet, ctl).run)
                log.info("watching %s (state %s, runc root %s, cgroup parent %s)",
                         ", ".join(_describe(opts, s.id) for s in sources),
                         opts.state_dir, opts.runc_root, parent)
                tg.start_soon(_tell_systemd, ctl, notifier)
                task_status.started(ctl)
        finally:
            notifier.send("STOPPING=1")
            if server is not None:
                server.close()
    finally:
        store.unlock()


def _networks(opts: Options) -> Networks | None:
    """The network owner, or None with ``--networks off``; ``auto`` without the plugins
    is off, and says so once."""
    if opts.networks == "off":
        return None
    from reconciler.daemon.network import Networks
    from reconciler.runtime.cni import Plugins

    net = Networks(opts.state_dir, enabled=True, plugins=Plugins(opts.cni_path))
    if not net.enabled:
        if opts.networks == "auto":
            log.info("networks off: %s", net.disabled_reason)
            return None
        log.warning("networks: %s; objects that ask for networks or ports fail",
                    net.disabled_reason)
    return net


def _sources(opts: Options) -> list[Source]:
    out: list[Source] = []
    if "directory" in opts.sources:
        trust = None if opts.insecure_manifests_dir else directory.Trust(opts.manifests_owner)
        if trust is None:  # every start, so that it is never forgotten in a log
            log.warning("--insecure-manifests-dir: %s is read whoever can write it, its"
                        " files or its parents, and its links may lead anywhere; whoever"
                        " can write a manifest can run anything as root", opts.manifests)
        out.append(directory.ManifestSource(opts.manifests, settle=opts.settle,
                                            resync=opts.resync, poll=opts.poll, trust=trust))
    if "etcd" in opts.sources:
        if opts.fleet is None:
            raise errors.UsageError("the etcd source needs --etcd-endpoints and --node")
        from reconciler.sources.etcd import EtcdSource  # httpx only when asked for

        out.append(EtcdSource(opts.fleet.settings, node=opts.fleet.node,
                              labels=opts.fleet.labels, state_dir=opts.state_dir))
    if not out:
        raise errors.UsageError("no source: --source directory and/or --source etcd")
    return out


def _describe(opts: Options, source_id: str) -> str:
    if source_id == "etcd" and opts.fleet is not None:
        return f"etcd {opts.fleet.settings.describe()} as node {opts.fleet.node}"
    return opts.manifests


def _cgroup_stats(runtime: RuncRuntime, instance: str) -> tuple[Stats, Limits] | None:
    cg = runtime.cgroup(instance)
    if cg is None or not cg.exists():
        return None
    return cg.stats(), cg.limits()


async def _tell_systemd(ctl: Controller, notifier: Notifier) -> None:
    """READY=1 once the first full pass is done; then WATCHDOG=1 while the loop is healthy."""
    await ctl.ready.wait()
    ctl.write_status()  # what `reconciler get` reads is as ready as systemd is told
    notifier.send("READY=1", f"STATUS=converged after {ctl.passes} passes")
    log.info("ready: first full pass done")
    if notifier.watchdog_interval is None:
        return
    while True:
        await anyio.sleep(notifier.watchdog_interval)
        ok, why = health(ctl, time.time())
        if ok:
            notifier.send("WATCHDOG=1")
        else:
            log.warning("not telling the watchdog: %s", why)


async def _signals(scope: anyio.CancelScope, sources: list[Source],
                   policy_watch: PolicyWatch | None = None) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: rescanning the manifests")
                if policy_watch is not None:
                    policy_watch.check_now(force=True)
                for source in sources:
                    source.rescan()
                continue
            log.info("%s: stopping the daemon; containers keep running",
                     signal.Signals(signum).name)
            scope.cancel()
            return


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": record.created, "level": record.levelname.lower(),
                               "message": record.getMessage()}
        for key in ("stage", "object", "action"):  # from ``extra``: a worker's lines
            if key in record.__dict__:
                doc[key] = record.__dict__[key]
        if "object" in doc:
            doc["container"] = doc["object"]  # the field a log shipper filters on
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(fmt: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per etcd request otherwise
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
