"""The report's cost section: what each setup costs, next to how it recovers.

Built from the ``cost`` object of ``results.json`` (``chaos.analysis.cost_io``): a
table per setup and rate, bars with their 95 % intervals (proxy CPU per 1,000 requests,
proxy memory, latency added), and the growth line of proxy memory with the pod count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from markupsafe import Markup

from chaos.analysis.cost_io import read_cost_results

#: Said next to the figures, every time (where the local proxies are not Istio's).
DEVIATIONS = (
    "Local figures, measured on this machine: the node proxy is an Envoy (Istio's is "
    "ztunnel, a Rust L4 proxy), the waypoints and sidecars are Envoys without Istio's "
    "filters, and the control plane (certificate agent) is a thread of the runner, so "
    "it has CPU but no memory of its own here.",
    "Memory is PSS (proportional set size): pages shared by several processes, above "
    "all the Envoy binary's, are split evenly among the processes mapping them, so the "
    "proxies' PSS adds up to what they cost together (RSS would count the binary once "
    "per proxy). PSS depends on the other Envoys running on the machine at that time.",
    "CPU is the scheduler's run time in ns of exactly the processes the topology started "
    "(by pid and start time), summed over their threads (utime + stime in 10 ms ticks "
    "where a thread exited mid-window).",
    "For reference only, Istio's published figures (Istio 1.24 performance docs, per "
    "1,000 requests/s): sidecar ~0.20 vCPU and 60 MB, waypoint ~0.25 vCPU and 60 MB, "
    "ztunnel ~0.06 vCPU and 12 MB; latency added: ambient L4 +0.17 ms p90 / +0.20 ms "
    "p99, two sidecars +2.76 ms p90 / +2.88 ms p99. They are Istio's, not ours.",
)


#: Said instead of the local notes when the figures come from a cluster's kubelets.
KUBE_NOTES = (
    "Figures from the kubelets' resource metrics (container_cpu_usage_seconds_total, "
    "container_memory_working_set_bytes), read through the API server: the proxies are "
    "Istio's own (istio-proxy sidecars, ztunnel, waypoints, istiod) and the plain Envoy "
    "sidecar.",
    "Memory is the working set (what the kubelet reports and evicts by), not PSS: pages "
    "shared by several containers count in each, as RSS does; local runs report PSS.",
    "The kubelet samples CPU on its own schedule: a window's CPU is the difference of the "
    "samples around it, scaled from their interval to the measured one.",
)


def notes_for(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The notes beside the figures: the platform's, and the machine's load."""
    notes = KUBE_NOTES if data.get("memory") == "working-set" else DEVIATIONS
    load = data.get("load_avg")
    if isinstance(load, list) and len(load) == 2 and data.get("memory") != "working-set":
        notes = (
            *notes,
            f"Machine load average (1 min) during the cost windows: {load[0]:.1f} to "
            f"{load[1]:.1f}. Other programs' load slows every process alike, so a loaded "
            "machine raises the CPU per request of every setup.",
        )
    if data.get("cpu") == "speed-adjusted":
        notes = (
            *notes,
            "Proxy CPU is at each setup's median machine speed: a window's proxies' CPU "
            "times the apps' CPU per request of the setup's median window over the "
            "window's own (the apps do the same work per request, so they tell how fast "
            "the machine ran); raw, as the processes' accounting says, after it in "
            "parentheses. The experiment's cost.cpu: raw decides on the raw figures.",
            *(str(n) for n in data.get("cpu_notes") or ()),
        )
    return notes


@dataclass(frozen=True)
class CostRow:
    setup: str
    rate: str
    offered: str
    achieved: str
    latency: str
    added_p99: str
    proxy_cpu: str
    per_kind_cpu: str
    proxy_memory: str
    pod_memory: str
    windows: str


@dataclass(frozen=True)
class CostView:
    rows: list[CostRow]
    charts: list[Markup]
    growth: list[tuple[str, str, str, str, str, str]]
    growth_chart: Markup
    decisions: list[tuple[str, str, str, str]]
    sampling: str
    notes: tuple[str, ...] = DEVIATIONS
    #: What the memory figures are, for their headings: ``PSS`` or ``working set``.
    memory: str = "PSS"


