"""A hostile container under the real daemon: every way out it tries must fail.

Issue 15's hostile-container test (docs/security.md, "Not built yet"). ``hostile.c``,
compiled here with ``gcc -static``, runs as root in a ``kind: Container`` with the default
capabilities and seccomp profile, a read-only root, and pids and memory limits. It tries
to mount, make user namespaces, ptrace a host process, open ``/proc/sysrq-trigger`` and
``/sys`` for writing, load a kernel module, use the keyring and ``bpf``, make a 32-bit
system call, open device nodes it made, fork-bomb and allocate past its memory limit,
and prints one line per attempt (``mount-tmpfs: EPERM``). The container runs once for
the module; each attempt is a test of its own, and a defence missing today is a strict
xfail naming what the program printed. Then the host is checked directly: a neighbour
container started before it keeps its PID, the host process it tried to trace is alive
and untraced, nothing new is mounted under the test's directory, the daemon still runs.

Separately, a bind-mount source that is a link out of the policy's ``hostPaths``
(``D/link -> /etc``) is refused with a finding on that field, and nothing is created.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# The class behind the ``sandbox`` fixture, for a world that lives for the whole module
# (the fixtures themselves are per test).
from tests.conftest import HostSandbox

from .harness import E2E, Daemon, is_instance_of, mounts_under, pid_alive, wait_until

pytestmark = [
    pytest.mark.runc,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (and libc6-dev)"),
]

SOURCE = Path(__file__).with_name("hostile.c")
PIDS_LIMIT = 32
MEMORY_LIMIT = "32Mi"

# What each attempt tries, in the order the program makes them.
ATTEMPTS: dict[str, str] = {
    "mount-tmpfs": "mount a tmpfs on /tmp",
    "remount-root-rw": "remount the read-only / read-write",
    "unshare-user": "unshare(CLONE_NEWUSER)",
    "unshare-user-mount": "unshare(CLONE_NEWUSER|CLONE_NEWNS), then mount a tmpfs in it",
    "clone-user": "clone(CLONE_NEWUSER)",
    "ptrace-host": "ptrace(PTRACE_ATTACH) a host process by its host PID",
    "sysrq-trigger": "open /proc/sysrq-trigger for writing",
    "sys-write": "open /sys/kernel/mm/ksm/run for writing",
    "sys-cgroup-mkdir": "make a cgroup under /sys/fs/cgroup",
    "init-module": "init_module with a garbage image",
    "finit-module": "finit_module on /dev/null",
    "keyctl-join": "keyctl(KEYCTL_JOIN_SESSION_KEYRING)",
    "add-key": "add_key a user key",
    "bpf-map": "bpf(BPF_MAP_CREATE)",
    "int80-getpid": "the i386 getpid through int $0x80",
    "block-device": "mknod a host block device and open it",
    "char-device": "mknod /dev/kmsg (1:11, outside runc's allow list) and open it",
    "fork-bomb": f"fork until fork fails (pids limit {PIDS_LIMIT})",
    "memory": f"touch 256 MiB in a child (memory limit {MEMORY_LIMIT})",
}

# Attempts that work today, attempt -> why: the product's defence is missing, and the case
# is a strict xfail until it is built. None today: Podman's profile let unshare, clone
# with CLONE_NEWUSER and keyctl through until the default profile was narrowed to
# Docker's denials (reconciler/runtime/seccomp.py, ``harden``).
KNOWN_GAPS: dict[str, str] = {}

# Attempts whose target the kernel may not have at all: ENOENT proves nothing.
NEEDS_TARGET = {
    "sysrq-trigger": "this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ off)",
    "sys-write": "this kernel has no /sys/kernel/mm/ksm/run (CONFIG_KSM off)",
}

_LINE = re.compile(r"^(?P<name>[a-z0-9-]+): (?P<result>.*)$")
_CAP_SYS_MODULE, _CAP_SYS_PTRACE, _CAP_SYS_ADMIN = 16, 19, 21


def compile_hostile(directory: Path) -> Path:
    binary = directory / "hostile"
    res = subprocess.run(["gcc", "-static", "-O1", "-Wall", "-o", str(binary),
                          str(SOURCE)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"gcc failed:\n{res.stderr}"
    return binary


def host_block_device() -> str:
    """MAJOR:MINOR of a real block device of this host (not a loop or RAM disk)."""
    for dev in sorted(Path("/sys/block").iterdir()):
        if not dev.name.startswith(("loop", "ram", "zram", "nbd")):
            return (dev / "dev").read_text().strip()
    return "8:0"


def container(name: str, rootfs: Path, command: list[str], **spec: Any) -> str:
    """The YAML text of one Container that runs ``command`` as given (no shell)."""
    doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
           "spec": {"rootfs": str(rootfs), "command": command, **spec}}
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def policy(path: Path, *host_paths: tuple[Path, bool]) -> Path:
    """A baseline policy allowing ``host_paths`` as (path, read-only)."""
    rules = [{"path": str(p), "readOnly": ro} for p, ro in host_paths]
    doc = {"apiVersion": "reconciler/v1", "kind": "Policy", "level": "baseline",
           "hostPaths": rules}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tracer_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^TracerPid:\s*(\d+)$", status, re.MULTILINE)
    assert m is not None, status
    return int(m[1])


# -- one run of the hostile container for the module ------------------------------------


@dataclass(frozen=True)
class HostileRun:
    """What the module's run left: the world (still up), what the program printed, and
    what the tests compare the host against afterwards."""

    e2e: E2E
    daemon: Daemon
    text: str
    results: dict[str, str]
    neighbour_pid: int
    host_pid: int
    mounts_before: frozenset[str]


def _diagnostics(e2e: E2E, daemon: Daemon, results: Path) -> str:
    logs = e2e.cli("logs", "hostile", check=False)
    printed = results.read_text() if results.exists() else "(no results file)"
    return (f"\nresults so far:\n{printed}\nreconciler logs hostile:\n{logs.stdout}"
            f"{logs.stderr}\ndaemon log:\n{daemon.log()[-4000:]}")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory,
            busybox_rootfs: Path) -> Iterator[HostileRun]:
    """The hostile container, run once to its end beside a neighbour, under a daemon of a
    world of this module's own (cleaned like ``e2e``'s, even on failure)."""
    box = HostSandbox(tmp_path_factory.mktemp("hostile"))
    base = Path(box.base)
    (base / "manifests").mkdir()
    bin_dir, out_dir = base / "bin", base / "out"
    bin_dir.mkdir()
    out_dir.mkdir()
    e2e = E2E(sandbox=box, rootfs=busybox_rootfs, tmp=base, manifests=base / "manifests")
    host_proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        compile_hostile(bin_dir)
        pol = policy(base / "policy.yaml", (busybox_rootfs, True), (bin_dir, True),
                     (out_dir, False))
        e2e.write("neighbour.yaml", e2e.manifest("neighbour"))
        daemon = e2e.start("--policy", str(pol))
        neighbour_pid = e2e.wait_running("neighbour")
        mounts_before = frozenset(mounts_under(base))
        results = out_dir / "results.txt"
        e2e.write("hostile.yaml", container(
            "hostile", busybox_rootfs,
            ["/hostile/hostile", "/out/results.txt", str(host_proc.pid),
             host_block_device()],
            mounts=[{"type": "bind", "source": str(bin_dir), "destination": "/hostile",
                     "readOnly": True},
                    {"type": "bind", "source": str(out_dir), "destination": "/out"}],
            resources={"memory": MEMORY_LIMIT, "pids": PIDS_LIMIT},
            readOnlyRootFilesystem=True, restartPolicy="Never"))
        try:
            wait_until(lambda: results.exists() and results.read_text().endswith("done\n"),
                       20, what="the hostile program's last line")
            wait_until(lambda: e2e.running_pid("hostile") is None, 10,
                       what="the hostile container's exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{_diagnostics(e2e, daemon, results)}") from None
        text = results.read_text()
        lines = [_LINE.match(line) for line in text.splitlines()[:-1]]
        assert all(lines), f"unparsable output:\n{text}"
        yield HostileRun(e2e=e2e, daemon=daemon, text=text,
                         results={m["name"]: m["result"] for m in lines if m},
                         neighbour_pid=neighbour_pid, host_pid=host_proc.pid,
                         mounts_before=mounts_before)
    finally:  # last registered runs first: the daemons, the world, then the host process
        with contextlib.ExitStack() as stack:
            stack.callback(host_proc.wait, 5)
            stack.callback(host_proc.kill)
            stack.callback(box.cleanup)
            for d in e2e.daemons:
                stack.callback(d.stop)


def _case(name: str) -> Any:
    gap = KNOWN_GAPS.get(name)
    marks = [] if gap is None else [pytest.mark.xfail(strict=True, reason=gap)]
    return pytest.param(name, id=name, marks=marks)


def test_the_program_runs_as_root_under_seccomp(hostile: HostileRun) -> None:
    """The premise: root, seccomp filtering, no_new_privs, without the capabilities that
    would make the attempts legitimate."""
    context = hostile.results.get("context", "")
    fields = dict(item.split("=", 1) for item in context.split())
    assert fields.get("uid") == "0", context
    assert fields.get("Seccomp") == "2", context  # SECCOMP_MODE_FILTER
    assert fields.get("NoNewPrivs") == "1", context
    cap_eff = int(fields.get("CapEff", "0"), 16)
    for bit in (_CAP_SYS_MODULE, _CAP_SYS_PTRACE, _CAP_SYS_ADMIN):
        assert not cap_eff & (1 << bit), f"capability {bit} in {context}"
    assert list(hostile.results)[1:] == list(ATTEMPTS), hostile.text


@pytest.mark.parametrize("attempt", [_case(name) for name in ATTEMPTS])
def test_the_attempt_fails(hostile: HostileRun, attempt: str) -> None:
    result = hostile.results.get(attempt)
    assert result is not None, f"no line for {attempt}; the program printed:\n{hostile.text}"
    if attempt in NEEDS_TARGET and result.startswith("ENOENT"):
        pytest.skip(NEEDS_TARGET[attempt])
    if attempt == "int80-getpid" and result.startswith("SKIPPED"):
        pytest.skip("int $0x80 is an x86-64 attempt")
    assert not result.startswith(("TIMEOUT", "ERROR", "SKIPPED")), f"{attempt}: {result}"
    assert not result.startswith("OK"), (
        f"the hostile container could {ATTEMPTS[attempt]}: `{attempt}: {result}`")
    if attempt == "fork-bomb":  # the pids limit stopped it: the program and the attempt's
        # own process count too, so at most PIDS_LIMIT - 2 forks can succeed
        m = re.search(r"\((\d+) forks succeeded\)", result)
        assert result.startswith("EAGAIN") and m is not None, f"{attempt}: {result}"
        assert int(m[1]) <= PIDS_LIMIT - 2, f"{attempt}: {result}"
    if attempt == "memory":  # the child killed by the OOM killer, or no memory at all
        assert result.startswith(("SIGKILL", "ENOMEM")), f"{attempt}: {result}"


def test_the_neighbour_keeps_running_with_its_pid(hostile: HostileRun) -> None:
    assert hostile.e2e.running_pid("neighbour") == hostile.neighbour_pid


def test_the_host_process_is_alive_and_not_traced(hostile: HostileRun) -> None:
    assert pid_alive(hostile.host_pid)
    assert tracer_pid(hostile.host_pid) == 0


def test_nothing_new_is_mounted_under_the_test_dir(hostile: HostileRun) -> None:
    """The hostile container's own depot (its overlay) aside, the mounts under the
    world's directory are what they were before it started."""
    depots = str(hostile.e2e.state_dir / "containers") + os.sep

    def its_own(point: str) -> bool:
        return point.startswith(depots) and is_instance_of(
            point[len(depots):].split(os.sep, 1)[0], "hostile")
    now = {p for p in mounts_under(Path(hostile.e2e.tmp)) if not its_own(p)}
    assert now == hostile.mounts_before


