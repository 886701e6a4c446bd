"""``deploy/mkimage-busybox.sh``: offline, reproducible, idempotent, layout or oci-archive."""

from __future__ import annotations

import json
from pathlib import Path

from .support import MKIMAGE, Built, run


def refs(layout: Path) -> dict[str, str]:
    doc = json.loads((layout / "index.json").read_text())
    return {d["annotations"]["org.opencontainers.image.ref.name"]: d["digest"]
            for d in doc["manifests"]}


def test_rebuild_is_identical_and_keeps_other_images(built: Built, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    run(MKIMAGE, "-r", "keep:1", layout)
    run(MKIMAGE, layout)
    first = refs(layout)
    blobs = sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())
    out = run(MKIMAGE, layout)  # again: nothing changes
    assert refs(layout) == first
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == blobs
    # fixed mtimes and created time: the same digest as the session's own build
    assert first == {"keep:1": built.digest(), "busybox:latest": built.digest()}
    assert f"busybox image busybox:latest ({built.digest()})" in out


def test_oci_archive_output(built: Built, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    run(MKIMAGE, archive)
    run(MKIMAGE, archive)  # replaced, not appended to
    digest = run("skopeo", "inspect", "--format", "{{.Digest}}",
                 f"oci-archive:{archive}:busybox:latest").strip()
    assert digest == built.digest()


def test_image_content_and_config(built: Built) -> None:
    config = json.loads(run("skopeo", "inspect", "--config", built.source()))
    assert config["config"] == {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"], "WorkingDir": "/"}
    assert config["created"] == "2000-01-01T00:00:00Z"
    assert config["history"][0]["created_by"].startswith("mkimage-busybox.sh")
