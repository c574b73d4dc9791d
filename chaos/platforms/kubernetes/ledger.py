"""The write-ahead log of a run's cluster changes: :class:`ChangeLedger`.

A change is written to the run directory's ``kubernetes-changes.jsonl`` (and fsynced)
*before* the API call that makes it, and marked done once undone. ``clean`` after a dead
runner undoes every change not marked done, newest first, from this file alone (or from
the run journal's ``object_changed`` / ``object_restored`` entries). The writes themselves
and their undo are :mod:`chaos.platforms.kubernetes.changes`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.platforms.kubernetes.kinds import KINDS, ResourceKind
from chaos.rundir.journal import JournalEntry

LEDGER_FILE = "kubernetes-changes.jsonl"


@dataclass(frozen=True)
class Change:
    """One write, with what is needed to undo it (JSON-serialisable)."""

    id: str
    action: str
    api_version: str
    kind: str
    namespace: str
    name: str
    run_id: str
    path: tuple[str, ...] = ()
    before: Any = None
    had: bool = True
    #: When the field was absent: the index in ``path`` of the first key that was missing
    #: (the undo removes from there, so no empty parent is left behind).
    missing_from: int = -1
    annotation_before: str | None = None
    port: int = 0
    container: str = ""
    undo_values: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""
    #: Who wrote a field (``""``: a fault; ``"dataplane"``: the run's data-plane
    #: deviations). A field written by two layers is two changes: the later one's
    #: ``before`` is the earlier one's value, so undoing newest first unwinds both.
    layer: str = ""

    @property
    def resource(self) -> ResourceKind:
        return KINDS[(self.api_version, self.kind)]

    def where(self) -> str:
        namespace = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {namespace}{self.name}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = list(self.path)
        data["undo_values"] = dict(self.undo_values)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["path"] = tuple(known.get("path") or ())
        known["undo_values"] = dict(known.get("undo_values") or {})
        return cls(**known)


@dataclass(frozen=True)
class LedgerHeader:
    """Where the changes were made: enough for ``clean`` to reconnect."""

    run_id: str
    context: str
    kubeconfig: str


class ChangeLedger:
    """The write-ahead log of one run directory's cluster changes (thread-safe)."""

    def __init__(
        self,
        run_dir: Path,
        header: LedgerHeader,
        record: Callable[..., object] | None = None,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / LEDGER_FILE
        self._lock = threading.Lock()
        self._active: dict[str, Change] = {}
        #: The run journal's writer too (``object_changed`` / ``object_restored``), if given.
        self._record = record
        self._append({"op": "header", **asdict(header)})

    def _append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps({**record, "utc": datetime.now(UTC).isoformat()}) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def intend(self, change: Change) -> None:
        self._append({"op": "intend", "change": change.to_json()})
        if self._record is not None:
            self._record("object_changed", platform="kubernetes", change=change.to_json())
        with self._lock:
            self._active[change.id] = change

    def done(self, change: Change) -> None:
        self._append({"op": "done", "id": change.id})
        if self._record is not None:
            self._record("object_restored", platform="kubernetes", id=change.id)
        with self._lock:
            self._active.pop(change.id, None)

    def active(self) -> list[Change]:
        """Changes made and not undone, oldest first."""
        with self._lock:
            return list(self._active.values())


def read_ledger(run_dir: Path) -> tuple[list[LedgerHeader], list[Change]]:
    """The headers and the changes not undone (oldest first) of a run directory's ledger."""
    path = run_dir / LEDGER_FILE
    if not path.is_file():
        return [], []
    headers: list[LedgerHeader] = []
    pending: dict[str, Change] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if not isinstance(record, dict):
            continue
        op = record.get("op")
        if op == "header":
            headers.append(
                LedgerHeader(
                    str(record.get("run_id", "")),
                    str(record.get("context", "")),
                    str(record.get("kubeconfig", "")),
                )
            )
        elif op == "intend" and isinstance(record.get("change"), dict):
            change = Change.from_json(record["change"])
            pending[change.id] = change
        elif op == "done":
            pending.pop(str(record.get("id")), None)
    return headers, list(pending.values())


def pending_changes(
    run_dir: Path, entries: Sequence[JournalEntry] = ()
) -> list[tuple[Path, Change]]:
    """Changes not undone, oldest first, with the directory of the ledger that holds them.

    From every ledger under ``run_dir`` (each window's topology has its own) and from the
    run journal's ``object_changed`` / ``object_restored`` entries, so either alone will do.
    """
    found: dict[str, tuple[Path, Change]] = {}
    done: set[str] = set()
    in_ledgers: set[str] = set()
    for path in sorted(run_dir.rglob(LEDGER_FILE)):
        found |= {c.id: (path.parent, c) for c in read_ledger(path.parent)[1]}
        in_ledgers |= _intended_ids(path)
    for entry in entries:
        if entry.kind == "object_changed" and isinstance(entry.data.get("change"), dict):
            change = Change.from_json(entry.data["change"])  # type: ignore[arg-type]
            if change.id not in in_ledgers:  # a ledger, where there is one, decides
                found.setdefault(change.id, (run_dir, change))
        elif entry.kind == "object_restored":
            done.add(entry.get_str("id"))
    return [(where, c) for key, (where, c) in found.items() if key not in done]


def _intended_ids(path: Path) -> set[str]:
    ids: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("op") == "intend":
            ids.add(str((record.get("change") or {}).get("id")))
    return ids


def ledger_headers(run_dir: Path) -> list[LedgerHeader]:
    """Every ledger header under ``run_dir`` (where each window's changes were made)."""
    headers: list[LedgerHeader] = []
    for path in sorted(run_dir.rglob(LEDGER_FILE)):
        headers += read_ledger(path.parent)[0]
    return headers


def mark_done(run_dir: Path, change: Change) -> None:
    """Record in a run directory's ledger that ``change`` was undone (by ``clean``)."""
    line = json.dumps({"op": "done", "id": change.id, "utc": datetime.now(UTC).isoformat()})
    with (run_dir / LEDGER_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
