"""What each setup costs, from a run's cost windows (``cost.jsonl`` and their samples).

The window is the unit, as everywhere in the analysis: requests of one window share
its topology, connections and moment, so each figure is first taken per window
(p50/p90/p99 of its requests, CPU-seconds per 1,000 of its requests, PSS at its end)
and the statistics are over windows:

* a setup's figure at a rate: the median over its windows, with a percentile bootstrap
  95 % interval (``stats.bootstrap_median``);
* latency added: mean of the setup's windows minus mean of baseline's at the same rate,
  with a stratified bootstrap interval (``decide.difference_interval``).

CPU is read from the processes' own accounting, and on a shared machine (a VM whose
cores other programs share) the same work costs more CPU-seconds when the machine runs
slower: every process of a window, the demo apps included, then uses more CPU per
request, second by second alike (``python -m chaos.bench.cost`` shows it). The apps do
the same work per request in every window of a setup, so by default (``cost.cpu:
speed-adjusted``) each window's proxy CPU is scaled by the apps' CPU per request of the
setup's median window at that rate over the window's own: the proxies' CPU at the
setup's median machine speed. This narrows the spread between a setup's windows and
leaves its median where the raw one is; it corrects nothing between setups (a setup
measured while the machine was slower stays so: the rounds rotate the setups for that).
The raw figure is kept beside it (``raw_cpu_per_1k``); ``cost.cpu: raw`` decides on it.
A setup at a rate whose windows do not all show the apps' CPU stays raw, and says so.

A rate is *offered* when the driver sent at least 99 % of what the open-loop schedule
called for in the measured interval, at least 95 % of the rate; otherwise the figures
are still given, marked "not offered" (the driver's shortfall, never a lower rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import numpy as np

from chaos.analysis.decide import difference_interval
from chaos.analysis.model import Estimate
from chaos.analysis.stats import bootstrap_median
from chaos.rundir import SAMPLES_DIR
from chaos.rundir.columns import load_columns
from chaos.rundir.cost import (
    FIXED_KINDS,
    PER_NODE_KINDS,
    PER_POD_KINDS,
    PER_SERVICE_KINDS,
    CostWindowRecord,
    ProxyKind,
    read_cost,
)
from chaos.rundir.samples import DROPPED

#: Shares of the schedule a rate must reach to count as offered.
MIN_SENT_SHARE = 0.99
MIN_RATE_SHARE = 0.95
#: The latency quantiles reported.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
#: Pod counts the growth line projects to.
PROJECT_TO: tuple[int, ...] = (6, 60, 500)
#: ``cost.cpu``: the proxies' CPU at the setup's median machine speed, or as read.
SPEED_ADJUSTED = "speed-adjusted"
RAW = "raw"


@dataclass(frozen=True)
class WindowCost:
    """One cost window's figures (a broken one has only ``broken``)."""

    setup: str
    rate: float
    repetition: int
    broken: str = ""
    scheduled: int = 0
    sent: int = 0
    seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: CPU-seconds per 1,000 sent requests, per proxy kind present (speed-adjusted:
    #: the proxy kinds divided by ``speed``; the apps' as read).
    cpu_per_1k: dict[str, float] = field(default_factory=dict)
    #: The same as read from the processes' accounting.
    raw_cpu_per_1k: dict[str, float] = field(default_factory=dict)
    #: The window's apps' CPU per request over the setup's median window's at the rate
    #: (above 1: the machine ran slower); 1.0 when the figures are raw.
    speed: float = 1.0
    #: Mean PSS per process of each kind, in MB.
    pss_mb: dict[str, float] = field(default_factory=dict)
    #: Mean PSS of a pod (its app and its sidecar, if any), in MB.
    pod_pss_mb: float = 0.0
    #: PSS of every proxy of the topology together, in MB.
    proxy_pss_mb: float = 0.0
    pods: int = 0
    nodes: int = 0
    services: int = 0
    sampling_cpu_s: float = 0.0

    @property
    def offered(self) -> bool:
        if self.scheduled == 0 or self.seconds <= 0:
            return False
        return (
            self.sent >= MIN_SENT_SHARE * self.scheduled
            and self.sent / self.seconds >= MIN_RATE_SHARE * self.rate
        )


@dataclass(frozen=True)
class Added:
    """Setup minus baseline at one rate: a difference of means over windows and its interval."""

    mean: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class SetupCost:
    """One setup at one rate, over its windows."""

    setup: str
    rate: float
    windows: int
    broken: int
    offered: bool
    achieved_rps: float
    latency_ms: dict[str, Estimate]
    #: Versus baseline at the same rate (empty without baseline windows).
    added_ms: dict[str, Added]
    cpu_per_1k: dict[str, Estimate]
    pss_mb: dict[str, Estimate]
    pod_pss_mb: Estimate
    #: Proxies' CPU per 1,000 requests in all (every kind but the app), per window median.
    proxy_cpu_per_1k: Estimate
    #: The same from the raw figures (equal to it when the step's ``cpu`` is raw).
    raw_proxy_cpu_per_1k: Estimate
    #: Proxies' PSS in all, MB.
    proxy_pss_mb: Estimate


@dataclass(frozen=True)
class Growth:
    """How a setup's proxy memory grows: per pod, per node, per service, fixed (MB)."""

    setup: str
    per_pod_mb: float
    per_node_mb: float
    per_service_mb: float
    fixed_mb: float
    pods_per_node: float
    services: int
    #: (pods, projected proxy PSS in MB), nodes scaled at the measured pods per node.
    projection: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class CostAnalysis:
    """Every cost figure of a run."""

    windows: tuple[WindowCost, ...]
    setups: tuple[SetupCost, ...]
    growth: tuple[Growth, ...]
    #: The sampling's own CPU as a share of one core over the measured time.
    sampling_core_share: float
    #: What the memory figures are: ``pss`` (local ``/proc``) or ``working-set`` (kubelet).
    memory: str = "pss"
    #: The machine's 1-minute load average at the end of the windows: lowest, highest.
    load_avg: tuple[float, float] = (0.0, 0.0)
    #: What the CPU figures are: ``speed-adjusted`` or ``raw`` (``cost.cpu``).
    cpu: str = SPEED_ADJUSTED
    #: Setups and rates left raw under ``speed-adjusted`` (no apps' CPU), and why.
    cpu_notes: tuple[str, ...] = ()

    def of(self, setup: str, rate: float) -> SetupCost | None:
        return next((s for s in self.setups if s.setup == setup and s.rate == rate), None)


def window_cost(run_dir: Path, record: CostWindowRecord) -> WindowCost:
    """The figures of one window from its record and its samples."""
    base = WindowCost(record.setup, record.rate, record.repetition, broken=record.broken)
    if record.broken:
        return base
    directory = run_dir / SAMPLES_DIR / record.slug
    if not directory.is_dir():
        return WindowCost(record.setup, record.rate, record.repetition, broken="no samples")
    columns = load_columns(directory)
    inside = (columns.t >= record.start_t) & (columns.t < record.end_t)
    dropped_code = columns.code_of(DROPPED)
    dropped = (
        columns.coded("error_kind") == dropped_code
        if dropped_code is not None
        else np.zeros(len(columns.t), dtype=bool)
    )
    sent_rows = inside & ~dropped
    sent = int(sent_rows.sum())
    latencies = columns.latency_ms[sent_rows]
    latency = {name: float(np.quantile(latencies, q)) for name, q in QUANTILES} if sent else {}
    per_kind_cpu: dict[str, float] = {}
    per_kind_pss: dict[str, list[float]] = {}
    pods: dict[str, float] = {}
    seconds = record.end_t - record.start_t
    for p in record.processes:
        # The kubelet's samples span their own interval: scaled to the measured one.
        cpu = p.cpu_s * seconds / p.cpu_interval_s if p.cpu_interval_s > 0 else p.cpu_s
        per_kind_cpu[p.kind.value] = per_kind_cpu.get(p.kind.value, 0.0) + cpu
        if p.kind is not ProxyKind.CONTROL_PLANE:
            per_kind_pss.setdefault(p.kind.value, []).append(p.pss_bytes / 1e6)
        if p.pod:
            pods[p.pod] = pods.get(p.pod, 0.0) + p.pss_bytes / 1e6
    per_1k = {k: v / sent * 1000.0 for k, v in per_kind_cpu.items()} if sent else {}
    return WindowCost(
        record.setup,
        record.rate,
        record.repetition,
        scheduled=int(inside.sum()),
        sent=sent,
        seconds=seconds,
        latency_ms=latency,
        cpu_per_1k=per_1k,
        raw_cpu_per_1k=dict(per_1k),
        pss_mb={k: sum(v) / len(v) for k, v in per_kind_pss.items()},
        pod_pss_mb=sum(pods.values()) / len(pods) if pods else 0.0,
        proxy_pss_mb=sum(p.pss_bytes for p in record.processes if p.kind is not ProxyKind.APP)
        / 1e6,
        pods=record.pods,
        nodes=record.nodes,
        services=record.services,
        sampling_cpu_s=record.sampling_cpu_s,
    )


def _estimate(values: Sequence[float], seed: int) -> Estimate:
    return bootstrap_median([v for v in values if math.isfinite(v)], seed=seed)


def _proxy_sum(figures: dict[str, float]) -> float:
    return sum(v for k, v in figures.items() if k != ProxyKind.APP.value)


def summarize_setup(
    setup: str,
    rate: float,
    windows: Sequence[WindowCost],
    baseline: Sequence[WindowCost],
    seed: int,
) -> SetupCost:
    """One setup at one rate, over its windows that were not broken."""
    good = [w for w in windows if not w.broken]
    kinds = sorted({k for w in good for k in w.cpu_per_1k})
    mem_kinds = sorted({k for w in good for k in w.pss_mb})
    added: dict[str, Added] = {}
    base = [w for w in baseline if not w.broken]
    if base and setup != "baseline":
        for name, _ in QUANTILES:
            x = [w.latency_ms[name] for w in good if name in w.latency_ms]
            y = [w.latency_ms[name] for w in base if name in w.latency_ms]
            if x and y:
                low, high = difference_interval(x, y, seed=seed)
                added[name] = Added(float(np.mean(x) - np.mean(y)), low, high)
    seconds = sum(w.seconds for w in good)
    return SetupCost(
        setup=setup,
        rate=rate,
        windows=len(good),
        broken=len(windows) - len(good),
        offered=bool(good) and all(w.offered for w in good),
        achieved_rps=sum(w.sent for w in good) / seconds if seconds > 0 else 0.0,
        latency_ms={
            n: _estimate([w.latency_ms[n] for w in good if n in w.latency_ms], seed)
            for n, _ in QUANTILES
        },
        added_ms=added,
        cpu_per_1k={k: _estimate([w.cpu_per_1k.get(k, 0.0) for w in good], seed) for k in kinds},
        pss_mb={
            k: _estimate([w.pss_mb[k] for w in good if k in w.pss_mb], seed) for k in mem_kinds
        },
        pod_pss_mb=_estimate([w.pod_pss_mb for w in good], seed),
        proxy_cpu_per_1k=_estimate([_proxy_sum(w.cpu_per_1k) for w in good], seed),
        proxy_pss_mb=_estimate([w.proxy_pss_mb for w in good], seed),
        raw_proxy_cpu_per_1k=_estimate([_proxy_sum(w.raw_cpu_per_1k) for w in good], seed),
    )


def at_median_speed(
    windows: Sequence[WindowCost],
) -> tuple[list[WindowCost], str]:
    """One setup's windows at one rate with their proxy CPU at the median machine speed.

    Returns the windows (broken ones as they are) and, when they cannot be adjusted
    (a window without the apps' CPU), the reason; then they stay raw.
    """
    good = [w for w in windows if not w.broken and w.sent]
    apps = [w.raw_cpu_per_1k.get(ProxyKind.APP.value, 0.0) for w in good]
    if not good:
        return list(windows), ""
    if min(apps) <= 0:
        first = good[apps.index(min(apps))]
        return list(windows), (
            f"{first.setup} at {first.rate:g} rps: raw CPU (window {first.repetition} shows "
            "no CPU of the apps to tell the machine's speed by)"
        )
    middle = median(apps)
    out = []
    for w in windows:
        app = w.raw_cpu_per_1k.get(ProxyKind.APP.value, 0.0)
        if w.broken or not w.sent or app <= 0:
            out.append(w)
            continue
        speed = app / middle
        scaled = {
            k: (v if k == ProxyKind.APP.value else v / speed) for k, v in w.raw_cpu_per_1k.items()
        }
        out.append(replace(w, cpu_per_1k=scaled, speed=speed))
    return out, ""


def growth_of(setup: str, records: Sequence[CostWindowRecord]) -> Growth | None:
    """The per-pod, per-node, per-service and fixed parts of a setup's proxy memory."""
    good = [r for r in records if r.setup == setup and not r.broken and r.processes]
    if not good:
        return None
    last = good[-1]

    def part(kinds: Sequence[ProxyKind], per: int) -> float:
        total = sum(p.pss_bytes for p in last.processes if p.kind in kinds) / 1e6
        return total / per if per else 0.0

    per_pod = part(PER_POD_KINDS, last.pods)
    per_node = part(PER_NODE_KINDS, last.nodes)
    per_service = part(PER_SERVICE_KINDS, last.services)
    fixed = part(FIXED_KINDS, 1)
    pods_per_node = last.pods / last.nodes if last.nodes else float(last.pods)
    projection = tuple(
        (
            n,
            fixed
            + per_pod * n
            + per_node * math.ceil(n / pods_per_node)
            + per_service * last.services,
        )
        for n in PROJECT_TO
    )
    return Growth(
        setup, per_pod, per_node, per_service, fixed, pods_per_node, last.services, projection
    )


def analyze_cost(run_dir: Path, seed: int = 0, cpu: str = SPEED_ADJUSTED) -> CostAnalysis | None:
    """Every cost figure of the run in ``run_dir``; None when it had no cost step.

    ``cpu``: the step's ``cost.cpu`` (``speed-adjusted`` or ``raw``, see the module).
    """
    records = read_cost(run_dir)
    if not records:
        return None
    raw = [window_cost(run_dir, r) for r in records]
    setups_in_order = list(dict.fromkeys(r.setup for r in records))
    rates = sorted({r.rate for r in records})
    notes: list[str] = []
    if cpu == SPEED_ADJUSTED:
        adjusted: dict[int, WindowCost] = {}
        for rate in rates:
            for setup in setups_in_order:
                at = [i for i, w in enumerate(raw) if w.setup == setup and w.rate == rate]
                done, note = at_median_speed([raw[i] for i in at])
                adjusted.update(zip(at, done, strict=True))
                notes += [note] if note else []
        raw = [adjusted.get(i, w) for i, w in enumerate(raw)]
    windows = tuple(raw)
    summaries = []
    for rate in rates:
        baseline = [w for w in windows if w.setup == "baseline" and w.rate == rate]
        for setup in setups_in_order:
            of = [w for w in windows if w.setup == setup and w.rate == rate]
            if of:
                summaries.append(summarize_setup(setup, rate, of, baseline, seed))
    growth = tuple(g for g in (growth_of(s, records) for s in setups_in_order) if g is not None)
    measured = sum(w.seconds for w in windows if not w.broken)
    sampling = sum(w.sampling_cpu_s for w in windows if not w.broken)
    loads = [r.load_avg_1m for r in records if not r.broken]
    return CostAnalysis(
        windows,
        tuple(summaries),
        growth,
        sampling / measured if measured > 0 else 0.0,
        memory=records[0].memory,
        load_avg=(min(loads), max(loads)) if loads else (0.0, 0.0),
        cpu=cpu,
        cpu_notes=tuple(notes),
    )


__all__ = [
    "RAW",
    "SPEED_ADJUSTED",
    "Added",
    "CostAnalysis",
    "Growth",
    "SetupCost",
    "WindowCost",
    "analyze_cost",
    "at_median_speed",
]
