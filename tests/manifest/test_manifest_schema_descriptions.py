"""``reconciler schema`` describes every field, so an editor shows help on hover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.cli import validate
from reconciler.manifest import files

REPO = Path(__file__).resolve().parents[2]


def _subschemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas directly inside ``node`` that can hold properties of their own."""
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        yield from node.get(key, [])
    # not "if": its properties are a condition on ``kind``, not fields of their own
    for key in ("items", "additionalProperties", "then", "else"):
        child = node.get(key)
        if isinstance(child, dict):
            yield child


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = node.get("$ref")
    if ref is None:
        return None, node
    prefix = "#/$defs/"
    assert isinstance(ref, str) and ref.startswith(prefix), ref
    name = ref.removeprefix(prefix)
    return name, schema["$defs"][name]


def undescribed(schema: dict[str, Any]) -> list[str]:
    """Every property (from the root and from each ``$defs`` entry, through ``$ref``,
    ``anyOf``, ``items`` ...) and every ``$defs`` entry without a description."""
    missing: list[str] = []
    seen: set[str] = set()

    def walk(node: dict[str, Any], where: str) -> None:
        name, target = _resolve(schema, node)
        if name is not None:
            if name in seen:
                return
            seen.add(name)
            where = name
        for prop, sub in target.get("properties", {}).items():
            text = sub.get("description")
            if not (isinstance(text, str) and text.strip()):
                missing.append(f"{where}.{prop}")
            walk(sub, f"{where}.{prop}")
        for sub in _subschemas(target):
            walk(sub, where)

    walk(schema, "<root>")
    for name, definition in schema["$defs"].items():
        text = definition.get("description")
        if not (isinstance(text, str) and text.strip()):
            missing.append(f"$defs.{name}")
        walk({"$ref": f"#/$defs/{name}"}, name)
    return missing


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    out = validate.schema()
    jsonschema.Draft202012Validator.check_schema(out)
    return out


def test_every_field_and_definition_has_a_description(schema: dict[str, Any]) -> None:
    assert undescribed(schema) == []


def test_the_walk_reaches_every_kind_and_nested_type(schema: dict[str, Any]) -> None:
    # the test above is only as good as its walk: it must see nested and referenced types
    for name in ("Container", "Spec", "BindMount", "TmpfsMount", "Pod", "PodSpec",
                 "KubeContainer", "Probe", "HTTPGetAction", "Volume", "ConfigMap", "Secret"):
        assert name in schema["$defs"], name
    broken = {**schema, "$defs": {**schema["$defs"]}}
    probe = broken["$defs"]["Probe"]
    props = {**probe["properties"], "periodSeconds": {"type": "integer"}}
    broken["$defs"]["Probe"] = {**probe, "properties": props}
    assert undescribed(broken) == ["Probe.periodSeconds"]


def test_the_walk_follows_anyof_and_items() -> None:
    schema = {"$defs": {"A": {"description": "a", "properties": {
        "x": {"description": "x", "anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]}}},
        "B": {"description": "b", "properties": {"y": {"type": "array", "items": {
            "properties": {"z": {"type": "string"}}}}}}},
        "$ref": "#/$defs/A"}
    assert undescribed(schema) == ["B.y", "B.y.z"]


@pytest.mark.parametrize("path", [*files.scan(REPO / "manifests"),
                                  *sorted((REPO / "tests" / "manifest" / "kube").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_the_described_schema_still_validates_the_examples(schema: dict[str, Any],
                                                           path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for document in yaml.safe_load_all(path.read_text()):
        if document is not None:
            assert list(validator.iter_errors(document)) == []
