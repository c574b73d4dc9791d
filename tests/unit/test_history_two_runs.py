"""Two runs of one experiment started in the same second stay two runs in the history."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from chaos.report import HistoryStore
from chaos.rundir import META_FILE
from chaos.rundir.meta import read_meta
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

SPEC = SyntheticRun(
    faults=(SyntheticFault("abort-checkout"),),
    repetitions=2,
    started_utc="2026-11-29T23:00:00+00:00",
)


def _run(directory: Path, uid: str) -> Path:
    run = write_synthetic_run(directory, SPEC)
    meta = json.loads((run / META_FILE).read_text())
    meta["run_uid"] = uid
    (run / META_FILE).write_text(json.dumps(meta))
    return run


def test_same_experiment_same_second_two_runs(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a", "a1a1a1"), _run(tmp_path / "b", "b2b2b2")
    assert read_meta(a).started_utc == read_meta(b).started_utc
    store = HistoryStore(tmp_path / "history.db")
    ids = {store.record(a), store.record(b)}
    assert len(ids) == 2
    assert sorted(r.run_dir for r in store.runs()) == sorted(str(p) for p in (a, b))
    assert len(store.results(sorted(ids))) == 2 * 2 * 2
    # A copy of a run keeps its identity: recorded again, it replaces its rows.
    copy = tmp_path / "copy-of-a"
    shutil.copytree(a, copy)
    assert store.record(copy) == store.record(a)
    assert len(store.runs()) == 2


def test_meta_written_before_the_uid_keeps_its_old_identity(tmp_path: Path) -> None:
    run = _run(tmp_path / "old", "")
    assert read_meta(run).run_id == "synthetic@2026-11-29T23:00:00+00:00"
