"""``reconciler image ...``: output, exit codes, in-use from runc's annotations, progress.

Which containers use an image comes from ``RuncRuntime.list``; these tests replace that one
method with a fixed list (the seam the CLI reads through), so no container is needed.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.cli import image as image_cli
from reconciler.core.instance import ANN_IMAGE_DIGEST
from reconciler.core.observed import Observed, Status
from reconciler.runtime import runc

from .support import Built

REPO = Path(__file__).resolve().parents[2]
# the module, not the ``main`` function reconciler.cli re-exports under the same name
cli_main = importlib.import_module("reconciler.cli.main")


@pytest.fixture(autouse=True)
def image_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "_MODULES", ("image",))  # until main lists it


@pytest.fixture
def containers(monkeypatch: pytest.MonkeyPatch) -> list[Observed]:
    """What runc "lists": append Observed values to it."""
    listed: list[Observed] = []

    async def fake_list(self: runc.RuncRuntime) -> Sequence[Observed]:
        return list(listed)

    monkeypatch.setattr(runc.RuncRuntime, "list", fake_list)
    return listed


def observed(name: str, digest: str | None) -> Observed:
    notes = {ANN_IMAGE_DIGEST: digest} if digest else {}
    return Observed(name=name, status=Status.STOPPED, pid=None, spec_hash=None, source=None,
                    created=0.0, annotations=notes, instance=f"{name}.1", generation=1)


def cli(tmp_path: Path, *argv: str) -> int:
    where = ["--state-dir", str(tmp_path / "state"), "--runc-root", str(tmp_path / "runc")]
    code: int = cli_main.main(["image", argv[0], *where, *argv[1:]])
    return code


def test_import_ls_rm_prune(tmp_path: Path, built: Built, containers: list[Observed],
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "import", built.source()) == 0
    assert cli(tmp_path, "import", built.source("other:1"), "registry.example:5000/o:2") == 0
    out = capsys.readouterr().out
    assert f"imported busybox:latest {built.digest()}" in out
    assert "imported registry.example:5000/o:2 sha256:" in out
    assert "Copying blob" not in out  # not a terminal: no progress

    containers += [observed("web", built.digest()), observed("api", built.digest()),
                   observed("plain", None)]
    assert cli(tmp_path, "ls") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TAG", "DIGEST", "SIZE", "UNPACKED", "CONTAINERS"]
    assert lines[1].split() == ["busybox", "latest", built.digest()[7:19], "1.0MiB", "no",
                                "api,", "web"]
    assert lines[2].split()[:2] == ["registry.example:5000/o", "2"] and lines[2].endswith("-")

    assert cli(tmp_path, "ls", "-o", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ref"], r["digest"], r["containers"]) for r in rows][0] == (
        "busybox:latest", built.digest(), ["api", "web"])

    assert cli(tmp_path, "rm", "busybox") == 1
    err = capsys.readouterr().err
    assert "error: image busybox:latest is used by 2 containers: api, web" in err
    assert cli(tmp_path, "prune", "-y") == 0
    out = capsys.readouterr().out
    assert "removed registry.example:5000/o:2" in out and "removed busybox" not in out
    assert cli(tmp_path, "rm", "--force", "busybox:latest") == 0
    assert "removed busybox:latest" in capsys.readouterr().out
    assert cli(tmp_path, "ls", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_rm_reports_each_missing_ref(tmp_path: Path, containers: list[Observed],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "rm", "nope:1", "gone") == 1
    err = capsys.readouterr().err
    assert "image nope:1 is not in the image store" in err
    assert "image gone:latest is not in the image store" in err


@pytest.mark.parametrize("argv", [("pull", "Bad:Ref"), ("rm", "x:"), ("import", "dir:/x", "A")])
def test_bad_reference_is_a_usage_error(tmp_path: Path, argv: tuple[str, ...],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, *argv) == 2
    assert "is not an image reference" in capsys.readouterr().err


def test_import_failure_is_reported_not_raised(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "import", f"oci-archive:{tmp_path}/none.tar", "x:1") == 1
    assert capsys.readouterr().err.startswith("error: image x:1: not found at")


def test_rm_refuses_when_runc_cannot_be_asked(tmp_path: Path, built: Built,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "import", built.source()) == 0
    (tmp_path / "runc").mkdir()
    argv = ["image", "rm", "--state-dir", str(tmp_path / "state"), "--runc-root",
            str(tmp_path / "runc"), "busybox"]
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(tmp_path)  # no runc on PATH: in-use is unknown
        code = cli_main.main(argv)
    finally:
        os.environ["PATH"] = env_path
    assert code == 1 and "cannot run" in capsys.readouterr().err
    assert cli(tmp_path, "ls", "-o", "json") == 0  # ls still works, with a warning
    assert [r["ref"] for r in json.loads(capsys.readouterr().out)] == ["busybox:latest"]


def test_digests_in_use_reads_the_annotation_defensively() -> None:
    pairs = [("a", {ANN_IMAGE_DIGEST: "sha256:1"}), ("b", {}),
             ("c", {ANN_IMAGE_DIGEST: "garbage"}),
             ("d", {ANN_IMAGE_DIGEST: "sha256:1"}),
             ("a", {ANN_IMAGE_DIGEST: "sha256:1"})]  # a second instance of "a"
    assert image_cli.digests_in_use(pairs) == {"sha256:1": ["a", "d"]}


def test_progress_is_shown_on_a_terminal(tmp_path: Path, built: Built) -> None:
    """skopeo's own progress reaches a TTY; the result line comes after it."""
    code = ("import importlib; m = importlib.import_module('reconciler.cli.main');"
            " m._MODULES = ('image',);"
            " raise SystemExit(m.main(sys.argv[1:]))")
    argv = [sys.executable, "-c", "import sys; " + code, "image", "import", "--state-dir",
            str(tmp_path / "state"), built.source()]
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.run(argv, stdout=terminal, stderr=subprocess.PIPE, timeout=60,
                              cwd=REPO, check=False)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert "Copying blob" in text and "Writing manifest" in text
    assert "\x1b[" in text  # drawn as live bars, not the plain lines a pipe gets
    assert f"imported busybox:latest {built.digest()}" in text
