"""The cost step's figures as Prometheus metrics, pushed with the run's other metrics.

Per setup and rate (labels ``setup``, ``rate``; ``estimate``: median / low / high of the
95 % interval over windows): proxy CPU-seconds per 1,000 requests (in all and per
``kind``), proxy memory (bytes, with ``measure``: ``pss`` from ``/proc`` on the local
platform, ``working_set`` from the kubelet on Kubernetes, as the run's ``results.json``
says), client latency (seconds, ``quantile``), the p99 added over baseline, and whether
the rate was offered.
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
#: ``results.json``'s ``cost.memory`` -> the ``measure`` label of the memory metric.
MEASURES = {"pss": "pss", "working-set": "working_set"}


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
    # What the memory figures are: a run's are all one measure (its platform's).
    measure = MEASURES.get(str(data.get("memory", "pss")), "pss")
    cpu = GaugeMetricFamily(
        f"{COST_PREFIX}_proxy_cpu_seconds_per_1k_requests",
        "CPU-seconds of every proxy per 1,000 requests.",
        labels=[*_KEY, "estimate"],
    )
    memory = GaugeMetricFamily(
        f"{COST_PREFIX}_proxy_memory_bytes",
        "Memory of every proxy together; measure: pss (local /proc) or working_set (kubelet).",
        labels=[*_KEY, "measure", "estimate"],
    )
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
        _add(cpu, key, s.get("proxy_cpu_per_1k"))
        _add(memory, [*key, measure], s.get("proxy_pss_mb"), 1e6)
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
    yield from (cpu, memory, kind, latency, added, offered)


__all__ = ["COST_PREFIX", "MEASURES", "cost_metrics"]
