"""The cost step's figures as Prometheus metrics, pushed with the run's other metrics.

Per setup and rate (labels ``setup``, ``rate``; ``estimate``: median / low / high of the
95 % interval over windows): proxy CPU-seconds per 1,000 requests (in all and per
``kind``), proxy memory (PSS bytes), client latency (seconds, ``quantile``), the p99
added over baseline, and whether the rate was offered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from chaos.analysis.cost_io import read_cost_results

#: The metric name prefix (as chaos.report.prometheus.PREFIX).
COST_PREFIX = "sidecar_chaos_cost"
_KEY = ["setup", "rate"]
_ESTIMATES = ("median", "low", "high")
#: results.json key of a setup's total -> (metric name, help, scale to the metric's unit).
_TOTALS: dict[str, tuple[str, str, float]] = {
    "proxy_cpu_per_1k": (
        "proxy_cpu_seconds_per_1k_requests",
        "CPU-seconds of every proxy per 1,000 requests.",
        1.0,
    ),
    "proxy_pss_mb": ("proxy_memory_pss_bytes", "PSS of every proxy together.", 1e6),
}


def _add(
    family: GaugeMetricFamily, key: list[str], e: Mapping[str, Any] | None, scale: float = 1.0
) -> None:
    if not e:
        return
    for name in _ESTIMATES:
        value = e.get(name)
        if isinstance(value, int | float):
            family.add_metric([*key, name], float(value) * scale)


def cost_metrics(run_dir: Path) -> Iterator[Metric]:
    """Every cost metric of the run (none without a cost step)."""
    data = read_cost_results(run_dir)
    if not data:
        return
    # One family per figure of the shape (setup, rate, estimate), in results.json's key.
    totals = {
        field: GaugeMetricFamily(f"{COST_PREFIX}_{name}", text, labels=[*_KEY, "estimate"])
        for field, (name, text, _) in _TOTALS.items()
    }
    kind = GaugeMetricFamily(
        f"{COST_PREFIX}_kind_cpu_seconds_per_1k_requests",
        "CPU-seconds per 1,000 requests of one proxy kind.",
        labels=[*_KEY, "kind", "estimate"],
    )
    latency = GaugeMetricFamily(
        f"{COST_PREFIX}_latency_seconds",
        "Client-observed latency in steady state.",
        labels=[*_KEY, "quantile", "estimate"],
    )
    added = GaugeMetricFamily(
        f"{COST_PREFIX}_added_p99_seconds",
        "p99 latency added over baseline (difference of means over windows).",
        labels=[*_KEY, "estimate"],
    )
    offered = GaugeMetricFamily(
        f"{COST_PREFIX}_rate_offered", "1 when the driver offered the rate.", labels=_KEY
    )
    for s in data.get("setups", []):
        key = [str(s["setup"]), f"{float(s['rate']):g}"]
        for field, family in totals.items():
            _add(family, key, s.get(field), _TOTALS[field][2])
        for name, e in sorted(s.get("cpu_per_1k", {}).items()):
            if name != "app":
                _add(kind, [*key, name], e)
        for q, e in sorted(s.get("latency_ms", {}).items()):
            _add(latency, [*key, q], e, 1e-3)
        a = s.get("added_ms", {}).get("p99")
        if a and a.get("mean") is not None:
            _add(
                added, key, {"median": a["mean"], "low": a.get("low"), "high": a.get("high")}, 1e-3
            )
        offered.add_metric(key, 1.0 if s.get("offered") else 0.0)
    yield from (*totals.values(), kind, latency, added, offered)


__all__ = ["COST_PREFIX", "cost_metrics"]
