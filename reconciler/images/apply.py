"""An image's config as defaults for a manifest: the effective container, Kubernetes' rules.

Pure, between the image store (which reads ``ImageConfig`` from a layout) and the runtime
(which builds ``config.json`` from the effective container with ``oci.build_config``). The
only I/O is optional and read-only: ``/etc/passwd`` and ``/etc/group`` of an unpacked
rootfs, to turn an image ``User`` given by name into numbers, resolved inside that rootfs
(its symlinks never lead out of it).

The rules, as Kubernetes and Docker apply them:

* argv: ``command`` and ``args`` → both; only ``command`` → it alone (the image's Cmd is
  dropped); only ``args`` → Entrypoint + args; neither (or ``args: []``, as containerd
  reads it) → Entrypoint + Cmd; an Entrypoint of ``[""]`` is none (Docker). The effective
  container keeps that split: ``command`` stays the manifest's, ``args`` becomes the image's
  Cmd when the manifest sets neither, and the image's Entrypoint is returned beside it for
  ``oci.build_config(..., entrypoint=...)``, which appends ``args`` to it. ``argv`` computes
  the final list the same way.
* env: the image's variables in its order, a manifest variable replacing one of the same
  name in place, the manifest's other variables after them.
* workingDir, user: the manifest's when set, else the image's (``"1000"``, ``"1000:100"``,
  ``"www-data"``, ``"www-data:users"``; names need the rootfs; a user found in
  ``/etc/passwd`` also gets the groups ``/etc/group`` lists it in, as Docker does).
* stopSignal: the image's ``StopSignal`` unless the manifest sets ``stopSignal`` itself. A
  manifest sets it when the key is in the YAML, even as ``SIGTERM``: pydantic's
  ``model_fields_set`` records that, so an explicit ``SIGTERM`` beats an image's
  ``SIGQUIT`` while an absent key does not.

An image config the effective container cannot be made from (no argv at all, a relative
WorkingDir, an unknown user name, a bad signal) raises ``errors.ImageError``.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from reconciler import errors
from reconciler.manifest import model

_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class ImageConfig:
    """The part of an OCI image config (``config`` in the config blob) a container uses."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "NAME=value", as in the image
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ImageConfig:
        """From a whole config blob (``{"config": {"Entrypoint": ...}, ...}``).

        Raises ``ValueError`` when a field has the wrong type; the store turns that into
        ``errors.ImageCorrupt``.
        """
        section = doc.get("config")
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ValueError("config is not an object")
        return cls(
            entrypoint=_strings(section, "Entrypoint"),
            cmd=_strings(section, "Cmd"),
            env=_strings(section, "Env"),
            working_dir=_string(section, "WorkingDir"),
            user=_string(section, "User"),
            stop_signal=_string(section, "StopSignal"),
        )


def apply_image_config(
    container: model.Container, config: ImageConfig, *, rootfs: Path | None = None
) -> tuple[model.Container, list[str]]:
    """The effective container (image defaults filled in) and the image's Entrypoint.

    ``rootfs`` is the unpacked image root, needed only when the image's User is a name.
    """
    spec = container.spec
    where = f"image {spec.image}" if spec.image else "image"
    update: dict[str, Any] = {}
    entrypoint = [] if list(config.entrypoint) == [""] else list(config.entrypoint)
    if spec.command is None and not spec.args and config.cmd:  # containerd: [] is unset
        update["args"] = list(config.cmd)
    if not _argv(spec.command, update.get("args", spec.args), entrypoint):
        raise errors.ImageError(
            f"{where} has no Entrypoint or Cmd, and the manifest sets no command",
            container=container.name)
    update["env"] = _env(config.env, spec.env)
    if spec.working_dir is None and config.working_dir:
        if not config.working_dir.startswith("/"):
            raise errors.ImageError(
                f"{where}: WorkingDir {config.working_dir!r} is not an absolute path",
                container=container.name)
        update["workingDir"] = config.working_dir
    if spec.user is None and config.user:
        update["user"] = _user(config.user, rootfs, where=where, container=container.name)
    if "stop_signal" not in spec.model_fields_set and config.stop_signal:
        update["stopSignal"] = _signal(config.stop_signal, where=where,
                                       container=container.name)

    doc = container.model_dump(mode="json", by_alias=True)
    doc["spec"].update(update)
    try:
        effective = model.Container.model_validate(doc)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise errors.ImageError(f"{where}: its config does not make a valid container:"
                                f" {problems}", container=container.name) from exc
    return effective, entrypoint


