"""What users look at: the HTML comparison report, JUnit XML, the run history and its trend.

Reads only run directories (``meta.json``, ``results.json``/``buckets.csv``, the
journal, the samples, ``experiment.yaml``); never imports a platform. Public API::

    render_report(run_dirs, out) -> Path     (report_html(run_dirs) -> str: not written)
    write_junit(run_dir) -> Path
    HistoryStore(path).record(run_dir) -> run_id
    render_trend(store, since, out, window_n=5) -> TrendResult  (.regressions)

``meta.json`` (``RunMeta``) belongs to the run directory: :mod:`chaos.rundir.meta`.

The names below are loaded when first used: the CLI checks a ``--history`` path through
:mod:`chaos.report.history` before it reads the experiment, and a hostile file must be
refused without loading pandas, scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.report.history import DEFAULT_HISTORY, HistoryStore, RecordedResult, RecordedRun
    from chaos.report.html import render_report, report_html
    from chaos.report.junit import write_junit
    from chaos.report.trend import (
        Regression,
        SeriesTrend,
        TrendResult,
        analyze_trend,
        render_trend,
    )

__all__ = [
    "DEFAULT_HISTORY",
    "HistoryStore",
    "RecordedResult",
    "RecordedRun",
    "Regression",
    "SeriesTrend",
    "TrendResult",
    "analyze_trend",
    "render_report",
    "render_trend",
    "report_html",
    "write_junit",
]

_HOMES = {
    "DEFAULT_HISTORY": "chaos.report.history",
    "HistoryStore": "chaos.report.history",
    "RecordedResult": "chaos.report.history",
    "RecordedRun": "chaos.report.history",
    "render_report": "chaos.report.html",
    "report_html": "chaos.report.html",
    "write_junit": "chaos.report.junit",
    "Regression": "chaos.report.trend",
    "SeriesTrend": "chaos.report.trend",
    "TrendResult": "chaos.report.trend",
    "analyze_trend": "chaos.report.trend",
    "render_trend": "chaos.report.trend",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
