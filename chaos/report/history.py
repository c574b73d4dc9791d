"""The history store: every run and its per-window results in one SQLite file.

``HistoryStore(path).record(run_dir)`` stores one ``runs`` row (experiment, start
time, exit code, the whole ``meta.json``) and one ``results`` row per (setup,
fault, repetition). A run is identified by its experiment and start time
(``RunMeta.run_id``), so recording the same run directory again, or a copy of it
moved elsewhere, replaces its rows instead of adding new ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chaos.analysis import read_results
from chaos.errors import InputError
from chaos.report.meta import RunMeta, read_meta
from chaos.rundir import META_FILE

DEFAULT_HISTORY = Path("reports") / "history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    run_dir      TEXT NOT NULL,
    experiment   TEXT NOT NULL,
    started_utc  TEXT NOT NULL,
    started_ts   REAL NOT NULL,
    finished_utc TEXT,
    exit_code    INTEGER,
    meta_json    TEXT NOT NULL,
    recorded_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id           TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    setup            TEXT NOT NULL,
    fault            TEXT NOT NULL,
    repetition       INTEGER NOT NULL,
    aborted          INTEGER NOT NULL,
    had_impact       INTEGER,
    recovered        INTEGER NOT NULL,
    ttr_s            REAL,
    time_to_impact_s REAL,
    failed_requests  INTEGER NOT NULL,
    total_requests   INTEGER NOT NULL,
    error_rate       REAL,
    p95_ms           REAL,
    p99_ms           REAL,
    PRIMARY KEY (run_id, setup, fault, repetition)
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_ts);
"""


@dataclass(frozen=True)
class RecordedRun:
    """A ``runs`` row."""

    run_id: str
    run_dir: str
    experiment: str
    started: datetime
    exit_code: int | None
    meta: RunMeta


@dataclass(frozen=True)
class RecordedResult:
    """A ``results`` row: one setup, fault and repetition of a recorded run."""

    run_id: str
    setup: str
    fault: str
    repetition: int
    aborted: bool
    had_impact: bool | None
    ttr_s: float | None
    time_to_impact_s: float | None
    failed_requests: int
    total_requests: int
    error_rate: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def measured(self) -> bool:
        """Counts in statistics: not aborted and with traffic (as in ``chaos.analysis``)."""
        return not self.aborted and self.had_impact is not None


def parse_utc(text: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (naive times are taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"not an ISO-8601 time: {text!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class HistoryStore:
    """A SQLite file of recorded runs (created with its schema on first use)."""

    def __init__(self, path: Path | str = DEFAULT_HISTORY) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            with db:  # one transaction: committed on success, rolled back on error
                yield db

    def record(self, run_dir: Path | str) -> str:
        """Store (or replace) the run in ``run_dir``; return its run id.

        Needs ``meta.json``; a run without ``results.json`` (it aborted before the
        analysis) is stored with no result rows.
        """
        directory = Path(run_dir)
        if not (directory / META_FILE).exists():
            raise InputError(f"{directory}: no {META_FILE}; not a run directory")
        meta = read_meta(directory)
        runs = read_results(directory).runs if (directory / "results.json").exists() else []
        started = parse_utc(meta.started_utc)
        with self._connect() as db:
            db.execute("DELETE FROM results WHERE run_id = ?", (meta.run_id,))
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    meta.run_id,
                    str(directory.resolve()),
                    meta.experiment_name,
                    meta.started_utc,
                    started.timestamp(),
                    meta.finished_utc,
                    meta.exit_code,
                    json.dumps(meta.to_dict()),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
            db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        meta.run_id,
                        r.setup,
                        r.fault,
                        r.repetition,
                        int(r.window.aborted),
                        None if r.had_impact is None else int(r.had_impact),
                        int(r.recovered),
                        r.time_to_recover_s,
                        r.time_to_impact_s,
                        r.failed_requests,
                        r.total_requests,
                        r.error_rate_during_fault,
                        r.p95_ms_during_fault,
                        r.p99_ms_during_fault,
                    )
                    for r in runs
                ],
            )
        return meta.run_id

    def runs(self, since: datetime | None = None) -> list[RecordedRun]:
        """Recorded runs started at or after ``since`` (all when None), oldest first."""
        floor = since.timestamp() if since is not None else float("-inf")
        with self._connect() as db:
            rows = db.execute(
                "SELECT run_id, run_dir, experiment, started_ts, exit_code, meta_json FROM runs "
                "WHERE started_ts >= ? ORDER BY started_ts, run_id",
                (floor,),
            ).fetchall()
        return [
            RecordedRun(
                run_id=str(row[0]),
                run_dir=str(row[1]),
                experiment=str(row[2]),
                started=datetime.fromtimestamp(float(row[3]), UTC),
                exit_code=None if row[4] is None else int(row[4]),
                meta=RunMeta.from_dict(json.loads(row[5])),
            )
            for row in rows
        ]

    def results(self, run_ids: Sequence[str]) -> list[RecordedResult]:
        """The result rows of the given runs."""
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        with self._connect() as db:
            rows = db.execute(
                "SELECT run_id, setup, fault, repetition, aborted, had_impact, ttr_s, "
                "time_to_impact_s, failed_requests, total_requests, error_rate, p95_ms, p99_ms "
                f"FROM results WHERE run_id IN ({marks}) ORDER BY run_id, setup, fault, repetition",
                list(run_ids),
            ).fetchall()
        return [
            RecordedResult(
                run_id=str(r[0]),
                setup=str(r[1]),
                fault=str(r[2]),
                repetition=int(r[3]),
                aborted=bool(r[4]),
                had_impact=None if r[5] is None else bool(r[5]),
                ttr_s=None if r[6] is None else float(r[6]),
                time_to_impact_s=None if r[7] is None else float(r[7]),
                failed_requests=int(r[8]),
                total_requests=int(r[9]),
                error_rate=None if r[10] is None else float(r[10]),
                p95_ms=None if r[11] is None else float(r[11]),
                p99_ms=None if r[12] is None else float(r[12]),
            )
            for r in rows
        ]
