"""A full disk: the daemon's state dir on a small tmpfs that fills up, then empties.

The issue asks: "Containers keep running, status says why, nothing is corrupted, and the
daemon recovers when space returns." One scenario (a module fixture, about 8 s) plays it
against the real daemon, runc, conmon and the CNI plugins, and each test below checks one
of those promises against what it recorded, so a broken promise fails alone.

The world: the state dir (depots with each container's writable layer and log, status,
events, the address book and the hosts files) is an 8 MiB tmpfs; the daemon runs with
``--networks on`` in a network namespace of its own (``net_e2e``'s way), so the address
book and the attachment records are on the full disk too. Two containers run: ``a``, and
``chatty``, which prints a 200-byte line every 20 ms (conmon writes its log into the
state dir) and counts its loop in a tmpfs of its own, so we can tell it is not blocked.

Then a filler file takes every free block and keeps taking whatever frees up, as a
process spewing logs would: the disk stays full until the test deletes the filler.
While full, ``new`` is added (phase one: nothing is deleted, so nothing can be written),
then ``a``'s command is changed (phase two), then the filler goes.

What we hold the product to, and why:

- **Nothing running is stopped because the disk is full.** ``chatty`` keeps its PID and
  keeps running (its loop advances). ``a``'s change needs a new instance that cannot be
  made on a full disk: the right behaviour is keep-last-good, as for a broken manifest:
  the old instance keeps running until the new one can be created, so ``a`` keeps its PID
  while the disk stays full, and is replaced once there is space.
- **The status says why**, where an operator looks: ``reconciler get``/``describe`` of the
  object that cannot be made, and ``/readyz`` (503 with the reason, as for an unavailable
  manifests source: a daemon that cannot apply the desired state is not ready); the log
  too. The message must name the cause: "No space left on device", ENOSPC, "disk full".
- **Nothing is corrupted**, while full and after: every JSON file the daemon keeps in
  the state dir parses (status.json, daemon.json, the address book and attachment
  records, each depot's applied.json and config.json); no temp file of an atomic write is
  left; each running container's /etc/hosts (rewritten in place by the daemon) still
  names it. events.jsonl: while full, every line parses but possibly a torn last one (an
  append cut short); once there is space again, every line parses: a torn record glued
  to the next one is corruption in the middle of the file, and a lost event.
- **It recovers by itself, without a restart**: the same daemon process creates ``new``,
  replaces ``a`` with its new command, keeps ``chatty``'s PID, rewrites the status with
  no word of the disk left in it, ``/readyz`` is 200, and ``chatty``'s log goes on.
  The daemon does not watch free space; it converges at its next retry, so the daemon
  runs with a short backoff (0.1-0.2 s) to keep the test quick.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import HostSandbox

from .harness import E2E, Daemon, wait_until

CNI = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.runc,
    pytest.mark.skipif(not (CNI / "bridge").exists(), reason=f"needs the CNI plugins in {CNI}"),
]

TMPFS_SIZE = "8m"  # three busybox containers take about 100 KiB of it
METRICS = "127.0.0.1:9477"  # in the daemon's own network namespace
BACKOFF = ("--backoff-initial", "0.1", "--backoff-max", "0.2")
CHATTY = ("trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); "
          "echo \"line $i $(printf '%0200d' 0)\"; echo $i > /progress/n; sleep 0.02; done")
A_NEXT = "trap 'exit 0' TERM; while true; do sleep 0.2; done"  # a's new command: a recreate
NO_SPACE = re.compile(r"no space left on device|enospc|errno 28|disk (is )?full"
                      r"|out of (disk )?space|(state dir|filesystem|file system) is full",
                      re.IGNORECASE)
# mkstemp's name for atomic.write's temp file: ".<name>.<8 random characters>"
TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}$")
SMALLEST_EVENT = 120  # bytes of the shortest Failed event line ("create: [Errno 28] ...")

_READYZ = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        code, body = r.status, r.read().decode()
except urllib.error.HTTPError as exc:
    code, body = exc.code, exc.read().decode()
print(code, body, end="")
"""


# -- the disk ----------------------------------------------------------------------------


