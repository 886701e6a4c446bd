"""Pulling from a real registry: Debian's docker-registry on 127.0.0.1, pushed with skopeo.

The registry listens on loopback only, on a free port, with a temp storage dir, and is
stopped (SIGTERM, then SIGKILL) when the module's tests are done. Each test uses its own
repository name, so the tests do not see each other's pushes.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from reconciler import errors
from reconciler.images import store
from reconciler.manifest import model
from reconciler.manifest.model import PullPolicy

from .support import Built, need_tools, run

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a running registry, gone after the module."""
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


def push(built: Built, ref: str, dest: str) -> str:
    """Push a session image to the registry; the digest the registry now serves."""
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", built.source(ref),
        f"docker://{dest}")
    return run("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
               f"docker://{dest}").strip()


def manifest(image: str, policy: PullPolicy) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "app"},
        "spec": {"image": image, "imagePullPolicy": policy.value, "args": ["sleep", "1"]},
    })


async def test_pull_and_run_policies_with_a_repushed_tag(
    registry: str, built: Built, image_store: store.ImageStore
) -> None:
    ref = f"{registry}/app:1"
    first = push(built, "busybox:latest", ref)
    assert first == built.digest()  # an OCI manifest goes through unchanged

    image = await image_store.resolve(ref, PullPolicy.IF_NOT_PRESENT)
    assert (image.ref, image.digest) == (ref, first)
    assert image.config.cmd == ("sh",)
    rootfs = await image_store.ensure_unpacked(image)
    assert (rootfs / "bin" / "busybox").is_file()

    second = push(built, "other:1", ref)  # the tag now names another image
    assert second != first
    hashes = []
    for policy in (PullPolicy.IF_NOT_PRESENT, PullPolicy.IF_NOT_PRESENT, PullPolicy.ALWAYS,
                   PullPolicy.ALWAYS, PullPolicy.IF_NOT_PRESENT, PullPolicy.NEVER):
        resolved = await image_store.resolve(ref, policy)
        hashes.append(model.spec_hash(manifest(ref, PullPolicy.ALWAYS),
                                      extra={"image": resolved.digest}))
        expected = first if len(hashes) <= 2 else second
        assert resolved.digest == expected, (len(hashes), policy)
    # the digest in the spec hash: exactly one change, at the first Always after the push
    changes = sum(1 for a, b in zip(hashes, hashes[1:], strict=False) if a != b)
    assert changes == 1 and hashes[1] != hashes[2]


async def test_always_with_an_unchanged_digest_copies_no_blob(
    registry: str, built: Built, image_store: store.ImageStore
) -> None:
    ref = f"{registry}/same:1"
    digest = push(built, "busybox:latest", ref)
    first = await image_store.pull(ref)
    blobs = sorted((image_store.blobs / "sha256").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in blobs]
    started = time.monotonic()
    again = await image_store.resolve(ref, PullPolicy.ALWAYS)
    elapsed = time.monotonic() - started
    assert first.digest == again.digest == digest
    assert sorted((image_store.blobs / "sha256").iterdir()) == blobs
    # the layer is reused as it is (skopeo writes the small manifest and config again)
    layer = max(range(len(blobs)), key=lambda i: blobs[i].stat().st_size)
    assert blobs[layer].stat().st_size > 1_000_000
    assert blobs[layer].stat().st_mtime_ns == mtimes[layer]
    print(f"Always re-pull with an unchanged digest: {elapsed * 1000:.0f} ms")  # noqa: T201


async def test_max_age_shares_a_recent_pull(registry: str, built: Built,
                                            image_store: store.ImageStore) -> None:
    ref = f"{registry}/aged:1"
    first = push(built, "busybox:latest", ref)
    assert (await image_store.resolve(ref, PullPolicy.ALWAYS, max_age=60)).digest == first
    push(built, "other:1", ref)
    # pulled seconds ago: within max_age the local image stands; without it, a pull
    assert (await image_store.resolve(ref, PullPolicy.ALWAYS, max_age=60)).digest == first
    assert (await image_store.resolve(ref, PullPolicy.ALWAYS)).digest != first


async def test_missing_tag_and_repository_are_not_found(
    registry: str, built: Built, image_store: store.ImageStore
) -> None:
    push(built, "busybox:latest", f"{registry}/there:1")
    for ref in (f"{registry}/there:2", f"{registry}/nowhere:1"):
        with pytest.raises(errors.ImageNotFound, match="unknown") as caught:
            await image_store.resolve(ref, PullPolicy.IF_NOT_PRESENT)
        assert caught.value.retryable
    assert await image_store.ls({}) == []  # nothing half-added
    assert not list(image_store.tmp.iterdir())


async def test_unreachable_registry_fails_the_pull(image_store: store.ImageStore) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(errors.ImagePullFailed, match="connection refused"):
        await image_store.pull(f"127.0.0.1:{port}/app:1")
    assert not list(image_store.tmp.iterdir())


async def test_verified_tls_against_a_plain_http_registry_fails(
    registry: str, built: Built, image_store: store.ImageStore
) -> None:
    ref = f"{registry}/tls:1"
    push(built, "busybox:latest", ref)
    with pytest.raises(errors.ImagePullFailed, match="http response to HTTPS client|HTTPS"):
        await image_store.pull(ref, tls_verify=True)


async def test_import_from_docker_transport(registry: str, built: Built,
                                            image_store: store.ImageStore) -> None:
    digest = push(built, "conf:1", f"{registry}/conf:1")
    image = await image_store.import_(f"docker://{registry}/conf:1", "local/conf:1")
    assert (image.ref, image.digest) == ("local/conf:1", digest)
    assert image.config.user == "www-data"


def test_registry_listens_on_loopback_only(registry: str) -> None:
    host, _, port = registry.partition(":")
    assert host == "127.0.0.1"
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=False).stdout
    if out:  # ss may be missing; the config says 127.0.0.1 either way
        assert all(line.split()[3].startswith("127.0.0.1:") for line in out.splitlines())



async def test_a_hung_pull_is_killed_and_blocks_no_other_image(built: Built,
                                                                tmp_path: Path) -> None:
    s = store.ImageStore(tmp_path / "images", timeout=3)
    await s.import_(built.source())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nobody ever answers
        port = silent.getsockname()[1]
        done: dict[str, float] = {}
        started = time.monotonic()

        async def hung() -> None:
            with pytest.raises(errors.RuntimeTimeout, match=f"image 127.0.0.1:{port}/app:1"):
                await s.resolve(f"127.0.0.1:{port}/app:1", PullPolicy.ALWAYS)
            done["hung"] = time.monotonic() - started

        async def other() -> None:
            await anyio.sleep(0.3)  # the hung pull is under way
            image = await s.resolve("busybox", PullPolicy.IF_NOT_PRESENT)
            await s.ensure_unpacked(image)
            await s.gc_unpacked(set())
            done["other"] = time.monotonic() - started

        async with anyio.create_task_group() as tg:
            tg.start_soon(hung)
            tg.start_soon(other)
    assert done["other"] < 2.5 < done["hung"] < 10
    assert not list(s.tmp.iterdir())  # the killed copy's staging dir is gone