def _f(x: object, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "–"


def _est(e: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not e or e.get("median") is None:
        return "–"
    return f"{_f(e['median'], digits)} [{_f(e.get('low'), digits)}, {_f(e.get('high'), digits)}]"


def _row(s: Mapping[str, Any]) -> CostRow:
    lat = s.get("latency_ms", {})
    added = s.get("added_ms", {}).get("p99")
    kinds = s.get("cpu_per_1k", {})
    return CostRow(
        setup=str(s["setup"]),
        rate=f"{s['rate']:g}",
        offered="yes" if s.get("offered") else "NOT OFFERED",
        achieved=_f(s.get("achieved_rps"), 1),
        latency=" / ".join(_f((lat.get(q) or {}).get("median"), 1) for q in ("p50", "p90", "p99")),
        added_p99=(
            f"{added['mean']:+.2f} [{_f(added.get('low'))}, {_f(added.get('high'))}]"
            if added and added.get("mean") is not None
            else "–"
        ),
        proxy_cpu=_est(s.get("proxy_cpu_per_1k"), 3)
        + (f" (raw {_f(raw.get('median'), 3)})" if (raw := s.get("raw_proxy_cpu_per_1k")) else ""),
        per_kind_cpu=", ".join(
            f"{k} {_f(v.get('median'), 3)}" for k, v in sorted(kinds.items()) if k != "app"
        ),
        proxy_memory=_est(s.get("proxy_pss_mb"), 1),
        pod_memory=_est(s.get("pod_pss_mb"), 1),
        windows=f"{s.get('windows', 0)}" + (f" ({s['broken']} broken)" if s.get("broken") else ""),
    )


def bars_svg(title: str, unit: str, bars: Sequence[tuple[str, Mapping[str, Any] | None]]) -> Markup:
    """Horizontal bars (median) with the 95 % interval as a whisker, one per label."""
    values = [b for b in bars if b[1] and b[1].get("median") is not None]
    top = max([float(e.get("high") or e["median"]) for _, e in values if e] + [1e-9])
    width, left, row = 520, 150, 22
    height = 28 + row * len(bars)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><text x="4" y="14" font-size="12" '
        f'font-weight="600">{escape(title)} ({escape(unit)})</text>'
    ]
    scale = (width - left - 60) / top
    for i, (label, e) in enumerate(bars):
        y = 24 + i * row
        parts.append(f'<text x="4" y="{y + 13}" font-size="11">{escape(label)}</text>')
        if not e or e.get("median") is None:
            parts.append(f'<text x="{left}" y="{y + 13}" font-size="11">no measure</text>')
            continue
        median = float(e["median"])
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{median * scale:.1f}" height="12" '
            'fill="#5b8def"/>'
        )
        low, high = e.get("low"), e.get("high")
        if low is not None and high is not None:
            x1, x2 = left + float(low) * scale, left + float(high) * scale
            parts.append(
                f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + 9}" y2="{y + 9}" '
                'stroke="#222" stroke-width="1.5"/>'
            )
        parts.append(
            f'<text x="{left + median * scale + 6:.1f}" y="{y + 13}" font-size="11">'
            f"{median:.3g}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def memory_measure(data: Mapping[str, Any]) -> str:
    """What the run's memory figures are, for headings: ``PSS`` or ``working set``."""
    return "working set" if data.get("memory") == "working-set" else "PSS"


def growth_svg(growth: Sequence[Mapping[str, Any]], memory: str = "PSS") -> Markup:
    """Projected proxy memory (MB) against the pod count, one line per setup.

    ``memory``: what the figures are (``memory_measure``), said in the heading.
    """
    lines = [(str(g["setup"]), [(int(n), float(mb)) for n, mb in g["projection"]]) for g in growth]
    if not lines:
        return Markup("")
    top_n = max(n for _, pts in lines for n, _ in pts)
    top_mb = max([mb for _, pts in lines for _, mb in pts] + [1.0])
    width, height, pad = 520, 200, 40
    colors = ["#5b8def", "#e8684a", "#5ad8a6", "#f6bd16", "#6dc8ec"]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="proxy memory by pod count"><text x="4" y="14" font-size="12" '
        f'font-weight="600">proxy memory ({escape(memory)}, MB) projected to N pods</text>'
    ]
    for i, (setup, pts) in enumerate(lines):
        coords = " ".join(
            f"{pad + n / top_n * (width - 2 * pad):.1f},"
            f"{height - pad - mb / top_mb * (height - 2 * pad - 10):.1f}"
            for n, mb in pts
        )
        color = colors[i % len(colors)]
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(
            f'<text x="{width - pad + 4}" y="{30 + 14 * i}" font-size="11" fill="{color}">'
            f"{escape(setup)}</text>"
        )
    parts.append(
        f'<text x="{pad}" y="{height - 10}" font-size="11">pods: '
        + ", ".join(str(n) for n, _ in lines[0][1])
        + f" (max {top_mb:.0f} MB)</text></svg>"
    )
    return Markup("".join(parts))