class Filler:
    """A file that takes every free block of a filesystem, and keeps taking whatever frees
    up until stopped (every 2 ms), so the disk stays full as under a process spewing logs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="filler", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking space and give it all back."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._error is not None:
            raise AssertionError("the filler failed") from self._error

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                while not self._stop.is_set():
                    for size in (1 << 20, 1 << 12):
                        _write_until_full(fd, b"\0" * size)
                    self._stop.wait(0.002)
            finally:
                os.close(fd)
        except BaseException as exc:  # raised in the test's thread by stop()
            self._error = exc


def _write_until_full(fd: int, chunk: bytes) -> None:
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


def full(path: Path) -> bool:
    return os.statvfs(path).f_bavail == 0


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` on ``path``; unmounted at the end (lazily if still busy)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(path)], check=True)
    try:
        yield path
    finally:
        if mounted(path):
            res = subprocess.run(["umount", str(path)], capture_output=True, check=False)
            if res.returncode != 0:
                subprocess.run(["umount", "-l", str(path)], check=True)


# -- reading the host and the state dir --------------------------------------------------


def _theirs(rel: Path) -> bool:
    """A container's own files (its writable layer, its root mount), not the daemon's."""
    parts = rel.parts
    return len(parts) >= 3 and parts[0] == "containers" and (
        parts[2] == "layer" or parts[2:4] == ("bundle", "rootfs"))


def file_damage(state: Path) -> list[str]:
    """Every JSON file the daemon keeps under ``state`` that does not parse, and every temp
    file of an atomic write still there a moment later (one being written is not left)."""
    found: list[str] = []
    temps: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(state):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not _theirs((here / d).relative_to(state))
                       and not os.path.ismount(here / d)]
        for name in filenames:
            path = here / name
            if TEMP_FILE.match(name):
                temps.append(path)
            elif name.endswith(".json"):
                try:
                    json.loads(path.read_bytes())
                except FileNotFoundError:
                    continue  # replaced or removed while we walked
                except (OSError, ValueError) as exc:
                    found.append(f"{path.relative_to(state)}: {exc}")
    if temps:
        time.sleep(0.5)
    found += [f"{p.relative_to(state)}: a temp file left behind" for p in temps if p.exists()]
    return found


def event_damage(state: Path, *, torn_tail_ok: bool) -> list[str]:
    """events.jsonl's lines that are not one JSON object each (a torn last one is allowed
    with ``torn_tail_ok``)."""
    try:
        data = (state / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return ["events.jsonl is missing"]
    *lines, tail = data.split(b"\n")  # tail: after the last newline, b"" unless torn
    found = [f"line {i} of {len(lines)}: {line[:160]!r}" for i, line in enumerate(lines, 1)
             if not _one_object(line)]
    if tail and not torn_tail_ok:
        found.append(f"a torn last line: {tail[:160]!r}")
    return found


def _one_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def hosts_damage(world: E2E) -> list[str]:
    """Each running container's /etc/hosts must hold localhost and its own name."""
    found = []
    for name, pid in sorted(world.running_pids().items()):
        try:
            text = Path(f"/proc/{pid}/root/etc/hosts").read_text()
        except OSError as exc:
            found.append(f"{name}: /etc/hosts unreadable: {exc}")
            continue
        names = {n for line in text.splitlines() for n in line.split()[1:]}
        if not {"localhost", name} <= names:
            found.append(f"{name}: /etc/hosts is {text!r}")
    return found


def progress(pid: int) -> int | None:
    """How many times chatty's loop went round (its own tmpfs, not the full disk)."""
    try:
        return int(Path(f"/proc/{pid}/root/progress/n").read_text())
    except (OSError, ValueError):
        return None


def readyz(world: E2E) -> tuple[int, str]:
    """``/readyz`` of the daemon, from inside its network namespace: (code, body)."""
    res = subprocess.run(["nsenter", f"--net=/var/run/netns/{world.netns}", sys.executable,
                          "-c", _READYZ, f"http://{METRICS}/readyz"],
                         capture_output=True, text=True, check=False, timeout=15)
    code, _, body = res.stdout.partition(" ")
    return (int(code), body) if code.isdigit() else (0, res.stderr.strip())


def shown(world: E2E, *args: str) -> str:
    """What a CLI command prints, stdout and stderr, whatever its exit code."""
    res = world.cli(*args, check=False)
    return f"{res.stdout}{res.stderr}"


def within(check: Callable[[], list[str]], timeout: float) -> tuple[float | None, list[str]]:
    """Poll ``check`` (what is still wrong) until it is empty: (seconds it took, []), or
    (None, what was still wrong at the end)."""
    t0 = time.monotonic()
    while True:
        left = check()
        if not left:
            return time.monotonic() - t0, []
        if time.monotonic() - t0 >= timeout:
            return None, left
        time.sleep(0.1)


