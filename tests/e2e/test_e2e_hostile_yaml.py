"""Hostile YAML under the real daemon: every other object keeps running (issue 15).

``tests/manifest/test_manifest_hostile.py`` holds the loader to its limits one file at a
time (docs/manifests.md, "Limits on hostile input"). Here the same kinds of input reach a
running daemon through its manifests directory, a first wave all together and a second
after it, while three ordinary containers run: an alias bomb, flow sequences nested
100,000 deep, a 10 GiB sparse file, binary junk, invalid UTF-8, a NUL byte, 30,000
documents in one file, 1 MiB of comments with an error on the last line (the costliest
file to read under the limits), a ``!!python/object/apply:os.system`` tag that would touch
a marker, entries that are no regular file (a FIFO, a loop of links, a directory named
``x.yaml``, a link back to the directory itself); then a second definition of a running
container's name, and that running container's own file replaced by junk.

Checked on the host, not only in our status: the daemon's process stays alive, its
resident memory grows by less than ``RSS_GROWTH`` and it reads less than ``READ_BOUND``
bytes (``/proc/PID/io``: the 10 GiB file is refused by its size, never read); every
ordinary container keeps its init PID (``runc list``), the one whose file became junk
too, on its last good spec; the tag ran nothing (no marker file). Each file that is read
gets its finding, file and line, in ``status.json``'s ``daemon.problems`` and a
``ManifestError`` event (and ``describe`` of the container it concerns); a manifest
dropped after the batch runs promptly. With the hostile files gone and the junk replaced
by the original text, every problem clears with a ``ManifestFixed`` event and the daemon
goes on.

Two product problems are strict xfails: entries that are no regular file are skipped
without a finding, and a running container's file rewritten in place (the same bytes)
while a look is busy reading a slow file is read empty, so the container is deleted and
made again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import E2E, RESYNC, SETTLE, wait_until

pytestmark = pytest.mark.runc

Record = Callable[[str, float], None]

MiB = 1 << 20
# How much the daemon's resident memory may grow over the whole battery. Each file is
# refused before anything is expanded (1 MiB read at most, 10,000 nodes composed at
# most), so the real cost is parser state and what Python's allocator keeps after
# freeing it: a few MiB. The failures this guards against are all far bigger: the alias
# bomb expanded is ~4 * 10^8 nodes (tens of GiB), the sparse file read is 10 GiB.
RSS_GROWTH = 100 * MiB
# Bytes the daemon may read (``rchar``) while the battery is in the directory: each file
# of it is at most 1 MiB but the sparse one, and runc's and conmon's answers are small.
# Reading a hundredth of the 10 GiB file would be over this.
READ_BOUND = 64 * MiB
HUGE = 10 << 30  # the sparse file: 10 GiB, refused by its stat before any read
LIMIT = 1 << 20  # the daemon's default --max-size
PROMPT = 10.0  # a manifest dropped after the batch runs within this (a stuck loop never)
REPORTED = 5.0  # every finding is in the status within this of its file's arrival


@dataclass(frozen=True)
class Finding:
    """What the daemon must say about one file: ``str()`` of the loader's finding."""

    file: Path
    line: int | None
    message: str
    path: str = ""  # the field, when the finding has one

    def __str__(self) -> str:
        where = str(self.file) if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


# -- the host ------------------------------------------------------------------------------


def proc_field(pid: int, file: str, key: str) -> int:
    """The number after ``key:`` in ``/proc/PID/<file>``."""
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/{file}")


def vm_rss(pid: int) -> int:
    """Resident memory in bytes (``VmRSS`` is in KiB)."""
    return proc_field(pid, "status", "VmRSS") * 1024


def read_chars(pid: int) -> int:
    """Bytes read through read() and its kind so far, from any file, pipe or socket."""
    return proc_field(pid, "io", "rchar")


