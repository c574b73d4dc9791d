"""Load an experiment file: read, apply ``--set`` overrides, validate, narrow setups.

Errors
------
Every problem is a :class:`chaos.errors.SpecError` whose ``str()`` is one line,
``FILE:LINE: FIELD: MESSAGE``. When a file has several problems, all are reported
at once as a :class:`SpecErrorGroup` (a ``SpecError`` too): its ``file``, ``field``
and ``line`` are the first problem's, ``errors`` holds every one, and its ``str()``
is one line per problem, most specific first: problems at a key or item of the file
in line order, then fields that are missing (a missing ``traffic:`` is often the
consequence of a defect elsewhere, such as a misspelt or mis-indented key).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from chaos.errors import SpecError
from chaos.experiment._base import SETUP_NAMES
from chaos.experiment.messages import Override, located_error, spec_errors
from chaos.experiment.models import BASE_DIR, Experiment
from chaos.experiment.source import Loc, Source, one_or_group, parse_value, read_source

_SEGMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_-]*|\d+)$")


class Located(Protocol):
    """A problem found by a check beyond the schema (a platform's), at a field of the file."""

    @property
    def at(self) -> tuple[str | int, ...]: ...

    @property
    def message(self) -> str: ...


#: A check of a valid experiment that only its platform can make (unknown targets...).
Check = Callable[[Experiment], Sequence[Located]]


def load_experiment(
    path: Path | str,
    overrides: Sequence[str] = (),
    setups: Sequence[str] = (),
    check: Check | None = None,
) -> Experiment:
    """Read ``path``, apply ``--set`` ``overrides``, validate, and narrow to ``setups``.

    ``check`` then looks at the valid experiment (the platform's checks: targets against
    its workload); each problem it finds is reported at its field's line.
    Raises ``SpecError`` (or ``SpecErrorGroup`` for several problems) for anything wrong
    with the file, an override or a setup name; never a YAML or pydantic exception.
    """
    path = Path(path)
    source = read_source(path)
    data = copy.deepcopy(source.data)
    applied = [_apply(data, text, source.file) for text in overrides]
    try:
        experiment = Experiment.model_validate(data, context={BASE_DIR: path.parent})
    except ValidationError as exc:
        errors = spec_errors(exc, Source(source.file, data, source.lines), applied, _schema())
        raise one_or_group(errors) from None
    experiment = _narrow(experiment, setups, source)
    if check is not None:
        found = [
            located_error(p.message, p.at, Source(source.file, data, source.lines), applied)
            for p in check(experiment)
        ]
        if found:
            found.sort(key=lambda e: (e.line is None, e.line or 0, e.field or ""))
            raise one_or_group(found)
    return experiment


def experiment_json_schema() -> dict[str, Any]:
    """The JSON Schema of experiment files (durations are strings with a pattern, or seconds)."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sidecar-chaos.dev/schema/experiment.json",
        **schema,
        "title": "sidecar-chaos experiment",
    }


def _apply(data: dict[str, object], text: str, file: str) -> Override:
    """Apply one ``path=value`` to ``data`` in place; the record says what it touched."""

    def bad(why: str) -> SpecError:
        shown = text if len(text) <= 80 else text[:77] + "..."
        return SpecError(f"--set {shown}: {why}", file=file)

    dotted, sep, raw = text.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        raise bad("expected path=value, like timeline.hold=5s")
    parts = dotted.split(".")
    if not all(_SEGMENT.match(p) for p in parts):
        raise bad(f'"{dotted}" is not a field path like faults.0.percent')
    try:
        value = parse_value(raw, file) if raw.strip() else ""
    except SpecError as exc:
        raise bad(f"the value is {exc.message}") from exc
    loc: list[str | int] = []
    created: list[Loc] = []
    node: object = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(parts[: i + 1])
        if isinstance(node, dict):
            loc.append(part)
            if last:
                node[part] = value
            elif part not in node or node[part] is None:
                node[part] = {}
                created.append(tuple(loc))
            node = node.get(part)
        elif isinstance(node, list):
            if not part.isdigit():
                raise bad(f"{'.'.join(parts[:i]) or 'the file'} is a list; {here} needs an index")
            index = int(part)
            if index >= len(node):
                raise bad(f"{'.'.join(parts[:i])} has {len(node)} items; there is no {here}")
            loc.append(index)
            if last:
                node[index] = value
            node = node[index]
        else:
            raise bad(f"{'.'.join(parts[:i])} is a single value; it has no field {part}")
    return Override(text=text, loc=tuple(loc), created=tuple(created))


def _narrow(experiment: Experiment, setups: Sequence[str], source: Source) -> Experiment:
    if not setups:
        return experiment
    line = source.line_of(("setups",)) if "setups" in source.data else None
    for name in setups:
        if name not in SETUP_NAMES:
            raise SpecError(
                f"--setup {name}: not a setup (expected one of: {', '.join(SETUP_NAMES)})",
                file=source.file,
                field="setups",
            )
        if name not in experiment.setups:
            raise SpecError(
                f"--setup {name}: the experiment compares only {', '.join(experiment.setups)}",
                file=source.file,
                field="setups",
                line=line,
            )
    narrowed = tuple(s for s in experiment.setups if s in setups)
    # a hypothesis about a setup that no longer runs cannot be decided: it is left out
    kept = tuple(
        h for h in experiment.hypotheses if h.setup in narrowed and h.compared_to in narrowed
    )
    return experiment.model_copy(update={"setups": narrowed, "hypotheses": kept})
