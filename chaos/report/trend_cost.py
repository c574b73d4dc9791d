"""``trend`` for cost: a run whose setup costs more than its recent history flags it.

A cost series is one experiment, setup and rate over time; each recorded run with a
cost step adds one point per metric (read from the run directory's ``results.json``:
runs whose directory is gone add none): the proxies' CPU-seconds per 1,000 requests,
their memory (MB) and the p99 latency added over baseline (ms). The latest point
is compared with the ones before it by the same rule as recovery
(``chaos.report.trend.check``: median + max(3 sigma from the MAD, a floor, 20 %)).
Only rates that were offered count: a rate the driver did not reach says nothing
about the setup.

Memory is two series, one per measure: PSS (local runs, ``/proc``) and the working set
(Kubernetes runs, the kubelet's). They are different quantities, not two readings of
one: the working set counts pages shared by several containers in each of them (as RSS
does), PSS splits them, so the same proxies read several times higher as a working
set. Drawn as one line, a switch of platform would look like a regression (or hide
one); split, each point is judged only against runs that measured the same thing, and
the first runs of the other measure start their own history ("not enough history").

The CPU is split the same way, by where it was read (the run's ``cost.memory`` tells
the platform: ``pss`` is a local run, ``working-set`` a Kubernetes one): locally the
scheduler's run time of exactly the processes the topology started (``/proc``), on
Kubernetes the kubelet's ``container_cpu_usage_seconds_total`` of the pods' containers,
on other machines with other proxies (Istio's, not the local Envoys). A night on the
cluster after local nights is a new series, not a regression or an improvement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chaos.analysis.cost_io import read_cost_results
from chaos.report.charts import TrendSeries, trend_chart
from chaos.report.history import RecordedRun
from chaos.report.trend import Check, Regression, TrendBlock, check

#: Metric -> (unit, the absolute floor of the regression rule).
COST_FLOORS: dict[str, tuple[str, float]] = {
    "proxy_cpu_per_1k_requests_proc": ("CPU-s", 0.05),
    "proxy_cpu_per_1k_requests_kubelet": ("CPU-s", 0.05),
    "proxy_memory_pss_mb": ("MB", 5.0),
    "proxy_memory_working_set_mb": ("MB", 5.0),
    "added_p99_ms": ("ms", 1.0),
}
#: ``results.json``'s ``cost.memory`` -> the memory metric of its series.
MEMORY_METRICS = {"pss": "proxy_memory_pss_mb", "working-set": "proxy_memory_working_set_mb"}
#: ``results.json``'s ``cost.memory`` (the platform's measure) -> the CPU metric of its series.
CPU_METRICS = {
    "pss": "proxy_cpu_per_1k_requests_proc",
    "working-set": "proxy_cpu_per_1k_requests_kubelet",
}


@dataclass(frozen=True)
class CostRegression(Regression):
    """A cost figure of the latest run above its recent history beyond the noise."""

    @property
    def message(self) -> str:
        unit = COST_FLOORS[self.metric][0]
        return (
            f"{self.experiment}/{self.fault}/{self.setup}: {_CHARTS[self.metric][0]} "
            f"{self.latest:.3g} {unit} vs recent median {self.baseline:.3g} {unit} "
            f"(threshold {self.threshold:.3g} {unit})"
        )


def _points(run: RecordedRun) -> dict[tuple[str, str, str], float]:
    """(setup, ``cost@<rate>rps``, metric) -> value of one run."""
    data = read_cost_results(Path(run.run_dir)) if Path(run.run_dir).is_dir() else None
    found: dict[tuple[str, str, str], float] = {}
    measure = str((data or {}).get("memory", "pss"))
    memory = MEMORY_METRICS.get(measure, "proxy_memory_pss_mb")
    cpu_metric = CPU_METRICS.get(measure, "proxy_cpu_per_1k_requests_proc")
    for s in (data or {}).get("setups", []):
        if not s.get("offered"):
            continue
        where = f"cost@{float(s['rate']):g}rps"
        cpu = (s.get("proxy_cpu_per_1k") or {}).get("median")
        pss = (s.get("proxy_pss_mb") or {}).get("median")
        added = ((s.get("added_ms") or {}).get("p99") or {}).get("mean")
        for metric, value in (
            (cpu_metric, cpu),
            (memory, pss),
            ("added_p99_ms", added),
        ):
            if isinstance(value, int | float):
                found[(str(s["setup"]), where, metric)] = float(value)
    return found


@dataclass(frozen=True)
class CostSeries:
    """One experiment, setup, rate and cost metric over runs, with the rule's outcome."""

    experiment: str
    setup: str
    where: str
    metric: str
    times: tuple[datetime, ...]
    values: tuple[float, ...]
    #: The rule applied to the latest run's point (no verdict unless it has one).
    check: Check
    latest_run: str


def cost_series(runs: Sequence[RecordedRun], *, window_n: int = 5) -> list[CostSeries]:
    """Every cost series of ``runs``, each judged on the experiment's latest run."""
    ordered = sorted(runs, key=lambda r: (r.started, r.run_id))
    found: list[CostSeries] = []
    for experiment in dict.fromkeys(r.experiment for r in ordered):
        mine = [(r, _points(r)) for r in ordered if r.experiment == experiment]
        keys = list(dict.fromkeys(k for _, points in mine for k in points))
        latest_run, latest = mine[-1]
        for key in keys:
            have = [(r, points[key]) for r, points in mine if key in points]
            setup, where, metric = key
            if key in latest:
                before = [v for r, v in have if r is not latest_run][-window_n:]
                c = check(before, latest[key], floor=COST_FLOORS[metric][1])
            else:
                c = Check(None, None, False)
            found.append(
                CostSeries(
                    experiment,
                    setup,
                    where,
                    metric,
                    tuple(r.started for r, _ in have),
                    tuple(v for _, v in have),
                    c,
                    latest_run.run_id,
                )
            )
    return found


