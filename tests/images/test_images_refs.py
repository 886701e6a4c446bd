"""Image references: Docker's normalisation, the store's keys, TLS per registry. No tools."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.images import store

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "key", "name", "tag", "remote"),
    [
        ("busybox", "busybox:latest", "busybox", "latest", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "busybox:1.36", "busybox", "1.36", "docker.io/library/busybox:1.36"),
        ("docker.io/library/busybox", "busybox:latest", "busybox", "latest",
         "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:x", "busybox:x", "busybox", "x",
         "docker.io/library/busybox:x"),
        ("user/app", "user/app:latest", "user/app", "latest", "docker.io/user/app:latest"),
        ("registry.example:5000/app:1.4", "registry.example:5000/app:1.4",
         "registry.example:5000/app", "1.4", "registry.example:5000/app:1.4"),
        ("localhost/a/b", "localhost/a/b:latest", "localhost/a/b", "latest",
         "localhost/a/b:latest"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", "127.0.0.1:5000/app", "1",
         "127.0.0.1:5000/app:1"),
        ("my__app-x.y:v_1", "my__app-x.y:v_1", "my__app-x.y", "v_1",
         "docker.io/library/my__app-x.y:v_1"),
        (f"app@{D}", f"app@{D}", "app", None, f"docker.io/library/app@{D}"),
        (f"app:1@{D}", f"app@{D}", "app", None, f"docker.io/library/app@{D}"),
    ],
)
def test_parse(text: str, key: str, name: str, tag: str | None, remote: str) -> None:
    ref = store.parse_ref(text)
    assert (ref.key, ref.name, ref.tag, ref.remote) == (key, name, tag, remote)
    assert store.parse_ref(ref.key) == ref  # the store key round-trips
    assert store.parse_ref(ref.remote) == ref


@pytest.mark.parametrize(
    "text",
    ["", "Busybox", "app:", "app:bad tag", "app@sha256:abc", "-app", ":x", "a//b", "app:-x",
     "bad_host:5000/app", "/app", "app/"],
)
def test_malformed(text: str) -> None:
    with pytest.raises(errors.ImageError, match="is not an image reference"):
        store.parse_ref(text)


@pytest.mark.parametrize(
    ("ref", "listed", "given", "verify"),
    [
        ("127.0.0.1:5000/app", (), None, False),  # loopback: off, as Docker
        ("127.9.9.9:5000/app", (), None, False),
        ("localhost:5000/app", (), None, False),
        ("registry.example:5000/app", (), None, True),
        ("registry.example:5000/app", ("registry.example:5000",), None, False),
        ("registry.example/app", ("registry.example",), None, False),
        ("busybox", (), None, True),
        ("127.0.0.1:5000/app", (), True, True),  # an explicit choice wins
        ("registry.example/app", (), False, False),
    ],
)
def test_tls_verify(ref: str, listed: tuple[str, ...], given: bool | None, verify: bool) -> None:
    s = store.ImageStore("/tmp/unused-store", insecure_registries=listed)  # never touched
    assert s._tls_verify(store.parse_ref(ref), given) is verify


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ("docker://127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
        ("docker-archive:/x.tar:busybox:1", "busybox:1"),
        ("docker-archive:/x.tar:busybox", "busybox:latest"),
        ("oci:/l:busybox:latest", "busybox:latest"),
        ("oci-archive:/a.tar:registry.example:5000/app:2", "registry.example:5000/app:2"),
        ("oci:/l:team/app", "team/app:latest"),
    ],
)
def test_name_of_source(source: str, key: str) -> None:
    assert store._name_of_source(source).key == key


@pytest.mark.parametrize("source", ["oci:/l:latest", "oci:/l", "dir:/d", "docker-archive:/x.tar",
                                    "oci-archive:/a.tar"])
def test_source_without_a_name_needs_one(source: str) -> None:
    with pytest.raises(errors.ImageError, match="give NAME:TAG"):
        store._name_of_source(source)


def test_store_path_with_a_colon_is_refused() -> None:
    with pytest.raises(errors.UsageError, match="must not contain ':'"):
        store.ImageStore("/tmp/a:b")
