"""``reconciler image import|pull|ls|rm|prune``: the local image store from the shell.

A thin layer over ``images.store``: it builds the store at ``<state-dir>/images`` and,
for ``ls``, ``rm`` and ``prune``, asks runc (through ``runtime.runc``) which containers use
which image, by each container's ``io.reconciler.image-digest`` annotation. Any container
runc still knows counts, running or stopped, as Docker counts them. On a terminal, skopeo's
own progress is shown; otherwise only the result lines are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, TypeVar

import anyio

from reconciler import config, errors
from reconciler.core.instance import ANN_IMAGE_DIGEST  # written on image containers
from reconciler.images import store
from reconciler.runtime import runc

if TYPE_CHECKING:
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

_T = TypeVar("_T")


def register(subparsers: _Subparsers) -> None:
    """Add ``image`` and its subcommands."""
    parser = subparsers.add_parser(
        "image", help="manage the local image store (import, pull, ls, rm, prune)",
        description="Manage the local OCI image store that image: manifests run from.",
    )
    sub = parser.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)

    imp = _sub(sub, "import", "copy an image in from any skopeo source",
               "Copy an image into the store from a skopeo source: oci:DIR[:REF],"
               " oci-archive:FILE[:REF], docker-archive:FILE[:REF], dir:DIR or docker://REF."
               " NAME:TAG defaults to the source's own name when it has one.")
    imp.add_argument("source", metavar="SOURCE",
                     help="a skopeo source: oci:DIR:TAG, oci-archive:FILE, docker-archive:FILE"
                          " or dir:DIR")
    imp.add_argument("name", nargs="?", metavar="NAME:TAG",
                     help="store it under this name (default: the source's own)")
    _insecure(imp)
    imp.set_defaults(func=run_import)

    pull = _sub(sub, "pull", "pull an image from a registry",
                "Copy docker://REF into the store. TLS verification is off for loopback"
                " registries and those given with --insecure-registry, as in Docker.")
    pull.add_argument("ref", metavar="REF", help="an image reference, e.g. busybox:1.36")
    _insecure(pull)
    pull.set_defaults(func=run_pull)

    ls = _sub(sub, "ls", "list images and the containers using them",
              "List the store's images: name, tag, digest, size (compressed blobs), whether"
              " unpacked, and the containers (any state) using each.")
    ls.add_argument("-o", "--output", choices=("text", "json"), default="text",
                    help="a table (default) or JSON")
    ls.add_argument("--no-trunc", action="store_true", help="show whole digests")
    ls.set_defaults(func=run_ls)

    rm = _sub(sub, "rm", "remove images",
              "Remove image references. The last reference of an image that a container"
              " uses is kept unless --force; its unpacked tree stays until no container"
              " uses it.")
    rm.add_argument("refs", nargs="+", metavar="NAME:TAG", help="the images to remove")
    rm.add_argument("-f", "--force", action="store_true",
                    help="remove even when containers use the image")
    rm.set_defaults(func=run_rm)

    prune = _sub(sub, "prune", "remove every image no container uses",
                 "Remove every image no container uses, then unused blobs and unpacked"
                 " trees (Docker's `image prune -a`). Asks first on a terminal; without one,"
                 " -y is required: pre-provisioned images must not vanish by accident.")
    prune.add_argument("--dry-run", action="store_true",
                       help="print the images that would be removed, remove nothing")
    prune.add_argument("-y", "--yes", action="store_true",
                       help="do not ask for confirmation (required without a terminal)")
    prune.set_defaults(func=run_prune)


def run_import(args: argparse.Namespace) -> int:
    if args.name is not None:
        _check_ref(args.name)
    image_store = _store(args, progress=True)
    image = _run(lambda: image_store.import_(args.source, args.name))
    print(f"imported {image.ref} {image.digest}")  # noqa: T201
    return 0


def run_pull(args: argparse.Namespace) -> int:
    _check_ref(args.ref)
    image_store = _store(args, progress=True)
    image = _run(lambda: image_store.pull(args.ref))
    print(f"pulled {image.ref} {image.digest}")  # noqa: T201
    return 0


def run_ls(args: argparse.Namespace) -> int:
    image_store = _store(args)

    async def main() -> list[store.ImageInfo]:
        return await image_store.ls(await in_use(args, strict=False))

    rows = _run(main)
    if args.output == "json":
        sys.stdout.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        return 0
    table = [("NAME", "TAG", "DIGEST", "SIZE", "UNPACKED", "CONTAINERS")]
    for r in rows:
        digest = r.digest if args.no_trunc else r.digest.removeprefix("sha256:")[:12]
        table.append((r.name, r.tag or "<digest>", digest,
                      _size(r.size) if r.problem is None else "CORRUPT",
                      "yes" if r.unpacked else "no", ", ".join(r.containers) or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")
    for r in rows:
        if r.problem is not None:
            sys.stderr.write(f"warning: {r.ref}: {r.problem}\n")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    for ref in args.refs:
        _check_ref(ref)
    image_store = _store(args)

    async def main() -> int:
        used = await in_use(args, strict=True)
        failed = 0
        for ref in args.refs:
            try:
                removal = await image_store.rm(ref, force=args.force, in_use=used)
            except (errors.ImageInUse, errors.ImageNotFound) as exc:
                sys.stderr.write(f"error: {exc}\n")
                failed += 1
                continue
            _report(removal)
        return 1 if failed else 0

    return _run(main)


def run_prune(args: argparse.Namespace) -> int:
    if not (args.yes or args.dry_run or _interactive()):
        raise errors.UsageError("image prune removes every image no container uses and there"
                                " is no terminal to confirm it: pass -y/--yes (or --dry-run"
                                " to see what would be removed)")
    image_store = _store(args)

    async def unused() -> list[store.ImageInfo]:
        used = await in_use(args, strict=True)
        return [r for r in await image_store.ls(used) if not used.get(r.digest)]

    doomed = _run(unused)
    if args.dry_run:
        for r in doomed:
            sys.stdout.write(f"would remove {r.ref} {r.digest}\n")
        sys.stdout.write(f"dry run: {len(doomed)} image(s) would be removed, then unused blobs"
                         " and unpacked trees; nothing removed\n")
        return 0
    if doomed and not args.yes and not _confirm(doomed):
        sys.stderr.write("not confirmed: nothing removed\n")
        return 1

    # Only what was listed goes: an image added meanwhile is kept, as is one that a container
    # started using meanwhile (in-use is asked again).
    listed = None if args.yes else {r.digest for r in doomed}

    async def main() -> store.Removal:
        used = await in_use(args, strict=True)
        if listed is not None:
            for r in await image_store.ls({}):
                if r.digest not in listed:
                    used.setdefault(r.digest, ["(not listed)"])
        return await image_store.prune(used)

    _report(_run(main))
    return 0


def _interactive() -> bool:
    """A person to ask: stdin (the answer) and stderr (the question) are terminals."""
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _confirm(doomed: Sequence[store.ImageInfo]) -> bool:
    err = sys.stderr
    err.write(f"These {len(doomed)} image(s) are used by no container and will be removed:\n")
    for r in doomed:
        err.write(f"  {r.ref}  {r.digest.removeprefix('sha256:')[:12]}\n")
    err.write("Remove them, with unused blobs and unpacked trees? [y/N] ")
    err.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        err.write("\n")
        return False
    return answer.strip().lower() in ("y", "yes")


async def in_use(args: argparse.Namespace, *, strict: bool) -> dict[str, list[str]]:
    """Manifest digest → names of the containers runc knows that were made from it.

    ``strict``: a failure to ask runc is an error (rm, prune must not guess); otherwise
    a warning and nothing in use (ls).
    """
    runtime = runc.RuncRuntime(state_dir=args.state_dir, runc_root=args.runc_root)
    try:
        observed = await runtime.list()
    except errors.RuntimeFailure as exc:
        if strict:
            raise
        sys.stderr.write(f"warning: cannot list containers: {exc}\n")
        return {}
    return digests_in_use((o.name, o.annotations) for o in observed)


def digests_in_use(containers: Iterable[tuple[str, Mapping[str, str]]]) -> dict[str, list[str]]:
    """From (name, annotations) pairs; an absent or malformed annotation counts as none."""
    used: dict[str, list[str]] = {}
    for name, notes in containers:
        digest = notes.get(ANN_IMAGE_DIGEST) if isinstance(notes, Mapping) else None
        if isinstance(digest, str) and digest.startswith("sha256:"):
            names = used.setdefault(digest, [])
            if name not in names:  # two instances of one object are one user
                names.append(name)
    return used


def _sub(sub: _Subparsers, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=description)
    parser.add_argument("--state-dir", default=config.default("state_dir"),
                        help="the daemon's state dir; images in STATE_DIR/images"
                        " (default: %(default)s; RECONCILER_STATE_DIR or config file)")
    parser.add_argument("--runc-root", default=config.default("runc_root"),
                        help="runc's --root, to see which containers use which image"
                        " (default: %(default)s; RECONCILER_RUNC_ROOT or config file)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one skopeo or umoci run may take (default 300)")
    return parser


def _insecure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                        help="reach this registry without TLS verification (repeatable)")


def _store(args: argparse.Namespace, *, progress: bool = False) -> store.ImageStore:
    return store.ImageStore(
        f"{args.state_dir}/images", timeout=args.timeout,
        insecure_registries=getattr(args, "insecure_registry", ()),
        progress=progress and sys.stdout.isatty(),
    )


def _check_ref(ref: str) -> None:
    try:
        store.parse_ref(ref)
    except errors.ImageError as exc:
        raise errors.UsageError(str(exc)) from exc


def _run(main: Callable[[], Awaitable[_T]]) -> _T:
    return anyio.run(main)


def _report(removal: store.Removal) -> None:
    out = sys.stdout
    for ref in removal.refs:
        out.write(f"removed {ref}\n")
    for digest in removal.trees:
        out.write(f"removed unpacked {digest}\n")
    out.write(f"{removal.blobs} blobs removed, {_size(removal.bytes_freed)} freed\n")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"

