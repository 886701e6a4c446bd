"""The real runtime adapter: manifest → depot bundle → conmon + runc, and back.

The daemon's executor is its only caller. Every runc call goes to our own ``--root``,
so listing and clean-up only ever see our containers. conmon (the monitor Podman and
CRI-O use) runs ``runc create`` and then stays beside the container, owning its stdio
(a size-capped log in the depot) and writing its exit code, so the daemon can stop or
restart at any moment without touching a container.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import functools
import glob
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from reconciler import atomic, errors, paths, proc
from reconciler.core.instance import (
    ANN_GENERATION,
    ANN_MANAGED_BY,
    ANN_MANIFEST,
    ANN_NAME,
    ANN_POD_ROLE,
    ANN_RUNTIME_CLASS,
    ANN_SOURCE,
    ANN_SOURCE_ID,
    ANN_SPEC_HASH,
    ANN_STOP_SIGNAL,
    MANAGED_BY,
    InstanceSpec,
    split_id,
)
from reconciler.core.observed import (
    ExecResult,
    ExitStatus,
    Limits,
    MountInfo,
    Observed,
    Stats,
    Status,
)
from reconciler.manifest import model, quantity
from reconciler.paths import DEFAULT_RUNC_ROOT, DEFAULT_STATE_DIR, recorded_cgroup_parent
from reconciler.runtime import cgroups, hostmount, idmap, oci, seccomp, volumes
from reconciler.runtime import depot as depots
from reconciler.runtime.types import MountChange

if TYPE_CHECKING:
    from reconciler.core.pods import PodInfo
    from reconciler.manifest.model import Container, Mount, Resources

log = logging.getLogger(__name__)
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # conmon's, when the daemon has none


class RuncRuntime:
    """One method per operation, each a thin call with a typed result, keyed by instance id.

    No limit of its own: the daemon's workers bound how many objects do runtime work at
    once (``--concurrency``), and a stop's grace period holds no slot there.
    """

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        runc_root: str | os.PathLike[str] = DEFAULT_RUNC_ROOT,
        cgroup_parent: str | None = None,
        runc: str = "runc",
        conmon: str = "conmon",
        timeout: float = 30.0,
        log_size_max: int = 10 << 20,
        seccomp_root: str = seccomp.DEFAULT_ROOT,
        first_list: proc.Spawned | None = None,
        runtime_classes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.pods_dir = Path(paths.pods_dir(self.state_dir))
        self.runc_root = Path(runc_root).absolute()
        parent = cgroup_parent or recorded_cgroup_parent(self.state_dir)
        self.cgroup_parent = "/" + parent.strip("/")
        self.runc = shutil.which(runc) or runc
        self.conmon = shutil.which(conmon) or conmon
        self.timeout = timeout
        self.log_size_max = log_size_max
        self.seccomp_root = seccomp_root
        # A `runc list` the daemon started before its imports (cli.daemon.cmd_run): the
        # first list() takes its answer, if it asked this runc about this root.
        self._first_list = first_list
        # runtimeClassName -> another OCI runtime (argv: binary and global flags), each
        # with a root of its own beside runc's; "" is runc itself.
        if runtime_classes is None:  # the daemon's (the CLI), else the defaults
            runtime_classes = paths.recorded_runtime_classes(self.state_dir)
        classes = dict(DEFAULT_CLASSES if runtime_classes is None else runtime_classes)
        self.classes = {"": _Class("", self.runc, (), self.runc_root)}
        for cls, argv in classes.items():
            self.classes[cls] = _Class(cls, shutil.which(argv[0]) or argv[0], tuple(argv[1:]),
                                       Path(f"{self.runc_root}.{cls}"))
        # What create knew of the instances this runtime made, until their teardown: so
        # start and the read-backs need not parse the config.json create just wrote.
        self._made: dict[str, _Made] = {}

    # -- helpers ---------------------------------------------------------------------------

    def depot(self, instance: str) -> depots.Depot:
        return depots.Depot.of(self.state_dir, instance)

    def locate(self, name: str) -> str:
        """The current instance of the object ``name`` (the newest generation on disk), or
        ``name`` itself when it is an instance id or a wave-one container."""
        base = depots.containers_dir(self.state_dir)
        found: builtins.list[tuple[bool, int, str]] = []
        with contextlib.suppress(OSError):
            for entry in base.glob(f"{name}.*"):
                owner, generation = split_id(entry.name)
                if owner == name and generation:
                    found.append(((entry / "bundle").exists(), generation, entry.name))
        if found:
            return max(found)[2]
        return name

    def cgroup(self, instance: str) -> cgroups.Cgroup | None:
        """The instance's cgroup as its recorded config.json names it; None when this
        runtime made no such instance (then nothing of it is ours to read or kill)."""
        made = self._made.get(instance)
        if made is not None:
            return cgroups.Cgroup(made.cgroup_path)
        try:
            path = json.loads(self.depot(instance).config.read_text())["linux"]["cgroupsPath"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cgroups.Cgroup(str(path))

    def _runc(self, *args: str, instance: str | None = None) -> builtins.list[str]:
        """The argv of an OCI runtime call: runc, or the runtime ``instance`` runs under."""
        cls = self._class_of(instance) if instance is not None else self.classes[""]
        return cls.argv(*args)

    async def _call(self, *args: str, name: str | None, timeout: float | None = None,
                    input: bytes | None = None) -> bytes:  # noqa: A002
        result = await proc.run(self._runc(*args, instance=name),
                                timeout=timeout or self.timeout, container=name, input=input)
        return result.stdout

    def _class_of(self, instance: str) -> _Class:
        """The runtime class an instance was made with: as create recorded it, else as its
        config.json says (an adopted instance); runc when neither knows."""
        made = self._made.get(instance)
        name = made.runtime_class if made is not None else None
        if name is None:
            try:
                config = json.loads(self.depot(instance).config.read_text())
                name = str((config.get("annotations") or {}).get(ANN_RUNTIME_CLASS, ""))
            except (OSError, ValueError, AttributeError):
                name = ""
        if name in self.classes:
            return self.classes[name]
        # a class this daemon was not given (any more): its own root, its name as the
        # binary; calls fail with words, and teardown never takes it for a forgotten runc
        # container (whose processes would be killed)
        return _Class(name, name, (), Path(f"{self.runc_root}.{name}"))

    def _class_for(self, spec: InstanceSpec) -> _Class:
        name = spec.runtime_class or ""
        cls = self.classes.get(name)
        if cls is None:
            known = ", ".join(sorted(c for c in self.classes if c)) or "none"
            raise errors.RuntimeFailure(
                f"runtimeClassName {name!r} is not one this daemon knows (it knows: runc"
                f" by default, and {known}; reconciler run --runtime-class adds one)",
                container=spec.name)
        if cls.name and not os.access(cls.binary, os.X_OK):
            raise errors.RuntimeFailure(
                f"runtimeClassName {name!r}: {cls.binary} is not installed", container=spec.name)
        return cls

    # -- create ----------------------------------------------------------------------------

    async def create(self, spec: InstanceSpec) -> Observed:
        """Depot, overlay and config.json, then conmon runs ``runc create``: created, not
        started. The previous instance's log becomes this one's previous log."""
        iid = spec.id
        d = self.depot(iid)
        if spec.pod is not None:
            await anyio.to_thread.run_sync(functools.partial(self._pod_files, spec))
        if not Path(spec.lower).is_dir():
            what = "rootfs" if spec.container.spec.rootfs is not None else "root"
            raise errors.RootfsError(f"{what} {spec.lower} is not a directory",
                                     container=spec.name)
        cls = self._class_for(spec)
        annotations = {
            **spec.annotations,
            **({ANN_RUNTIME_CLASS: cls.name} if cls.name else {}),
            ANN_MANAGED_BY: MANAGED_BY,
            ANN_NAME: spec.name,
            ANN_GENERATION: str(spec.generation),
            ANN_SPEC_HASH: spec.spec_hash,
            ANN_STOP_SIGNAL: spec.stop_signal,
        }
        exposed = idmap.visible_root(self.state_dir, iid) if spec.id_map is not None else None
        root = exposed or d.rootfs
        config = oci.build_config(
            spec.container, rootfs=str(root), annotations=annotations,
            cgroups_path=spec.cgroup_path,
            base=dict(spec.base) if spec.base is not None else None,
            entrypoint=list(spec.entrypoint), seccomp_root=self.seccomp_root,
            namespaces=spec.namespaces, etc_files=spec.etc_files, id_map=spec.id_map,
        )
        if spec.pod is not None and spec.pod.sysctls and spec.pod.role.value == "sandbox":
            config["linux"]["sysctl"] = dict(spec.pod.sysctls)  # in the namespaces it holds
        if spec.run_as_non_root and config["process"]["user"].get("uid", 0) == 0:
            raise errors.RuntimeFailure(
                "runAsNonRoot: the container would run as root (uid 0); set runAsUser, or"
                " use an image whose USER is not root", container=spec.name)
        await self._clear_leftovers(iid)
        try:
            d.exit_dir.mkdir(parents=True, exist_ok=True)
            d.logs.mkdir(parents=True, exist_ok=True)
            if d.log.exists():
                os.replace(d.log, d.previous_log)
            elif spec.previous and spec.previous != iid:
                self._adopt_logs(spec.previous, d)
            lower = Path(spec.lower)
            if spec.id_map is not None:
                await anyio.to_thread.run_sync(functools.partial(
                    idmap.idmapped_root, spec.id_map, lower=lower, mapped=d.mapped,
                    upper=d.upper, work=d.work))
                lower = d.mapped
            hostmount.mount_overlay(lower=lower, upper=d.upper, work=d.work, target=d.rootfs)
            if exposed is not None:
                assert spec.id_map is not None
                idmap.expose(d.rootfs, exposed, spec.id_map)
            depots.write_json_atomic(d.config, config)
            d.applied.write_text(annotations[ANN_MANIFEST])
            log.debug("conmon for %s", iid, extra={"stage": "conmon", "object": spec.name})
            pid = await self._conmon_create(iid, d, cls, tty=spec.container.spec.tty,
                                            stdin=spec.container.spec.stdin)
            self._made[iid] = _Made(pid, spec.cgroup_path, hooks=bool(config.get("hooks")),
                                    runtime_class=cls.name)
            log.debug("created %s", iid, extra={"stage": "created", "object": spec.name})
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._teardown(iid, keep_logs=True)
            raise
        return Observed(name=spec.name, status=Status.CREATED, pid=pid,
                        spec_hash=spec.spec_hash, source=spec.source, created=time.time(),
                        annotations=annotations, applied=annotations[ANN_MANIFEST],
                        instance=iid, generation=spec.generation,
                        source_id=annotations.get(ANN_SOURCE_ID))

    @staticmethod
    def _pod_files(spec: InstanceSpec) -> None:
        """A pod's sandbox: the infra root and the pod's volumes; a pod container: the
        sources of its mounts under the pod's directory."""
        assert spec.pod is not None
        if spec.pod.role.value == "sandbox":
            volumes.infra(spec.lower, container=spec.name)
            volumes.prepare(spec.pod, container=spec.name)
        else:
            volumes.sources(spec.pod, (getattr(m, "source", "") for m in
                                       spec.container.spec.mounts), container=spec.name)
            pid = next((p.removeprefix("/proc/").split("/")[0]
                        for p in spec.namespaces.values() if p), None)
            if pid is not None and spec.pod.cgroup not in _read(f"/proc/{pid}/cgroup"):
                raise errors.RuntimeFailure(  # its PID is another process's now
                    "its pod sandbox is gone: it is made again", container=spec.name)

    async def start(self, instance: str) -> None:
        try:
            if not await self._release(instance):
                await self._call("start", instance, name=instance)
            log.debug("started %s", instance, extra={"stage": "started"})
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._teardown(instance, keep_logs=True)
            raise

    async def _release(self, instance: str) -> bool:
        """What ``runc start`` does, without starting runc (a Go process: ~6 ms and ~5 ms
        of CPU per container): read runc's ``exec.fifo`` to its end, which lets the
        created init exec the container's process, then remove it.

        runc's protocol since 1.0 (libcontainer ``exec()``): ``runc create`` leaves init
        blocked opening ``<root>/<id>/exec.fifo`` for writing; a reader makes it write one
        byte and exec, which closes its end (close-on-exec); the fifo gone means running.
        False when that does not apply, and ``runc start`` then does it, with its own
        words for what is wrong: an instance this runtime did not create, no fifo (started
        already), a frozen instance (runc refuses at once, where the fifo would wait), or
        a config with hooks (a runc that runs poststart hooks at start, as runc's main
        branch does now)."""
        made = self._made.get(instance)
        if made is None or made.hooks or cgroups.Cgroup(made.cgroup_path).frozen():
            return False
        pid, fifo = made.pid, self.runc_root / instance / "exec.fifo"
        try:
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        data = b""
        try:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                pidfd = -1
            try:
                if pidfd >= 0:
                    data = await self._read_fifo(fd, pidfd)
                data += _read_now(fd) or b""  # written just before a quick exit
            except TimeoutError as exc:
                raise errors.RuntimeTimeout(
                    f"start did not finish within {self.timeout:g}s (init never opened "
                    "its exec.fifo)", container=instance) from exc
            finally:
                if pidfd >= 0:
                    os.close(pidfd)
        finally:
            os.close(fd)
        if not data:
            raise errors.RuncError("container process is already dead", container=instance)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        return True

    async def _read_fifo(self, fd: int, pidfd: int) -> bytes:
        """The fifo to its end, or what came before init died (its pidfd readable)."""
        data = b""
        with anyio.fail_after(self.timeout):
            async with anyio.create_task_group() as tg:

                async def death() -> None:
                    await anyio.wait_readable(pidfd)
                    tg.cancel_scope.cancel()

                tg.start_soon(death)
                while True:  # no POLLIN before init opens its end, so no early EOF
                    await anyio.wait_readable(fd)
                    chunk = _read_now(fd)
                    if chunk == b"":
                        break
                    data += chunk or b""
                tg.cancel_scope.cancel()
        return data

    def _adopt_logs(self, previous: str, d: depots.Depot) -> None:
        """A new generation: the old instance's last log is this one's previous log, and
        what is left of the old depot (logs only, once it is deleted) goes."""
        old = self.depot(previous)
        if (old.bundle).exists():
            return  # still alive (make-before-break): it keeps its own logs
        with contextlib.suppress(OSError):
            os.replace(old.log, d.previous_log)
        shutil.rmtree(old.root, ignore_errors=True)

    async def _conmon_create(self, name: str, d: depots.Depot, cls: _Class, *,
                             tty: bool = False, stdin: bool = False) -> int:
        """conmon runs ``runc create``; its sync pipe answers with the PID or runc's error.
        With ``tty`` conmon makes the pty (runc's --console-socket) and logs what is printed
        on it; with ``stdin`` it keeps the process's stdin open."""
        r, w = os.pipe()
        runtime_args = [a for arg in (f"--root={cls.root}", *cls.args)
                        for a in ("--runtime-arg", arg)]
        os.set_blocking(r, False)
        argv = [
            self.conmon, "--api-version", "1", "-c", name, "-u", name, "-n", name,
            "-r", cls.binary, "-b", str(d.bundle), "-p", str(d.pidfile),
            "--conmon-pidfile", str(d.conmon_pidfile), "--exit-dir", str(d.exit_dir),
            "-l", f"k8s-file:{d.log}", "--log-size-max", str(self.log_size_max),
            "--socket-dir-path", str(d.bundle), "--full-attach", "--syslog",
            "--persist-dir", str(d.bundle),  # conmon drops its `oom` marker here
            "--log-level", "error", *runtime_args,
            *(["-t"] if tty else []), *(["-i"] if stdin else []),
        ]
        try:
            with anyio.fail_after(self.timeout):
                try:
                    done = await proc.run(argv, timeout=self.timeout, container=name,
                                          check=False, pass_fds=[w], cwd=d.bundle,
                                          env={"PATH": os.environ.get("PATH", _PATH),
                                               "_OCI_SYNCPIPE": str(w)})
                finally:
                    os.close(w)
                    w = -1
                if done.returncode != 0:
                    raise errors.RuncError(
                        f"conmon failed to start: exit {done.returncode}: "
                        f"{proc.runc_message(done.stderr)}", container=name)
                reply = await _read_line(r)
        except (TimeoutError, errors.RuntimeTimeout) as exc:
            await self._kill_monitor(d)
            raise errors.RuntimeTimeout(
                f"runc create did not finish within {self.timeout:g}s; killed and cleaned up",
                container=name,
            ) from exc
        finally:
            if w >= 0:
                os.close(w)
            os.close(r)
        return _parse_sync(reply, name)

    async def _kill_monitor(self, d: depots.Depot) -> None:
        pid = depots.read_int(d.conmon_pidfile)
        if pid is None:
            return
        for child in _children(pid):  # a hung `runc create` under conmon
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    # -- observe ---------------------------------------------------------------------------

    def list_argv(self) -> builtins.list[str]:
        return self._runc("list", "--format", "json")

    async def list(self) -> Sequence[Observed]:
        early, self._first_list = self._first_list, None
        if early is not None:
            if list(early.argv) == self.list_argv():
                result = await proc.finish(early, timeout=self.timeout)
                if result.returncode == 0:
                    return [*self._listed(result.stdout), *await self._list_classes()]
            else:
                proc.discard(early)  # it asked about something else
        found = await self._list_one(self.classes[""])
        return sorted([*found, *await self._list_classes()],
                      key=lambda o: (o.name, o.generation))

    async def _list_classes(self) -> builtins.list[Observed]:
        found: builtins.list[Observed] = []
        for cls in self.classes.values():
            if not cls.name:
                continue
            try:
                found += await self._list_one(cls)
            except (OSError, errors.RuntimeFailure) as exc:  # runsc uninstalled, say
                log.warning("runtime class %s: cannot list %s: %s (its containers are left"
                            " as they are)", cls.name, cls.root, exc)
        return found

    async def _list_one(self, cls: _Class) -> builtins.list[Observed]:
        if not cls.root.exists():
            return []
        for attempt in range(5):
            try:
                result = await proc.run(cls.argv("list", "--format", "json"),
                                        timeout=self.timeout, container=None)
                break
            except errors.RuncError as exc:
                # runc fails the whole listing when a container is removed while it lists
                # (stat .../<id>: no such file or directory): look again.
                if attempt == 4 or "no such file or directory" not in exc.detail:
                    raise
                await anyio.sleep(0.01)
        return self._listed(result.stdout)

    def _listed(self, out: bytes) -> builtins.list[Observed]:
        entries: builtins.list[dict[str, Any]] = json.loads(out or b"null") or []
        result = []
        for entry in entries:
            annotations = entry.get("annotations") or {}
            if annotations.get(ANN_MANAGED_BY) != MANAGED_BY:
                continue
            result.append(self._with_applied(_observed(entry)))
        return sorted(result, key=lambda o: (o.name, o.generation))

    async def state(self, name: str) -> Observed:
        out = await self._call("state", name, name=name)
        return self._with_applied(_observed(json.loads(out)))

    def _with_applied(self, obs: Observed) -> Observed:
        try:
            return replace(obs, applied=self.depot(obs.id).applied.read_text())
        except OSError:
            return replace(obs, applied=obs.annotations.get(ANN_MANIFEST))

    async def set_applied(self, name: str, container: Container) -> None:
        atomic.write(self.depot(name).applied, model.canonical_json(container).encode())

    async def mounts(self, name: str, *, pid: int | None = None) -> builtins.list[MountInfo]:
        """The container's mounts from its init's mountinfo (``pid``: already known)."""
        if pid is None:
            pid = (await self.state(name)).pid
        if pid is None:
            return []
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            found.append(MountInfo(
                destination=hostmount.unescape(fields[4]), fstype=tail[0],
                source=hostmount.unescape(fields[3]) if tail[0] != "tmpfs" else "tmpfs",
                read_only="ro" in fields[5].split(",")))
        return found

    async def update_mounts(self, name: str, old: Sequence[Mount], new: Sequence[Mount]
                            ) -> builtins.list[MountChange]:
        """Swap mounts in place through the single-threaded ``livemount`` helper."""
        ops, said = _mount_ops(old, new)
        if not ops:
            return []
        if self._class_of(name).name:  # gVisor's sentry has its own mount table
            raise errors.LiveUpdateImpossible(
                "mounts of a container under another runtime change with a new instance",
                container=name)
        obs = await self.state(name)
        if obs.annotations.get(ANN_POD_ROLE):  # a subPath is checked when an instance is made
            raise errors.LiveUpdateImpossible(
                "a pod container's volume mounts change with a new instance", container=name)
        if obs.status not in (Status.RUNNING, Status.PAUSED) or obs.pid is None:
            raise errors.LiveUpdateImpossible(
                f"cannot change mounts of a {obs.status.value} container", container=name)
        d = self.depot(name)
        for op in ops:
            if op["op"] == "add":
                _make_mountpoint(d.rootfs, op)
        request = json.dumps({"pid": obs.pid, "ops": ops}).encode()
        result = await proc.run([sys.executable, "-m", "reconciler.runtime.livemount"],
                                timeout=self.timeout, container=name, input=request,
                                check=False)
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip() or "live mount failed"
            if result.returncode == 3 or "does not exist in the container" in detail:
                raise errors.LiveUpdateImpossible(detail, container=name)
            raise errors.MountError(detail, container=name)
        with contextlib.suppress(FileNotFoundError):
            config = json.loads(d.config.read_text())
            depots.write_json_atomic(d.config, oci.update_mounts(config, new))
        return said

    async def pids(self, name: str) -> builtins.list[int]:
        out = await self._call("ps", "--format", "json", name, name=name)
        return [int(p) for p in json.loads(out or b"null") or []]

    async def stats(self, name: str) -> Stats:
        cg = self.cgroup(name)
        if cg is None or not cg.exists():
            raise errors.ContainerNotFound("container does not exist", container=name)
        return cg.stats()

    async def limits(self, name: str) -> Limits:
        cg = self.cgroup(name)
        if cg is None:
            raise errors.ContainerNotFound("container does not exist", container=name)
        return cg.limits()

    async def exit_status(self, name: str) -> ExitStatus | None:
        d = self.depot(name)
        code = depots.read_int(d.exit_file)
        if code is None:
            return None
        finished = d.exit_file.stat().st_mtime if d.exit_file.exists() else None
        cg = self.cgroup(name)
        oom = (d.bundle / "oom").exists() or (cg is not None and cg.oom_kills() > 0)
        if code > 128 and code - 128 < signal.NSIG:
            return ExitStatus(code=None, signal=code - 128, oom_killed=oom, finished_at=finished)
        return ExitStatus(code=code, signal=None, oom_killed=oom, finished_at=finished)

    async def wait_exit(self, name: str) -> ExitStatus:
        """Wait on a pidfd of the init process, then on one of conmon, which writes the
        exit file after reaping the init and only then exits: two events, no polling."""
        d = self.depot(name)
        await _wait_pid(depots.read_int(d.pidfile))
        status = await self.exit_status(name)
        if status is None:
            await _wait_pid(depots.read_int(d.conmon_pidfile), comm="conmon")
            status = await self.exit_status(name)
        if status is None:
            raise errors.RuncError("init exited but conmon wrote no exit status",
                                   container=name)
        return status

    # -- act -------------------------------------------------------------------------------

    async def signal(self, name: str, sig: str, *, every: bool = False) -> None:
        """``runc kill``; a paused instance is thawed first, or it would never act on it."""
        obs = await self.state(name)
        if obs.status is Status.PAUSED:
            await self.resume(name)
        if obs.status is Status.STOPPED:
            return
        args = ["kill", *(["--all"] if every else []), name, sig.removeprefix("SIG")]
        await self._call(*args, name=name)

    async def stop(self, name: str, *, sig: str, grace: float) -> ExitStatus:
        """Stop signal, up to ``grace`` seconds, then SIGKILL, in one call (for scripts and
        tests; the daemon's workers take the same steps apart, so that no slot is held
        while the grace period runs out)."""
        with contextlib.suppress(errors.RuncError):
            await self.signal(name, sig)
        with anyio.move_on_after(grace):
            return await self.wait_exit(name)
        with contextlib.suppress(errors.RuncError):
            await self.signal(name, "SIGKILL", every=True)
        return await self.wait_exit(name)

    async def pause(self, name: str) -> None:
        await self._call("pause", name, name=name)

    async def resume(self, name: str) -> None:
        await self._call("resume", name, name=name)

    async def update_resources(self, name: str, resources: Resources) -> Limits:
        args = _update_args(resources)
        if args:
            await self._call("update", *args, name, name=name)
        d = self.depot(name)
        with contextlib.suppress(FileNotFoundError):
            config = json.loads(d.config.read_text())
            depots.write_json_atomic(d.config, oci.update_resources(config, resources))
        return await self.limits(name)

    async def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
                   timeout: float = 30) -> ExecResult:
        obs = await self.state(name)
        if obs.status is not Status.RUNNING:
            raise errors.RuncError(f"cannot exec in a {obs.status.value} container",
                                   container=name)
        result = await proc.run(self._runc("exec", name, *argv, instance=name), timeout=timeout,
                                container=name, input=stdin, check=False)
        return ExecResult(exit_code=result.returncode, stdout=result.stdout,
                          stderr=result.stderr)

    async def exec_probe(self, name: str, argv: Sequence[str], *, timeout: float
                         ) -> ExecResult | None:
        """An exec probe: ``runc exec`` (the container's namespaces, cgroup, capabilities
        and seccomp, as the kubelet's ExecSync), without the state check ``exec`` makes
        (a second runc per probe). None when it outlived ``timeout``: the command's
        process is then killed too, not left behind in the container."""
        with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
            pid_file = os.path.join(tmp, "pid")
            argv_ = self._runc("exec", "--pid-file", pid_file, name, *argv, instance=name)
            try:
                result = await proc.run(argv_, timeout=timeout, container=name, check=False)
            except errors.RuntimeTimeout:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(Path(pid_file).read_text()), signal.SIGKILL)
                return None
        return ExecResult(exit_code=result.returncode, stdout=result.stdout,
                          stderr=result.stderr)

    async def exec_attached(self, name: str, argv: Sequence[str], *, tty: bool = False,
                            stdin: bool = True, env: Sequence[str] = (),
                            user: str | None = None, cwd: str | None = None) -> int:
        """Run a command in the container with this process's stdout/stderr, its stdin
        with ``stdin`` (else ``/dev/null``), and a terminal with ``tty``; its exit code.
        ``env`` (``NAME=VALUE``, over the container's), ``user`` (``UID[:GID]``) and
        ``cwd`` change the container's own process (``exec_process``), which runc is given
        as a process.json (``runc exec --process``). For ``reconciler exec``: no deadline.

        With ``tty``, runc's foreground mode does the terminal work (runc ``tty.go`` and
        ``signals.go``): it makes a pty in the container, copies between it and its own
        stdio, puts the caller's terminal (its stderr, stdout or stdin, else
        ``/dev/tty``) in raw mode and restores it at the end, and sizes the pty from that
        terminal once the process runs and again on every SIGWINCH. runc is our child
        in our process group, so the kernel's SIGWINCH to the terminal's foreground group
        reaches it as it reaches us. "Once the process runs" is too late for a short
        command (a one-shot ``stty size`` saw no size 5 times in 100 here, 15 under load:
        busybox says ``stty: standard input``, others ``0 0``), so the process.json
        also carries that terminal's size as ``consoleSize``, which runc's init sets on
        the pty before it execs the command. runc copies its stdin into the pty, so
        without ``stdin`` it gets ``/dev/null``: else what the terminal holds becomes
        input. That was the stray NUL: an EOF typed (or sent by ``script`` at its input's
        end) while the terminal is still canonical is kept by the kernel as a ``\0``,
        runc's switch to raw mode does not flush it, and the container's pty got the
        ``\0`` and echoed it."""
        obs = await self.state(name)
        if obs.status is not Status.RUNNING:
            raise errors.RuncError(f"cannot exec in a {obs.status.value} container",
                                   container=name)
        size = _terminal_size(with_stdin=stdin) if tty else None
        process = exec_process(self.config(name).get("process") or {}, argv, tty=tty,
                               env=env, user=user, cwd=cwd, size=size)
        # 0600 in a private temporary file: the process holds the container's environment
        with tempfile.NamedTemporaryFile("w", prefix="reconciler-exec-", suffix=".json",
                                         encoding="utf-8") as spec, \
                open(os.devnull, "rb") as null:  # runc's stdin without ``stdin``
            json.dump(process, spec)
            spec.flush()
            args = self._runc("exec", f"--process={spec.name}", name, instance=name)
            running = await anyio.open_process(args, stdin=None if stdin else null,
                                               stdout=None, stderr=None,
                                               env=proc.child_env())
            try:
                return await running.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    if running.returncode is None:
                        running.kill()
                        await running.wait()

    def exec_argv(self, name: str, argv: Sequence[str]) -> builtins.list[str]:
        """The command line that runs ``argv`` in instance ``name`` (its runtime's runc
        exec), for a caller that streams its stdin and stdout itself (``reconciler cp``)."""
        return self._runc("exec", name, *argv, instance=name)

    def config(self, name: str) -> dict[str, Any]:
        """The effective OCI config.json the container runs with."""
        try:
            data: dict[str, Any] = json.loads(self.depot(name).config.read_text())
        except FileNotFoundError:
            raise errors.ContainerNotFound("container does not exist", container=name) from None
        return data

    async def delete(self, name: str, *, keep_logs: bool = False,
                     pod_gone: bool = False) -> None:
        """Stop hard and remove everything: runc state, cgroup, overlay, depot dir; with
        ``pod_gone``, a pod's sandbox also takes its pod's volumes and cgroup (not for a
        restart, a stray or a vanished instance: the pod lives on, its emptyDirs too)."""
        pod = self._sandbox_of(name) if pod_gone else None
        await self._teardown(name, keep_logs=keep_logs)
        if pod is not None:
            self._remove_pod(*pod)

    def _sandbox_of(self, instance: str) -> tuple[str, str] | None:
        """(unit name, pod cgroup) of a pod's sandbox instance; None for anything else."""
        try:
            config = json.loads(self.depot(instance).config.read_text())
            annotations = config.get("annotations") or {}
            cgroup = str(config["linux"]["cgroupsPath"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if annotations.get(ANN_POD_ROLE) != "sandbox":
            return None
        return str(annotations.get(ANN_NAME) or split_id(instance)[0]), cgroup.rsplit("/", 1)[0]

    def _remove_pod(self, unit: str, cgroup: str) -> None:
        volumes.remove(self.pods_dir / unit)
        if cgroup.startswith(self.cgroup_parent + "/"):
            cgroups.Cgroup(cgroup).remove()

    async def sync_volumes(self, instance: str, pod: PodInfo) -> builtins.list[str]:
        """A pod's projected files written anew (a ConfigMap or Secret changed)."""
        return await anyio.to_thread.run_sync(
            functools.partial(volumes.sync, pod, container=split_id(instance)[0]))

    async def _teardown(self, name: str, *, keep_logs: bool) -> None:
        d = self.depot(name)
        cg = self.cgroup(name)  # read before the depot goes
        self._made.pop(name, None)
        try:
            # Read from runc's own record and the freezer, not from `runc state`: one runc
            # call less on every delete and restart. `runc delete --force` says nothing
            # about a container it does not know, so that is asked here first; a frozen
            # instance is thawed first, or its processes never die.
            if not self._class_of(name).knows(name):
                raise errors.ContainerNotFound("container does not exist", container=name)
            if cg is not None and cg.frozen():
                await self.resume(name)
            await self._call("delete", "--force", name, name=name)
        except errors.ContainerNotFound:
            # runc forgot it (its state removed by hand, or by a racing `runc delete`) but
            # its processes may live on in its cgroup: they go, or conmon never exits. Only
            # a cgroup this runtime recorded for this instance, under its own parent.
            if cg is not None and cg.path.startswith(self.cgroup_parent + "/"):
                for pid in cg.kill_all():
                    log.warning("instance %s: killed pid %d in %s: runc no longer knows the "
                                "instance", name, pid, cg.path)
        await self._wait_monitor(d)
        idmap.conceal(idmap.visible_root(self.state_dir, name))
        hostmount.unmount(d.rootfs)
        hostmount.unmount(d.mapped)  # before any rmtree: it is the image's own tree
        if cg is not None:
            cg.remove()
        if keep_logs:
            shutil.rmtree(d.bundle, ignore_errors=True)
            shutil.rmtree(d.root / "layer", ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                d.applied.unlink()
        else:
            shutil.rmtree(d.root, ignore_errors=True)
        if d.bundle.exists() and hostmount.is_mountpoint(d.rootfs):
            raise errors.MountError(f"{d.rootfs} is still mounted", container=name)
        if d.mapped.exists() and hostmount.is_mountpoint(d.mapped):
            raise errors.MountError(f"{d.mapped} is still mounted", container=name)
        log.debug("deleted %s", name, extra={"stage": "deleted"})

    async def _wait_monitor(self, d: depots.Depot) -> None:
        """conmon exits once the container is gone; never leave it writing into a removed dir."""
        pid = depots.read_int(d.conmon_pidfile)
        if pid is None or not _alive(pid, "conmon"):
            return
        with anyio.move_on_after(2):
            await _wait_pid(pid, comm="conmon")  # a pidfd: woken by its exit, no polling
            return
        await self._kill_monitor(d)

    async def _clear_leftovers(self, name: str) -> None:
        """A depot with no runc container is a leftover of a crash: clear it, keep logs."""
        d = self.depot(name)
        if self._class_of(name).knows(name):  # the runtime's own record: no spawn
            raise errors.RuncError("a container with this name already exists",
                                   container=name)
        if d.bundle.exists() or (d.root / "layer").exists():
            await self._teardown(name, keep_logs=True)

    async def remove_all(self) -> builtins.list[str]:
        """Delete every instance of this runtime (``make down``): pods' containers before
        their sandboxes, which hold their namespaces, cgroup and volumes; then the cgroup
        parent, if empty. The ids removed."""
        found = await self.list()
        ordered = sorted(found, key=lambda o: o.annotations.get(ANN_POD_ROLE) == "sandbox")
        for obs in ordered:
            await self.delete(obs.id, pod_gone=True)
        cgroups.remove_parent(self.cgroup_parent)
        return [o.id for o in ordered]

    async def gc(self, known: Collection[str] | None = None) -> builtins.list[str]:
        """Remove depots that no runc container of ours owns (crash leftovers); ``known``:
        the instance ids a listing just found (the daemon's first relist), else list now."""
        if known is None:
            known = {o.id for o in await self.list()}
        removed = []
        base = depots.containers_dir(self.state_dir)
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.name not in known and (entry / "bundle").exists():
                    try:
                        await self._teardown(entry.name, keep_logs=True)
                    except errors.RuntimeFailure as exc:
                        log.warning("cannot clear the leftovers of %s: %s (left as they are;"
                                    " tried again at the next start)", entry.name, exc)
                        continue
                    removed.append(entry.name)
        units = {split_id(i)[0] for i in known}
        if self.pods_dir.is_dir():  # a pod deleted while the daemon was down, half-way
            for entry in sorted(self.pods_dir.iterdir()):
                if entry.name != "infra" and entry.name not in units:
                    self._remove_pod(entry.name, f"{self.cgroup_parent}/{entry.name}.pod")
                    removed.append(entry.name)
        return removed


    def forget(self, alive: Collection[str]) -> builtins.list[str]:
        """Depots with no bundle (only logs, or a layer an interrupted delete left) of
        objects not in ``alive`` and of no instance runc knows: removed, mounts first."""
        base = depots.containers_dir(self.state_dir)
        removed: builtins.list[str] = []
        if not base.is_dir():
            return removed
        for entry in sorted(base.iterdir()):
            if (entry / "bundle").exists() or split_id(entry.name)[0] in alive \
                    or self._class_of(entry.name).knows(entry.name):
                continue
            d = self.depot(entry.name)
            try:
                idmap.conceal(idmap.visible_root(self.state_dir, entry.name))
                hostmount.unmount(d.mapped)  # never an rmtree through the image's tree
            except errors.MountError as exc:
                log.warning("cannot clear %s: %s", entry, exc)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed


def _update_args(resources: Resources) -> builtins.list[str]:
    """``runc update`` flags setting every limit: the manifest's, or unlimited (-1)."""
    memory = str(resources.memory_bytes) if resources.memory_bytes is not None else "-1"
    args = ["--memory", memory]
    if cgroups.swap_accounting():
        args += ["--memory-swap", memory]
    quota = (str(max(1000, resources.cpu_millicores * 100))
             if resources.cpu_millicores is not None else "-1")
    args += ["--cpu-period", "100000", "--cpu-quota", quota]
    args += ["--pids-limit", str(resources.pids) if resources.pids is not None else "-1"]
    return args


def exec_process(base: Mapping[str, Any], argv: Sequence[str], *, tty: bool,
                 env: Sequence[str] = (), user: str | None = None, cwd: str | None = None,
                 size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI ``process`` that ``runc exec --process`` runs in a container whose own is
    ``base`` (its config.json's): ``argv``, ``env`` after the container's (the later
    wins, as with ``runc exec --env``), ``user`` (``UID[:GID]``) and ``cwd`` over its own,
    a terminal with ``tty`` of ``size`` (rows, columns) from the start. The rest stays
    the container's: capabilities, rlimits, noNewPrivileges, AppArmor profile, SELinux
    label, supplementary groups. runc exec without ``--process`` builds the same from the
    same file (runc ``exec.go`` ``getProcess``), less the size."""
    process = copy.deepcopy(dict(base))
    process["args"] = list(argv)
    process["env"] = [*(process.get("env") or []), *env]
    process["terminal"] = tty
    process.pop("consoleSize", None)
    if tty and size is not None and all(size):  # runc's init leaves 0 x 0 alone anyway
        process["consoleSize"] = {"height": size[0], "width": size[1]}
    if cwd is not None:
        process["cwd"] = cwd
    if user is not None:
        uid, gid = _user_ids(user)
        process["user"] = {**(process.get("user") or {}), "uid": uid}
        if gid is not None:  # else the container's group, as runc exec --user UID does
            process["user"]["gid"] = gid
    return process


def _user_ids(user: str) -> tuple[int, int | None]:
    """``UID[:GID]`` as numbers, as runc exec's ``--user`` takes it."""
    found = re.fullmatch(r"(\d{1,10})(?::(\d{1,10}))?", user)
    ids = [int(x) for x in found.groups() if x is not None] if found else []
    if not ids or max(ids) > 0xFFFFFFFF:
        raise errors.UsageError(f"the user must be UID[:GID] in numbers (runc exec takes"
                                f" no names), not {user!r}")
    return ids[0], ids[1] if len(ids) > 1 else None


def _terminal_size(*, with_stdin: bool) -> tuple[int, int] | None:
    """(rows, columns) of the terminal runc exec -t follows (runc ``tty.go``,
    ``initHostConsole``): its stderr, stdout or stdin (ours, which it inherits; stdin
    only ``with_stdin``), else the controlling terminal; None when there is none."""
    for fd in (2, 1, 0) if with_stdin else (2, 1):
        with contextlib.suppress(OSError):  # not a terminal
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return None
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return size.lines, size.columns


def _mount_key(m: Mount) -> tuple[Any, ...]:
    return (m.type, getattr(m, "source", None), m.read_only, getattr(m, "size_limit", None))


def _mount_ops(old: Sequence[Mount], new: Sequence[Mount]) -> tuple[list[dict[str, Any]],
                                                                    list[MountChange]]:
    """The helper's operations, and the same in words for events (``MountAdded /data``)."""
    before = {m.destination: m for m in old}
    after = {m.destination: m for m in new}
    ops: builtins.list[dict[str, Any]] = []
    said: builtins.list[MountChange] = []
    for dest in sorted(before.keys() - after.keys()):
        ops.append({"op": "remove", "destination": dest})
        said.append(("MountRemoved", dest))
    for dest in sorted(after):
        m = after[dest]
        if dest in before and _mount_key(before[dest]) == _mount_key(m):
            continue
        # "replace" always: whatever an earlier (possibly interrupted) change left at the
        # destination is detached first, so applying the same change twice is harmless.
        op: dict[str, Any] = {"op": "add", "type": m.type, "destination": dest,
                              "readOnly": m.read_only, "replace": True}
        if m.type == "bind":
            op["source"] = m.source
        elif m.size_limit is not None:
            op["size"] = quantity.to_bytes(m.size_limit)
        ops.append(op)
        said.append(("MountChanged" if dest in before else "MountAdded", dest))
    return ops, said


def _make_mountpoint(rootfs: Path, op: Mapping[str, Any]) -> None:
    """Create a missing mountpoint in the container's writable layer, from the host side."""
    path = rootfs / op["destination"].lstrip("/")
    if os.path.lexists(path):
        return
    is_file = op["type"] == "bind" and not os.path.isdir(op["source"])
    try:
        if is_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.LiveUpdateImpossible(
            f"cannot create mountpoint {op['destination']}: {exc.strerror}") from exc


def _observed(entry: Mapping[str, Any]) -> Observed:
    annotations = dict(entry.get("annotations") or {})
    created = entry.get("created")
    try:
        ts = datetime.fromisoformat(created).timestamp() if created else 0.0
    except ValueError:
        ts = 0.0
    pid = int(entry.get("pid") or 0)
    iid = str(entry["id"])
    name = annotations.get(ANN_NAME)
    if name is None:  # a wave-one container: its id is its name
        name, generation = iid, 0
    else:
        generation = int(annotations.get(ANN_GENERATION) or split_id(iid)[1])
    return Observed(
        name=name,
        status=Status(entry.get("status", "stopped")),
        pid=pid or None,
        spec_hash=annotations.get(ANN_SPEC_HASH),
        source=annotations.get(ANN_SOURCE),
        created=ts,
        annotations=annotations,
        instance=iid,
        generation=generation,
        source_id=annotations.get(ANN_SOURCE_ID),
    )


def _parse_sync(reply: bytes, name: str) -> int:
    for line in reply.decode(errors="replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        data = int(msg.get("data", -1))
        if data > 0:
            return data
        detail = str(msg.get("message") or "runc create failed").strip()
        raise errors.RuncError(proc.runc_message(detail.encode()), container=name)
    raise errors.RuncError("conmon reported nothing about runc create", container=name)


async def _read_line(fd: int) -> bytes:
    """One JSON line from conmon's sync pipe (conmon keeps the pipe open afterwards)."""
    data = b""
    while not data.endswith(b"\n"):
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return data


async def _wait_pid(pid: int | None, *, comm: str | None = None) -> None:
    """Until process ``pid`` has exited (at once if it is gone, or is not ``comm``)."""
    if pid is None or (comm is not None and not _alive(pid, comm)):
        return
    await proc.wait_pid(pid)


@dataclass(frozen=True)
class _Class:
    """One OCI runtime: runc, or a runtime class's (runsc), with a root of its own."""

    name: str  # "" for runc
    binary: str
    args: tuple[str, ...]  # global flags after --root
    root: Path

    def argv(self, *args: str) -> builtins.list[str]:
        return [self.binary, f"--root={self.root}", *self.args, *args]

    def knows(self, instance: str) -> bool:
        """The runtime's own record of ``instance`` is there (read without spawning it):
        runc's ``<root>/<id>/state.json``, runsc's ``<root>/<sandbox>_sandbox:<id>.state``."""
        if (self.root / instance / "state.json").exists():
            return True
        return bool(self.name) and any(self.root.glob(f"*:{glob.escape(instance)}.state"))


# runtimeClassName -> runtime argv, unless the daemon is given its own (--runtime-class):
# gVisor's runsc, each container its own sandbox with gVisor's own network stack.
DEFAULT_CLASSES: Mapping[str, Sequence[str]] = {"gvisor": ("runsc", "--network=none")}


@dataclass(frozen=True)
class _Made:
    """What ``create`` knew of an instance: its init, its cgroup, whether it has hooks."""

    pid: int
    cgroup_path: str
    hooks: bool
    runtime_class: str = ""


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _read_now(fd: int) -> bytes | None:
    """What a non-blocking fd has now: b"" at its end, None when nothing is there yet."""
    try:
        return os.read(fd, 64)
    except BlockingIOError:
        return None


def _children(pid: int) -> builtins.list[int]:
    out: builtins.list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    return out


def _alive(pid: int, comm: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) state ..." — a zombie no longer counts, nor a reused PID of another program.
    return f"({comm})" in stat and stat.rsplit(")", 1)[1].split()[0] != "Z"

