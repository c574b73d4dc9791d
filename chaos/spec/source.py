"""Read an experiment file's YAML into plain data plus the line of every key and item.

The node tree is composed first (it knows lines), checked for what PyYAML lets
through silently (duplicate keys, non-string keys such as a bare ``on:``), and
then constructed into Python data. Every problem is a ``SpecError`` with a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chaos.errors import SpecError

#: A path into the data, as pydantic reports it: mapping keys and list indexes.
Loc = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Source:
    """An experiment file's raw content: its data and where each key and item is."""

    file: str
    data: dict[str, object]
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest ancestor present in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None


def read_source(path: Path, *, shown_as: str | None = None) -> Source:
    """Read and parse ``path``; ``shown_as`` is the name used in messages (default: ``path``)."""
    name = shown_as if shown_as is not None else str(path)
    text = _read_text(path, name)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                "the file is empty; an experiment is a mapping with name, traffic and faults",
                file=name,
            )
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
            raise SpecError(
                f"an experiment must be a mapping of fields (got {kind})",
                file=name,
                line=node.start_mark.line + 1,
            )
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        _index(node, (), lines, name)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise SpecError(
            f"invalid YAML: {problem}",
            file=name,
            line=mark.line + 1 if mark is not None else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", file=name) from exc
    finally:
        loader.dispose()
    assert isinstance(data, dict)  # a MappingNode constructs a dict
    return Source(file=name, data=data, lines=lines)


def _read_text(path: Path, name: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError("no such file", file=name) from exc
    except IsADirectoryError as exc:
        raise SpecError("is a directory, not an experiment file", file=name) from exc
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=name) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            file=name,
            line=line,
        ) from exc


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], name: str) -> None:
    """Record the line of every key and item under ``node``; reject keys YAML mangles."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *anchor`: the merged keys keep the anchor's lines
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise SpecError(
                    f"keys must be names (got {shown!s}, which YAML reads as a "
                    f"{key_node.tag.rsplit(':', 1)[-1]}; quote it)",
                    file=name,
                    field=_dotted(loc) or None,
                    line=line,
                )
            key = str(key_node.value)
            if key in seen:
                raise SpecError(
                    f"duplicate key (first on line {seen[key]})",
                    file=name,
                    field=_dotted((*loc, key)),
                    line=line,
                )
            seen[key] = line
            lines[(*loc, key)] = line
            _index(value_node, (*loc, key), lines, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), lines, name)


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
