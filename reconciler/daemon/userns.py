"""Host id ranges for ``hostUsers: false``: one per object, never shared, kept on disk.

    /etc/subuid, /etc/subgid (the ``--userns-user`` lines) ─▶ IdRanges (this module)
        ─range_for(object)─▶ InstanceSpec.id_map ─▶ runtime (user namespace, idmapped root)

The one owner of ``<state>/userns.json``: object key (``Container/web``, ``Pod/default/
shop``) -> the slot it holds. A slot is ``SIZE`` (65,536) consecutive uids and gids from
the user's subordinate ranges, like podman's ``--userns=auto`` sizes; slot *i* is the
*i*-th block of the uid lines and the *i*-th of the gid lines. A recreate, a restart and a
daemon restart keep an object's slot (its files in its writable layer stay its own); the
slot is free again when the object is deleted. The file is written before the range is
used, so a crash never hands one range to two objects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reconciler import atomic, errors
from reconciler.core.instance import IdMap

log = logging.getLogger(__name__)

SIZE = 65536
DEFAULT_USER = "reconciler"


class IdRanges:
    def __init__(self, state_dir: str, *, user: str = DEFAULT_USER,
                 subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> None:
        self.path = Path(state_dir) / "userns.json"
        self.user = user
        self.files = {"uid": subuid, "gid": subgid}
        self._held: dict[str, int] | None = None  # read on first use

    def range_for(self, key: str, *, name: str) -> IdMap:
        """The ids of object ``key``, given it now if it has none (``name``: for errors)."""
        held = dict(self._load())  # saved before it is in force
        uids, gids = (self._blocks(kind, name) for kind in ("uid", "gid"))
        slot = held.get(key)
        if slot is None or slot >= min(len(uids), len(gids)):
            used = set(held.values())
            slot = next((i for i in range(min(len(uids), len(gids))) if i not in used), None)
            if slot is None:
                raise errors.RuntimeFailure(
                    f"hostUsers: false: all {min(len(uids), len(gids))} id ranges of user"
                    f" {self.user} ({SIZE} ids each, from {self.files['uid']} and"
                    f" {self.files['gid']}) are in use", container=name)
            held[key] = slot
            self._save(held)
            log.info("%s: user namespace ids %d-%d", key, uids[slot], uids[slot] + SIZE - 1)
        return IdMap(uids[slot], gids[slot], SIZE)

    def release(self, key: str) -> None:
        held = dict(self._load())
        if held.pop(key, None) is not None:
            self._save(held)

    def prune(self, alive: set[str]) -> list[str]:
        """Free the ranges of objects not in ``alive`` (keys): an object deleted while the
        daemon was down, or one killed between taking its range and being made."""
        held = dict(self._load())
        gone = sorted(k for k in held if k not in alive)
        if gone:
            self._save({k: v for k, v in held.items() if k in alive})
        return gone

    def held(self) -> dict[str, int]:
        return dict(self._load())

    def _blocks(self, kind: str, name: str) -> list[int]:
        """The first id of each whole ``SIZE`` block of the user's lines in the file."""
        path = self.files[kind]
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.RuntimeFailure(f"hostUsers: false: cannot read {path}: "
                                        f"{exc.strerror or exc}", container=name) from exc
        out: list[int] = []
        for line in text.splitlines():
            who, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if who != self.user or not start.isdigit() or not count.isdigit():
                continue
            first, n = int(start), int(count)
            out += [first + i * SIZE for i in range(n // SIZE) if first + i * SIZE > 0]
        if not out:
            raise errors.RuntimeFailure(
                f"hostUsers: false: {path} gives user {self.user} no range of {SIZE} ids"
                f" (add a line such as '{self.user}:1000000:{SIZE * 100}')", container=name)
        return out

    def _load(self) -> dict[str, int]:
        if self._held is None:
            try:
                data = json.loads(self.path.read_text())
                self._held = {str(k): int(v) for k, v in data.get("slots", {}).items()}
            except FileNotFoundError:
                self._held = {}
            except (OSError, ValueError, AttributeError) as exc:
                # never hand out a range that may be in use: refuse until a person looks
                raise errors.RuntimeFailure(f"{self.path} is unreadable ({exc}); user"
                                            " namespace ranges cannot be given out") from exc
        return self._held

    def _save(self, held: dict[str, int]) -> None:
        atomic.write(self.path, json.dumps({"user": self.user, "slots": held},
                                           sort_keys=True).encode())
        self._held = held
