"""Hostile input: each case is refused with a clear finding, never an exception, and in
well under a second (a correctness bound: the daemon loads files on every change)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.manifest import loader

Write = Callable[[str, str | bytes], Path]

FAST = 1.0  # seconds


def timed_load(path: Path, *, max_size: int = loader.MAX_SIZE) -> loader.FileResult:
    start = time.monotonic()
    result = loader.load_file(path, max_size=max_size)
    elapsed = time.monotonic() - start
    assert elapsed < FAST, f"took {elapsed:.2f}s"
    assert result.documents == ()
    return result


def only_finding(result: loader.FileResult) -> loader.Finding:
    (finding,) = result.findings
    return finding


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb(write: Write) -> None:
    finding = only_finding(timed_load(write("bomb.yaml", billion_laughs())))
    assert (finding.line, finding.message) == (
        5, "alias *d expands the document past 10000 nodes; refused without expanding it"
        " (an alias bomb?)",
    )


def test_alias_bomb_in_a_mapping_with_merge_keys(write: Write) -> None:
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{l: *a{i - 1}, r: *a{i - 1}}}" for i in range(1, 20)]
    finding = only_finding(timed_load(write("bomb.yaml", "\n".join(lines) + "\n")))
    assert "expands the document past 10000 nodes" in finding.message


def test_recursive_alias(write: Write) -> None:
    finding = only_finding(timed_load(write("rec.yaml", "spec: &s\n  self: *s\n")))
    assert str(finding) == (
        f"{finding.file}:2: spec.self: alias *s refers to a node that contains it"
        " (a recursive structure)"
    )


def test_huge_sparse_file_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    subprocess.run(["truncate", "-s", "50M", str(path)], check=True)
    finding = only_finding(timed_load(path))
    assert str(finding) == (
        f"{path}: file too large: 52428800 bytes, over the limit of 1048576 bytes"
    )


def test_max_size_is_configurable(write: Write) -> None:
    path = write("web.yaml", "a: 1\n" * 300)
    assert only_finding(timed_load(path, max_size=1000)).message == (
        "file too large: 1500 bytes, over the limit of 1000 bytes"
    )
    assert loader.load_file(path, max_size=1500).findings != ()  # read: not a manifest


def test_binary_junk(write: Write) -> None:
    junk = random.Random(7).randbytes(4096)
    finding = only_finding(timed_load(write("junk.yaml", b"\x7fELF\x02" + junk)))
    assert finding.message.startswith("binary file (NUL byte at offset ")
    assert finding.message.endswith("), not YAML text")


def test_nul_byte_reports_its_line(write: Write) -> None:
    finding = only_finding(timed_load(write("nul.yaml", b"a: 1\nb: 2\nc: \x00\n")))
    assert (finding.line, finding.message) == (
        3, "binary file (NUL byte at offset 13), not YAML text"
    )


def test_non_utf8(write: Write) -> None:
    finding = only_finding(timed_load(write("latin1.yaml", "a: 1\nb: café\n".encode("latin-1"))))
    assert (finding.line, finding.message) == (2, "not UTF-8 text: invalid byte 0xe9 at offset 11")


def test_utf16(write: Write) -> None:
    finding = only_finding(timed_load(write("utf16.yaml", "a: 1\n".encode("utf-16"))))
    assert finding.message == "file is UTF-16 or UTF-32 (byte order mark); save it as UTF-8"


def test_control_characters(write: Write) -> None:
    finding = only_finding(timed_load(write("ctl.yaml", "a: 1\nb: \x1b[31m\n")))
    assert (finding.line, finding.message) == (2, "invalid YAML: character #x001b is not allowed")


@pytest.mark.parametrize(("name", "text"), [
    ("flow-sequences", "[" * 100_000),
    ("flow-mappings", "{a: " * 100_000),
    ("block-sequences", "- " * 100_000 + "x\n"),
    ("block-mappings", "".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "x\n"),
])
def test_deep_nesting(write: Write, name: str, text: str) -> None:
    finding = only_finding(timed_load(write(f"{name}.yaml", text)))
    assert finding.message == "nested deeper than 64 levels"


def test_deep_nesting_through_aliases(write: Write) -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 100)]
    finding = only_finding(timed_load(write("deep.yaml", "\n".join(lines) + "\n")))
    assert finding.message == "nested deeper than 64 levels once aliases are expanded"


def test_too_many_nodes_in_one_document(write: Write) -> None:
    finding = only_finding(timed_load(write("wide.yaml", "[" + "1, " * 20_000 + "]\n")))
    assert finding.message == "document has more than 10000 nodes"


def test_too_many_nodes_in_one_file(write: Write) -> None:
    half = "--- [" + "1, " * 6_000 + "]\n"
    result = timed_load(write("docs.yaml", half + half))
    assert [(f.line, f.message) for f in result.findings] == [
        (1, "a manifest document must be a mapping of apiVersion, kind, metadata and spec;"
            " got a list"),
        (2, "file has more than 10000 YAML nodes; split it into smaller files"),
    ]


def test_too_many_documents_in_one_file(write: Write) -> None:
    # Empty documents are skipped, but each one still costs time to parse.
    finding = only_finding(timed_load(write("docs.yaml", "--- ~\n" * 30_000)))
    assert (finding.line, finding.message) == (
        1_001, "file has more than 1000 documents; split it into smaller files"
    )


@pytest.mark.parametrize(("text", "line", "path", "tag"), [
    ("!!python/object/apply:os.system ['touch {marker}']\n", 1, "",
     "!!python/object/apply:os.system"),
    ("spec:\n  x: !!python/object:os.system {{}}\n", 2, "spec.x", "!!python/object:os.system"),
    ("a: !!python/name:os.system ''\n", 1, "a", "!!python/name:os.system"),
    ("a: [!!python/tuple [1, 2]]\n", 1, "a[0]", "!!python/tuple"),
    ("a: !custom x\n", 1, "a", "!custom"),
])
def test_python_and_unknown_tags_are_refused(
    write: Write, tmp_path: Path, text: str, line: int, path: str, tag: str
) -> None:
    marker = tmp_path / "executed"
    finding = only_finding(timed_load(write("tag.yaml", text.format(marker=marker))))
    assert (finding.line, finding.path, finding.message) == (
        line, path, f"tag {tag} is not allowed: manifests are plain YAML data"
    )
    assert not marker.exists()


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    assert only_finding(timed_load(path)).message == "not a regular file"


def test_directory_is_refused(tmp_path: Path) -> None:
    assert only_finding(timed_load(tmp_path)).message == "not a regular file"


def test_unreadable_path_is_a_finding(tmp_path: Path) -> None:
    link = tmp_path / "gone.yaml"
    link.symlink_to(tmp_path / "nowhere.yaml")
    finding = only_finding(timed_load(link))
    assert str(finding) == f"{link}: cannot read file: No such file or directory"
    assert loader.load_file(link).digest == ""
