"""The local image store: one OCI image layout, filled by skopeo, unpacked by umoci.

Sits beside the runtime: the daemon resolves a manifest's ``image:`` here (``resolve``),
gets the unpacked root filesystem (``ensure_unpacked``) as the read-only lower dir of the
container's overlay, and ``reconciler image ...`` manages the store. skopeo and umoci are
the only programs it runs, each with a deadline; their failures become ``errors.Image*``.

On disk, under ``root`` (default ``<state-dir>/images``)::

    layout/                  one OCI image layout: oci-layout, index.json, blobs/sha256/
    unpacked/<hex>/rootfs    the root filesystem of manifest sha256:<hex>, unpacked once,
                             shared read-only by every container of that image
    tmp/                     skopeo's staging layouts (their blobs go straight to layout/)
    gc.lock, index.lock      flock(2) files: the CLI and the daemon share the store

References. ``busybox`` and ``docker.io/library/busybox:latest`` are one image, stored as
``busybox:latest`` (Docker's familiar form: ``docker.io/`` and ``library/`` dropped, tag
``latest`` by default); ``registry.example:5000/app:1.4`` is kept as written, and a
digest-pinned ``app@sha256:...`` is stored as ``app@sha256:...``. That key is the value of
``org.opencontainers.image.ref.name`` in ``layout/index.json``, written by this module:
skopeo copies into a private staging layout under a fixed name with
``--dest-shared-blob-dir layout/blobs``, and the store then adds the descriptor to the
main index itself (atomically, under ``index.lock``). So any key round-trips, whatever the
OCI ref-name grammar allows, and a slow or hung pull holds no lock another image needs.
Pulls go to ``docker://`` + the fully qualified name (``docker.io/library/busybox:latest``):
the long form exists only on the wire. A digest is the digest of the manifest as stored
here: skopeo converts a Docker schema 2 manifest to OCI on the way in, so it can differ
from the registry's, deterministically.

TLS: a registry on loopback (``localhost``, ``127.0.0.0/8``, ``::1``) or listed in
``insecure_registries`` is reached with TLS verification off, as Docker does.

Concurrency: an anyio lock per manifest digest (never two unpacks of one image), one per
reference (never two pulls of one name); across processes, copies and unpacks hold
``gc.lock`` shared and blob garbage collection (rm, prune) holds it exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from reconciler import atomic, errors, proc
from reconciler.images import apply
from reconciler.manifest.model import PullPolicy

log = logging.getLogger(__name__)

ImageConfig = apply.ImageConfig
REF_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_HUB = "docker.io"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"})
_STAGED = "staged"
_MAX_JSON_BLOB = 4 << 20
_LOCK_POLL = (0.01, 0.25)  # first and longest wait between flock attempts, seconds

# distribution/reference's grammar, lowercase names only (as Docker requires).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_Failure = Callable[[str], errors.ReconcilerError]


# -- references -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: ``domain/path[:tag][@digest]``."""

    domain: str  # "docker.io", "registry.example:5000", "localhost"
    path: str  # "library/busybox", "app"
    tag: str | None  # None only when pinned by digest
    digest: str | None

    @property
    def name(self) -> str:
        """The familiar name: ``busybox``, ``user/app``, ``registry.example:5000/app``."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return f"{self.domain}/{self.path}"

    @property
    def key(self) -> str:
        """The name in the store: ``busybox:latest``, ``app@sha256:...``."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    @property
    def remote(self) -> str:
        """Fully qualified, for ``docker://``: ``docker.io/library/busybox:latest``."""
        base = f"{self.domain}/{self.path}"
        return f"{base}@{self.digest}" if self.digest else f"{base}:{self.tag}"