def argv(container: model.Container, entrypoint: Sequence[str]) -> list[str]:
    """The process argv of an effective container (what ``oci.build_config`` makes of it)."""
    return _argv(container.spec.command, container.spec.args, entrypoint)


def _argv(command: Sequence[str] | None, args: Sequence[str] | None,
          entrypoint: Sequence[str]) -> list[str]:
    if command is not None:
        return [*command, *(args or ())]
    return [*entrypoint, *(args or ())]


def _env(image: Sequence[str], manifest: Sequence[model.EnvVar]) -> list[dict[str, str]]:
    merged: dict[str, str] = {}
    for item in image:
        name, sep, value = item.partition("=")
        if sep and name:  # "NAME" alone has no value to give; Docker passes it on unused
            merged[name] = value
    merged.update((var.name, var.value) for var in manifest)
    return [{"name": name, "value": value} for name, value in merged.items()]


def _signal(text: str, *, where: str, container: str) -> str:
    name = text.strip().upper()
    if name.isdigit():
        try:
            return signal.Signals(int(name)).name
        except ValueError:
            pass
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return name
    raise errors.ImageError(f"{where}: StopSignal {text!r} is not a signal", container=container)


# -- users ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _user(text: str, rootfs: Path | None, *, where: str, container: str) -> dict[str, Any]:
    """Docker's ``user[:group]``: numbers as they are, names looked up in the rootfs."""
    user_part, _, group_part = text.partition(":")
    users = _passwd(rootfs) if rootfs is not None else None
    groups = _groups(rootfs) if rootfs is not None else None

    def need(kind: str, what: str) -> None:
        if rootfs is None:
            raise errors.ImageError(
                f"{where}: {kind} {what!r} is a name; resolving it needs the unpacked rootfs",
                container=container)

    entry: _Passwd | None = None
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((u for u in users or () if u.uid == uid), None)
        gid = entry.gid if entry else 0
    else:
        need("User", user_part)
        entry = next((u for u in users or () if u.name == user_part), None)
        if entry is None:
            raise errors.ImageError(f"{where}: user {user_part!r} is not in the image's"
                                    " /etc/passwd", container=container)
        uid, gid = entry.uid, entry.gid
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            need("group", group_part)
            found = next((g for g in groups or () if g.name == group_part), None)
            if found is None:
                raise errors.ImageError(f"{where}: group {group_part!r} is not in the image's"
                                        " /etc/group", container=container)
            gid = found.gid
    extra: list[int] = []
    if entry is not None:
        for group in groups or ():
            if entry.name in group.members and group.gid != gid and group.gid not in extra:
                extra.append(group.gid)
    return {"uid": uid, "gid": gid, "additionalGids": extra}


def _passwd(rootfs: Path) -> list[_Passwd]:
    return [_Passwd(f[0], int(f[2]), int(f[3])) for f in _colon_file(rootfs, "/etc/passwd")
            if len(f) >= 4 and f[2].isdigit() and f[3].isdigit()]


def _groups(rootfs: Path) -> list[_Group]:
    out = []
    for fields in _colon_file(rootfs, "/etc/group"):
        if len(fields) >= 3 and fields[2].isdigit():
            members = tuple(m for m in (fields[3] if len(fields) > 3 else "").split(",") if m)
            out.append(_Group(fields[0], int(fields[2]), members))
    return out


def _colon_file(rootfs: Path, path: str) -> list[list[str]]:
    text = _read_in_root(rootfs, path)
    if text is None:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _read_in_root(rootfs: Path, path: str) -> str | None:
    """A file of the rootfs as the container would see it, None when absent.

    Symlinks resolve against the rootfs, never the host: ``/etc/passwd -> /etc/x`` reads
    ``ROOTFS/etc/x``, and ``..`` stops at the rootfs.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        try:
            st = candidate.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    final = rootfs.joinpath(*resolved)
    try:
        if not stat.S_ISREG(final.lstat().st_mode):
            return None
        return final.read_text(errors="replace")
    except OSError:
        return None


def _strings(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} is not a list of strings")
    return tuple(value)


def _string(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value
