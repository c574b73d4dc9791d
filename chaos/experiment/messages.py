"""Turn pydantic's validation errors into one-line ``SpecError``\\ s a user can act on.

Three things are fixed up on the way: the location (pydantic inserts the tag of a
discriminated union into it, and a cross-field check can only say where it means
through ``ctx["at"]``), the wording ("must be ..." and what was given), and the
line, looked up in the file's key/item lines. An error in a value that came from
``--set`` names the override instead of a line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chaos.errors import SpecError
from chaos.experiment.source import Loc, Source

_PATTERN_HINTS = {
    "^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$": (
        "must be lower-case letters, digits, '.', '_' or '-' (like checkout-1)"
    ),
    r"^/\S*$": "must be a URL path starting with / (no spaces)",
}
_MAPPING_TYPES = {"model_type", "dict_type", "model_attributes_type"}
_LIST_TYPES = {"tuple_type", "list_type", "iterable_type"}


@dataclass(frozen=True)
class Override:
    """One ``--set path=value``: its text, and the data paths it wrote or created."""

    text: str
    loc: Loc
    created: tuple[Loc, ...] = ()

    def covers(self, loc: Loc) -> bool:
        """Whether an error at ``loc`` is in (or because of) this override's value."""
        return loc[: len(self.loc)] == self.loc or loc in self.created


def spec_errors(
    exc: ValidationError,
    source: Source,
    overrides: Sequence[Override],
    schema: Mapping[str, Any],
) -> list[SpecError]:
    """One ``SpecError`` per pydantic error, ordered by line."""
    details = exc.errors()
    # A list whose items fail also fails its length check (pydantic counts only valid
    # items): that second error is noise, the item errors say what to fix.
    failing = {tuple(err["loc"][:n]) for err in details for n in range(len(err["loc"]))}
    details = [err for err in details if not (err["type"] == "too_short" and err["loc"] in failing)]
    located = [_one(err, source, overrides, schema) for err in details]
    # Most specific first: an error at a key or item the file has, in line order, before
    # one about a field that is absent (it carries its parent's line, often line 1).
    located.sort(
        key=lambda p: (
            p[1] not in source.lines,
            p[0].line is None,
            p[0].line or 0,
            p[0].field or "",
        )
    )
    return [error for error, _ in located]


def _one(
    err: ErrorDetails,
    source: Source,
    overrides: Sequence[Override],
    schema: Mapping[str, Any],
) -> tuple[SpecError, Loc]:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    raw: tuple[str | int, ...] = tuple(err["loc"])
    if isinstance(ctx.get("at"), str) and ctx["at"]:
        raw = (*raw, *(int(p) if p.isdigit() else p for p in ctx["at"].split(".")))
    loc = _clean_loc(raw, source.data)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
    return located_error(_message(err, loc, source, schema), loc, source, overrides), loc


def located_error(
    message: str, loc: Loc, source: Source, overrides: Sequence[Override]
) -> SpecError:
    """A ``SpecError`` at ``loc``: its line in the file, or the ``--set`` that wrote it."""
    for override in overrides:
        if override.covers(loc):
            return SpecError(
                f"{message} (from --set {override.text})", file=source.file, field=_dotted(loc)
            )
    return SpecError(
        message, file=source.file, field=_dotted(loc) or None, line=source.line_of(loc)
    )


def _clean_loc(loc: tuple[int | str, ...], data: object) -> Loc:
    """Drop the tags pydantic puts into the location of a discriminated union's error."""
    out: list[str | int] = []
    node: object = data
    for i, part in enumerate(loc):
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and i < len(loc) - 1
            and part in (node.get("type"), node.get("kind"))
        ):
            continue
        out.append(part)
        node = _child(node, part)
    return tuple(out)


def _child(node: object, part: str | int) -> object:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _message(err: ErrorDetails, loc: Loc, source: Source, schema: Mapping[str, Any]) -> str:
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(schema, loc[:-1], source.data)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if allowed else []
        hint = f'; did you mean "{close[0]}"?' if close else ""
        listed = f" (allowed: {', '.join(allowed)})" if allowed and not close else ""
        return f"unknown field{hint}{listed}"
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown type {_shown(ctx.get('tag'))} (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return "is required"
    if kind in _MAPPING_TYPES:
        return f"must be a mapping of fields (got {_shown(given)})"
    if kind == "too_short":
        least, got = ctx.get("min_length", 1), ctx.get("actual_length") or "none"
        return f"must have at least {least} item{'' if least == 1 else 's'} (got {got})"
    if kind in _LIST_TYPES:
        return f"must be a list (got {_shown(given)})"
    if kind == "string_pattern_mismatch" and str(ctx.get("pattern")) in _PATTERN_HINTS:
        message = _PATTERN_HINTS[str(ctx["pattern"])]
    else:
        message = err["msg"]
        for prefix, replacement in (
            ("Input should be", "must be"),
            ("Value should", "must"),
            ("String should", "must"),
            ("Tuple should", "must"),
            ("Value error, ", ""),
        ):
            if message.startswith(prefix):
                message = replacement + message[len(prefix) :]
                break
        message = message[:1].lower() + message[1:]
    if "(got " not in message and kind not in ("spec_field",):
        message += f" (got {_shown(given)})"
    return message


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:57] + "...")
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _allowed_keys(schema: Mapping[str, Any], loc: Loc, data: object) -> list[str]:
    """The keys the JSON Schema allows at ``loc`` (empty if it cannot tell)."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    node: Mapping[str, Any] | None = _resolve(schema, defs, data)
    for part in loc:
        if node is None:
            return []
        data = _child(data, part)
        key = "items" if isinstance(part, int) else None
        child = node.get(key) if key else node.get("properties", {}).get(part)
        node = _resolve(child, defs, data) if child is not None else None
    if node is None:
        return []
    return sorted(node.get("properties", {}))


def _resolve(
    node: Mapping[str, Any], defs: Mapping[str, Any], data: object
) -> Mapping[str, Any] | None:
    """Follow ``$ref`` and pick the branch of a union that fits ``data``."""
    for _ in range(10):
        if "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
            continue
        branches = node.get("oneOf") or node.get("anyOf")
        if branches is None:
            return node
        disc = node.get("discriminator", {})
        if disc and isinstance(data, dict):
            ref = disc.get("mapping", {}).get(data.get(disc.get("propertyName")))
            if ref is None:
                return None
            node = {"$ref": ref}
            continue
        objects = [b for b in branches if b.get("type") != "null"]
        if len(objects) != 1:
            return None
        node = objects[0]
    return None


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