# -- the scenario ------------------------------------------------------------------------


@dataclass
class Sample:
    phase: str  # "full" (new added), "full+change" (a changed too), "space back"
    at: float
    pids: dict[str, int]  # name -> PID of each running container
    daemon_alive: bool


class Sampler:
    """Samples runc's running containers and the daemon's life every 50 ms, in a thread."""

    def __init__(self, world: E2E, daemon: Daemon) -> None:
        self.world, self.daemon = world, daemon
        self.phase = ""
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self, phase: str) -> None:
        self.phase = phase
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(AssertionError, ValueError, OSError):
                self.samples.append(Sample(self.phase, time.monotonic(),
                                           self.world.running_pids(), self.daemon.alive()))
            self._stop.wait(0.05)

    def during(self, *phases: str) -> list[Sample]:
        return [s for s in self.samples if s.phase in phases]


@dataclass
class Seen:
    """What the scenario saw; each test checks a part of it."""

    world: E2E
    daemon: Daemon
    before: dict[str, int]  # name -> PID once both ran, before the disk filled
    sampler: Sampler
    # while full
    new_failed: bool = False  # the daemon tried to create new and said so in its log
    a_change_seen: bool = False
    events_slack: int = 0  # free bytes in events.jsonl's last page when the disk filled
    events_exact_fit: bool = False  # its last event filled the page exactly: none was cut
    progress_full: tuple[int | None, int | None] = (None, None)  # chatty's, first and last
    get_full: str = ""
    get_new_full: str = ""
    describe_new_full: str = ""
    readyz_full: tuple[int, str] = (0, "")
    files_full: list[str] = field(default_factory=list)
    events_full: list[str] = field(default_factory=list)
    hosts_full: list[str] = field(default_factory=list)
    log_full: str = ""
    # after the filler went
    progress_released: int | None = None
    recovered_in: float | None = None
    not_recovered: list[str] = field(default_factory=list)
    get_after: str = ""
    readyz_after: tuple[int, str] = (0, "")
    chatty_log_after: str = ""
    files_after: list[str] = field(default_factory=list)
    events_after: list[str] = field(default_factory=list)
    hosts_after: list[str] = field(default_factory=list)
    log: str = ""

    def samples(self, *phases: str) -> list[Sample]:
        return self.sampler.during(*phases)

    def log_lines(self, pattern: str) -> str:
        """The daemon's log lines matching ``pattern`` (a regex), for messages."""
        lines = [line for line in self.log.splitlines() if re.search(pattern, line)]
        return "\n".join(lines[:6])


def converged(world: E2E, *, since: float) -> list[str]:
    """What is still short of the desired state after the disk emptied ([]: nothing)."""
    left = []
    try:
        got = world.get_all()
    except (AssertionError, ValueError) as exc:
        return [f"get: {exc}"]
    pids = world.running_pids()
    for name in ("a", "chatty", "new"):
        c = got.get(name) or {}
        if c.get("phase") != "Running" or name not in pids:
            left.append(f"{name}: {c.get('phase')} {c.get('message')!r}, runc pid "
                        f"{pids.get(name)}")
        elif c.get("specHash") != c.get("desiredSpecHash"):
            left.append(f"{name}: spec {c.get('specHash')} is not {c.get('desiredSpecHash')}")
        elif NO_SPACE.search(str(c.get("message") or "")):
            left.append(f"{name}: still says {c.get('message')!r}")
    args = ((world.config("a") or {}).get("process") or {}).get("args") or []
    if A_NEXT not in args:
        left.append(f"a runs {args}, not its new command")
    written = (world.status().get("daemon") or {}).get("writtenAt") or 0.0
    if written < since:
        left.append("status.json not written since the disk emptied")
    return left


def play(world: E2E) -> Seen:
    """Two containers running, the disk filled, new added, a changed, the disk emptied."""
    world.write("a.yaml", world.manifest("a"))
    world.write("chatty.yaml", world.manifest(
        "chatty", CHATTY, mounts=[{"type": "tmpfs", "destination": "/progress"}]))
    daemon = world.start("--metrics-addr", METRICS, *BACKOFF)
    seen = Seen(world, daemon, world.wait_all_running(["a", "chatty"], timeout=20),
                Sampler(world, daemon))
    try:
        _play(world, seen)
    finally:
        seen.sampler.stop()
    return seen


