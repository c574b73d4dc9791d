"""The history store (idempotent recording) and the trend's regression rule."""

from __future__ import annotations

import math
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chaos.errors import InputError
from chaos.report import HistoryStore, render_trend
from chaos.report.trend import check
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

FAULT = (SyntheticFault("abort-checkout"),)


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_record_is_idempotent(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(faults=FAULT, repetitions=3))
    store = HistoryStore(tmp_path / "h" / "history.db")
    first = store.record(run)
    assert store.record(run) == first
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    assert store.record(moved) == first
    assert _count(store.path, "runs") == 1
    assert _count(store.path, "results") == 2 * 3
    [recorded] = store.runs()
    assert recorded.experiment == "synthetic" and recorded.exit_code == 0
    rows = store.results([first])
    assert {(r.setup, r.repetition) for r in rows} == {
        (s, i) for s in ("sidecar", "mesh") for i in range(3)
    }
    assert all(r.ttr_s is not None and r.ttr_s > 0 for r in rows)


def test_record_needs_meta(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        HistoryStore(tmp_path / "h.db").record(tmp_path)


def test_rule_ignores_noise_and_flags_a_clear_regression() -> None:
    history = [1.0, 1.12, 0.93, 1.05, 0.98]
    assert not check(history, 1.3, floor=0.5).regressed
    flagged = check(history, 3.0, floor=0.5)
    assert flagged.regressed and flagged.baseline == pytest.approx(1.0)
    assert check(history, math.inf, floor=0.5).regressed  # stopped recovering
    assert not check(history[:2], 30.0, floor=0.5).regressed  # too little history
    assert not check([math.inf] * 4, math.inf, floor=0.5).regressed  # never recovered
    # a noisy history widens the threshold
    assert not check([1.0, 3.0, 1.5, 2.5, 2.0], 3.5, floor=0.5).regressed


def _nightly(tmp_path: Path, store: HistoryStore, last_sidecar_s: float) -> None:
    now = datetime.now(UTC)
    for night in range(6):
        started = (now - timedelta(days=6 - night)).isoformat(timespec="seconds")
        latest = night == 5
        spec = SyntheticRun(
            faults=FAULT,
            repetitions=3,
            seed=100 + night,
            started_utc=started,
            recovery_s={"sidecar": last_sidecar_s if latest else 2.0, "mesh": 0.5},
        )
        store.record(write_synthetic_run(tmp_path / f"night{night}", spec))


def test_trend_flags_the_regression(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    _nightly(tmp_path, store, last_sidecar_s=5.0)
    result = render_trend(store, timedelta(days=30), tmp_path / "trend.html")
    assert result.runs == 6
    assert [(r.setup, r.metric) for r in result.regressions] == [("sidecar", "time_to_recover_s")]
    reg = result.regressions[0]
    assert reg.latest > reg.threshold > reg.baseline
    html = result.out.read_text()
    assert reg.message.replace("'", "&#39;") in html
    assert "<script" not in html


def test_trend_does_not_flag_noise(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    _nightly(tmp_path, store, last_sidecar_s=2.0)  # same system, new random draws
    result = render_trend(store, timedelta(days=30), tmp_path / "trend.html")
    assert result.regressions == []
    assert "No regression" in result.out.read_text()
    # the window excludes old nights
    assert render_trend(store, timedelta(days=2.5), tmp_path / "t2.html").runs == 2


_RECORDER = """
import dataclasses, shutil, sys
from pathlib import Path
from chaos.report import HistoryStore
from chaos.rundir.meta import read_meta, write_meta
base, store, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[5])
day, count = sys.argv[3], int(sys.argv[4])
meta = read_meta(base)
for i in range(count):
    run = work / f"{day}-{i}"
    shutil.copytree(base, run)
    write_meta(run, dataclasses.replace(meta, started_utc=f"2025-01-{day}T00:{i:02d}:00+00:00"))
    HistoryStore(store).record(run)
"""


def test_two_processes_recording_at_once_into_a_new_store(tmp_path: Path) -> None:
    """Both create the store at the same moment and then write 12 runs each, interleaved."""
    import subprocess
    import sys

    base = write_synthetic_run(tmp_path / "base", SyntheticRun(faults=FAULT, repetitions=1))
    store = tmp_path / "history.db"
    count = 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RECORDER, str(base), str(store), day, str(count), str(tmp_path)]
        )
        for day in ("01", "02")
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    assert _count(store, "runs") == 2 * count
    assert _count(store, "results") == 2 * count * 2  # two setups, one repetition
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    db.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_reading_never_creates_or_writes(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    assert HistoryStore(missing).runs() == []
    assert not missing.exists()


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(faults=FAULT, repetitions=1))
    store = HistoryStore(tmp_path / "history.db")
    store.record(run)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(InputError, match="schema version 99"):
        store.runs()
    with pytest.raises(InputError, match="schema version 99"):
        store.record(run)
