"""The data-plane table of a run: what each setup's proxies did, as the journal records it.

A platform writes one ``dataplane`` journal entry per window it starts (the setup, the
window and its rows: retries, timeouts, circuit breakers, certificates...); ``meta.json``
and ``results.json`` carry the table per setup (:func:`tables_of`), the report's method
section prints it. A row's value can differ between windows of one setup when a fault
sets its own (a cert-expiry's ``connection_lifetime``): then every value is listed with
the windows that had it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from chaos.rundir.journal import JournalEntry

#: The journal entry a platform writes when it starts a window's topology.
DATAPLANE_KIND = "dataplane"


@dataclass(frozen=True)
class DataPlaneRow:
    """One behaviour of a setup's data plane, where its default comes from, and whether
    the experiment changed it (a deviation)."""

    name: str
    value: str
    source: str
    deviation: bool = False

    def to_json(self) -> dict[str, str | bool]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: object) -> DataPlaneRow:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a data-plane row is an object, not {type(raw).__name__}")
        return cls(
            name=str(raw["name"]),
            value=str(raw["value"]),
            source=str(raw["source"]),
            deviation=bool(raw.get("deviation", False)),
        )


Table = tuple[DataPlaneRow, ...]


def _merge(tables: Sequence[tuple[str, Table]]) -> Table:
    """One setup's windows' tables as one: a row whose value varied lists each value."""
    first = tables[0][1]
    merged = []
    for index, row in enumerate(first):
        seen: dict[str, list[str]] = {}
        deviation = False
        for window, table in tables:
            other = table[index] if index < len(table) else row
            seen.setdefault(other.value, []).append(window)
            deviation = deviation or other.deviation
        if len(seen) == 1:
            merged.append(DataPlaneRow(row.name, row.value, row.source, deviation))
            continue
        text = "; ".join(
            f"{value} ({', '.join(_faults(windows))})" for value, windows in seen.items()
        )
        merged.append(DataPlaneRow(row.name, text, row.source, deviation))
    return tuple(merged)


def _faults(windows: list[str]) -> list[str]:
    """Window names (``<setup>-<fault>-<repetition>``) as their faults, each once."""
    names: list[str] = []
    for window in windows:
        name = window.split("-", 1)[-1] if "-" in window else window
        head, _, tail = name.rpartition("-")
        name = head if head and tail.isdigit() else name
        if name not in names:
            names.append(name)
    return names


def tables_of(entries: Sequence[JournalEntry]) -> dict[str, Table]:
    """The table of every setup the journal shows started, in the order first seen."""
    by_setup: dict[str, list[tuple[str, Table]]] = {}
    for entry in entries:
        if entry.kind != DATAPLANE_KIND:
            continue
        rows = entry.data.get("rows")
        if not isinstance(rows, list):
            continue
        table = tuple(DataPlaneRow.from_json(r) for r in rows)
        by_setup.setdefault(str(entry.data.get("setup")), []).append(
            (str(entry.data.get("window", "")), table)
        )
    return {setup: _merge(tables) for setup, tables in by_setup.items() if tables}


def tables_to_json(tables: Mapping[str, Table]) -> dict[str, list[dict[str, str | bool]]]:
    return {setup: [r.to_json() for r in rows] for setup, rows in tables.items()}


def tables_from_json(raw: object) -> dict[str, Table]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(setup): tuple(DataPlaneRow.from_json(r) for r in rows)
        for setup, rows in raw.items()
        if isinstance(rows, list)
    }
