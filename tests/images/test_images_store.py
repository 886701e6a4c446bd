"""The image store against real skopeo and umoci: import, resolve, unpack, ls, rm, prune, gc.

Every test gets an empty store under its tmp_path; the images come from the session's
offline build (``conftest.built``). The host is checked directly: index.json, the blob
files, the unpacked trees on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from reconciler import errors
from reconciler.images import store
from reconciler.manifest.model import PullPolicy

from .support import Built, CountingUmoci, run

pytestmark = pytest.mark.anyio
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NEVER, IF_NOT_PRESENT, ALWAYS = PullPolicy.NEVER, PullPolicy.IF_NOT_PRESENT, PullPolicy.ALWAYS


def index_refs(s: store.ImageStore) -> dict[str, str]:
    doc = json.loads((s.layout / "index.json").read_text())
    return {d["annotations"][store.REF_ANNOTATION]: d["digest"] for d in doc["manifests"]}


def blob_names(s: store.ImageStore) -> set[str]:
    return {p.name for p in (s.blobs / "sha256").iterdir()}


def du_kib(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


# -- import from every local transport ------------------------------------------------------


@pytest.fixture(scope="module")
def sources(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """busybox:latest as each local transport skopeo reads."""
    base = tmp_path_factory.mktemp("sources")
    src = built.source()
    run("skopeo", "copy", "--quiet", src, f"oci-archive:{base}/oci.tar:busybox:latest")
    run("skopeo", "copy", "--quiet", src, f"docker-archive:{base}/docker.tar:busybox:latest")
    run("skopeo", "copy", "--quiet", src, f"dir:{base}/dir")
    return {
        "oci": src,
        "oci-archive": f"oci-archive:{base}/oci.tar",
        "docker-archive": f"docker-archive:{base}/docker.tar",
        "dir": f"dir:{base}/dir",
    }


@pytest.mark.parametrize("transport", ["oci", "oci-archive", "docker-archive", "dir"])
async def test_import_from_each_transport(image_store: store.ImageStore, built: Built,
                                          sources: dict[str, str], transport: str) -> None:
    image = await image_store.import_(sources[transport], "imported:1")
    assert (image.ref, image.name, image.tag) == ("imported:1", "imported", "1")
    assert index_refs(image_store) == {"imported:1": image.digest}
    if transport != "docker-archive":  # Docker's format is converted, so its digest differs
        assert image.digest == built.digest()
    assert image.config.cmd == ("sh",)
    assert image.config.env == (f"PATH={DEFAULT_PATH}",)
    rootfs = await image_store.ensure_unpacked(image)
    assert rootfs == image_store.unpacked / image.digest.removeprefix("sha256:") / "rootfs"
    assert (rootfs / "bin" / "busybox").is_file()
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert not list(image_store.tmp.iterdir())  # staging cleaned


async def test_import_takes_the_name_from_the_source(image_store: store.ImageStore,
                                                     built: Built) -> None:
    image = await image_store.import_(built.source("conf:1"))
    assert image.ref == "conf:1" and image.config.user == "www-data"
    assert image.config.entrypoint == ("/bin/sh", "-c")
    with pytest.raises(errors.ImageError, match="give NAME:TAG"):
        await image_store.import_(f"dir:{built.scratch}")


async def test_import_of_a_missing_source_is_not_found(image_store: store.ImageStore,
                                                      tmp_path: Path) -> None:
    with pytest.raises(errors.ImageNotFound, match="no such file"):
        await image_store.import_(f"oci-archive:{tmp_path}/nope.tar", "x:1")
    assert not list(image_store.tmp.iterdir())


async def test_reimport_moves_the_tag(image_store: store.ImageStore, built: Built) -> None:
    first = await image_store.import_(built.source(), "app:1")
    second = await image_store.import_(built.source("other:1"), "app:1")
    assert first.digest != second.digest
    assert index_refs(image_store) == {"app:1": second.digest}
    assert (await image_store.get("app:1")).digest == second.digest


# -- resolve --------------------------------------------------------------------------------


async def test_resolve_never_absent_is_a_clear_error(image_store: store.ImageStore) -> None:
    with pytest.raises(errors.ImageNotFound, match="imagePullPolicy is Never") as caught:
        await image_store.resolve("busybox", NEVER)
    # a failure on the host, which the planner retries with backoff: a later import can fix it
    assert isinstance(caught.value, errors.RuntimeFailure)


async def test_resolve_local_image_without_pulling(image_store: store.ImageStore,
                                                   built: Built) -> None:
    await image_store.import_(built.source())
    # skopeo cannot be run at all: a pull would fail, so these prove no pull happens
    image_store.skopeo = "/nonexistent/skopeo"
    for policy in (NEVER, IF_NOT_PRESENT):
        for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest"):
            image = await image_store.resolve(ref, policy)
            assert (image.ref, image.digest) == ("busybox:latest", built.digest())
    with pytest.raises(errors.ImageError, match="cannot run /nonexistent/skopeo"):
        await image_store.resolve("busybox", ALWAYS)  # Always pulls, even when present


async def test_resolve_if_not_present_pulls_when_absent(image_store: store.ImageStore) -> None:
    # an unreachable registry on loopback port 9 (discard): the pull is attempted and fails
    with pytest.raises(errors.ImagePullFailed, match="127.0.0.1:9/app:1"):
        await image_store.resolve("127.0.0.1:9/app:1", IF_NOT_PRESENT)


# -- unpacking ------------------------------------------------------------------------------


async def test_fifty_concurrent_users_share_one_unpack(tmp_path: Path, built: Built,
                                                       counting_umoci: CountingUmoci) -> None:
    s = store.ImageStore(tmp_path / "images", umoci=str(counting_umoci.path), timeout=60)
    image = await s.import_(built.source())
    paths: list[Path] = []

    async def user() -> None:
        paths.append(await s.ensure_unpacked(image))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(user)
    assert len(set(paths)) == 1 and len(paths) == 50
    assert counting_umoci.unpacks() == 1
    assert [p.name for p in s.unpacked.iterdir()] == [image.digest.removeprefix("sha256:")]
    one_tree = du_kib(paths[0])
    assert du_kib(s.unpacked) < one_tree * 1.5  # one tree on disk, not fifty
    await s.ensure_unpacked(image)
    assert counting_umoci.unpacks() == 1  # never unpacked twice


async def test_unpack_survives_the_tag_moving(image_store: store.ImageStore, built: Built) -> None:
    image = await image_store.import_(built.source(), "app:1")
    await image_store.import_(built.source("other:1"), "app:1")
    # the old digest is still unpackable while its blobs are there: umoci unpacks by digest
    rootfs = await image_store.ensure_unpacked(image)
    assert rootfs.parent.name == image.digest.removeprefix("sha256:")


async def test_missing_layer_blob_is_corrupt(image_store: store.ImageStore, built: Built) -> None:
    image = await image_store.import_(built.source())
    layer = blob_names(image_store) - {image.digest.removeprefix("sha256:")}
    for name in layer:  # config and layer; the config is cached, the layer is read by umoci
        path = image_store.blobs / "sha256" / name
        if path.stat().st_size > 100_000:
            path.unlink()
    with pytest.raises(errors.ImageCorrupt, match="is missing from the store"):
        await image_store.ensure_unpacked(image)
    assert not (image_store.unpacked / image.digest.removeprefix("sha256:")).exists()


async def test_tampered_layer_blob_is_corrupt(image_store: store.ImageStore, built: Built) -> None:
    image = await image_store.import_(built.source())
    big = max((image_store.blobs / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    big.write_bytes(big.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(errors.ImageCorrupt, match="cannot unpack"):
        await image_store.ensure_unpacked(image)
    assert [p.name for p in image_store.unpacked.iterdir()] == []  # no half tree left


async def test_corrupt_index_is_a_clear_error(image_store: store.ImageStore, built: Built) -> None:
    await image_store.import_(built.source())
    (image_store.layout / "index.json").write_text("{not json")
    for policy in (NEVER, IF_NOT_PRESENT):
        with pytest.raises(errors.ImageCorrupt, match="index .* is unreadable"):
            await image_store.resolve("busybox", policy)
    with pytest.raises(errors.ImageCorrupt):
        await image_store.ls({})


async def test_changed_config_blob_is_corrupt_and_shown_in_ls(tmp_path: Path,
                                                             built: Built) -> None:
    s = store.ImageStore(tmp_path / "images", timeout=60)
    image = await s.import_(built.source())
    manifest = json.loads((s.blobs / "sha256" / image.digest.removeprefix("sha256:")).read_text())
    config = s.blobs / "sha256" / manifest["config"]["digest"].removeprefix("sha256:")
    config.write_text(config.read_text().replace('"sh"', '"ash"'))
    fresh = store.ImageStore(tmp_path / "images", timeout=60)  # no cache: reads the disk
    with pytest.raises(errors.ImageCorrupt, match="does not match its digest"):
        await fresh.resolve("busybox", NEVER)
    [row] = await fresh.ls({})
    assert row.ref == "busybox:latest" and row.problem and "does not match" in row.problem


# -- ls, rm, prune, gc ----------------------------------------------------------------------


async def test_ls_reports_tags_sizes_users(image_store: store.ImageStore, built: Built) -> None:
    a = await image_store.import_(built.source(), "busybox:latest")
    await image_store.import_(built.source(), "registry.example:5000/team/bb:2")
    b = await image_store.import_(built.source("other:1"))
    await image_store.ensure_unpacked(a)
    rows = await image_store.ls({a.digest: ["web", "api"]})
    assert [(r.ref, r.name, r.tag, r.digest, r.containers, r.unpacked) for r in rows] == [
        ("busybox:latest", "busybox", "latest", a.digest, ("api", "web"), True),
        ("other:1", "other", "1", b.digest, (), False),
        ("registry.example:5000/team/bb:2", "registry.example:5000/team/bb", "2", a.digest,
         ("api", "web"), True),
    ]
    manifest = json.loads((image_store.blobs / "sha256" / a.digest[7:]).read_text())
    blob_sizes = {p.name: p.stat().st_size for p in (image_store.blobs / "sha256").iterdir()}
    # its config and its layer (the layer shared with b, the config its own)
    expected = sum(blob_sizes[d["digest"][7:]] for d in [manifest["config"], *manifest["layers"]])
    assert rows[0].size == expected and rows[2].size == expected
    assert rows[1].size is not None and rows[1].size != expected
    assert rows[0].created == "2000-01-01T00:00:00Z"


async def test_rm_refused_while_in_use_unless_forced(image_store: store.ImageStore,
                                                     built: Built) -> None:
    image = await image_store.import_(built.source())
    rootfs = await image_store.ensure_unpacked(image)
    in_use = {image.digest: ["web"]}
    with pytest.raises(errors.ImageInUse, match="used by 1 container: web") as caught:
        await image_store.rm("busybox", in_use=in_use)
    assert caught.value.containers == ("web",)
    assert not isinstance(caught.value, errors.RuntimeFailure)  # a refusal, not a failure
    assert index_refs(image_store) == {"busybox:latest": image.digest}
    removal = await image_store.rm("busybox", force=True, in_use=in_use)
    assert removal.refs == ("busybox:latest",) and removal.blobs == 3
    assert removal.bytes_freed > 1_000_000
    assert index_refs(image_store) == {} and blob_names(image_store) == set()
    assert rootfs.is_dir()  # a container still runs on it: the tree stays
    assert await image_store.gc_unpacked({image.digest}) == []
    assert rootfs.is_dir()
    assert await image_store.gc_unpacked(set()) == [image.digest]
    assert not rootfs.parent.exists()


async def test_rm_of_one_of_two_tags_only_untags(image_store: store.ImageStore,
                                                 built: Built) -> None:
    image = await image_store.import_(built.source(), "a:1")
    await image_store.import_(built.source(), "b:1")
    await image_store.ensure_unpacked(image)
    before = blob_names(image_store)
    removal = await image_store.rm("a:1", in_use={image.digest: ["web"]})  # no --force needed
    assert removal.refs == ("a:1",) and removal.blobs == 0 and removal.trees == ()
    assert index_refs(image_store) == {"b:1": image.digest}
    assert blob_names(image_store) == before
    with pytest.raises(errors.ImageNotFound):
        await image_store.rm("a:1", in_use={})


async def test_rm_unused_removes_blobs_and_tree(image_store: store.ImageStore,
                                                built: Built) -> None:
    a = await image_store.import_(built.source(), "a:1")
    b = await image_store.import_(built.source("other:1"), "b:1")
    await image_store.ensure_unpacked(a)
    removal = await image_store.rm("a:1", in_use={})
    assert removal.trees == (a.digest,)
    # b shares the layer: only a's manifest and config go
    assert removal.blobs == 2
    assert (await image_store.get("b:1")).digest == b.digest
    await image_store.ensure_unpacked(b)  # b's blobs are all still there


async def test_prune_removes_unused_images_and_trees(image_store: store.ImageStore,
                                                     built: Built) -> None:
    used = await image_store.import_(built.source(), "used:1")
    unused = await image_store.import_(built.source("other:1"), "unused:1")
    conf = await image_store.import_(built.source("conf:1"))
    for image in (used, unused, conf):
        await image_store.ensure_unpacked(image)
    (image_store.unpacked / ".unpack-deadbeef-x").mkdir()  # a crashed unpack's leftovers
    removal = await image_store.prune({used.digest: ["web"]})
    assert removal.refs == ("conf:1", "unused:1")
    assert set(removal.trees) == {unused.digest, conf.digest}
    assert index_refs(image_store) == {"used:1": used.digest}
    assert [p.name for p in image_store.unpacked.iterdir()] == [used.digest[7:]]
    assert len(blob_names(image_store)) == 3  # used's manifest, config and the shared layer
    assert await image_store.prune({used.digest: ["web"]}) == store.Removal()


async def test_gc_unpacked_keeps_indexed_images(image_store: store.ImageStore,
                                                built: Built) -> None:
    image = await image_store.import_(built.source())
    rootfs = await image_store.ensure_unpacked(image)
    assert await image_store.gc_unpacked(set()) == []  # the image is still in the store
    assert rootfs.is_dir()


async def test_concurrent_imports_of_different_names(image_store: store.ImageStore,
                                                     built: Built) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(image_store.import_, built.source(), f"n{i}:1")
    assert sorted(index_refs(image_store)) == [f"n{i}:1" for i in range(6)]


async def test_store_layout_is_valid_for_other_tools(image_store: store.ImageStore,
                                                     built: Built) -> None:
    image = await image_store.import_(built.source(), "registry.example:5000/app:1.4")
    out = run("skopeo", "inspect", "--format", "{{.Digest}}",
              f"oci:{image_store.layout}:registry.example:5000/app:1.4")
    assert out.strip() == image.digest
    assert shutil.which("umoci")