def _regression(s: CostSeries) -> Regression | None:
    c = s.check
    if not c.regressed or c.baseline is None or c.threshold is None:
        return None
    return CostRegression(
        s.experiment,
        s.where,
        s.setup,
        s.metric,
        s.latest_run,
        s.values[-1],
        c.baseline,
        c.threshold,
    )


def cost_regressions(runs: Sequence[RecordedRun], *, window_n: int = 5) -> list[Regression]:
    """The cost regressions of each experiment's latest run."""
    found = (_regression(s) for s in cost_series(runs, window_n=window_n))
    return [r for r in found if r is not None]


#: Metric -> (chart title, axis label).
_CHARTS: dict[str, tuple[str, str]] = {
    "proxy_cpu_per_1k_requests_proc": ("proxy CPU per 1,000 requests (/proc)", "CPU-s"),
    "proxy_cpu_per_1k_requests_kubelet": ("proxy CPU per 1,000 requests (kubelet)", "CPU-s"),
    "proxy_memory_pss_mb": ("proxy memory (PSS)", "MB"),
    "proxy_memory_working_set_mb": ("proxy memory (working set)", "MB"),
    "added_p99_ms": ("p99 added over baseline", "ms"),
}


def _status(checks: Sequence[Check]) -> str:
    if any(c.regressed for c in checks):
        return "regression"
    if all(c.threshold is None for c in checks):
        return "not enough history"
    return "ok"


#: CPU metric -> the heading of its latest value in the table.
_CPU_HEADERS = {
    "proxy_cpu_per_1k_requests_proc": "CPU-s per 1,000 (/proc) latest",
    "proxy_cpu_per_1k_requests_kubelet": "CPU-s per 1,000 (kubelet) latest",
}
#: Memory metric -> the heading of its latest value in the table.
_MEMORY_HEADERS = {
    "proxy_memory_pss_mb": "PSS MB latest",
    "proxy_memory_working_set_mb": "working set MB latest",
}


def _figures(s: CostSeries | None) -> tuple[str, str, str]:
    """The latest value, the recent median and the threshold of a series."""
    return (_figure(s, "latest"), _figure(s, "median"), _figure(s, "threshold"))


def _figure(s: CostSeries | None, which: str) -> str:
    if s is None:
        return "–"
    c = s.check
    value = {"latest": s.values[-1], "median": c.baseline, "threshold": c.threshold}[which]
    return "–" if value is None else f"{value:.3g}"


def _present(headers: dict[str, str], series: Sequence[CostSeries], default: str) -> list[str]:
    """The metrics of ``headers`` the block has a series of (``default`` when none)."""
    return [m for m in headers if any(s.metric == m for s in series)] or [default]


def cost_blocks(runs: Sequence[RecordedRun], window_n: int = 5) -> list[TrendBlock]:
    """The trend page's cost sections: per experiment and rate, each metric per setup."""
    groups: dict[tuple[str, str], list[CostSeries]] = {}
    for s in cost_series(runs, window_n=window_n):
        groups.setdefault((s.experiment, s.where), []).append(s)
    blocks = []
    for (experiment, where), series in groups.items():
        setups = list(dict.fromkeys(s.setup for s in series))
        charts = tuple(
            trend_chart(
                f"{where}: {title}",
                unit,
                [
                    TrendSeries(s.setup, s.times, s.values, s.check.regressed)
                    for s in series
                    if s.metric == metric
                ],
            )
            for metric, (title, unit) in _CHARTS.items()
            if any(s.metric == metric for s in series)
        )
        # A measure's columns only where the block has a series of it.
        cpus = _present(_CPU_HEADERS, series, "proxy_cpu_per_1k_requests_proc")
        memories = _present(_MEMORY_HEADERS, series, "proxy_memory_pss_mb")
        rows = []
        for setup in setups:
            of = {s.metric: s for s in series if s.setup == setup}
            rows.append(
                (
                    setup,
                    str(max(len(s.values) for s in of.values())),
                    *(cell for m in cpus for cell in _figures(of.get(m))),
                    *(cell for m in memories for cell in _figures(of.get(m))),
                    _figure(of.get("added_p99_ms"), "latest"),
                    _status([s.check for s in of.values()]),
                )
            )
        blocks.append(
            TrendBlock(
                title=f"{experiment} / cost at {where.removeprefix('cost@')}",
                charts=charts,
                headers=(
                    "setup",
                    "runs",
                    *(h for m in cpus for h in (_CPU_HEADERS[m], "recent median", "threshold")),
                    *(
                        h
                        for m in memories
                        for h in (_MEMORY_HEADERS[m], "recent median", "threshold")
                    ),
                    "p99 added ms latest",
                    "status",
                ),
                rows=tuple(rows),
                regressions=tuple(r for r in (_regression(s) for s in series) if r is not None),
                note=(
                    "Cost of each setup's proxies in steady state, from the runs' cost steps "
                    "(rates that were offered only). Same rule as recovery, with floors of "
                    + ", ".join(
                        dict.fromkeys(f"{floor:g} {unit}" for unit, floor in COST_FLOORS.values())
                    )
                    + ". CPU and memory are one series per platform's measure (locally "
                    "/proc and PSS, on Kubernetes the kubelet's CPU and working set): "
                    "different quantities, never joined."
                ),
            )
        )
    return blocks


__all__ = [
    "COST_FLOORS",
    "CPU_METRICS",
    "MEMORY_METRICS",
    "CostRegression",
    "CostSeries",
    "cost_blocks",
    "cost_regressions",
    "cost_series",
]
