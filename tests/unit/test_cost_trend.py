"""``trend`` flags a cost regression like a recovery one (same rule, cost's own floors)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaos.report.history import RecordedRun
from chaos.report.trend_cost import cost_regressions
from chaos.rundir import RESULTS_FILE
from chaos.rundir.meta import RunMeta


def _run(tmp_path: Path, night: int, cpu: float, *, offered: bool = True) -> RecordedRun:
    run_dir = tmp_path / f"night-{night}"
    run_dir.mkdir()
    setup = {
        "setup": "sidecar",
        "rate": 100.0,
        "offered": offered,
        "proxy_cpu_per_1k": {"median": cpu, "low": cpu, "high": cpu, "n": 3},
        "proxy_pss_mb": {"median": 160.0, "low": 159.0, "high": 161.0, "n": 3},
        "added_ms": {},
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps({"cost": {"setups": [setup]}}))
    meta = RunMeta("0", "1", "2", "3", 0, "nightly", "")
    started = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=night)
    return RecordedRun(f"run-{night}", str(run_dir), "nightly", started, 0, meta)


def test_a_cpu_jump_is_flagged_and_steady_memory_is_not(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, cpu) for n, cpu in enumerate([1.0, 1.02, 0.98, 1.01, 1.6])]
    (regression,) = cost_regressions(runs)
    assert (regression.setup, regression.fault, regression.metric) == (
        "sidecar",
        "cost@100rps",
        "proxy_cpu_per_1k_requests",
    )
    assert regression.run_id == "run-4"
    assert "CPU-s" in regression.message


def test_noise_and_a_rate_not_offered_are_not_regressions(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, cpu) for n, cpu in enumerate([1.0, 1.02, 0.98, 1.01, 1.1])]
    assert cost_regressions(runs) == []
    runs.append(_run(tmp_path, 9, 5.0, offered=False))
    assert cost_regressions(runs) == []
