"""The cost step's figures as Prometheus metrics, pushed with the run's other metrics.

Per setup and rate (labels ``setup``, ``rate``; ``estimate``: median / low / high of the
95 % interval over windows): proxy CPU-seconds per 1,000 requests (in all and per
``kind``), proxy memory (bytes, with ``measure``: ``pss`` from ``/proc`` on the local
platform, ``working_set`` from the kubelet on Kubernetes, as the run's ``results.json``
says), client latency (seconds, ``percentile="p50|p90|p99"``: not ``quantile``, which
Prometheus keeps for summaries and ``promtool check metrics`` refuses on a gauge), the p99
added over baseline, and whether the rate was offered.

The CPU carries its ``basis``: ``raw`` (as the processes' accounting read it) always, and
``speed_adjusted`` (at the setup's median machine speed, ``chaos.analysis.cost``) when the
run's ``cost.cpu`` was ``speed-adjusted`` and the setup's windows at that rate could be
adjusted; a setup left raw (no apps' CPU to tell the speed by) has no ``speed_adjusted``
series rather than a raw figure under that name. The per-kind CPU is of one basis, the
setup's (``basis`` says which).
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
#: ``results.json``'s ``cost.cpu`` (and a setup's ``cpu_basis``) -> the ``basis`` label.
BASES = {"speed-adjusted": "speed_adjusted", "raw": "raw"}


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
    # A run from before ``cost.cpu`` read its CPU raw.
    run_basis = str(data.get("cpu", "raw"))
    cpu = GaugeMetricFamily(
        f"{COST_PREFIX}_proxy_cpu_seconds_per_1k_requests",
        "CPU-seconds of every proxy per 1,000 requests; basis: speed_adjusted (at the "
        "setup's median machine speed) or raw (as read).",
        labels=[*_KEY, "basis", "estimate"],
    )
    memory = GaugeMetricFamily(
        f"{COST_PREFIX}_proxy_memory_bytes",
        "Memory of every proxy together; measure: pss (local /proc) or working_set (kubelet).",
        labels=[*_KEY, "measure", "estimate"],
    )
    kind = GaugeMetricFamily(
        f"{COST_PREFIX}_kind_cpu_seconds_per_1k_requests",
        "CPU-seconds per 1,000 requests of one proxy kind; basis: the setup's (see the total).",
        labels=[*_KEY, "kind", "basis", "estimate"],
    )
    latency = GaugeMetricFamily(
        f"{COST_PREFIX}_latency_seconds",
        "Client-observed latency percentile (p50, p90, p99) in steady state.",
        labels=[*_KEY, "percentile", "estimate"],
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
        basis = BASES.get(str(s.get("cpu_basis", run_basis)), "raw")
        figure = s.get("proxy_cpu_per_1k")
        _add(cpu, [*key, "raw"], s.get("raw_proxy_cpu_per_1k", figure if basis == "raw" else None))
        if basis == "speed_adjusted":
            _add(cpu, [*key, basis], figure)
        _add(memory, [*key, measure], s.get("proxy_pss_mb"), 1e6)
        for name, e in sorted(s.get("cpu_per_1k", {}).items()):
            if name != "app":
                _add(kind, [*key, name, basis], e)
        for q, e in sorted(s.get("latency_ms", {}).items()):
            _add(latency, [*key, q], e, 1e-3)
        a = s.get("added_ms", {}).get("p99")
        if a and a.get("mean") is not None:
            _add(
                added, key, {"median": a["mean"], "low": a.get("low"), "high": a.get("high")}, 1e-3
            )
        offered.add_metric(key, 1.0 if s.get("offered") else 0.0)
    yield from (cpu, memory, kind, latency, added, offered)


__all__ = ["BASES", "COST_PREFIX", "MEASURES", "cost_metrics"]