def _play(world: E2E, seen: Seen) -> None:
    """The disk filled and emptied again, with ``seen.sampler`` running."""
    state, daemon = world.state_dir, seen.daemon
    chatty = seen.before["chatty"]
    wait_until(lambda: (progress(chatty) or 0) > 3, 5, what="chatty looping")
    wait_until(lambda: {c.get("phase") for c in world.status().get("containers", {}).values()}
               == {"Running"}, 5, what="a status with both running")
    filler = Filler(state / "filler")
    filler.start()
    try:
        wait_until(lambda: full(state), 10, what="the tmpfs full")
        page = os.sysconf("SC_PAGE_SIZE")
        seen.events_slack = -(state / "events.jsonl").stat().st_size % page
        first = progress(chatty)
        seen.sampler.start("full")
        # phase one: a new object; nothing is deleted, so not a byte can be written
        world.write("new.yaml", world.manifest("new"))
        with contextlib.suppress(AssertionError):
            wait_until(lambda: re.search(r"new.*(?i:no space left|errno 28)", daemon.log()),
                       5, what="new failing")
            seen.new_failed = True
        time.sleep(0.5)  # a few retries: whatever the daemon can record, it has
        seen.get_full = shown(world, "get")
        seen.get_new_full = shown(world, "get", "new")
        seen.describe_new_full = shown(world, "describe", "new")
        seen.readyz_full = readyz(world)
        # phase two: a change that needs a new instance of a running object
        seen.sampler.phase = "full+change"
        world.write("a.yaml", world.manifest("a", A_NEXT))
        with contextlib.suppress(AssertionError):
            wait_until(lambda: re.search(r"\ba: spec changed|recreate a\b|update a\b",
                                         daemon.log()), 5, what="a's change acted on")
            seen.a_change_seen = True
        time.sleep(1.5)  # long enough for a stop, a failed create and retries

        def tries() -> bool:  # enough failed appends to have used up events.jsonl's page
            failures = re.findall(r"WARNING .*failed.*(?i:no space left|errno 28)",
                                  daemon.log())
            return len(failures) * SMALLEST_EVENT > seen.events_slack + SMALLEST_EVENT
        with contextlib.suppress(AssertionError):
            wait_until(tries, 8, what="events.jsonl's last page used up")
        assert full(state), "the disk stayed full"
        seen.progress_full = (first, progress(chatty))
        seen.files_full = file_damage(state)
        seen.events_full = event_damage(state, torn_tail_ok=True)
        events = (state / "events.jsonl").read_bytes()
        seen.events_exact_fit = len(events) % page == 0 and events.endswith(b"\n")
        seen.hosts_full = hosts_damage(world)
        seen.log_full = daemon.log()
        seen.progress_released = progress(chatty)
    finally:
        filler.stop()
    released = time.time()
    seen.sampler.phase = "space back"
    seen.recovered_in, seen.not_recovered = within(
        lambda: converged(world, since=released), 15)
    seen.sampler.stop()
    seen.get_after = shown(world, "get")
    seen.readyz_after = readyz(world)
    time.sleep(0.3)  # chatty's next lines reach its log
    seen.chatty_log_after = shown(world, "logs", "chatty", "--tail", "1")
    seen.files_after = file_damage(state)
    seen.events_after = event_damage(state, torn_tail_ok=False)
    seen.hosts_after = hosts_damage(world)
    seen.log = daemon.log()


@pytest.fixture(scope="module")
def seen(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    """The scenario, played once for the module's tests; everything it made is removed
    (daemon, containers, mounts, cgroups, the network namespace, the tmpfs) even when
    it failed half-way."""
    box = HostSandbox(tmp_path_factory.mktemp("fulldisk"))
    manifests = box.base / "manifests"
    manifests.mkdir()
    world = E2E(sandbox=box, rootfs=busybox_rootfs, tmp=box.base, manifests=manifests)
    netns = f"rt-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(small_tmpfs(box.state_dir, TMPFS_SIZE))  # unmounted last
        stack.callback(box.cleanup)
        subprocess.run(["ip", "netns", "add", netns], check=True)
        stack.callback(subprocess.run, ["ip", "netns", "del", netns], check=False)
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"],
                       check=True)
        world.netns = netns

        def stop_daemons() -> None:
            for d in world.daemons:
                d.stop()
        stack.callback(stop_daemons)
        try:
            result = play(world)
        except BaseException:
            for i, d in enumerate(world.daemons):  # shown with the error
                sys.stderr.write(f"--- daemon-{i} log ---\n{d.log()}\n")
            raise
        yield result


# -- containers keep running -------------------------------------------------------------


