"""Fixtures for the operator commands (logs, exec, stats, inspect, top) on real containers.

Tests here are plain functions (no event loop of their own), because the commands they
drive run ``anyio.run`` themselves: ``up`` creates and starts an instance (``web.1``)
through the runtime as the daemon does, the commands find it by its logical name,
``cli`` runs ``reconciler.cli.main`` in-process (output through capsys), and
``reconciler`` runs the command as a subprocess where real stdio or a terminal matters.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler import cli as command_line
from reconciler.core.desired import Desired
from reconciler.core.instance import instance_id
from reconciler.manifest.model import Container
from reconciler.resolve import spec as specs
from reconciler.runtime.runc import RuncRuntime

SLEEP = ("/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")


@dataclass
class Ops:
    """One test's runtime, with short ways to make containers and run commands."""

    rt: RuncRuntime
    rootfs: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def flags(self) -> list[str]:
        return ["--state-dir", str(self.rt.state_dir), "--runc-root", str(self.rt.runc_root)]

    def manifest(self, name: str, *cmd: str, **spec: Any) -> Container:
        doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
               "spec": {"rootfs": str(self.rootfs), "command": list(cmd), **spec}}
        return Container.model_validate(doc)

    def up(self, name: str, *cmd: str, rt: RuncRuntime | None = None, generation: int = 1,
           previous: str | None = None, **spec: Any) -> int:
        """Create and start instance ``<name>.<generation>`` as the daemon does; its init
        PID. The same generation again (after ``delete(keep_logs=True)``) is a restart."""
        runtime = rt or self.rt
        container = self.manifest(name, *cmd, **spec)

        async def create_and_start() -> int | None:
            want = Desired(name=name, container=container, source=f"/m/{name}.yaml",
                           spec_hash="h1")
            instance = await specs.build(
                want, instance=instance_id(name, generation), generation=generation,
                previous=previous, spec_hash="h1", cgroup_parent=runtime.cgroup_parent,
                images=None)
            made = await runtime.create(instance)
            await runtime.start(instance.id)
            return made.pid

        pid = anyio.run(create_and_start)
        assert pid is not None
        return pid

    def instance(self, name: str) -> str:
        """The current instance of ``name`` (``web.1``), as the commands find it."""
        return self.rt.locate(name)

    def delete(self, name: str, *, keep_logs: bool = False) -> None:
        instance = self.instance(name)
        anyio.run(lambda: self.rt.delete(instance, keep_logs=keep_logs))

    def cli(self, command: str, *args: str) -> tuple[int, str, str]:
        """``reconciler COMMAND --state-dir .. --runc-root .. ARGS``: code, stdout, stderr."""
        self.capsys.readouterr()
        code = command_line.main([command, *self.flags, *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def run(self, command: str, *args: str, input: bytes | None = None,  # noqa: A002
            ) -> subprocess.CompletedProcess[bytes]:
        """``reconciler COMMAND --state-dir .. --runc-root .. ARGS`` as a subprocess."""
        return self.raw(command, *self.flags, *args, input=input)

    @staticmethod
    def raw(*argv: str, input: bytes | None = None,  # noqa: A002
            ) -> subprocess.CompletedProcess[bytes]:
        """``reconciler ARGV`` as a subprocess, exactly as given."""
        return subprocess.run([sys.executable, "-m", "reconciler", *argv], input=input,
                              capture_output=True, timeout=30, check=False)

    def popen(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "reconciler", command, *self.flags, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_log(self, name: str, needle: bytes, timeout: float = 10) -> None:
        """Until conmon has written ``needle`` into the container's current log."""
        deadline = time.monotonic() + timeout
        path = self.rt.depot(self.instance(name)).log
        while time.monotonic() < deadline:
            if path.exists() and needle in path.read_bytes():
                return
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} never reached {path}")

    @staticmethod
    def read_until(fd: int, done: Callable[[bytes], bool], *, timeout: float) -> bytes:
        """Read a pipe or a terminal until ``done(everything read)`` or the deadline."""
        data = b""
        deadline = time.monotonic() + timeout
        while not done(data):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; read so far: {data!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a terminal's reader gets EIO once its writer is gone
                chunk = b""
            if not chunk:
                break
            data += chunk
        return data

    def on_terminal(self, command: str, *args: str) -> Terminal:
        """``reconciler COMMAND ...`` on a new pseudo-terminal (its controlling terminal)."""
        argv = [sys.executable, "-m", "reconciler", command, *self.flags, *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: stdio and the controlling terminal are the pty
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        return Terminal(pid=pid, fd=fd)


@dataclass
class Terminal:
    """A command running on a pseudo-terminal; ``fd`` is the terminal's other end."""

    pid: int
    fd: int

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        raise AssertionError("the command on the terminal did not exit")

    def kill(self) -> None:
        os.kill(self.pid, 9)
        self.wait()


@pytest.fixture
def ops(sandbox: Any, busybox_rootfs: Path, capsys: pytest.CaptureFixture[str]) -> Ops:
    rt = RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                     cgroup_parent=sandbox.cgroup_parent, timeout=10)
    return Ops(rt=rt, rootfs=busybox_rootfs, capsys=capsys)
