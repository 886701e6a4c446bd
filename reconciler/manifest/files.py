"""Which files in a manifests directory are manifests: a name filter and a directory scan.

Sits under the loader: ``reconciler validate`` and the daemon's directory watcher both
call ``scan`` to list the files to load, and the watcher calls ``is_manifest_name`` on
every event to drop what editors and sync tools leave behind (see
docs/manifests.md, "Which files are read"). Both look at names and directory entries
only, never at contents, so they are cheap enough to run on every event.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

SUFFIXES = (".yaml", ".yml", ".json")

# Leftovers of editors, package managers and config tools. Most never end in .yaml, but
# some can (``x.puppettmp_1.yaml``, ``x.dpkg-old.yaml``) and the same names as
# directories (``manifests.bak/``) would otherwise be scanned as live manifests.
_LEFTOVER = re.compile(
    r"""
      .*~                          # vim/emacs backup: x.yaml~
    | .*\.sw.                      # vim swap: x.swp, x.swo, x.swx
    | 4913                         # vim's probe for a writable directory
    | \#.*\#                       # emacs auto-save
    | \.\#.*                       # emacs lock
    | .*\.tmp | .*\.bak
    | .*\.dpkg-.*                  # dpkg-new, dpkg-old, dpkg-dist, dpkg-tmp
    | .*\.rpm(?:new|save|orig)
    | \.ansible_tmp.*
    | .*\.puppettmp.*
    | sed[A-Za-z0-9]{6}            # GNU sed -i's temporary file
    | \..+\.[A-Za-z0-9]{6}         # rsync's temporary file: .x.yaml.AbC123
    """,
    re.VERBOSE | re.DOTALL,
)


# A vanished entry, or a symlink that leads nowhere (dangling, a loop of links).
_GONE = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR})


def is_leftover(name: str) -> bool:
    """True for a hidden name or one a tool leaves behind (applies to directories too)."""
    return name.startswith(".") or _LEFTOVER.fullmatch(name) is not None


def is_manifest_name(name: str) -> bool:
    """True if a file with this base name is read when its directory is scanned."""
    return name.lower().endswith(SUFFIXES) and not is_leftover(name)


def _named(entry: os.DirEntry[str]) -> bool:
    """A manifest-named entry that is neither a directory nor a regular file (a FIFO, a
    socket, a device): said, not skipped, unless it is a link that leads nowhere (a
    ConfigMap's mid-swap). A loop of links raises at ``is_dir`` and is kept there."""
    try:
        os.stat(entry.path)
    except OSError:
        return False
    return True


def scan(directory: str | os.PathLike[str]) -> list[Path]:
    """The manifest files under ``directory``, recursively, sorted.

    Visible symlinks are followed, to files and to directories (a ConfigMap volume's
    ``key -> ..data/key``); hidden entries such as ``..data`` are never entered directly.
    Each real directory is entered once, which also breaks symlink loops. Paths are
    returned as reached through ``directory`` (the link, not its target). Entries that
    vanish during the scan and symlinks that lead nowhere are skipped; a manifest name
    that is no regular file (a FIFO, a socket, a device, a loop of links) is returned,
    for the loader to refuse in words; any other ``OSError`` (``directory`` itself
    missing, a permission denied) is raised.
    """
    root = Path(directory)
    info = os.stat(root)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"not a directory: {root}")
    seen = {(info.st_dev, info.st_ino)}
    pending = [root]
    found: list[Path] = []
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as exc:
            if current is root or exc.errno not in _GONE:
                raise
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    if is_leftover(entry.name):
                        continue
                    sub = entry.stat()
                    key = (sub.st_dev, sub.st_ino)
                    if key not in seen:
                        seen.add(key)
                        pending.append(Path(entry.path))
                elif is_manifest_name(entry.name) and (entry.is_file() or _named(entry)):
                    found.append(Path(entry.path))
            except OSError as exc:
                if exc.errno == errno.ELOOP and is_manifest_name(entry.name):
                    found.append(Path(entry.path))  # a loop of links: the loader says so
                elif exc.errno not in _GONE:
                    raise
    return sorted(found)