def test_the_daemon_stays_up_and_recovers_without_a_restart(seen: Seen) -> None:
    samples = seen.samples("full", "full+change", "space back")
    assert samples and all(s.daemon_alive for s in samples), seen.log[-3000:]
    assert seen.daemon.alive() and seen.world.daemons == [seen.daemon]
    assert seen.new_failed, "the daemon never tried to create new on the full disk"
    assert seen.a_change_seen, "the daemon never acted on a's change"


def test_a_running_container_keeps_running_and_logging_while_full(seen: Seen) -> None:
    chatty = seen.before["chatty"]
    samples = seen.samples("full", "full+change", "space back")
    moved = [(s.phase, s.pids.get("chatty")) for s in samples if s.pids.get("chatty") != chatty]
    assert not moved, f"chatty (pid {chatty}) was stopped or replaced: {moved[:5]}"
    first, last = seen.progress_full
    assert first is not None and last is not None and last > first + 20, \
        f"chatty's loop went {first} -> {last} while the disk was full: blocked on its log?"


def test_a_changed_container_keeps_its_last_good_instance_while_full(seen: Seen) -> None:
    a = seen.before["a"]
    samples = seen.samples("full", "full+change")
    gone = [s for s in samples if s.pids.get("a") != a]
    assert not gone, (
        f"a (pid {a}) stopped while its new instance could not be made: "
        f"{len(gone)} of {len(samples)} samples show {gone[0].pids.get('a')}\n"
        + seen.log_lines(r"\ba\b"))


# -- the status says why -----------------------------------------------------------------


def test_the_log_says_the_disk_is_full(seen: Seen) -> None:
    assert NO_SPACE.search(seen.log_lines(r"WARNING.*status")), seen.log_full[-3000:]
    assert NO_SPACE.search(seen.log_lines(r"WARNING.*\bnew\b")), seen.log_full[-3000:]


def test_get_and_describe_say_why_new_is_not_running(seen: Seen) -> None:
    assert NO_SPACE.search(seen.get_new_full), f"get new:\n{seen.get_new_full}"
    assert NO_SPACE.search(seen.describe_new_full), f"describe new:\n{seen.describe_new_full}"
    assert NO_SPACE.search(seen.get_full), f"get:\n{seen.get_full}"


def test_readyz_says_the_disk_is_full(seen: Seen) -> None:
    code, body = seen.readyz_full
    assert code == 503 and NO_SPACE.search(body), (code, body)


def test_a_full_disk_is_no_traceback_in_the_log(seen: Seen) -> None:
    assert "Traceback" not in seen.log, seen.log_lines(r"ERROR|Error:")


# -- nothing is corrupted ----------------------------------------------------------------


def test_state_files_are_whole_while_full_and_after(seen: Seen) -> None:
    assert seen.files_full == [], "while full"
    assert seen.files_after == [], "once there was space again"


def test_every_container_keeps_a_whole_etc_hosts(seen: Seen) -> None:
    assert seen.hosts_full == [], "while full"
    assert seen.hosts_after == [], "once there was space again"


def test_no_torn_event_is_left_in_the_middle_of_the_event_log(seen: Seen) -> None:
    if seen.events_exact_fit:
        pytest.skip("the last event written filled its page exactly: none was cut short")
    assert seen.events_full == [], "while full (a torn last line is allowed)"
    assert seen.events_after == [], (
        f"once there was space again ({seen.events_slack} bytes were free in its last "
        "page when the disk filled)")


# -- recovery ----------------------------------------------------------------------------


def test_it_converges_once_there_is_space_again(
        seen: Seen, record: Callable[[str, float], None]) -> None:
    assert seen.recovered_in is not None, f"not converged 15 s after: {seen.not_recovered}"
    record("space back -> converged", seen.recovered_in)
    assert not NO_SPACE.search(seen.get_after), seen.get_after
    code, body = seen.readyz_after
    assert code == 200 and not NO_SPACE.search(body), (code, body)
    pids = seen.world.running_pids()
    assert pids["chatty"] == seen.before["chatty"]
    assert pids["a"] != seen.before["a"]  # its new command runs in a new instance


def test_a_containers_log_goes_on_once_there_is_space_again(seen: Seen) -> None:
    m = re.search(r"line (\d+)", seen.chatty_log_after)
    assert m is not None, seen.chatty_log_after
    assert seen.progress_released is not None
    assert int(m.group(1)) > seen.progress_released, (
        f"chatty's log ends at {m.group(0)!r}; its loop was at {seen.progress_released} "
        "when the disk emptied")
