"""IdRanges: slots from the subuid/subgid lines, one object each, kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import errors
from reconciler.daemon.userns import SIZE, IdRanges


def ranges(tmp_path: Path, uid: str, gid: str | None = None) -> IdRanges:
    (tmp_path / "subuid").write_text(uid)
    (tmp_path / "subgid").write_text(gid if gid is not None else uid)
    return IdRanges(str(tmp_path), subuid=str(tmp_path / "subuid"),
                    subgid=str(tmp_path / "subgid"))


def test_each_object_gets_its_own_block_kept_across_restarts(tmp_path: Path) -> None:
    lines = f"other:100000:{SIZE}\nreconciler:200000:{SIZE * 2}\n"
    ids = ranges(tmp_path, lines, lines.replace("200000", "300000"))
    a = ids.range_for("Container/a", name="a")
    b = ids.range_for("Pod/default/b", name="b")
    assert (a.uid, a.gid, a.size) == (200000, 300000, SIZE)
    assert (b.uid, b.gid) == (200000 + SIZE, 300000 + SIZE)
    assert ids.range_for("Container/a", name="a") == a  # a recreate keeps it
    again = IdRanges(str(tmp_path), subuid=str(tmp_path / "subuid"),
                     subgid=str(tmp_path / "subgid"))
    assert again.range_for("Pod/default/b", name="b") == b  # a daemon restart too
    with pytest.raises(errors.RuntimeFailure, match="all 2 id ranges of user reconciler"):
        again.range_for("Container/c", name="c")
    again.release("Container/a")
    assert again.range_for("Container/c", name="c") == a  # freed by the delete


def test_no_lines_for_the_user_says_what_to_add(tmp_path: Path) -> None:
    ids = ranges(tmp_path, f"other:100000:{SIZE}\nreconciler:5:100\n")  # too small a range
    with pytest.raises(errors.RuntimeFailure, match=(
            f"gives user reconciler no range of {SIZE} ids .add a line such as")):
        ids.range_for("Container/a", name="a")


def test_an_unreadable_record_hands_out_nothing(tmp_path: Path) -> None:
    ids = ranges(tmp_path, f"reconciler:200000:{SIZE}\n")
    (tmp_path / "userns.json").write_text("{not json")
    with pytest.raises(errors.RuntimeFailure, match="cannot be given out"):
        ids.range_for("Container/a", name="a")


def test_prune_frees_the_ranges_of_gone_objects(tmp_path: Path) -> None:
    ids = ranges(tmp_path, f"reconciler:200000:{SIZE * 3}\n")
    for key in ("Container/a", "Container/b", "Pod/default/p"):
        ids.range_for(key, name=key)
    assert ids.prune({"Container/a", "Pod/default/p", "Container/new"}) == ["Container/b"]
    assert set(ids.held()) == {"Container/a", "Pod/default/p"}
    assert ids.prune({"Container/a", "Pod/default/p"}) == []
