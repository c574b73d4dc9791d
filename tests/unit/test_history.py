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
from chaos.report.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run
from chaos.report.trend import check

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
