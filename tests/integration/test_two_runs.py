"""Two ``sidecar-chaos run`` at once on one machine, in two slots, sharing one history store.

Both start in the same second with the same experiment (as a CI matrix would): each
must finish with its own results and processes, and the history must hold both runs,
neither replacing the other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.report.history import HistoryStore
from chaos.rundir import RESULTS_FILE
from tests.conftest import lease_slot
from tests.integration.conftest_faults import (
    CliRun,
    assert_nothing_left,
    cli_argv,
    cli_env,
    popen_run,
    write_experiment,
)

pytestmark = pytest.mark.slow


def _start(directory: Path, slot: int, experiment: Path, history: Path) -> CliRun:
    directory.mkdir()
    run_dir = directory / "run"
    argv = cli_argv(
        "run",
        str(experiment),
        "--out",
        str(run_dir),
        "--set",
        "timeline.warmup=1s",
        "--history",
        str(history),
    )
    return popen_run(argv, directory, run_dir, cli_env(slot))


def test_two_runs_at_once_keep_to_themselves(tmp_path: Path, free_slot: int) -> None:
    experiment = write_experiment(tmp_path, hold="3s")
    history = tmp_path / "history.db"
    with lease_slot() as other_slot:
        runs = [
            _start(tmp_path / "a", free_slot, experiment, history),
            _start(tmp_path / "b", other_slot, experiment, history),
        ]
        codes = [run.wait(timeout_s=300) for run in runs]  # a loaded 2-core machine is slow

    for run, code in zip(runs, codes, strict=True):
        assert code in (0, 1), f"exit code {code}\n{run.stderr}"
        assert "Traceback" not in run.stderr and "window broken" not in run.stderr, run.stderr
        results = json.loads((run.run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
        assert len(results["runs"]) == 1 and results["broken"] == []
        assert results["runs"][0]["total_requests"] > 0
        assert_nothing_left(run)
    # Each run recorded its own processes and marker; nothing is shared.
    pids = [set(run.topology_pids("sidecar-checkout-500-1").values()) for run in runs]
    assert pids[0] and pids[1] and not pids[0] & pids[1]
    markers = [next(e for e in run.journal() if e.kind == "run_started") for run in runs]
    assert markers[0].get_str("marker") != markers[1].get_str("marker")
    # The history holds both runs (same experiment, same second) with their results.
    recorded = HistoryStore(history).runs()
    assert sorted(r.run_dir for r in recorded) == sorted(str(r.run_dir) for r in runs)
    assert len({r.run_id for r in recorded}) == 2
    rows = HistoryStore(history).results([r.run_id for r in recorded])
    assert len(rows) == 2
