"""Pulling from a real registry: Debian's docker-registry on 127.0.0.1, pushed with skopeo.

The registry listens on loopback only, on a free port, with a temp storage dir, and is
stopped (SIGTERM, then SIGKILL) when the module's tests are done. Each test uses its own
repository name, so the tests do not see each other's pushes.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from reconciler import errors
from reconciler.images import store
from reconciler.manifest import model
from reconciler.manifest.model import PullPolicy

from .support import Built, free_port, push

pytestmark = pytest.mark.anyio


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
        # a failure on the host, retried with backoff by the planner: a push may fix it
        assert isinstance(caught.value, errors.RuntimeFailure)
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
