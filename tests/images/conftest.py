"""Fixtures for the image tests: images built offline once per session, a store per test.

``deploy/mkimage-busybox.sh`` builds ``busybox:latest`` from Debian's busybox-static into a
session layout; ``umoci config --tag`` adds variants beside it in a second (no new layers,
so it is quick): ``conf:1`` with every config field a container uses set, ``other:1`` with
the same files and a different digest. Tests needing the tools skip with the reason
when umoci or skopeo is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.images import store

from .support import CONF, MKIMAGE, Built, CountingUmoci, need_tools, run


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    need_tools("umoci", "skopeo")
    base = tmp_path_factory.mktemp("images")
    layout = base / "layout"
    run(MKIMAGE, layout)
    conf = [f"--config.entrypoint={a}" for a in CONF["entrypoint"]]
    conf += [f"--config.cmd={a}" for a in CONF["cmd"]]
    conf += [f"--config.env={a}" for a in CONF["env"]]
    conf += [f"--config.workingdir={CONF['workingdir']}", f"--config.user={CONF['user']}",
             f"--config.stopsignal={CONF['stopsignal']}"]
    run("umoci", "config", "--image", f"{layout}:busybox:latest", "--tag", "conf:1", *conf)
    run("umoci", "config", "--image", f"{layout}:busybox:latest", "--tag", "other:1",
        "--config.label=variant=other")
    return Built(layout=layout, scratch=base)


@pytest.fixture
def image_store(tmp_path: Path) -> store.ImageStore:
    return store.ImageStore(tmp_path / "images", timeout=60)


@pytest.fixture
def counting_umoci(tmp_path: Path) -> CountingUmoci:
    log = tmp_path / "umoci-calls"
    wrapper = tmp_path / "umoci-counting"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = unpack ] && echo x >>{log}\n'
                       f'exec {shutil.which("umoci") or "umoci"} "$@"\n')
    wrapper.chmod(0o755)
    return CountingUmoci(path=wrapper, log=log)
