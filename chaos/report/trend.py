"""The trend across recorded runs, and the regression rule.

A *series* is one experiment, fault and setup over time; each run adds one point:
the median over its measured repetitions of the time to recover (a run that did
not recover counts as infinitely slow, as in ``chaos.analysis.stats``) and of
the error rate during the fault.

**Regression rule.** The latest point of a series is compared with the up to
``window_n`` points before it (at least ``MIN_HISTORY`` are needed, else no
verdict). With ``base`` the median of those points and ``MAD`` their median
absolute deviation from it, the latest point is a regression when

    latest > base + max(3 × 1.4826 × MAD, absolute floor, 20 % of base)

(1.4826 × MAD estimates a standard deviation for normal noise). The floors keep a
perfectly steady history (MAD = 0) from flagging a trivial change: 0.5 s for the
time to recover, 2 percentage points for the error rate. A latest run that did
not recover after a history that did is always a regression; a history that
never recovered flags nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from chaos.outpaths import write_atomically
from chaos.report.charts import TrendSeries, setup_color, trend_chart
from chaos.report.history import HistoryStore, RecordedResult, RecordedRun
from chaos.report.html import environment
from chaos.report.verdict import seconds

MIN_HISTORY = 3
MAD_TO_SIGMA = 1.4826
TTR_FLOOR_S = 0.5
ERROR_RATE_FLOOR = 0.02
RELATIVE_FLOOR = 0.2


@dataclass(frozen=True)
class Regression:
    """The latest run of a series is worse than its recent history beyond the noise."""

    experiment: str
    fault: str
    setup: str
    metric: str
    run_id: str
    latest: float
    baseline: float
    threshold: float

    @property
    def message(self) -> str:
        """One line for the CLI and the page."""
        if self.metric == "time_to_recover_s":
            return (
                f"{self.experiment}/{self.fault}/{self.setup}: "
                f"time to recover {seconds(self.latest)} vs recent median "
                f"{seconds(self.baseline)} (threshold {seconds(self.threshold)})"
            )
        return (
            f"{self.experiment}/{self.fault}/{self.setup}: error rate {self.latest:.1%} "
            f"vs recent median {self.baseline:.1%} (threshold {self.threshold:.1%})"
        )


@dataclass(frozen=True)
class Check:
    """The rule applied to one series and metric: ``None`` threshold means too little history."""

    baseline: float | None
    threshold: float | None
    regressed: bool


def check(history: Sequence[float], latest: float, *, floor: float) -> Check:
    """Apply the regression rule (module docstring) to ``latest`` after ``history``."""
    if len(history) < MIN_HISTORY:
        return Check(None, None, False)
    values = np.asarray(history, dtype=np.float64)
    base = float(np.median(values))
    if not math.isfinite(base):
        return Check(None, None, False)
    finite = values[np.isfinite(values)]
    mad = float(np.median(np.abs(finite - base))) if len(finite) == len(values) else math.inf
    margin = max(MAD_TO_SIGMA * 3.0 * mad, floor, RELATIVE_FLOOR * base)
    threshold = base + margin
    return Check(base, threshold, latest > threshold)


@dataclass(frozen=True)
class Point:
    """One run's value in a series."""

    run_id: str
    started: datetime
    ttr_s: float
    error_rate: float | None
    n: int


@dataclass(frozen=True)
class SeriesTrend:
    """One experiment, fault and setup over runs, with the rule's outcome per metric."""

    experiment: str
    fault: str
    setup: str
    points: list[Point]
    ttr: Check
    error_rate: Check


@dataclass(frozen=True)
class TrendBlock:
    """A section another module adds to the page (the cost series): charts, a table, flags.

    ``rows`` are cells as shown, the last one a status (``regression``, ``ok`` or why
    there is no verdict); ``regressions`` join the page's list and the result's.
    """

    title: str
    charts: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    regressions: tuple[Regression, ...]
    note: str = ""


@dataclass(frozen=True)
class TrendResult:
    """What ``render_trend`` found: the page, the series and the regressions."""

    out: Path
    runs: int
    series: list[SeriesTrend]
    regressions: list[Regression]


def _points(
    runs: Sequence[RecordedRun], results: Sequence[RecordedResult]
) -> dict[tuple[str, str, str], list[Point]]:
    by_run = {r.run_id: r for r in runs}
    frame = pd.DataFrame(
        [
            (r.run_id, r.fault, r.setup, math.inf if r.ttr_s is None else r.ttr_s, r.error_rate)
            for r in results
            if r.measured
        ],
        columns=["run_id", "fault", "setup", "ttr", "error_rate"],
    )
    series: dict[tuple[str, str, str], list[Point]] = {}
    for (run_id, fault, setup), group in frame.groupby(["run_id", "fault", "setup"], sort=False):
        run = by_run[str(run_id)]
        rates = group["error_rate"].dropna()
        series.setdefault((run.experiment, str(fault), str(setup)), []).append(
            Point(
                run_id=run.run_id,
                started=run.started,
                ttr_s=float(np.median(group["ttr"].to_numpy(dtype=np.float64))),
                error_rate=float(rates.median()) if len(rates) else None,
                n=len(group),
            )
        )
    for points in series.values():
        points.sort(key=lambda p: (p.started, p.run_id))
    return series