def test_the_daemon_survives_and_still_reconciles(hostile: HostileRun) -> None:
    assert hostile.daemon.alive(), hostile.daemon.log()[-4000:]
    neighbour = hostile.e2e.get("neighbour")
    assert neighbour is not None and neighbour["phase"] == "Running", neighbour


# -- a bind-mount source linked out of hostPaths -------------------------------------------


def test_a_mount_source_linked_out_of_host_paths_is_refused(e2e: E2E) -> None:
    allowed = e2e.tmp / "allowed"
    allowed.mkdir()
    (allowed / "data").mkdir()
    (allowed / "link").symlink_to("/etc")
    pol = policy(e2e.tmp / "policy.yaml", (e2e.rootfs, True), (allowed, False))
    escape = e2e.manifest("escape", mounts=[
        {"type": "bind", "source": str(allowed / "link"), "destination": "/host-etc"}])
    path = e2e.write("escape.yaml", escape)
    line = 1 + next(i for i, text in enumerate(escape.splitlines()) if "source:" in text)
    # the control: the same mount of a real directory under the prefix is made
    e2e.write("fine.yaml", e2e.manifest("fine", mounts=[
        {"type": "bind", "source": str(allowed / "data"), "destination": "/data"}]))
    e2e.start("--policy", str(pol))
    e2e.wait_running("fine")

    def finding() -> str | None:
        return next((e["message"] for e in e2e.events() if e["reason"] == "ManifestError"
                     and str(path) in e["message"]), None)
    message = wait_until(finding, 10, what="the ManifestError of escape.yaml")
    assert f"{path}:{line}: spec.mounts[0].source:" in message, message
    assert "(a link to /etc)" in message and "(policy: hostPaths)" in message, message
    assert e2e.get("escape") is None
    assert e2e.gone_from_host("escape") == []
