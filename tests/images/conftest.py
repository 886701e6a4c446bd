"""Fixtures for the image tests: images built offline once per session, a store per test.

``deploy/mkimage-busybox.sh`` builds ``busybox:latest`` from Debian's busybox-static into a
session layout; ``umoci config --tag`` adds variants beside it in a second (no new layers,
so it is quick): ``conf:1`` with every config field a container uses set, ``other:1`` with
the same files and a different digest. Tests needing the tools skip with the reason
when umoci or skopeo is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.images import store

from .support import CONF, MKIMAGE, Built, CountingUmoci, free_port, need_tools, run


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


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a running registry, gone after the session."""
    need_tools("docker-registry", "skopeo", "umoci")
    base = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    with (base / "registry.log").open("wb") as log:
        server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = (base / "registry.log").read_text()[-2000:]
                    pytest.fail(f"docker-registry did not start: {tail}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