def parse_ref(text: str) -> Reference:
    """Docker's normalisation of an image reference; ``errors.ImageError`` if malformed."""
    bad = errors.ImageError(f"{text!r} is not an image reference (e.g. busybox:latest)")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise bad
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.match(tag):
            raise bad
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not _DOMAIN_RE.match(domain):
            raise bad
    else:
        domain, path = DOCKER_HUB, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH_RE.match(path) or len(domain) + 1 + len(path) > 255:
        raise bad
    if digest:
        tag = None  # a tag next to a digest is a comment: the digest decides
    elif tag is None:
        tag = "latest"
    return Reference(domain=domain, path=path, tag=tag, digest=digest or None)


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One image in the store, by the reference it was resolved from."""

    ref: str  # the store key: "busybox:latest"
    name: str  # "busybox"
    tag: str | None  # "latest"; None when pinned by digest
    digest: str  # the manifest digest, "sha256:..."
    config: ImageConfig


@dataclass(frozen=True)
class ImageInfo:
    """A row of ``image ls``."""

    ref: str
    name: str
    tag: str | None
    digest: str
    size: int | None  # bytes of the manifest's config and layer blobs (compressed)
    created: str | None  # the config's "created", as written
    containers: tuple[str, ...]  # names of the containers (any state) using the digest
    unpacked: bool
    problem: str | None = None  # why the entry cannot be read, for a corrupt store


@dataclass(frozen=True)
class Removal:
    """What ``rm``, ``prune`` or a garbage collection took away."""

    refs: tuple[str, ...] = ()
    trees: tuple[str, ...] = ()  # manifest digests whose unpacked rootfs was removed
    blobs: int = 0
    bytes_freed: int = 0  # of blobs; an unpacked tree's size is not measured


# -- the store ------------------------------------------------------------------------------


class ImageStore:
    """The OCI layout at ``root/layout`` and the unpacked trees at ``root/unpacked``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        skopeo: str = "skopeo",
        umoci: str = "umoci",
        timeout: float = 300.0,
        insecure_registries: Collection[str] = (),
        progress: bool = False,
    ) -> None:
        self.root = Path(root).absolute()
        if ":" in str(self.root):
            raise errors.UsageError(
                f"image store {self.root}: the path must not contain ':' (skopeo's oci:"
                " transport splits there)")
        self.layout = self.root / "layout"
        self.blobs = self.layout / "blobs"
        self.unpacked = self.root / "unpacked"
        self.tmp = self.root / "tmp"
        self.skopeo = shutil.which(skopeo) or skopeo
        self.umoci = shutil.which(umoci) or umoci
        self.timeout = timeout
        self.insecure_registries = frozenset(insecure_registries)
        self.progress = progress
        self._unpack_locks: dict[str, anyio.Lock] = {}
        self._ref_locks: dict[str, anyio.Lock] = {}
        self._pulled_at: dict[str, float] = {}
        self._configs: dict[str, tuple[dict[str, Any], ImageConfig]] = {}

    # -- public operations -----------------------------------------------------------------

    async def import_(self, source: str, name: str | None = None) -> Image:
        """Copy an image in from any skopeo source, stored as ``name`` (or the source's)."""
        transport, _, rest = source.partition(":")
        if not rest:
            raise errors.ImageError(f"{source!r} is not a skopeo source such as oci:DIR:REF,"
                                    " oci-archive:FILE, docker-archive:FILE or dir:DIR")
        ref = parse_ref(name) if name is not None else _name_of_source(source)
        tls = None
        if transport == "docker":
            tls = self._tls_verify(parse_ref(rest.removeprefix("//")), None)
        async with self._ref_lock(ref.key):
            return await self._copy(source, ref, tls_verify=tls)

    async def pull(self, ref: str, *, tls_verify: bool | None = None) -> Image:
        """Copy ``docker://REF`` in; ``tls_verify`` None: off for loopback or listed hosts."""
        parsed = parse_ref(ref)
        async with self._ref_lock(parsed.key):
            return await self._pull(parsed, tls_verify=tls_verify)

    async def resolve(self, ref: str, policy: PullPolicy, *, max_age: float = 0.0) -> Image:
        """The image ``ref`` names, pulled or not as ``policy`` says.

        ``Always`` pulls (cheap when nothing changed: skopeo finds every blob present)
        unless this store pulled the same name less than ``max_age`` seconds ago: a daemon
        resolving every pass can pull once a minute, and concurrent resolves of one name
        share a pull.
        """
        parsed = parse_ref(ref)
        if policy is PullPolicy.NEVER:
            found = self._local(parsed)
            if found is None:
                raise errors.ImageNotFound(
                    f"image {parsed.key} is not in the image store and imagePullPolicy is"
                    " Never (import it: reconciler image import SOURCE "
                    f"{parsed.key})")
            return found
        async with self._ref_lock(parsed.key):
            if policy is PullPolicy.IF_NOT_PRESENT:
                found = self._local(parsed)
                if found is not None:
                    return found
            elif max_age > 0:
                pulled = self._pulled_at.get(parsed.key)
                if pulled is not None and time.monotonic() - pulled < max_age:
                    found = self._local(parsed)
                    if found is not None:
                        return found
            return await self._pull(parsed, tls_verify=None)

    async def get(self, ref: str) -> Image:
        """The local image ``ref`` names, never pulled; ``errors.ImageNotFound`` if absent."""
        parsed = parse_ref(ref)
        found = self._local(parsed)
        if found is None:
            raise errors.ImageNotFound(f"image {parsed.key} is not in the image store")
        return found

    async def ensure_unpacked(self, image: Image) -> Path:
        """The image's root filesystem, unpacked now unless it already is."""
        hexd = _hex(image.digest)
        target = self.unpacked / hexd
        if (target / "rootfs").is_dir():
            return target / "rootfs"
        lock = self._unpack_locks.setdefault(hexd, anyio.Lock())
        async with lock:
            if not (target / "rootfs").is_dir():
                async with self._gc_lock(shared=True):
                    await self._unpack(image, target)
        return target / "rootfs"

    async def ls(self, in_use: Mapping[str, Sequence[str]]) -> list[ImageInfo]:
        """Every image, by reference, with the containers using it (digest → names)."""
        rows = []
        for desc in self._index():
            key, digest = _key(desc), str(desc.get("digest", ""))
            parsed = _parse_key(key)
            size: int | None = None
            created: str | None = None
            problem: str | None = None
            try:
                manifest, _ = self._load(digest)
                size = sum(int(d.get("size", 0)) for d in _blobs_of(manifest))
                created = self._config_doc(manifest).get("created")
            except errors.ImageError as exc:
                problem = str(exc)
            rows.append(ImageInfo(
                ref=key, name=parsed.name if parsed else key, tag=parsed.tag if parsed else None,
                digest=digest, size=size, created=created,
                containers=tuple(sorted(in_use.get(digest, ()))),
                unpacked=(self.unpacked / _hex(digest) / "rootfs").is_dir(), problem=problem))
        return sorted(rows, key=lambda r: r.ref)

    async def rm(self, ref: str, *, force: bool = False,
                 in_use: Mapping[str, Sequence[str]]) -> Removal:
        """Remove one reference; its blobs and unpacked tree go when nothing else uses them.

        As Docker: removing one of several tags of a digest only untags; removing the last
        one is refused while a container (in any state) uses the digest, unless ``force``
        (the tree then stays until ``gc_unpacked`` finds it unused).
        """
        parsed = parse_ref(ref)
        async with self._gc_lock(shared=False), self._index_lock():
            index = self._index()
            desc = next((d for d in index if _key(d) == parsed.key), None)
            if desc is None:
                raise errors.ImageNotFound(f"image {parsed.key} is not in the image store")
            digest = str(desc.get("digest"))
            tagged = any(_key(d) != parsed.key and d.get("digest") == digest for d in index)
            users = tuple(sorted(in_use.get(digest, ())))
            if users and not tagged and not force:
                raise errors.ImageInUse(
                    f"image {parsed.key} is used by {_count(len(users), 'container')}:"
                    f" {', '.join(users)} (remove them first, or use --force)",
                    ref=parsed.key, containers=users)
            self._write_index([d for d in index if _key(d) != parsed.key])
            blobs, freed = await self._gc_blobs()
            trees = await self._gc_trees(set(in_use))
        return Removal(refs=(parsed.key,), trees=tuple(trees), blobs=blobs, bytes_freed=freed)

    async def prune(self, in_use: Mapping[str, Sequence[str]]) -> Removal:
        """Remove every image no container uses, then every blob and tree left unused."""
        async with self._gc_lock(shared=False), self._index_lock():
            index = self._index()
            gone = tuple(sorted(_key(d) for d in index if not in_use.get(str(d.get("digest")))))
            if gone:
                self._write_index([d for d in index if in_use.get(str(d.get("digest")))])
            blobs, freed = await self._gc_blobs()
            trees = await self._gc_trees(set(in_use))
        return Removal(refs=gone, trees=tuple(trees), blobs=blobs, bytes_freed=freed)

    async def gc_unpacked(self, in_use_digests: Collection[str]) -> list[str]:
        """Remove unpacked trees whose image is gone and that no container uses.

        For daemon start and after deletes: it takes no lock a pull holds, so it never waits
        on one; leftovers of interrupted unpacks go only when no copy or unpack is running.
        """
        return await self._gc_trees(set(in_use_digests), locked=False)

    # -- copying in ------------------------------------------------------------------------

    async def _pull(self, ref: Reference, *, tls_verify: bool | None) -> Image:
        image = await self._copy(f"docker://{ref.remote}", ref,
                                 tls_verify=self._tls_verify(ref, tls_verify))
        self._pulled_at[ref.key] = time.monotonic()
        return image

    async def _copy(self, source: str, ref: Reference, *, tls_verify: bool | None) -> Image:
        argv = [self.skopeo, "copy", "--dest-shared-blob-dir", str(self.blobs)]
        if not self.progress:
            argv.append("--quiet")
        if tls_verify is False:
            argv.append("--src-tls-verify=false")
        started = time.monotonic()
        async with self._gc_lock(shared=True):
            self._ensure_layout()
            staging = Path(tempfile.mkdtemp(prefix="copy-", dir=self.tmp))
            try:
                await self._run([*argv, source, f"oci:{staging}:{_STAGED}"],
                                what=f"image {ref.key}: copying from {source}",
                                failure=_copy_error(source, ref.key))
                desc = _staged_descriptor(staging)
                digest = str(desc["digest"])
                self._load(digest)  # the manifest and config are here and sound
                desc["annotations"] = {REF_ANNOTATION: ref.key}
                async with self._index_lock():
                    index = [d for d in self._index() if _key(d) != ref.key]
                    self._write_index([*index, desc])
            finally:
                await anyio.to_thread.run_sync(shutil.rmtree, staging, True)
        log.info("image %s: %s from %s in %.2fs", ref.key, digest, source,
                 time.monotonic() - started)
        return self._image(ref, digest)

    def _tls_verify(self, ref: Reference, given: bool | None) -> bool:
        if given is not None:
            return given
        host = ref.domain.partition(":")[0]
        if ref.domain in self.insecure_registries or host in self.insecure_registries:
            return False
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True

    # -- unpacking -------------------------------------------------------------------------

    async def _unpack(self, image: Image, target: Path) -> None:
        manifest, _ = self._load(image.digest)
        for desc in _blobs_of(manifest)[1:]:
            blob = self._blob_path(str(desc.get("digest")))
            if not blob.is_file():
                raise errors.ImageCorrupt(
                    f"image {image.ref}: blob {desc.get('digest')} is missing from the store"
                    " (remove the image and import or pull it again)")
        self.unpacked.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".unpack-{_hex(image.digest)[:12]}-",
                                     dir=self.unpacked))
        try:
            # A private layout with this one manifest, sharing the store's blobs: umoci
            # unpacks exactly this digest, whatever happens to the store's tags meanwhile.
            private = work / "layout"
            private.mkdir()
            (private / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            desc = {"mediaType": manifest.get("mediaType", OCI_MANIFEST),
                    "digest": image.digest, "size": self._blob_path(image.digest).stat().st_size,
                    "annotations": {REF_ANNOTATION: "unpack"}}
            (private / "index.json").write_text(json.dumps(
                {"schemaVersion": 2, "manifests": [desc]}))
            (private / "blobs").symlink_to(self.blobs)
            argv = [self.umoci, "unpack"]
            if os.geteuid() != 0:
                argv.append("--rootless")
            started = time.monotonic()
            await self._run([*argv, "--image", f"{private}:unpack", str(work / "bundle")],
                            what=f"image {image.ref}: unpacking {image.digest}",
                            failure=lambda msg: errors.ImageCorrupt(
                                f"image {image.ref}: cannot unpack {image.digest}: {msg}"))
            try:
                os.rename(work / "bundle", target)
            except OSError as exc:  # another process unpacked it first: keep theirs
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise errors.ImageError(f"image {image.ref}: cannot store the unpacked"
                                            f" tree: {exc.strerror}") from exc
            log.info("image %s: unpacked %s in %.2fs", image.ref, image.digest,
                     time.monotonic() - started)
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, work, True)

    # -- reading the layout ----------------------------------------------------------------

    def _local(self, ref: Reference) -> Image | None:
        desc = next((d for d in self._index() if _key(d) == ref.key), None)
        return None if desc is None else self._image(ref, str(desc.get("digest")))

    def _image(self, ref: Reference, digest: str) -> Image:
        _, config = self._load(digest)
        return Image(ref=ref.key, name=ref.name, tag=ref.tag, digest=digest, config=config)

    def _index(self) -> list[dict[str, Any]]:
        path = self.layout / "index.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise errors.ImageCorrupt(f"image store index {path} is unreadable: {exc}") from exc
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
            raise errors.ImageCorrupt(f"image store index {path} has no list of manifests")
        return manifests

    def _load(self, digest: str) -> tuple[dict[str, Any], ImageConfig]:
        """A manifest and its image config, verified against their digests (cached)."""
        cached = self._configs.get(digest)
        if cached is not None:
            return cached
        manifest = self._json_blob(digest, what="manifest")
        if manifest.get("mediaType", OCI_MANIFEST) not in MANIFEST_TYPES \
                or not isinstance(manifest.get("config"), dict):
            raise errors.ImageCorrupt(f"manifest {digest} is not an image manifest"
                                      f" ({manifest.get('mediaType')})")
        doc = self._config_doc(manifest)
        try:
            config = ImageConfig.from_json(doc)
        except ValueError as exc:
            raise errors.ImageCorrupt(f"image config of {digest}: {exc}") from exc
        self._configs[digest] = (manifest, config)
        return manifest, config

    def _config_doc(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self._json_blob(str(manifest["config"].get("digest")), what="image config")

    def _json_blob(self, digest: str, *, what: str) -> dict[str, Any]:
        path = self._blob_path(digest)
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_JSON_BLOB + 1)
        except OSError as exc:
            raise errors.ImageCorrupt(f"{what} {digest} is missing from the image store:"
                                      f" {exc.strerror or exc}") from exc
        if len(data) > _MAX_JSON_BLOB or f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise errors.ImageCorrupt(f"{what} {digest} in the image store does not match its"
                                      " digest")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise errors.ImageCorrupt(f"{what} {digest} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise errors.ImageCorrupt(f"{what} {digest} is not a JSON object")
        return doc

    def _blob_path(self, digest: str) -> Path:
        if not _DIGEST_RE.match(digest):
            raise errors.ImageCorrupt(f"{digest!r} is not a sha256 digest")
        return self.blobs / "sha256" / _hex(digest)

    # -- writing the layout ----------------------------------------------------------------

    def _ensure_layout(self) -> None:
        (self.blobs / "sha256").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        marker = self.layout / "oci-layout"
        if not marker.exists():
            marker.write_text('{"imageLayoutVersion":"1.0.0"}')

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        self._ensure_layout()
        data = json.dumps({"schemaVersion": 2, "manifests": manifests}, indent=1).encode()
        atomic.write(self.layout / "index.json", data)

    # -- garbage collection ----------------------------------------------------------------

    async def _gc_blobs(self) -> tuple[int, int]:
        """Blobs no manifest of the index needs, and staging leftovers (exclusive lock held)."""
        keep: set[str] = set()
        for desc in self._index():
            digest = str(desc.get("digest"))
            keep.add(digest)
            try:
                manifest, _ = self._load(digest)
            except errors.ImageError:
                continue
            keep.update(str(d.get("digest")) for d in _blobs_of(manifest))
        count = freed = 0
        blob_dir = self.blobs / "sha256"
        for path in sorted(blob_dir.iterdir()) if blob_dir.is_dir() else ():
            if f"sha256:{path.name}" in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                self._configs.pop(f"sha256:{path.name}", None)
                count, freed = count + 1, freed + size
        for leftover in self.tmp.iterdir() if self.tmp.is_dir() else ():
            await anyio.to_thread.run_sync(shutil.rmtree, leftover, True)
        return count, freed

    async def _gc_trees(self, in_use: set[str], *, locked: bool = True) -> list[str]:
        """Unpacked trees neither indexed nor in use; with the gc lock, unpack leftovers too."""
        if not self.unpacked.is_dir():
            return []
        keep = in_use | {str(d.get("digest")) for d in self._index()}
        fd = None if locked else self._try_gc_lock()
        sweep = locked or fd is not None
        removed = []
        try:
            for entry in sorted(self.unpacked.iterdir()):
                name = entry.name
                if name.startswith("."):
                    if sweep or name.startswith(".rm-"):
                        await anyio.to_thread.run_sync(shutil.rmtree, entry, True)
                    continue
                digest = f"sha256:{name}"
                lock = self._unpack_locks.get(name)
                if digest in keep or (lock is not None and lock.locked()):
                    continue
                doomed = self.unpacked / f".rm-{name}"
                try:
                    os.rename(entry, doomed)
                except OSError:
                    continue
                await anyio.to_thread.run_sync(shutil.rmtree, doomed, True)
                removed.append(digest)
        finally:
            if fd is not None:
                os.close(fd)
        if removed:
            log.info("image store: removed unpacked trees %s", ", ".join(removed))
        return removed

    # -- locks and processes ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _ref_lock(self, key: str) -> AsyncIterator[None]:
        async with self._ref_locks.setdefault(key, anyio.Lock()):
            yield

    @contextlib.asynccontextmanager
    async def _gc_lock(self, *, shared: bool) -> AsyncIterator[None]:
        async with self._flock(self.root / "gc.lock", shared=shared):
            yield

    @contextlib.asynccontextmanager
    async def _index_lock(self) -> AsyncIterator[None]:
        async with self._flock(self.root / "index.lock", shared=False):
            yield

    @contextlib.asynccontextmanager
    async def _flock(self, path: Path, *, shared: bool) -> AsyncIterator[None]:
        """flock(2) without blocking a thread: polled, so cancellation always works."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            wait, deadline = _LOCK_POLL[0], time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise errors.RuntimeTimeout(
                            f"image store {self.root} stayed busy for {self.timeout:g}s"
                            f" ({path.name} held by another operation)") from None
                    await anyio.sleep(wait)
                    wait = min(wait * 2, _LOCK_POLL[1])
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the lock

    def _try_gc_lock(self) -> int | None:
        """The exclusive gc lock if free right now (its fd, to close), else None."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def _run(self, argv: Sequence[str], *, what: str,
                   failure: _Failure) -> subprocess.CompletedProcess[bytes]:
        """skopeo or umoci with a deadline; with ``progress`` its stdout is ours (a TTY).

        Like ``proc.run`` (which cannot pass stdout through yet), but failures become
        image errors: ``failure(message)`` builds the one to raise.
        """
        stdout = None if self.progress else subprocess.PIPE
        try:
            with anyio.fail_after(self.timeout):
                result = await anyio.run_process(list(argv), stdin=subprocess.DEVNULL,
                                                 stdout=stdout, check=False)
        except TimeoutError as exc:
            raise errors.RuntimeTimeout(
                f"{what}: {Path(argv[0]).name} did not finish within {self.timeout:g}s"
                " and was killed") from exc
        except OSError as exc:
            raise errors.ImageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        if result.returncode != 0:
            raise failure(proc.runc_message(result.stderr))
        return result


