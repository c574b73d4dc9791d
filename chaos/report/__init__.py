"""What users look at: the HTML comparison report, JUnit XML, the run history and its trend.

Reads only run directories (``meta.json``, ``results.json``/``buckets.csv``, the
journal, the samples, ``experiment.yaml``); never imports a platform. Public API::

    render_report(run_dirs, out) -> Path     (report_html(run_dirs) -> str: not written)
    write_junit(run_dir) -> Path
    HistoryStore(path).record(run_dir) -> run_id
    render_trend(store, since, out, window_n=5) -> TrendResult  (.regressions)
    RunMeta, write_meta(run_dir, meta), read_meta(run_dir)
"""

from __future__ import annotations

from chaos.report.history import DEFAULT_HISTORY, HistoryStore, RecordedResult, RecordedRun
from chaos.report.html import render_report, report_html
from chaos.report.junit import write_junit
from chaos.report.meta import RunMeta, read_meta, write_meta
from chaos.report.trend import Regression, SeriesTrend, TrendResult, analyze_trend, render_trend

__all__ = [
    "DEFAULT_HISTORY",
    "HistoryStore",
    "RecordedResult",
    "RecordedRun",
    "Regression",
    "RunMeta",
    "SeriesTrend",
    "TrendResult",
    "analyze_trend",
    "read_meta",
    "render_report",
    "render_trend",
    "report_html",
    "write_junit",
    "write_meta",
]
