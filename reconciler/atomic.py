"""Writing a file so that a reader, or a crash, sees the old content or the new, never half.

One helper for every file the program replaces in place: a container's config.json and
applied manifest, the image store's index.json, the daemon's status.json.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``.

    ``fsync`` makes the content durable before the rename (a power cut keeps old or new);
    without it the rename is still atomic for readers, which is enough for a status file
    rewritten every few milliseconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
