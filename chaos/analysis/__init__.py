"""Pure analysis of a run: samples and fault windows in, recovery measurements out.

No platform imports and no I/O beyond the run directory's result files
(``results_io``). Entry points: ``bucketize``, ``measure_window``,
``counter_deltas``, ``summarize``, ``compare``, ``analyze_run``,
``write_results``/``write_analysis``/``read_results``. The measurement rules are in
``chaos.analysis.window``'s docstring, the statistics in ``chaos.analysis.stats``'.
"""

from __future__ import annotations

from chaos.analysis.buckets import BUCKET_COLUMNS, bucketize
from chaos.analysis.counters import counter_deltas, counter_frame
from chaos.analysis.model import (
    BrokenWindow,
    Comparison,
    CounterDeltas,
    Estimate,
    FaultResult,
    FaultWindow,
    RunAnalysis,
    SteadyState,
    Summary,
    empty_samples,
    validate_columns,
    validate_samples,
)
from chaos.analysis.pipeline import analyze_run
from chaos.analysis.results_io import read_results, write_analysis, write_results
from chaos.analysis.stats import bootstrap_median, compare, compare_all, summarize
from chaos.analysis.window import SampleSet, measure_window, window_buckets
from chaos.rundir.writes import RecordedWrites

__all__ = [
    "BUCKET_COLUMNS",
    "BrokenWindow",
    "Comparison",
    "CounterDeltas",
    "Estimate",
    "FaultResult",
    "FaultWindow",
    "RecordedWrites",
    "RunAnalysis",
    "SampleSet",
    "SteadyState",
    "Summary",
    "analyze_run",
    "bootstrap_median",
    "bucketize",
    "compare",
    "compare_all",
    "counter_deltas",
    "counter_frame",
    "empty_samples",
    "measure_window",
    "read_results",
    "summarize",
    "validate_columns",
    "validate_samples",
    "window_buckets",
    "write_analysis",
    "write_results",
]
