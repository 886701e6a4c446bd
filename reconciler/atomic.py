"""Writing a file so that a reader, or a crash, sees the old content or the new, never half.

One helper for every file the program replaces in place: a container's config.json and
applied manifest, the image store's index.json, the daemon's status.json.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write(path: Path, data: bytes, *, fsync: bool = True, mode: int | None = None,
          sync_dir: bool = False) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``.

    ``fsync`` makes the content durable before the rename (a power cut keeps old or new);
    without it the rename is still atomic for readers, which is enough for a status file
    rewritten every few milliseconds. ``mode``: the file's permission bits (default 0600,
    the temp file's). ``sync_dir``: the rename itself made durable too (a manifest).
    The temp file's name starts with a dot: the manifests scanner skips it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or an unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