def line_of(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def replace_with(path: Path, data: bytes) -> None:
    """Write next to ``path`` under a hidden name and rename over it: no look can see the
    file half-written (``test_rewrite_in_place_during_a_slow_look`` is about that)."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    tmp.rename(path)


# -- the battery ---------------------------------------------------------------------------


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9^9 lists if expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def junk(seed: int) -> bytes:
    """Random bytes after an ELF magic, like a binary copied into the directory."""
    return b"\x7fELF\x02" + random.Random(seed).randbytes(8192)


def binary_finding(path: Path, data: bytes) -> Finding:
    nul = data.index(b"\0")
    return Finding(path, line_of(data, nul),
                   f"binary file (NUL byte at offset {nul}), not YAML text")


def slow_file(path: Path) -> Finding:
    """1 MiB of comments and an unclosed ``[`` on the last line: nothing to count or
    expand, so no limit stops it, and a file with a problem is read by the pure-Python
    parser (about half a second here)."""
    comments = ("# " + "x" * 76 + "\n") * 13_000
    path.write_text(comments + "a: [\n")
    return Finding(path, 13_001, "invalid YAML: '[' opened here is never closed"
                                 " (the file ends first)")


def first_wave(e2e: E2E, marker: Path) -> list[Finding]:
    """Every file of the first wave, written one after another; what each must get."""
    d = e2e.manifests
    found = [Finding(e2e.write("bomb.yaml", billion_laughs()), 5,
                     "alias *d expands the document past 10000 nodes; refused without"
                     " expanding it (an alias bomb?)")]
    found.append(Finding(e2e.write("nested.yaml", "[" * 100_000), 1,
                         "nested deeper than 64 levels"))
    with open(d / "huge.yaml", "wb") as f:
        f.truncate(HUGE)
    found.append(Finding(d / "huge.yaml", None,
                         f"file too large: {HUGE} bytes, over the limit of {LIMIT} bytes"))
    data = junk(15)
    (d / "junk.yaml").write_bytes(data)
    found.append(binary_finding(d / "junk.yaml", data))
    data = (e2e.manifest("latin") + "# caf\xe9\n").encode("latin-1")
    (d / "latin1.yaml").write_bytes(data)
    bad = data.index(b"\xe9")
    found.append(Finding(d / "latin1.yaml", line_of(data, bad),
                         f"not UTF-8 text: invalid byte 0xe9 at offset {bad}"))
    text = e2e.manifest("nul").encode()
    at = text.index(b"spec:")
    data = text[:at] + b"\0" + text[at:]
    (d / "nul.yaml").write_bytes(data)
    found.append(binary_finding(d / "nul.yaml", data))
    found.append(Finding(e2e.write("docs.yaml", "--- ~\n" * 30_000), 1_001,
                         "file has more than 1000 documents; split it into smaller files"))
    found.append(slow_file(d / "slow.yaml"))
    tag = "!!python/object/apply:os.system"
    evil = e2e.manifest("evil").replace(
        "  name: evil\n", f"  name: evil\n  annotations:\n    run: {tag} ['touch {marker}']\n")
    found.append(Finding(e2e.write("tag.yaml", evil), 6,
                         f"tag {tag} is not allowed: manifests are plain YAML data",
                         "metadata.annotations.run"))
    return found


def special_entries(directory: Path) -> list[Path]:
    """A FIFO, a loop of two links, a directory named like a manifest, and a link to the
    directory itself: nothing there is a regular file to read."""
    os.mkfifo(directory / "pipe.yaml")
    (directory / "loop-a.yaml").symlink_to("loop-b.yaml")
    (directory / "loop-b.yaml").symlink_to("loop-a.yaml")
    (directory / "x.yaml").mkdir()
    (directory / "again").symlink_to(".")
    return [directory / n for n in ("pipe.yaml", "loop-a.yaml", "loop-b.yaml", "x.yaml",
                                    "again")]


def remove(paths: Iterable[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        else:
            p.unlink()


# -- the daemon's findings -------------------------------------------------------------------


def problems(e2e: E2E) -> list[str]:
    return list((e2e.status().get("daemon") or {}).get("problems") or [])


def unreported(e2e: E2E, wanted: Iterable[Finding]) -> list[str]:
    """The findings of ``wanted`` that ``daemon.problems`` does not hold (yet)."""
    have = set(problems(e2e))
    return [str(f) for f in wanted if str(f) not in have]


def messages(e2e: E2E, reason: str) -> list[str]:
    return [str(e["message"]) for e in e2e.events() if e["reason"] == reason]


def rss_and_reads(pid: int, *, rss0: int, read0: int) -> None:
    grew, read = vm_rss(pid) - rss0, read_chars(pid) - read0
    assert grew < RSS_GROWTH, f"the daemon's RSS grew by {grew / MiB:.1f} MiB"
    assert read < READ_BOUND, f"the daemon read {read / MiB:.1f} MiB"


# -- the tests -------------------------------------------------------------------------------


@pytest.fixture
def world(e2e: E2E) -> Iterator[E2E]:
    """``e2e``, and at teardown, even after a failure, the sparse file and the FIFO are
    removed first (a copy of the kept temp dir must not read 10 GiB or block on a pipe)."""
    yield e2e
    for name in ("huge.yaml", "pipe.yaml"):
        (e2e.manifests / name).unlink(missing_ok=True)


def test_hostile_batch_keeps_every_other_object_running(world: E2E, record: Record) -> None:
    e2e = world
    originals = {n: e2e.write(f"{n}.yaml", e2e.manifest(n)) for n in ("a", "b", "c")}
    daemon = e2e.start()
    pids = e2e.wait_all_running(originals)
    rss0, read0 = vm_rss(daemon.pid), read_chars(daemon.pid)
    marker = e2e.tmp / "executed"

    # the first wave, all at once, with the entries that are no regular file
    t0 = time.monotonic()
    specials = special_entries(e2e.manifests)
    loop = "cannot read file: Too many levels of symbolic links"
    wave1 = [*first_wave(e2e, marker), Finding(specials[0], None, "not a regular file"),
             Finding(specials[1], None, loop), Finding(specials[2], None, loop)]
    wait_until(lambda: not unreported(e2e, wave1), REPORTED,
               what="a finding for every file of the first wave")
    record("first wave -> every finding", time.monotonic() - t0)

    # the second: a running name defined again elsewhere, and c's own file made junk
    # (renamed over it: written in place, a busy look may read it empty, the last test)
    dup = Finding(e2e.write("dup.yaml", e2e.manifest("a", "sleep 1000")), 1,
                  f'container "a" is already defined in {originals["a"]}:1', "metadata.name")
    replace_with(originals["c"], data := junk(150))
    broken_c = binary_finding(originals["c"], data)
    wait_until(lambda: not unreported(e2e, [dup, broken_c]), REPORTED,
               what="a finding for dup.yaml and for c.yaml")
    findings = [*wave1, dup, broken_c]
    assert sorted(problems(e2e)) == sorted(str(f) for f in findings)
    assert e2e.status()["daemon"]["conflicts"] == {"a": [str(originals["a"]), str(dup.file)]}
    errors = messages(e2e, "ManifestError")
    assert [str(f) for f in findings if str(f) not in errors] == [], errors
    assert [e["name"] for e in e2e.events() if e["message"] == str(broken_c)] == ["c"]
    assert f"Manifest error: {broken_c}" in e2e.cli("describe", "c").stdout
    assert (f"Defined in:    {originals['a']}, {dup.file} (neither applied)"
            in e2e.cli("describe", "a").stdout)

    # a manifest dropped now runs promptly: the loop is stuck on none of it
    t0 = time.monotonic()
    fresh = e2e.write("fresh.yaml", e2e.manifest("fresh"))
    fresh_pid = e2e.wait_running("fresh", timeout=PROMPT, interval=0.01)
    record("drop beside the battery -> running", time.monotonic() - t0)

    # through a resync: the others untouched, c on its last good spec, nothing else made
    e2e.keeps(pids, RESYNC + SETTLE, why="beside the hostile files")
    assert daemon.alive(), daemon.log()
    assert not marker.exists(), "the python tag ran os.system"
    assert sorted(e2e.get_all()) == ["a", "b", "c", "fresh"]
    assert e2e.runc_names() == ["a", "b", "c", "fresh"]
    assert e2e.reasons("c") == ["Created", "ManifestError"]
    assert e2e.reasons("a") == ["Created"]
    rss_and_reads(daemon.pid, rss0=rss0, read0=read0)

    # the hostile files gone and c's file as it was: every problem clears, c untouched
    remove([f.file for f in wave1 if f.file not in specials] + [dup.file] + specials)
    replace_with(originals["c"], e2e.manifest("c").encode())
    wait_until(lambda: not problems(e2e), REPORTED, what="every problem cleared")
    assert e2e.status()["daemon"]["conflicts"] == {}
    assert sorted(messages(e2e, "ManifestFixed")) == sorted(
        f"{f.file} has no errors now" for f in findings)
    e2e.keeps({**pids, "fresh": fresh_pid}, SETTLE + 0.2, why="once the problems cleared")
    assert e2e.reasons("c") == ["Created", "ManifestError", "ManifestFixed"]

    # and the daemon goes on: a deletion is applied again, the rest untouched
    fresh.unlink()
    e2e.wait_gone("fresh", timeout=5)
    assert e2e.running_pids() == pids
    assert daemon.alive(), daemon.log()
    rss_and_reads(daemon.pid, rss0=rss0, read0=read0)
    assert "Traceback" not in daemon.log()


def test_entries_that_are_no_regular_file_are_named(world: E2E) -> None:
    """None of these is read, and none may block the loop (the batch test proves that);
    but a name an operator dropped that is never read should still be named."""
    e2e = world
    e2e.write("a.yaml", e2e.manifest("a"))
    daemon = e2e.start()
    pid = e2e.wait_running("a")
    # the FIFO and the loop's two links; a directory named x.yaml is entered, as any
    # directory is, and the link to "." has no manifest name
    specials = special_entries(e2e.manifests)[:3]
    e2e.write("after.yaml", e2e.manifest("after"))  # a look that saw them all is done
    e2e.wait_running("after", timeout=PROMPT)
    assert e2e.running_pid("a") == pid and daemon.alive()
    def named() -> dict[str, list[str]] | None:  # a FIFO never closes: read after --settle
        found = {p.name: [x for x in problems(e2e) if x.startswith(f"{p}: ")]
                 for p in specials}
        return found if all(found.values()) else None
    wait_until(named, REPORTED, what="a finding for each")


def test_rewrite_in_place_during_a_slow_look(e2e: E2E) -> None:
    """docs/daemon.md: a file written in place is read once its last change is 10 ms old,
    "so a look at once never reads a file half-written", and one still being written
    waits until it is closed or quiet for the settle window. A hostile file that is slow
    to read keeps a look busy for long enough to see a running container's file between
    its truncation and its write."""
    e2e.write("a.yaml", e2e.manifest("a"))  # so that c is not the last one (never deleted)
    c = e2e.write("c.yaml", e2e.manifest("c"))
    settle = 2.0  # the writer below holds c.yaml empty for well under this
    daemon = e2e.start(settle=settle)
    pids = e2e.wait_all_running(["a", "c"])
    slow = slow_file(e2e.manifests / "b-slow.yaml")  # a look starts, reading it first
    time.sleep(0.05)
    t0 = time.monotonic()
    with open(c, "w") as f:  # truncated: the same bytes come back once that look is done
        wait_until(lambda: str(slow) in problems(e2e), settle / 2, what="the slow look")
        f.write(e2e.manifest("c"))
    assert time.monotonic() - t0 < settle
    e2e.keeps(pids, settle + SETTLE, why="after a rewrite of c.yaml's own bytes")
    assert e2e.reasons("c") == ["Created"]
    assert daemon.alive()