def analyze_trend(
    runs: Sequence[RecordedRun], results: Sequence[RecordedResult], *, window_n: int = 5
) -> tuple[list[SeriesTrend], list[Regression]]:
    """Every series and the regressions of each experiment's latest run."""
    latest_run = {r.experiment: r.run_id for r in sorted(runs, key=lambda r: (r.started, r.run_id))}
    trends, regressions = [], []
    for (experiment, fault, setup), points in _points(runs, results).items():
        last = points[-1]
        current = last.run_id == latest_run[experiment]
        before = points[:-1][-window_n:] if current else []
        ttr = check([p.ttr_s for p in before], last.ttr_s, floor=TTR_FLOOR_S)
        rates = [p.error_rate for p in before if p.error_rate is not None]
        err = (
            check(rates, last.error_rate, floor=ERROR_RATE_FLOOR)
            if last.error_rate is not None and len(rates) == len(before)
            else Check(None, None, False)
        )
        trends.append(SeriesTrend(experiment, fault, setup, points, ttr, err))
        for metric, c, value in (
            ("time_to_recover_s", ttr, last.ttr_s),
            ("error_rate", err, last.error_rate),
        ):
            if (
                c.regressed
                and c.baseline is not None
                and c.threshold is not None
                and value is not None
            ):
                regressions.append(
                    Regression(
                        experiment,
                        fault,
                        setup,
                        metric,
                        last.run_id,
                        value,
                        c.baseline,
                        c.threshold,
                    )
                )
    return trends, regressions


@dataclass(frozen=True)
class _Row:
    setup: str
    color: str
    runs: int
    ttr_latest: str
    ttr_baseline: str
    ttr_threshold: str
    err_latest: str
    err_baseline: str
    err_threshold: str
    status: str


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _row(t: SeriesTrend, setups: Sequence[str]) -> _Row:
    last = t.points[-1]
    if t.ttr.regressed or t.error_rate.regressed:
        status = "regression"
    elif t.ttr.threshold is None:
        status = "not enough history"
    else:
        status = "ok"
    return _Row(
        setup=t.setup,
        color=setup_color(t.setup, setups),
        runs=len(t.points),
        ttr_latest=seconds(last.ttr_s),
        ttr_baseline="–" if t.ttr.baseline is None else seconds(t.ttr.baseline),
        ttr_threshold="–" if t.ttr.threshold is None else seconds(t.ttr.threshold),
        err_latest=_pct(last.error_rate),
        err_baseline=_pct(t.error_rate.baseline),
        err_threshold=_pct(t.error_rate.threshold),
        status=status,
    )


def render_trend(
    store: HistoryStore,
    since: timedelta,
    out: Path,
    *,
    window_n: int = 5,
    blocks: Callable[[Sequence[RecordedRun], int], Sequence[TrendBlock]] | None = None,
) -> TrendResult:
    """Write the trend page for runs of the last ``since`` to ``out``; flag regressions.

    ``blocks``: more sections from the same runs (``chaos.report.trend_cost``), after
    the recovery ones; their regressions are the page's and the result's too.
    """
    runs = store.runs(datetime.now(UTC) - since)
    results = store.results([r.run_id for r in runs])
    trends, regressions = analyze_trend(runs, results, window_n=window_n)
    extra = list(blocks(runs, window_n)) if blocks is not None else []
    regressions += [r for b in extra for r in b.regressions]
    groups: dict[tuple[str, str], list[SeriesTrend]] = {}
    for t in trends:
        groups.setdefault((t.experiment, t.fault), []).append(t)
    sections = []
    for (experiment, fault), series in groups.items():
        setups = [s.setup for s in series]

        def chart(metric: str, series: list[SeriesTrend] = series, fault: str = fault) -> str:
            ttr = metric == "ttr"
            return trend_chart(
                f"{fault}: {'time to recover' if ttr else 'error rate during the fault'}",
                "seconds" if ttr else "error rate",
                [
                    TrendSeries(
                        s.setup,
                        [p.started for p in s.points],
                        [
                            (p.ttr_s if math.isfinite(p.ttr_s) else None) if ttr else p.error_rate
                            for p in s.points
                        ],
                        (s.ttr if ttr else s.error_rate).regressed,
                    )
                    for s in series
                ],
            )

        sections.append(
            {
                "experiment": experiment,
                "fault": fault,
                "ttr_chart": chart("ttr"),
                "err_chart": chart("err"),
                "rows": [_row(s, setups) for s in series],
            }
        )
    html = (
        environment()
        .get_template("trend.html.j2")
        .render(
            title="Resilience trend",
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            since_days=f"{since.total_seconds() / 86400:g}",
            run_count=len(runs),
            window_n=window_n,
            regressions=[r.message for r in regressions],
            sections=sections,
            blocks=extra,
        )
    )
    write_atomically(out, html, "--output")
    return TrendResult(out=out, runs=len(runs), series=trends, regressions=regressions)
