"""``trend`` for cost: a run whose setup costs more than its recent history flags it.

A cost series is one experiment, setup and rate over time; each recorded run with a
cost step adds one point per metric (read from the run directory's ``results.json``:
runs whose directory is gone add none): the proxies' CPU-seconds per 1,000 requests,
their memory (PSS, MB) and the p99 latency added over baseline (ms). The latest point
is compared with the ones before it by the same rule as recovery
(``chaos.report.trend.check``: median + max(3 sigma from the MAD, a floor, 20 %)).
Only rates that were offered count: a rate the driver did not reach says nothing
about the setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.analysis.cost_io import read_cost_results
from chaos.report.history import RecordedRun
from chaos.report.trend import Regression, check

#: Metric -> (unit, the absolute floor of the regression rule).
COST_FLOORS: dict[str, tuple[str, float]] = {
    "proxy_cpu_per_1k_requests": ("CPU-s", 0.05),
    "proxy_memory_mb": ("MB", 5.0),
    "added_p99_ms": ("ms", 1.0),
}


@dataclass(frozen=True)
class CostRegression(Regression):
    """A cost figure of the latest run above its recent history beyond the noise."""

    @property
    def message(self) -> str:
        unit = COST_FLOORS[self.metric][0]
        return (
            f"{self.experiment}/{self.fault}/{self.setup}: {self.metric.replace('_', ' ')} "
            f"{self.latest:.3g} {unit} vs recent median {self.baseline:.3g} {unit} "
            f"(threshold {self.threshold:.3g} {unit})"
        )


def _points(run: RecordedRun) -> dict[tuple[str, str, str], float]:
    """(setup, ``cost@<rate>rps``, metric) -> value of one run."""
    data = read_cost_results(Path(run.run_dir)) if Path(run.run_dir).is_dir() else None
    found: dict[tuple[str, str, str], float] = {}
    for s in (data or {}).get("setups", []):
        if not s.get("offered"):
            continue
        where = f"cost@{float(s['rate']):g}rps"
        cpu = (s.get("proxy_cpu_per_1k") or {}).get("median")
        pss = (s.get("proxy_pss_mb") or {}).get("median")
        added = ((s.get("added_ms") or {}).get("p99") or {}).get("mean")
        for metric, value in (
            ("proxy_cpu_per_1k_requests", cpu),
            ("proxy_memory_mb", pss),
            ("added_p99_ms", added),
        ):
            if isinstance(value, int | float):
                found[(str(s["setup"]), where, metric)] = float(value)
    return found


def cost_regressions(runs: Sequence[RecordedRun], *, window_n: int = 5) -> list[Regression]:
    """The cost regressions of each experiment's latest run."""
    ordered = sorted(runs, key=lambda r: (r.started, r.run_id))
    found: list[Regression] = []
    for experiment in dict.fromkeys(r.experiment for r in ordered):
        mine = [r for r in ordered if r.experiment == experiment]
        latest, before = _points(mine[-1]), [_points(r) for r in mine[:-1]][-window_n:]
        for (setup, where, metric), value in latest.items():
            history = [p[(setup, where, metric)] for p in before if (setup, where, metric) in p]
            c = check(history, value, floor=COST_FLOORS[metric][1])
            if c.regressed and c.baseline is not None and c.threshold is not None:
                found.append(
                    CostRegression(
                        experiment,
                        where,
                        setup,
                        metric,
                        mine[-1].run_id,
                        value,
                        c.baseline,
                        c.threshold,
                    )
                )
    return found


__all__ = ["COST_FLOORS", "CostRegression", "cost_regressions"]
