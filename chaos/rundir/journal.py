"""The run journal: JSON lines in the run directory, flushed as they are written.

Every entry has ``kind``, ``utc`` (wall time, ISO-8601) and ``t`` (the
monotonic clock the samples use). A fault's plan is written (``fault_planned``)
before anything is touched, ``fault_applied`` once it took, and
``fault_reverted`` when it has been undone; ``clean`` reverts every plan that has
the first but not the last. A journal cut short by a crash is still readable:
a torn last line is ignored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from chaos.errors import InputError, RunDirectoryError
from chaos.rundir import JOURNAL_FILE

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class JournalEntry:
    """One line of the journal."""

    kind: str
    utc: str
    t: float
    data: dict[str, JsonValue]

    def get_str(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        return value if isinstance(value, str) else default


class Journal:
    """Append-only, thread-safe, flushed and fsynced per entry."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / JOURNAL_FILE
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, kind: str, **data: JsonValue) -> JournalEntry:
        entry = JournalEntry(
            kind=kind,
            utc=datetime.now(UTC).isoformat(timespec="microseconds"),
            t=time.monotonic(),
            data=dict(data),
        )
        line = json.dumps({"kind": entry.kind, "utc": entry.utc, "t": entry.t, **entry.data})
        with self._lock:
            try:
                self._file.write(line + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise RunDirectoryError(
                    f"{self.path}: cannot write the journal: {exc.strerror or exc}"
                ) from exc
        return entry

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                with contextlib.suppress(OSError):  # a full disk: the lines were fsynced or lost
                    self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_journal(run_dir: Path, *, strict: bool = False) -> list[JournalEntry]:
    """Every complete entry of the journal in ``run_dir`` (a torn last line is skipped).

    An entry whose ``t`` is not a number (a damaged or hand-edited journal) is an
    ``InputError`` naming the line when ``strict`` (the report, which places entries
    in time); otherwise it is kept with ``t`` NaN, so ``clean`` still sees every plan.
    """
    path = run_dir / JOURNAL_FILE
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the journal: {exc.strerror or exc}") from exc
    return list(_parse(text.splitlines(), path, strict))


def _parse(lines: list[str], path: Path, strict: bool) -> Iterator[JournalEntry]:
    for number, line in enumerate(lines, start=1):
        try:
            raw = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(raw, Mapping) or "kind" not in raw:
            continue
        t = raw.get("t", 0.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            if strict:
                shown = json.dumps(t)[:40]
                raise InputError(
                    f"{path}:{number}: t must be a number of seconds (got {shown}); "
                    "the journal is damaged"
                )
            t = math.nan
        data = {k: v for k, v in raw.items() if k not in ("kind", "utc", "t")}
        yield JournalEntry(
            kind=str(raw["kind"]), utc=str(raw.get("utc", "")), t=float(t), data=data
        )


def unreverted_plans(entries: list[JournalEntry]) -> list[JournalEntry]:
    """The ``fault_planned`` entries with no ``fault_reverted`` for the same ``fault_id``."""
    reverted = {e.get_str("fault_id") for e in entries if e.kind == "fault_reverted"}
    return [
        e for e in entries if e.kind == "fault_planned" and e.get_str("fault_id") not in reverted
    ]
