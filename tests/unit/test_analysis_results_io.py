"""results.json and buckets.csv: strict JSON, the required keys, and a faithful round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from chaos.analysis import (
    BrokenWindow,
    FaultWindow,
    RecordedWrites,
    SteadyState,
    analyze_run,
    read_results,
    write_analysis,
    write_results,
)
from chaos.errors import InputError
from chaos.testing.synthetic import Outage, synthetic_samples

REQUIRED_RUN_KEYS = {
    "setup",
    "fault",
    "fault_type",
    "repetition",
    "time_to_impact_s",
    "time_to_recover_s",
    "failed_requests",
    "total_requests",
    "error_rate_during_fault",
    "p95_ms_during_fault",
    "p99_ms_during_fault",
    "steady_state_before",
    "steady_state_after",
    "aborted",
    "writes_lost",
    "writes_duplicated",
    "counters",
    "errors_by_kind",
}


def a_run() -> tuple[pd.DataFrame, list[FaultWindow]]:
    """Two setups, three crashes each, 20 s apart; setup b restarts in 0.5 s, a in 2 s,
    and a's last crash never recovers."""
    outages, windows = [], []
    start = 10.0
    for setup, delay in [("a", 2.0), ("b", 0.5)]:
        for rep in (1, 2, 3):
            length = 30.0 if (setup, rep) == ("a", 3) else delay
            outages.append(Outage(start, start + length, "connect", 0, 0.3))
            windows.append(
                FaultWindow(setup, "crash", "crash", rep, start, start, start + 12, True, start - 5)
            )
            start += 40.0 if length > delay else 20.0
    return synthetic_samples(0.0, start, 200, outages=outages, write_every=20), windows


def test_round_trip_and_required_keys(tmp_path: Path) -> None:
    samples, windows = a_run()
    recorded = RecordedWrites.from_ids([i for i in samples.write_id if i])
    analysis = analyze_run(samples, windows, SteadyState(0.01, 50.0), 3.0, recorded_writes=recorded)
    write_results(
        tmp_path, analysis.runs, analysis.summaries, analysis.comparisons, analysis.buckets
    )
    document = json.loads((tmp_path / "results.json").read_text())
    assert len(document["runs"]) == 6
    for run in document["runs"]:
        assert set(run) >= REQUIRED_RUN_KEYS
    unrecovered = [r for r in document["runs"] if r["time_to_recover_s"] is None]
    assert [(r["setup"], r["repetition"]) for r in unrecovered] == [("a", 3)]
    recovered = [r for r in document["runs"] if r["time_to_recover_s"] is not None]
    for r in recovered:
        expected = 2.0 if r["setup"] == "a" else 0.5
        assert r["time_to_recover_s"] == pytest.approx(expected, abs=0.1)
        assert r["writes_lost"] == 0
    summary = {s["setup"]: s for s in document["summary"]}
    assert summary["b"]["time_to_recover_s"]["median"] == pytest.approx(0.5, abs=0.1)
    assert summary["a"]["recovered"] == 2

    back = read_results(tmp_path)
    assert back.runs == analysis.runs
    assert back.summaries == analysis.summaries
    assert back.comparisons == analysis.comparisons
    assert len(back.buckets) == len(analysis.buckets)
    assert {"setup", "fault", "repetition", "t_rel", "p95_ms"} <= set(back.buckets.columns)
    pd.testing.assert_series_equal(back.buckets.requests, analysis.buckets.requests)


def test_write_analysis_writes_what_write_results_writes_of_its_parts(tmp_path: Path) -> None:
    samples, windows = a_run()
    analysis = analyze_run(samples, windows, SteadyState(0.01, 50.0), 3.0)
    broken = [BrokenWindow("b", "crash", 3, "start", "not ready within 30 s", False)]
    (tmp_path / "parts").mkdir()
    (tmp_path / "whole").mkdir()
    write_results(
        tmp_path / "parts",
        analysis.runs,
        analysis.summaries,
        analysis.comparisons,
        analysis.buckets,
        broken=broken,
    )
    write_analysis(tmp_path / "whole", analysis, broken=broken)
    for name in ("results.json", "buckets.csv"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "parts" / name).read_bytes()


def test_write_analysis_of_no_analysis_writes_the_broken_windows_only(tmp_path: Path) -> None:
    broken = BrokenWindow("mesh", "crash", 0, "start", "not ready within 30 s", False)
    write_analysis(tmp_path, None, broken=[broken])
    back = read_results(tmp_path)
    assert (back.runs, back.summaries, back.comparisons) == ([], [], [])
    assert back.broken == [broken]
    assert back.buckets.empty
    assert (tmp_path / "buckets.csv").read_text().startswith("setup,fault,repetition")


def test_json_is_strict(tmp_path: Path) -> None:
    samples, windows = a_run()
    analysis = analyze_run(samples, windows, SteadyState(0.01, 50.0), 3.0)
    write_results(tmp_path, analysis.runs, analysis.summaries, analysis.comparisons)
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert (tmp_path / "buckets.csv").read_text().startswith("setup,fault,repetition")
    assert read_results(tmp_path).buckets.empty


def test_unreadable_results_raise_input_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="results"):
        read_results(tmp_path)
    with pytest.raises(InputError):
        read_results(tmp_path / "missing")


def test_decisions_round_trip_and_files_without_them_still_read(tmp_path: Path) -> None:
    from chaos.analysis.adaptive import decisions_for
    from tests.unit.windows import window_result

    runs = [
        window_result(setup, "crash", rep, ttr=ttr)
        for rep in range(4)
        for setup, ttr in (("mesh", 0.5 + rep / 10), ("sidecar", None))
    ]
    decided = decisions_for([], runs, adaptive=True, max_rounds=6)
    write_results(tmp_path, runs, [], [], decided=decided)
    back = read_results(tmp_path)
    assert back.decided == decided
    assert back.decided is not None and back.decided.stop_reason is not None
    document = json.loads((tmp_path / "results.json").read_text())
    del document["decisions"]
    (tmp_path / "results.json").write_text(json.dumps(document))
    assert read_results(tmp_path).decided is None
