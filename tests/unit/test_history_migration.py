"""A history store from before ``schema_version``: read as it is, migrated on the first write.

The old store is made here with the CREATE statements the store had before it was
versioned (commit 6bb405d, ``chaos/report/history.py``) and holds a run recorded the
way that code recorded it (run id without a random uid, meta without ``run_uid``).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.engine.finish import finish
from chaos.engine.run import Engine, RunOptions
from chaos.errors import InputError, OutputError
from chaos.experiment import load_experiment
from chaos.report.history import SCHEMA_VERSION, HistoryStore
from chaos.rundir.meta import read_meta
from chaos.testing.fake_platform import FakePlatform
from chaos.testing.fake_traffic import FakeTraffic
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run
from tests.unit.test_cli_hostile_inputs import SCRIPT, cli
from tests.unit.test_engine import experiment_file

ROOT = Path(__file__).resolve().parents[2]
needs_script = pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")

#: The store's schema before it had a version (6bb405d), verbatim.
OLD_SCHEMA = """
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

FAULT = (SyntheticFault("abort-checkout"),)
OLD_STARTED = "2025-06-01T02:00:00+00:00"


def _old_store(tmp_path: Path) -> Path:
    """An unversioned store holding one run (two setups, one repetition) as the old code did."""
    run = write_synthetic_run(tmp_path / "old-run", SyntheticRun(faults=FAULT, repetitions=1))
    meta = read_meta(run).to_dict()
    del meta["run_uid"]  # the old RunMeta had none
    meta["started_utc"] = OLD_STARTED
    run_id = f"{meta['experiment_name']}@{OLD_STARTED}"
    store = tmp_path / "history.db"
    with sqlite3.connect(store) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                str(run),
                meta["experiment_name"],
                OLD_STARTED,
                1748743200.0,
                OLD_STARTED,
                0,
                json.dumps(meta),
                OLD_STARTED,
            ),
        )
        for setup in ("sidecar", "mesh"):
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, setup, "abort-checkout", 0, 0, 1, 1, 1.5, 0.1, 12, 600, 0.2, 30.0, 45.0),
            )
    db.close()
    return store


def _new_run(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path / "new-run", SyntheticRun(faults=FAULT, repetitions=1))


def _dump(store: Path) -> list[str]:
    with sqlite3.connect(store) as db:
        lines = list(db.iterdump())
    db.close()
    return lines


def _version_rows(store: Path) -> list[tuple[int]] | None:
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = (
            db.execute("SELECT version FROM schema_version").fetchall()
            if "schema_version" in tables
            else None
        )
    db.close()
    return rows


@needs_script
def test_an_old_store_is_read_as_it_is_and_not_written(tmp_path: Path) -> None:
    store = _old_store(tmp_path)
    before = store.read_bytes()
    (old,) = HistoryStore(store).runs()
    assert old.run_id == f"synthetic@{OLD_STARTED}" and old.meta.run_uid == ""
    assert len(HistoryStore(store).results([old.run_id])) == 2
    HistoryStore(store).check()  # a run may start with it
    answer = cli("trend", "--history", str(store), "--since", "36500d", "-o", str(tmp_path / "t"))
    assert answer.code == 0, answer.stderr
    assert (tmp_path / "t").read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db", "old-run", "t"]


def test_the_first_record_migrates_it_after_a_copy_next_to_it(tmp_path: Path) -> None:
    store = _old_store(tmp_path)
    before = _dump(store)
    history = HistoryStore(store)
    new_id = history.record(_new_run(tmp_path))

    backup = tmp_path / "history.db.v0.bak"
    assert history.migration_backup == backup
    assert _dump(backup) == before  # the store as it was (SQLite's copy, not its bytes)
    assert _version_rows(backup) is None
    assert _version_rows(store) == [(SCHEMA_VERSION,)]
    assert {r.run_id for r in history.runs()} == {f"synthetic@{OLD_STARTED}", new_id}
    assert len(history.results([r.run_id for r in history.runs()])) == 4

    again = HistoryStore(store)
    again.record(_new_run(tmp_path / "later"))
    assert again.migration_backup is None  # migrated once, copied once
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.db",
        "history.db.v0.bak",
        "later",
        "new-run",
        "old-run",
    ]


def test_an_earlier_copy_is_never_overwritten(tmp_path: Path) -> None:
    store = _old_store(tmp_path)
    earlier = tmp_path / "history.db.v0.bak"
    earlier.write_bytes(b"a copy the user made")
    history = HistoryStore(store)
    history.record(_new_run(tmp_path))
    assert history.migration_backup == tmp_path / "history.db.v0.1.bak"
    assert earlier.read_bytes() == b"a copy the user made"
    assert _version_rows(history.migration_backup) is None


def test_a_record_that_fails_after_the_copy_undoes_the_migration(tmp_path: Path) -> None:
    """The write after the migration fails (here a trigger refuses it): all rolled back."""
    store = _old_store(tmp_path)
    with sqlite3.connect(store) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON results BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    db.close()
    before = _dump(store)
    history = HistoryStore(store)
    with pytest.raises(OutputError, match="the history store was not changed"):
        history.record(_new_run(tmp_path))
    assert history.migration_backup is None
    assert _dump(store) == before and _version_rows(store) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db", "new-run", "old-run"]


_RECORD_UNDER_LIMIT = """
import resource, sys
from chaos.errors import ChaosError
from chaos.report.history import HistoryStore
store, run, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    HistoryStore(store).record(run)
except ChaosError as exc:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(exc.exit_code)
"""


def test_a_copy_that_cannot_be_written_leaves_the_store_unmigrated(tmp_path: Path) -> None:
    """A full disk (a file-size limit below the store's size) while copying: nothing changes."""
    store = _old_store(tmp_path)
    before = store.read_bytes()
    run = _new_run(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _RECORD_UNDER_LIMIT, str(store), str(run), str(len(before) // 2)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {store}: "), lines
    assert "no copy made before migrating" in lines[0]
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db", "new-run", "old-run"]


@needs_script
def test_a_table_of_another_layout_is_still_refused_in_one_line(tmp_path: Path) -> None:
    store = _old_store(tmp_path)
    with sqlite3.connect(store) as db:  # a column the old code never had: not our layout
        db.execute("ALTER TABLE results ADD COLUMN notes TEXT")
    db.close()
    before = store.read_bytes()
    with pytest.raises(InputError, match="not a sidecar-chaos history store"):
        HistoryStore(store).record(_new_run(tmp_path))
    answer = cli("trend", "--history", str(store), "-o", str(tmp_path / "t.html"))
    answer.assert_refused_in_one_line(starts=f"error: {store}: ")
    assert "give another --history path" in answer.stderr
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db", "new-run", "old-run"]


def test_a_run_that_migrates_the_store_says_so(tmp_path: Path) -> None:
    store = _old_store(tmp_path)
    experiment = load_experiment(experiment_file(tmp_path))
    platform = FakePlatform()
    engine = Engine(
        experiment,
        platform,
        RunOptions(run_dir=tmp_path / "run", traffic=lambda c: FakeTraffic(c), tick_s=0.01),
    )
    records = engine.run()
    outcome = finish(
        experiment,
        platform,
        engine.run_dir,
        records,
        started_utc="2026-11-29T23:00:00+00:00",
        aborted_reason=None,
        history=store,
    )
    assert outcome.notes == (
        f"history: {store} was migrated to schema version {SCHEMA_VERSION}; "
        f"the store as it was is kept in {tmp_path / 'history.db.v0.bak'}",
    )
    assert _version_rows(store) == [(SCHEMA_VERSION,)]
