"""The log format and the follower, on crafted text and files (no containers)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler import logs

T0 = "2026-11-29T07:52:46.502924315+00:00"
T1 = "2026-11-29T07:52:46.503004674+00:00"
T2 = "2026-11-29T07:52:47.609586973+01:00"  # another offset: an hour *earlier* than T1


def rec(stamp: str, stream: str, tag: str, content: str) -> bytes:
    return f"{stamp} {stream} {tag} {content}\n".encode()


def test_a_record_parses_with_its_stamp_kept() -> None:
    r = logs.parse_record(rec(T0, "stderr", "P", "a b  c"))
    assert r == logs.Record(stamp=T0, time=datetime(2026, 11, 29, 7, 52, 46, 502924, UTC),
                            stream="stderr", partial=True, content=b"a b  c")
    empty = logs.parse_record(f"{T0} stdout F ".encode())
    assert empty is not None and empty.content == b"" and not empty.partial


@pytest.mark.parametrize("raw", [
    b"", b"garbage", f"{T0} stdout".encode(), f"{T0} stdin F x".encode(),
    f"{T0} stdout X x".encode(), b"yesterday stdout F x",
    b"2026-11-29T07:52:46.5 stdout F no offset",
])
def test_malformed_records_are_none(raw: bytes) -> None:
    assert logs.parse_record(raw) is None


def test_partials_join_per_stream_even_when_the_other_stream_comes_between() -> None:
    # as conmon 2.1.6 wrote it for: printf partial; echo err >&2; sleep; echo " rest"
    text = (rec(T0, "stdout", "F", "hello") + rec(T0, "stdout", "P", "partial")
            + rec(T1, "stderr", "F", "err") + rec(T1, "stdout", "F", " rest"))
    lines = logs.parse(text)
    assert [(ln.stream, ln.content) for ln in lines] == [
        ("stdout", b"hello\n"), ("stderr", b"err\n"), ("stdout", b"partial rest\n")]
    assert lines[2].stamp == T0  # a joined line carries the stamp of its first piece


def test_a_long_line_in_many_pieces_and_carriage_returns_kept() -> None:
    pieces = [rec(T0, "stdout", "P", "x" * 8192) for _ in range(3)]
    text = b"".join(pieces) + rec(T1, "stdout", "F", "end\r")
    [line] = logs.parse(text)
    assert line.content == b"x" * 8192 * 3 + b"end\r\n"
    progress = rec(T0, "stdout", "F", "10%\r20%\r30%")
    assert [ln.content for ln in logs.parse(progress)] == [b"10%\r20%\r30%\n"]


def test_an_unfinished_line_is_printed_as_far_as_it_goes() -> None:
    text = rec(T0, "stdout", "P", "no newline") + rec(T1, "stderr", "P", "nor here")
    assert [(ln.stream, ln.content) for ln in logs.parse(text)] == [
        ("stdout", b"no newline"), ("stderr", b"nor here")]


def test_a_record_still_being_written_is_left_out() -> None:
    text = rec(T0, "stdout", "F", "done") + f"{T1} stdout F half-writ".encode()
    assert [ln.content for ln in logs.parse(text)] == [b"done\n"]


def test_malformed_lines_are_skipped_not_fatal() -> None:
    text = b"junk\n" + rec(T0, "stdout", "F", "kept") + b"\n"
    assert [ln.content for ln in logs.parse(text)] == [b"kept\n"]


def _lines(*stamps: str) -> list[logs.Line]:
    return logs.parse(b"".join(rec(s, "stdout", "F", str(i)) for i, s in enumerate(stamps)))


def test_tail_and_since() -> None:
    lines = _lines(T0, T1, "2026-11-29T07:53:00.000000000+00:00")
    assert [ln.content for ln in logs.select(lines, tail=2)] == [b"1\n", b"2\n"]
    assert logs.select(lines, tail=0) == []
    assert logs.select(lines, tail=10) == lines
    assert logs.select(lines) == lines
    cut = datetime(2026, 11, 29, 7, 52, 46, 503004, UTC)  # T1, to the microsecond
    assert [ln.content for ln in logs.select(lines, since=cut)] == [b"1\n", b"2\n"]
    assert [ln.content for ln in logs.select(lines, since=cut, tail=1)] == [b"2\n"]
    # offsets count: T2 is 06:52:47 UTC, before T0
    assert logs.select(_lines(T2), since=datetime(2026, 11, 29, 7, 0, tzinfo=UTC)) == []


def test_render() -> None:
    [line] = _lines(T0)
    assert logs.render(line) == b"0\n"
    assert logs.render(line, timestamps=True) == f"{T0} 0\n".encode()


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25),
    ("2h45m10s", 9910), ("0s", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert logs.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "5x", "1h 30m", "-5s", "5m10", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        logs.parse_duration(text)


# -- the follower, on files replaced the way conmon and the runtime replace them ---------------


def _cut(path: Path, first: bytes) -> None:
    """conmon's size cap: write a new file beside it, rename it over (old inode unlinked)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(first)
    os.rename(tmp, path)


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _contents(lines: list[logs.Line]) -> list[bytes]:
    return [ln.content for ln in lines]


def test_follower_reads_as_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "current.log"
    path.parent.mkdir()
    with logs.Follower(path) as f:
        assert f.poll() == []  # no file yet: nothing, and still waiting
        assert not f.gone
        path.write_bytes(rec(T0, "stdout", "F", "one"))
        assert _contents(f.poll()) == [b"one\n"]
        assert f.poll() == []
        _append(path, rec(T1, "stderr", "F", "two") + f"{T1} stdout F thr".encode())
        assert _contents(f.poll()) == [b"two\n"]
        _append(path, b"ee\n")  # the rest of a record written in two goes
        assert _contents(f.poll()) == [b"three\n"]


def test_follower_keeps_a_line_cut_by_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "current.log"
    path.write_bytes(rec(T0, "stdout", "F", "a") + rec(T0, "stdout", "P", "be"))
    with logs.Follower(path) as f:
        assert _contents(f.poll()) == [b"a\n"]
        _append(path, rec(T0, "stdout", "P", "fore "))  # written before the cut...
        _cut(path, rec(T1, "stdout", "F", "after") + rec(T1, "stdout", "F", "b"))
        assert _contents(f.poll()) == [b"before after\n", b"b\n"]  # ...all of it read
        _cut(path, rec(T1, "stdout", "F", "c"))
        _append(path, rec(T1, "stdout", "F", "d"))
        assert _contents(f.poll()) == [b"c\n", b"d\n"]


def test_follower_goes_on_with_the_next_run_after_a_restart(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    path, previous = logs_dir / "current.log", logs_dir / "previous.log"
    path.write_bytes(rec(T0, "stdout", "F", "run1") + rec(T0, "stdout", "P", "unfinished"))
    with logs.Follower(path) as f:
        assert _contents(f.poll()) == [b"run1\n"]
        _append(path, rec(T0, "stderr", "F", "last words"))
        os.rename(path, previous)  # the runtime, at the restart
        assert _contents(f.poll()) == [b"last words\n"]  # no new file yet: wait for it
        path.write_bytes(rec(T1, "stdout", "F", "run2"))
        # the old run never ended its line: it is printed as it is, then the new run
        assert _contents(f.poll()) == [b"unfinished", b"run2\n"]
        shutil.rmtree(logs_dir)  # the container deleted for good
        assert f.poll() == []
        assert f.gone
