"""The history store: every run and its per-window results in one SQLite file.

``HistoryStore(path).record(run_dir)`` stores one ``runs`` row (experiment, start
time, exit code, the whole ``meta.json``) and one ``results`` row per (setup,
fault, repetition). A run is identified by its experiment and start time
(``RunMeta.run_id``), so recording the same run directory again, or a copy of it
moved elsewhere, replaces its rows instead of adding new ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from chaos.errors import InputError, OutputError
from chaos.outpaths import check_output_file
from chaos.rundir import META_FILE, RESULTS_FILE
from chaos.rundir.meta import RunMeta, read_meta

DEFAULT_HISTORY = Path("reports") / "history.db"

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
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

#: The layout of the store's tables; a store of another version is refused.
SCHEMA_VERSION: Final = 1
#: Stores written before ``schema_version`` existed (version 0) have the same two tables
#: with these columns: they are read as they are and migrated on the first write.
_LEGACY_COLUMNS: Final = {
    "runs": (
        "run_id",
        "run_dir",
        "experiment",
        "started_utc",
        "started_ts",
        "finished_utc",
        "exit_code",
        "meta_json",
        "recorded_utc",
    ),
    "results": (
        "run_id",
        "setup",
        "fault",
        "repetition",
        "aborted",
        "had_impact",
        "recovered",
        "ttr_s",
        "time_to_impact_s",
        "failed_requests",
        "total_requests",
        "error_rate",
        "p95_ms",
        "p99_ms",
    ),
}
#: SQLite's answers that mean the file is not a store we can use (not a disk problem).
_NOT_OURS: Final = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_READONLY"})


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
    """A SQLite file of recorded runs, created with its schema on the first ``record``.

    The file is ours only if it carries our ``schema_version`` table, or is a store
    written before that table existed (exactly our ``runs`` and ``results`` tables:
    read as it is, migrated in the first write's transaction after a copy is made next
    to it, see ``migration_backup``). Anything else (an empty file, another program's
    database, not SQLite at all) is refused with an ``InputError`` and left untouched.
    Reading never writes; a new store is built under a temporary name and linked into
    place, so two runs creating it at once both end up with the same complete store.
    Every write is one transaction taken with ``BEGIN IMMEDIATE`` (writers queue on
    SQLite's lock instead of failing).
    """

    def __init__(self, path: Path | str = DEFAULT_HISTORY) -> None:
        self.path = Path(path)
        #: Where the store was copied before this object migrated it (None: not migrated).
        self.migration_backup: Path | None = None

    def check(self) -> None:
        """Refuse, before a run starts, a path that could not take the run's record."""
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, not a history store")
        if self.path.exists():
            with self._read():
                pass
        else:
            check_output_file(self.path, "--history")  # e.g. under a file or in /proc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to an existing store (its schema checked)."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                _check_schema(db, self.path)
                yield db
        except sqlite3.Error as exc:
            raise InputError(f"{self.path}: not a readable history store ({exc})") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the store, created first if it does not exist."""
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, not a history store")
        if not self.path.exists():
            _create(self.path)
        try:
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
                db.execute("PRAGMA foreign_keys = ON")
                db.execute("BEGIN IMMEDIATE")
                backup: Path | None = None
                try:
                    if _check_schema(db, self.path) == 0:
                        backup = _migrate(db, self.path)
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # a failed COMMIT may have rolled back already
                        db.execute("ROLLBACK")
                    if backup is not None:  # not migrated after all: the next write copies again
                        backup.unlink(missing_ok=True)
                    raise
                self.migration_backup = backup or self.migration_backup
        except sqlite3.Error as exc:
            if exc.sqlite_errorname in _NOT_OURS:
                raise InputError(f"{self.path}: not a writable history store ({exc})") from exc
            # a full disk, an I/O error, a lock held too long: the transaction was rolled back
            raise OutputError(self.path, f"the history store was not changed ({exc})") from exc

    def record(self, run_dir: Path | str) -> str:
        """Store (or replace) the run in ``run_dir``; return its run id.

        Needs ``meta.json``; a run without ``results.json`` (it aborted before the
        analysis) is stored with no result rows.
        """
        directory = Path(run_dir)
        if not (directory / META_FILE).exists():
            raise InputError(f"{directory}: no {META_FILE}; not a run directory")
        from chaos.analysis import read_results  # pandas: only when recording, not checking

        meta = read_meta(directory)
        runs = read_results(directory).runs if (directory / RESULTS_FILE).exists() else []
        started = parse_utc(meta.started_utc)
        with self._write() as db:
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
        if not self.path.exists():
            return []
        with self._read() as db:
            rows = db.execute(
                "SELECT run_id, run_dir, experiment, started_ts, exit_code, meta_json FROM runs "
                "WHERE started_ts >= ? ORDER BY started_ts, run_id",
                (floor,),
            ).fetchall()
        return [_parsed(self.path, row[0], _run_from_row, row) for row in rows]

    def results(self, run_ids: Sequence[str]) -> list[RecordedResult]:
        """The result rows of the given runs."""
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        if not self.path.exists():
            return []
        with self._read() as db:
            rows = db.execute(
                "SELECT run_id, setup, fault, repetition, aborted, had_impact, ttr_s, "
                "time_to_impact_s, failed_requests, total_requests, error_rate, p95_ms, p99_ms "
                f"FROM results WHERE run_id IN ({marks}) ORDER BY run_id, setup, fault, repetition",
                list(run_ids),
            ).fetchall()
        return [_parsed(self.path, r[0], _result_from_row, r) for r in rows]


_Row = TypeVar("_Row")


def _parsed(path: Path, run_id: object, parse: Callable[[Any], _Row], row: Any) -> _Row:
    """A row read into its record; a row that does not fit (edited by hand?) is one error."""
    try:
        return parse(row)
    except (ValueError, TypeError, KeyError, OverflowError, OSError, RecursionError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"{path}: the record of run {str(run_id)[:80]!r} is damaged: {why}"
        ) from exc


def _run_from_row(row: Any) -> RecordedRun:
    meta = json.loads(row[5])
    if not isinstance(meta, dict):
        raise TypeError("meta_json is not a JSON object")
    started = float(row[3])
    if not math.isfinite(started):
        raise ValueError(f"started_ts is {started}")
    return RecordedRun(
        run_id=str(row[0]),
        run_dir=str(row[1]),
        experiment=str(row[2]),
        started=datetime.fromtimestamp(started, UTC),
        exit_code=None if row[4] is None else int(row[4]),
        meta=RunMeta.from_dict(meta),
    )


def _result_from_row(r: Any) -> RecordedResult:
    return RecordedResult(
        run_id=str(r[0]),
        setup=str(r[1]),
        fault=str(r[2]),
        repetition=int(r[3]),
        aborted=bool(r[4]),
        had_impact=None if r[5] is None else bool(r[5]),
        ttr_s=_optional_number(r[6], "ttr_s"),
        time_to_impact_s=_optional_number(r[7], "time_to_impact_s"),
        failed_requests=int(r[8]),
        total_requests=int(r[9]),
        error_rate=_optional_number(r[10], "error_rate"),
        p95_ms=_optional_number(r[11], "p95_ms"),
        p99_ms=_optional_number(r[12], "p99_ms"),
    )


def _optional_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} is not a number ({str(value)[:40]!r})")
    number = float(value)
    if math.isnan(number) or number < 0:
        raise ValueError(f"{name} is {number}")
    return number


def _create(path: Path) -> None:
    """Create a new store at ``path``, complete, or leave whatever another process created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(path, f"no new history store created ({exc.strerror or exc})") from exc
    tmp = Path(tmp_name)
    try:
        with closing(sqlite3.connect(tmp)) as db:  # private until linked: no one else sees it
            db.executescript(
                f"{_SCHEMA}\nINSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});"
            )
        # link, not rename: it fails if another run created the store meanwhile, and then
        # that store (complete, as it was built the same way) is the one used
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except (OSError, sqlite3.Error) as exc:
        raise OutputError(path, f"no new history store created ({exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _check_schema(db: sqlite3.Connection, path: Path) -> int:
    """``db``'s schema version: ours, or 0 for the layout before versions (else ``InputError``)."""
    tables = {
        str(row[0])
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if "schema_version" not in tables:
        if _is_legacy(db, tables):
            return 0
        what = (
            "an empty file" if not tables else f"a database with tables {', '.join(sorted(tables))}"
        )
        raise InputError(
            f"{path}: not a sidecar-chaos history store ({what}, no schema_version); "
            "give another --history path"
        )
    rows = db.execute("SELECT version FROM schema_version").fetchall()
    versions = {row[0] for row in rows}
    if versions != {SCHEMA_VERSION}:
        shown = ", ".join(sorted(map(str, versions))) or "none"
        raise InputError(
            f"{path}: history store schema version {shown}; this sidecar-chaos reads "
            f"version {SCHEMA_VERSION}"
        )
    if not {"runs", "results"} <= tables:
        raise InputError(f"{path}: damaged history store (its runs or results table is missing)")
    return SCHEMA_VERSION


def _is_legacy(db: sqlite3.Connection, tables: set[str]) -> bool:
    """Whether ``db`` is a store from before ``schema_version``: exactly our two old tables."""
    if tables != set(_LEGACY_COLUMNS):
        return False
    return all(
        tuple(str(row[1]) for row in db.execute(f"PRAGMA table_info({table})").fetchall())
        == columns
        for table, columns in _LEGACY_COLUMNS.items()
    )


def _migrate(db: sqlite3.Connection, path: Path) -> Path:
    """Bring a version-0 store to ``SCHEMA_VERSION`` inside ``db``'s open write transaction.

    A complete copy is made next to the store first (``history.db.v0.bak``, or
    ``.v0.1.bak``, ... if that is taken); the caller's commit makes the change, its
    rollback (a full disk, an error) leaves the store as it was, with the copy.
    Version 1 only added ``schema_version``: the tables are already in its layout.
    """
    backup = _copy_aside(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    return backup


def _copy_aside(path: Path) -> Path:
    """Copy the store to a new file next to it, while the caller's write transaction waits.

    The copy reads through a connection of its own: the caller holds the write lock,
    so no one changes the store meanwhile, and readers may read alongside (SQLite's
    backup refuses a source connection that is itself in a write transaction).
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".bak", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(path, f"no copy made before migrating ({exc.strerror or exc})") from exc
    tmp = Path(tmp_name)
    try:
        with (
            closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as source,
            closing(sqlite3.connect(tmp)) as copy,
        ):
            source.backup(copy)
        for n in range(1000):
            backup = path.with_name(f"{path.name}.v0{f'.{n}' if n else ''}.bak")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, backup)  # never over an earlier copy
                return backup
        raise FileExistsError(f"{path.name}.v0.bak to .v0.999.bak all exist")
    except (OSError, sqlite3.Error) as exc:
        raise OutputError(path, f"no copy made before migrating ({exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
