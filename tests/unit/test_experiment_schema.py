"""The JSON Schema editors use accepts every example file and rejects what the models reject."""

from __future__ import annotations

import json
import operator
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.experiment import experiment_json_schema

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


def schema_errors(schema: dict[str, Any], data: object) -> list[str]:
    """Validate ``data`` against the subset of JSON Schema 2020-12 pydantic emits.

    Written here because the venv has no ``jsonschema``; it covers every keyword the
    experiment schema uses (``test_validator_knows_every_keyword`` keeps it honest).
    """
    defs = schema.get("$defs", {})
    errors: list[str] = []

    def check(node: dict[str, Any], value: object, at: str) -> None:
        if "$ref" in node:
            check(defs[node["$ref"].rsplit("/", 1)[-1]], value, at)
            return
        if "oneOf" in node or "anyOf" in node:
            branches = node.get("oneOf") or node["anyOf"]
            disc = node.get("discriminator")
            if disc and isinstance(value, dict):
                ref = disc["mapping"].get(value.get(disc["propertyName"]))
                if ref is None:
                    errors.append(f"{at}: no branch for {value.get(disc['propertyName'])!r}")
                    return
                check({"$ref": ref}, value, at)
                return
            ok = [b for b in branches if not schema_errors({"$defs": defs, **b}, value)]
            if (len(ok) != 1) if "oneOf" in node else not ok:
                errors.append(f"{at}: {len(ok)} branches match")
            return
        kind = node.get("type")
        types: dict[str, type | tuple[type, ...]] = {
            "object": dict,
            "array": list,
            "string": str,
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "null": type(None),
        }
        wrong_type = kind is not None and (
            not isinstance(value, types[kind]) or (kind != "boolean" and isinstance(value, bool))
        )
        if wrong_type:
            errors.append(f"{at}: not {kind}")
            return
        if "const" in node and value != node["const"]:
            errors.append(f"{at}: not {node['const']!r}")
        if "enum" in node and value not in node["enum"]:
            errors.append(f"{at}: not in {node['enum']}")
        if isinstance(value, str):
            if "pattern" in node and not re.search(node["pattern"], value):
                errors.append(f"{at}: does not match {node['pattern']}")
            if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", 1e9):
                errors.append(f"{at}: bad length")
        if isinstance(value, int | float) and not isinstance(value, bool):
            bounds = [
                ("minimum", operator.ge),
                ("maximum", operator.le),
                ("exclusiveMinimum", operator.gt),
                ("exclusiveMaximum", operator.lt),
            ]
            for key, holds in bounds:
                if key in node and not holds(value, node[key]):
                    errors.append(f"{at}: violates {key} {node[key]}")
        if isinstance(value, list):
            if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", 1e9):
                errors.append(f"{at}: bad item count")
            for i, item in enumerate(value):
                if "items" in node:
                    check(node["items"], item, f"{at}.{i}")
        if isinstance(value, dict):
            props = node.get("properties", {})
            for key in node.get("required", []):
                if key not in value:
                    errors.append(f"{at}.{key}: required")
            for key, item in value.items():
                if key in props:
                    check(props[key], item, f"{at}.{key}")
                elif node.get("additionalProperties") is False:
                    errors.append(f"{at}.{key}: not allowed")

    check(schema, data, "$")
    return errors


KNOWN_KEYWORDS = {
    "$defs", "$id", "$ref", "$schema", "additionalProperties", "anyOf", "const", "default",
    "description", "discriminator", "enum", "exclusiveMaximum", "exclusiveMinimum", "format",
    "items", "maxItems", "maxLength", "maximum", "minItems", "minLength", "minimum", "oneOf",
    "pattern", "properties", "required", "title", "type",
}  # fmt: skip


def _keywords(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    found |= _keywords(sub)
            elif key not in ("discriminator", "default"):
                found |= _keywords(value)
    elif isinstance(node, list):
        for item in node:
            found |= _keywords(item)
    return found


def test_validator_knows_every_keyword() -> None:
    assert _keywords(experiment_json_schema()) <= KNOWN_KEYWORDS


def test_schema_is_json_and_names_the_draft() -> None:
    schema = experiment_json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"name", "traffic", "faults"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_schema_accepts_example(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(experiment_json_schema(), data) == []


def test_durations_are_strings_with_a_pattern() -> None:
    hold = experiment_json_schema()["$defs"]["Timeline"]["properties"]["hold"]
    string = next(b for b in hold["anyOf"] if b["type"] == "string")
    for good in ("500ms", "15s", "2m", "1h", "1m30s", "2.5s", "10"):
        assert re.search(string["pattern"], good), good
    for bad in ("fast", "15 sec", "-2s", "200us", ""):
        assert not re.search(string["pattern"], bad), bad


def test_stop_condition_uses_the_yaml_key_for() -> None:
    props = experiment_json_schema()["$defs"]["ErrorRateAbove"]["properties"]
    assert "for" in props and "for_" not in props


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.update(owner="me"), "unknown key"),
        (lambda d: d["timeline"].update(hold="fast"), "bad duration"),
        (lambda d: d["faults"][0].update(type="flood"), "unknown fault type"),
        (lambda d: d["faults"][0].update(percent=150), "percent above 100"),
        (lambda d: d["traffic"].pop("users"), "missing users"),
        (lambda d: d.update(setups=["istio"]), "unknown setup"),
    ],
)
def test_schema_rejects_what_the_models_reject(change: Any, why: str) -> None:
    data = yaml.safe_load((EXAMPLES[0].parent / "latency.yaml").read_text(encoding="utf-8"))
    change(data)
    assert schema_errors(experiment_json_schema(), data), why


def test_with_jsonschema_library_if_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(experiment_json_schema())
    for path in EXAMPLES:
        validator.validate(yaml.safe_load(path.read_text(encoding="utf-8")))
