"""Container logs: conmon's files in the Kubernetes (CRI) log format, parsed and followed.

Where it sits: under ``reconciler logs`` (``cli/inspect.py``) and beside the depot, whose
``logs/current.log`` and ``logs/previous.log`` conmon writes. It knows nothing of runc.

The format, one record a line::

    2026-11-29T07:52:46.502924315+00:00 stdout P partial
    2026-11-29T07:52:46.503004674+00:00 stderr F err
    2026-11-29T07:52:46.609586973+00:00 stdout F  rest

``F`` ends a line the container wrote; ``P`` is a piece of one that goes on in the next
record *of the same stream* (stderr may come in between, as above: the stdout line is
``partial rest``). conmon writes a ``P`` when a read from the pipe ends without a newline.

Two ways a file is replaced under a reader, both a new inode at the same path:

- **the size cap** (conmon ``--log-size-max``): conmon 2.1.6 opens ``current.log.tmp``,
  renames it over ``current.log`` and goes on writing there; the old content is gone,
  so a plain read only ever sees what came after the last cut. The old inode has no
  name left (``st_nlink == 0``); a line cut in two goes on in the new file.
- **a restart**: the runtime renames ``current.log`` to ``previous.log`` and the new run's
  conmon starts a new ``current.log``. The old inode keeps a name; pieces of a line the
  old run never finished are printed as they are.

``Follower`` tells the two apart by the link count, drains the old file and goes on from
the start of the new one. Everything else here is pure: bytes in, ``Line`` values out.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

Stream = Literal["stdout", "stderr"]
_STREAMS: dict[bytes, Stream] = {b"stdout": "stdout", b"stderr": "stderr"}
_TAGS = {b"F": False, b"P": True}  # tag -> partial


@dataclass(frozen=True)
class Record:
    """One record of the file: a whole line (``F``) or a piece of one (``P``)."""

    stamp: str  # as conmon wrote it: RFC 3339, nanoseconds, the host's UTC offset
    time: datetime
    stream: Stream
    partial: bool
    content: bytes  # without the record's newline


@dataclass(frozen=True)
class Line:
    """One line as the container wrote it, its pieces joined."""

    stamp: str  # the stamp of its first piece
    time: datetime
    stream: Stream
    content: bytes  # ends in a newline, unless the program never finished the line


def parse_record(raw: bytes) -> Record | None:
    """A record from one line of the file (newline stripped or not); None if malformed."""
    parts = raw.removesuffix(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    stamp, stream, tag = parts[0], _STREAMS.get(parts[1]), parts[2]
    if stream is None or tag not in _TAGS:
        return None
    try:
        text = stamp.decode("ascii")
        when = datetime.fromisoformat(text)  # 3.11 keeps microseconds of the nanoseconds
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return Record(stamp=text, time=when, stream=stream, partial=_TAGS[tag], content=content)


class Joiner:
    """Joins ``P`` records with the next records of their stream, up to an ``F``."""

    def __init__(self) -> None:
        self._pending: dict[Stream, list[Record]] = {}

    def feed(self, record: Record) -> Line | None:
        pieces = self._pending.setdefault(record.stream, [])
        pieces.append(record)
        if record.partial:
            return None
        del self._pending[record.stream]
        return _line(pieces, ended=True)

    def flush(self) -> list[Line]:
        """The unfinished lines, as far as they go (end of a run, or of the output)."""
        lines = [_line(p, ended=False) for p in self._pending.values()]
        self._pending.clear()
        return sorted(lines, key=lambda line: line.time)


def _line(pieces: Sequence[Record], *, ended: bool) -> Line:
    first = pieces[0]
    content = b"".join(p.content for p in pieces) + (b"\n" if ended else b"")
    return Line(stamp=first.stamp, time=first.time, stream=first.stream, content=content)


def feed_all(joiner: Joiner, raw_lines: Iterable[bytes]) -> list[Line]:
    out = []
    for raw in raw_lines:
        record = parse_record(raw)
        if record is None:
            continue  # conmon writes whole records; this is not one of them
        line = joiner.feed(record)
        if line is not None:
            out.append(line)
    return out


def parse(data: bytes) -> list[Line]:
    """Every line of a whole file; unfinished lines at the end come last, as they are.
    A last record still being written (no newline yet) is left out."""
    joiner = Joiner()
    whole = data[: data.rfind(b"\n") + 1]
    return feed_all(joiner, _records(whole)) + joiner.flush()


def _records(chunk: bytes) -> list[bytes]:
    """The records of whole lines (``chunk`` ends in a newline). Only ``\\n`` ends a
    record: a ``\\r`` the program wrote belongs to the content."""
    return chunk.split(b"\n")[:-1]


def select(lines: Sequence[Line], *, tail: int | None = None,
           since: datetime | None = None) -> list[Line]:
    """Lines written at or after ``since``, then the last ``tail`` of those."""
    chosen = [ln for ln in lines if since is None or ln.time >= since]
    if tail is not None:
        chosen = chosen[max(0, len(chosen) - tail):] if tail > 0 else []
    return chosen


def render(line: Line, *, timestamps: bool = False) -> bytes:
    """The bytes to print: the content, after the log's own stamp with ``timestamps``."""
    return (line.stamp.encode() + b" " + line.content) if timestamps else line.content


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Go's duration syntax, as ``kubectl logs --since`` takes it: ``10s``, ``5m``, ``1h30m``."""
    pos, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 10s, 5m, 1h")
    return timedelta(seconds=seconds)


class Follower:
    """Reads a log file as it grows, across the size cap's cuts and across restarts.

    ``poll()`` never blocks: it returns the lines finished since the last call. A caller
    sleeps between polls; ``gone`` tells when the log's directory was removed (the
    container was deleted for good), so there is nothing left to wait for.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._rest = b""  # bytes after the last newline read: a record being written
        self._joiner = Joiner()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._rest = b""

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gone(self) -> bool:
        return not self.path.parent.exists()

    def poll(self) -> list[Line]:
        if self._file is None:
            self._open()
            return self._read()
        lines = self._read()
        if self._replaced():
            lines += self._read()  # the writer closed it before the switch: drain it
            lines += feed_all(self._joiner, [self._rest]) if self._rest else []
            if os.fstat(self._file.fileno()).st_nlink > 0:
                lines += self._joiner.flush()  # renamed, not cut: that run has ended
            self.close()
            self._open()
            lines += self._read()
        return lines

    def _open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file = open(self.path, "rb")  # noqa: SIM115 - held across polls

    def _read(self) -> list[Line]:
        if self._file is None:
            return []
        data = self._rest + self._file.read()
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        return feed_all(self._joiner, _records(data[:cut]))

    def _replaced(self) -> bool:
        assert self._file is not None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # between a restart's rename and the new run's first write
        held = os.fstat(self._file.fileno())
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)
