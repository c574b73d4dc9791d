"""Read an experiment file's YAML into plain data plus the line of every key and item.

The node tree is composed first (it knows lines), checked for what PyYAML lets
through silently (duplicate keys, non-string keys such as a bare ``on:``), and
then constructed into Python data. Every problem is a ``SpecError`` with a line.

A file is untrusted input, so reading it is bounded: at most ``MAX_BYTES`` from a
regular file (never a device, FIFO or directory), no NUL bytes, UTF-8; composing it
is bounded too: at most ``MAX_DEPTH`` levels of nesting and ``MAX_VALUES`` values
once aliases are expanded, and no alias inside the node it names. A YAML "billion
laughs" of a few hundred bytes, or a file nested thousands of levels deep, is one
error line, found before anything is expanded.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from chaos.errors import SpecError

#: A path into the data, as pydantic reports it: mapping keys and list indexes.
Loc = tuple[str | int, ...]

#: The largest experiment file read (the examples are 1-3 KiB).
MAX_BYTES: Final = 256 * 1024
#: The deepest nesting of values, aliases expanded (the schema itself needs 5).
MAX_DEPTH: Final = 32
#: The most values (scalars, lists, mappings) a file may hold once aliases are expanded.
MAX_VALUES: Final = 20_000

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecErrorGroup(SpecError):
    """Several problems in one experiment file; ``str()`` is one line per problem."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        if not errors:
            raise ValueError("a SpecErrorGroup needs at least one error")
        self.errors: tuple[SpecError, ...] = tuple(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, field=first.field, line=first.line)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def one_or_group(errors: Sequence[SpecError]) -> SpecError:
    """The error to raise for ``errors``: the one, or a group of all of them."""
    return errors[0] if len(errors) == 1 else SpecErrorGroup(errors)


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
    loader: _Loader | None = None
    try:
        loader = _loader(text, name)  # PyYAML's reader checks the characters right away
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
        problems: list[SpecError] = []
        _index(node, (), lines, name, problems)
        if problems:
            raise one_or_group(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if exc.problem and exc.context and exc.context_mark is not None:
            context = " ".join(str(exc.context).split())
            problem = f"{problem} ({context} on line {exc.context_mark.line + 1})"
        raise SpecError(
            f"invalid YAML: {problem}",
            file=name,
            line=mark.line + 1 if mark is not None else None,
        ) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at an offset
        raise SpecError(
            f"invalid YAML: the control character U+{exc.character:04X} is not allowed in YAML",
            file=name,
            line=text.count("\n", 0, max(exc.position, 0)) + 1,
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", file=name) from exc
    finally:
        if loader is not None:
            loader.dispose()
    assert isinstance(data, dict)  # a MappingNode constructs a dict
    return Source(file=name, data=data, lines=lines)


def parse_value(text: str, name: str) -> object:
    """One YAML value (a ``--set`` override's), bounded like a file; ``SpecError`` if refused."""
    loader: _Loader | None = None
    try:
        loader = _loader(text, name)
        node = loader.get_single_node()
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML ({' '.join(str(exc).split())})", file=name) from exc
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path, name: str) -> str:
    """The file's text: a regular file of at most ``MAX_BYTES``, UTF-8, no NUL bytes."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to must not hang (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise SpecError("no such file", file=name) from exc
    except IsADirectoryError as exc:
        raise SpecError("is a directory, not an experiment file", file=name) from exc
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=name) from exc
    try:
        raw = _read_bounded(fd, name)
    finally:
        os.close(fd)
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise SpecError(
            f"is a binary file, not YAML text (a NUL byte at offset {nul})",
            file=name,
            line=raw.count(b"\n", 0, nul) + 1,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            file=name,
            line=line,
        ) from exc


def _read_bounded(fd: int, name: str) -> bytes:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise SpecError("is a directory, not an experiment file", file=name)
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(
            f"is {_file_kind(info.st_mode)}, not a regular file; give an experiment file",
            file=name,
        )
    too_big = SpecError(
        f"is larger than {MAX_BYTES // 1024} KiB; an experiment file is a few KiB of YAML",
        file=name,
    )
    if info.st_size > MAX_BYTES:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=name) from exc
    if size > MAX_BYTES:  # it grew while being read
        raise too_big
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


class _BoundedComposer(Composer):
    """PyYAML's composer with limits on nesting and alias expansion, checked as it goes.

    Each composed node is measured: how many values and how many levels it stands
    for with its aliases expanded. An alias reuses its node's measure, so a bomb is
    refused at the first node whose expansion passes ``MAX_VALUES``, long before
    anything downstream (constructor, deep copy, validation) expands it.
    """

    peek_event: Callable[[], yaml.Event]  # the parser's, mixed in next to this class

    def _start_limits(self, name: str) -> None:
        self._file_name = name
        self._depth = 0
        self._open: set[str] = set()
        self._measure: dict[int, tuple[int, int]] = {}

    def _too_much(self, message: str, mark: object) -> SpecError:
        line = getattr(mark, "line", None)
        return SpecError(message, file=self._file_name, line=line + 1 if line is not None else None)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise self._too_much(
                    f"the alias *{event.anchor} is inside the value it names "
                    "(a recursive alias); YAML aliases must not refer to their own parent",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)
            _, depth = self._measure[id(node)]
            if self._depth + depth > MAX_DEPTH:
                raise self._too_much(
                    f"the alias *{event.anchor} nests values more than {MAX_DEPTH} levels deep",
                    event.start_mark,
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._too_much(
                f"values are nested more than {MAX_DEPTH} levels deep", event.start_mark
            )
        anchor: str | None = getattr(event, "anchor", None)  # the start of a scalar or collection
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        assert node is not None  # an event that starts a node composes one
        if anchor is not None:
            self._open.discard(anchor)
        self._depth -= 1
        values, depth = self._measure_node(node)
        if values > MAX_VALUES:
            raise self._too_much(
                f"holds more than {MAX_VALUES} values once its aliases are expanded "
                "(an alias bomb?)",
                node.start_mark,
            )
        self._measure[id(node)] = (values, depth)
        return node

    def _measure_node(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            return 1, 1
        measures = [self._measure[id(child)] for child in children]
        return 1 + sum(m[0] for m in measures), 1 + max((m[1] for m in measures), default=0)


class _Loader(Protocol):
    """What ``read_source`` uses of a loader."""

    def get_single_node(self) -> yaml.Node | None: ...

    def construct_document(self, node: yaml.Node) -> Any: ...

    def dispose(self) -> None: ...


class _PyLoader(_BoundedComposer, yaml.SafeLoader):
    """The bounded composer on PyYAML's pure-Python parser."""

    def __init__(self, text: str, name: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._start_limits(name)


try:
    from yaml._yaml import CParser
except ImportError:  # a PyYAML built without libyaml
    _C_LOADER: type[_Loader] | None = None
else:

    class _CLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):
        """The bounded composer on libyaml's parser (the composing stays in Python)."""

        def __init__(self, text: str, name: str) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_limits(name)

    _C_LOADER = _CLoader


def _loader(text: str, name: str) -> _Loader:
    """A bounded safe loader: on libyaml's parser where PyYAML has it (faster), else PyYAML's."""
    if _C_LOADER is not None:
        return _C_LOADER(text, name)  # type: ignore[call-arg]
    return _PyLoader(text, name)


def _index(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], name: str, problems: list[SpecError]
) -> None:
    """Record the line of every key and item under ``node``; collect keys YAML mangles."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *anchor`: the merged keys keep the anchor's lines
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                problems.append(
                    SpecError(
                        f"keys must be names (got {shown!s}, which YAML reads as a "
                        f"{key_node.tag.rsplit(':', 1)[-1]}; quote it)",
                        file=name,
                        field=_dotted(loc) or None,
                        line=line,
                    )
                )
                continue
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    SpecError(
                        f"duplicate key (first on line {seen[key]})",
                        file=name,
                        field=_dotted((*loc, key)),
                        line=line,
                    )
                )
                continue
            seen[key] = line
            lines[(*loc, key)] = line
            _index(value_node, (*loc, key), lines, name, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), lines, name, problems)


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