# -- helpers --------------------------------------------------------------------------------


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _key(desc: Mapping[str, Any]) -> str:
    return str((desc.get("annotations") or {}).get(REF_ANNOTATION, ""))


def _parse_key(key: str) -> Reference | None:
    try:
        return parse_ref(key)
    except errors.ImageError:
        return None


def _blobs_of(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The config descriptor, then the layers."""
    layers = manifest.get("layers") or []
    return [manifest["config"], *(d for d in layers if isinstance(d, Mapping))]


def _staged_descriptor(staging: Path) -> dict[str, Any]:
    try:
        doc = json.loads((staging / "index.json").read_bytes())
        found = [d for d in doc["manifests"] if _key(d) == _STAGED]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.ImageCorrupt(f"skopeo left no readable index in {staging}: {exc}") from exc
    if len(found) != 1 or not isinstance(found[0].get("digest"), str):
        raise errors.ImageCorrupt(f"skopeo left {len(found)} manifests in {staging}, not 1")
    return dict(found[0])


_NOT_FOUND = ("manifest unknown", "name unknown", "not found", "no such file or directory",
              "does not exist", "no image found", "unknown tag")


def _copy_error(source: str, key: str) -> _Failure:
    def build(message: str) -> errors.ImageError:
        if any(s in message.lower() for s in _NOT_FOUND):
            return errors.ImageNotFound(f"image {key}: not found at {source}: {message}")
        return errors.ImagePullFailed(f"image {key}: cannot copy from {source}: {message}")
    return build


def _name_of_source(source: str) -> Reference:
    """The name a source carries: ``docker://REF``, ``docker-archive:F:REF``, ``oci:D:REF``."""
    transport, _, rest = source.partition(":")
    ref: str | None = None
    if transport == "docker":
        ref = rest.removeprefix("//")
    elif transport in ("docker-archive", "oci", "oci-archive"):
        _, sep, ref = rest.partition(":")
        # an OCI ref name such as "latest" is a tag, not a name: only "name:tag" or a path
        if not sep or (transport != "docker-archive" and ":" not in ref and "/" not in ref):
            ref = None
    if not ref:
        raise errors.ImageError(f"cannot tell an image name from {source!r}: give NAME:TAG")
    return parse_ref(ref)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
