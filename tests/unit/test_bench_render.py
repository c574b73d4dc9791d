"""BENCHMARKS.md from measured figures: ratios, the fidelity table and the growth line."""

from __future__ import annotations

from chaos.bench.driverruns import Lateness, WorkersRow
from chaos.bench.fidelity import FidelityRow
from chaos.bench.finish_scale import FinishMeasure
from chaos.bench.loadgen import LoadGenRow
from chaos.bench.render import render_markdown
from chaos.bench.results import BenchResults, Machine


def _results() -> BenchResults:
    results = BenchResults("make bench", "2026-01-01T00:00:00+00:00", Machine(2, "cpu", (3.0,) * 3))
    results.loadgen = [
        LoadGenRow("wrk -t1 -c20", 20_000.0, 10.0),
        LoadGenRow("plain", 5_000.0, 200.0),
        LoadGenRow("driver", 4_800.0, 210.0, baseline="plain", samples_lost=0),
    ]
    results.lateness = Lateness(1000.0, 4.0, 4000, 2, 1.25, 9.5, 12.0)
    results.workers = [WorkersRow(0, 4000.0, 0.8, 0.0), WorkersRow(1, 3900.0, 0.8, 0.05)]
    results.fidelity = [
        FidelityRow("abort-frontend", "503 for D = 2 s", 2.0, 1.98, 1.99, 0.002, 0.007, 0.02, 0.03)
    ]
    # CPU exactly 1 s + 2 s per million samples
    results.finish = [
        (n, FinishMeasure(1.0, 1.0 + 2.0 * n / 1e6, 300.0, 200.0, 0))
        for n in (100_000, 1_000_000, 10_000_000)
    ]
    return results


def test_ratios_tables_and_growth_line() -> None:
    text = render_markdown(_results())
    assert "| driver | 4,800 | 210.0 | 1.050x (plain) | 21.0x | 0 |" in text
    assert "| 1,000 requests/s | 4.0 | 4,000 | 1,000 | 2 | 1.25 | 9.50 | 12.0 |" in text
    assert "| 1 | 2 | 3,900 | 0.80 | 0.05 | 4,875 | 0.97x |" in text
    assert "| abort-frontend | 503 for D = 2 s | 1.980 | 1.990 | -20 | 0.002 | 0.007 | -5 |" in text
    assert "CPU ≈ 1.00 s + 2.00 s per million samples" in text
    assert "machine is shared" in text and "Not measured" not in text


def test_a_failed_figure_says_why() -> None:
    results = _results()
    results.errors["fidelity"] = "StartupError: no free slot"
    assert "_Not measured: this figure failed (StartupError: no free slot)._" in render_markdown(
        results
    )