def cost_view(run_dir: Path) -> CostView | None:
    """The cost section of one run, or None when it had no cost step."""
    data = read_cost_results(run_dir)
    if not data:
        return None
    setups = data.get("setups", [])
    memory = memory_measure(data)
    rates = sorted({float(s["rate"]) for s in setups})
    charts = []
    for rate in rates:
        at = [s for s in setups if float(s["rate"]) == rate]
        charts.append(
            bars_svg(
                f"proxy CPU per 1,000 requests at {rate:g} rps",
                "CPU-s",
                [(s["setup"], s.get("proxy_cpu_per_1k")) for s in at],
            )
        )
        charts.append(
            bars_svg(
                f"proxy memory at {rate:g} rps",
                f"{memory} MB",
                [(s["setup"], s.get("proxy_pss_mb")) for s in at],
            )
        )
    growth = [
        (
            str(g["setup"]),
            _f(g["per_pod_mb"], 1),
            _f(g["per_node_mb"], 1),
            _f(g["per_service_mb"], 1),
            _f(g["fixed_mb"], 1),
            ", ".join(f"{n} pods: {mb:.0f} MB" for n, mb in g["projection"]),
        )
        for g in data.get("growth", [])
    ]
    decisions = [
        (
            str(d["name"]),
            str(d["text"]),
            str(d["outcome"]),
            (
                f"{d['difference']:+.3g} {d['unit']} "
                f"[{_f(d.get('low'), 3)}, {_f(d.get('high'), 3)}] "
                f"(n = {d['n_setup']} vs {d['n_compared']})"
                if d.get("difference") is not None
                else "no windows"
            ),
        )
        for d in data.get("decisions", [])
    ]
    share = data.get("sampling_core_share")
    return CostView(
        rows=[_row(s) for s in setups],
        charts=charts,
        growth=growth,
        growth_chart=growth_svg(data.get("growth", []), memory),
        decisions=decisions,
        sampling=f"{share * 100:.2f} % of one core" if isinstance(share, float) else "–",
        notes=notes_for(data),
        memory=memory,
    )


def cost_lines(run_dir: Path) -> list[str]:
    """What the CLI says after a run with a cost step: one line per setup and rate."""
    view = cost_view(run_dir)
    if view is None:
        return []
    lines = [
        f"cost (proxy CPU-s per 1,000 requests, proxy {view.memory} MB, p99 added vs baseline):"
    ]
    lines += [
        f"  {r.setup} @ {r.rate} rps: {r.proxy_cpu}, {r.proxy_memory} MB, "
        f"p99 {r.added_p99} ms" + ("" if r.offered == "yes" else " (rate NOT OFFERED)")
        for r in view.rows
    ]
    lines += [f"  {name}: {outcome} ({text})" for name, text, outcome, _ in view.decisions]
    return lines


__all__ = [
    "DEVIATIONS",
    "KUBE_NOTES",
    "CostView",
    "bars_svg",
    "cost_lines",
    "cost_view",
    "growth_svg",
    "memory_measure",
    "notes_for",
]
