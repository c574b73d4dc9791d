"""The cost measurement's own figures: its overhead, its repeatability, its ordering.

``python -m chaos.bench.cost`` runs one real cost step (baseline, sidecar, mesh and
ambient at one open-loop rate, ``--repetitions`` topologies each) and prints:

* sampling overhead: the runner's CPU spent reading ``/proc``, as a share of one core
  over the measured time (the issue's bound: under 1 %);
* repeatability: each setup's proxy CPU-seconds per 1,000 requests per window as the
  report gives it (at the setup's median machine speed, ``cost.cpu: speed-adjusted``),
  and the largest deviation from their mean (bound: within +-10 % over 5 windows); the
  raw figure's beside it, and how closely the proxies' and the apps' CPU per request
  follow each other second by second (the reason for the adjustment);
* the local ordering of proxy kinds (CPU per 1,000 requests per process of the kind,
  PSS per process) and of latency added, next to Istio's published ordering. Istio's
  numbers are Istio's (1.24 performance docs), never ours: our node proxy is an Envoy,
  not ztunnel, and our ambient setup always crosses L7 waypoints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np

from chaos.analysis.cost import WindowCost, analyze_cost
from chaos.engine.finish import finish
from chaos.engine.run import Engine, RunOptions
from chaos.experiment import load_experiment
from chaos.platforms.local.platform import LocalPlatform
from chaos.platforms.local.slots import lease_slot
from chaos.rundir import SAMPLES_DIR
from chaos.rundir.columns import load_columns
from chaos.rundir.cost import CostWindowRecord, ProxyKind, read_cost
from chaos.rundir.samples import DROPPED

#: Istio 1.24, "Performance and scalability" docs, per proxy at 1,000 requests/s.
ISTIO_PER_1K_RPS: dict[str, tuple[float, float]] = {
    "waypoint": (0.25, 60.0),
    "sidecar": (0.20, 60.0),
    "ztunnel (node proxy)": (0.06, 12.0),
}
#: Istio 1.24: latency added at 1,000 rps, 16 connections, 1 kB, mTLS (p90, p99 ms).
ISTIO_ADDED_MS: dict[str, tuple[float, float]] = {
    "ambient L4 (ztunnel only)": (0.17, 0.20),
    "two sidecars": (2.76, 2.88),
}
SAMPLING_BOUND = 0.01
REPEATABILITY_BOUND = 0.10

_EXPERIMENT = """\
name: bench-cost
setups: [sidecar, mesh, ambient]
traffic:
  {{users: 20, spawn_rate: 20, rate: {rate}, max_in_flight: 60, endpoints: [{{name: r, path: /}}]}}
timeline: {{warmup: 0s, hold: 1s, recovery: 1s}}
faults:
  - type: latency
    delay: 10ms
    target: {{service: checkout, setups: [sidecar]}}
cost:
  setups: [baseline, sidecar, mesh, ambient]
  rates: [{rate}]
  hold: {hold}
  warmup: 2s
  repetitions: {repetitions}
"""


@dataclass(frozen=True)
class CostBench:
    """What one cost bench measured."""

    rate: float
    sampling_core_share: float
    #: setup -> proxy CPU-s per 1,000 requests of each window.
    per_window_cpu: dict[str, list[float]]
    #: setup -> largest |x - mean| / mean over its windows (the report's figure).
    spread: dict[str, float]
    #: The same from the raw CPU (no speed adjustment).
    raw_spread: dict[str, float]
    #: The raw CPU from ``utime + stime`` in whole 10 ms ticks (the coarse account).
    tick_spread: dict[str, float]
    #: setup -> (lowest, highest) 1-minute load average at the end of its windows.
    load: dict[str, tuple[float, float]]
    #: kind -> (CPU-s per 1,000 requests per process, PSS MB per process), medians.
    kinds: dict[str, tuple[float, float]]
    #: setup -> (p90 added, p99 added) in ms, difference of means over windows.
    added_ms: dict[str, tuple[float | None, float | None]]
    offered: dict[str, bool]
    #: setup -> Pearson r of the proxies' and the apps' CPU per request over the 1 s
    #: slices of its windows (``ticks``): near 1, the machine's speed moves both.
    slice_r: dict[str, float] = field(default_factory=dict)


def measure(rate: float, hold: str, repetitions: int, work: Path) -> CostBench:
    """Run the cost step once and take its figures."""
    source = work / "bench-cost.yaml"
    source.write_text(_EXPERIMENT.format(rate=rate, hold=hold, repetitions=repetitions))
    experiment = load_experiment(source)
    run_dir = work / "run"
    with lease_slot() as slot:
        slots = {s: slot for s in _ALL}
        platform = LocalPlatform(slots=slots, list_runs=False)
        engine = Engine(experiment, platform, RunOptions(run_dir=run_dir))
        records = engine.run()
        finish(
            experiment,
            platform,
            run_dir,
            records,
            started_utc="",
            aborted_reason=None,
            history=None,
        )
    return figures(run_dir, rate)


def figures(run_dir: Path, rate: float) -> CostBench:
    """The bench's figures from a run directory with a cost step (``--from-run``)."""
    cost = analyze_cost(run_dir)
    assert cost is not None
    per_window: dict[str, list[float]] = {}
    raw: dict[str, list[float]] = {}
    for w in cost.windows:
        if not w.broken and w.cpu_per_1k:
            per_window.setdefault(w.setup, []).append(_proxies(w.cpu_per_1k))
            raw.setdefault(w.setup, []).append(_proxies(w.raw_cpu_per_1k))
    ticks: dict[str, list[float]] = {}
    load: dict[str, list[float]] = {}
    slices: dict[str, list[tuple[float, float]]] = {}
    # The analysis's windows are the records' in file order: their sent counts, read once.
    measured = list(zip(read_cost(run_dir), cost.windows, strict=True))
    for record, window in measured:
        sent = window.sent
        if record.broken or not sent:
            continue
        proxies = [p for p in record.processes if p.kind is not ProxyKind.APP]
        ticks.setdefault(record.setup, []).append(sum(p.cpu_tick_s for p in proxies) / sent * 1e3)
        load.setdefault(record.setup, []).append(record.load_avg_1m)
        slices.setdefault(record.setup, []).extend(_slices(run_dir, record))
    kinds = _kinds(measured)
    added = {
        s.setup: (
            s.added_ms["p90"].mean if "p90" in s.added_ms else None,
            s.added_ms["p99"].mean if "p99" in s.added_ms else None,
        )
        for s in cost.setups
        if s.setup != "baseline"
    }
    return CostBench(
        rate=rate,
        sampling_core_share=cost.sampling_core_share,
        per_window_cpu=per_window,
        spread=_spreads(per_window),
        raw_spread=_spreads(raw),
        tick_spread=_spreads(ticks),
        load={s: (min(vs), max(vs)) for s, vs in load.items()},
        slice_r={s: r for s, r in ((s, _pearson(v)) for s, v in slices.items()) if r is not None},
        kinds=kinds,
        added_ms=added,
        offered={s.setup: s.offered for s in cost.setups},
    )


def _proxies(per_1k: dict[str, float]) -> float:
    return sum(v for k, v in per_1k.items() if k != ProxyKind.APP.value)


def _slices(run_dir: Path, record: CostWindowRecord) -> list[tuple[float, float]]:
    """(proxies', apps' CPU-s per request) of each slice between two readings of a hold."""
    columns = load_columns(run_dir / SAMPLES_DIR / record.slug)
    code = columns.code_of(DROPPED)
    sent = columns.t[columns.coded("error_kind") != code] if code is not None else columns.t
    out = []
    before = (record.start_t, 0.0, 0.0)
    for tick in record.ticks:
        n = int(((sent >= before[0]) & (sent < tick[0])).sum())
        if n:
            out.append(((tick[1] - before[1]) / n, (tick[2] - before[2]) / n))
        before = tick
    return out


def _pearson(pairs: Sequence[tuple[float, float]]) -> float | None:
    if len(pairs) < 3:
        return None
    x, y = np.array(pairs).T
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _spreads(values: dict[str, list[float]]) -> dict[str, float]:
    return {s: _spread(vs) for s, vs in values.items() if vs and sum(vs) > 0}


def _spread(values: Sequence[float]) -> float:
    """The largest deviation from the mean, as a share of the mean."""
    mean = sum(values) / len(values)
    return max(abs(v - mean) for v in values) / mean


def _kinds(
    measured: Sequence[tuple[CostWindowRecord, WindowCost]],
) -> dict[str, tuple[float, float]]:
    """Per process of each proxy kind: CPU-s per 1,000 requests and PSS MB (medians)."""
    cpu: dict[str, list[float]] = {}
    pss: dict[str, list[float]] = {}
    for record, figures in measured:
        if record.broken or not figures.sent:
            continue
        for kind in {p.kind for p in record.processes} - {ProxyKind.APP}:
            procs = [p for p in record.processes if p.kind is kind]
            key = f"{kind.value} ({record.setup})"
            cpu.setdefault(key, []).append(
                sum(p.cpu_s for p in procs) / len(procs) / figures.sent * 1000.0
            )
            pss.setdefault(key, []).append(sum(p.pss_bytes for p in procs) / len(procs) / 1e6)
    return {k: (median(cpu[k]), median(pss[k])) for k in cpu}


_ALL = ("baseline", "sidecar", "mesh", "ambient")


def render(bench: CostBench) -> list[str]:
    """The BENCHMARKS.md rows."""
    share = bench.sampling_core_share
    lines = [
        f"### Cost measurement (local, {bench.rate:g} rps open loop)",
        "",
        "| figure | value | bound | |",
        "|---|---|---|---|",
        f"| sampling overhead | {share * 100:.2f} % of one core | < 1 % | "
        f"{'ok' if share < SAMPLING_BOUND else 'OVER'} |",
    ]
    for setup, vs in sorted(bench.per_window_cpu.items()):
        s = bench.spread.get(setup)
        ticks = bench.tick_spread.get(setup)
        low, high = bench.load.get(setup, (float("nan"), float("nan")))
        shown = ", ".join(f"{v:.3f}" for v in vs)
        verdict = "ok" if s is not None and s <= REPEATABILITY_BOUND else "OVER"
        lines.append(
            f"| repeatability {setup}: proxy CPU-s per 1,000 requests per window, at the "
            f"setup's median machine speed | {shown} (max deviation {_pct(s)}; raw "
            f"{_pct(bench.raw_spread.get(setup))}, in 10 ms ticks {_pct(ticks)}; proxies' "
            f"and apps' CPU per request per 1 s slice r = {_r(bench.slice_r.get(setup))}; "
            f"load average {low:.1f}-{high:.1f}) | +-10 % | {verdict} |"
        )
    lines += [
        "",
        "Local ordering of proxy kinds (ours, measured here; per process of the kind):",
        "",
        "| kind (setup) | CPU-s per 1,000 requests | PSS MB |",
        "|---|---|---|",
    ]
    for kind, (c, m) in sorted(bench.kinds.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {kind} | {c:.3f} | {m:.1f} |")
    lines += ["", *ordering(bench)]
    lines += [
        "",
        "Istio's published figures (Istio 1.24 docs, per proxy at 1,000 rps; Istio's, not "
        "ours): "
        + "; ".join(f"{k} ~{c:.2f} vCPU, {m:.0f} MB" for k, (c, m) in ISTIO_PER_1K_RPS.items())
        + ". Latency added: "
        + "; ".join(
            f"{k} +{a:.2f} ms p90 / +{b:.2f} ms p99" for k, (a, b) in ISTIO_ADDED_MS.items()
        )
        + ".",
        "",
        "Local latency added over baseline (ours; ambient here always crosses L7 waypoints, "
        "and the node proxy is an Envoy, not ztunnel): "
        + "; ".join(
            f"{s} {_ms(a)} p90 / {_ms(b)} p99" for s, (a, b) in sorted(bench.added_ms.items())
        )
        + ".",
        "",
        "Rates offered: "
        + ", ".join(f"{s} {'yes' if o else 'NOT OFFERED'}" for s, o in bench.offered.items()),
    ]
    return lines


#: Istio's kinds in its published order (most CPU per 1,000 requests first), ours beside.
_ISTIO_ORDER = (
    ("waypoint", "waypoint (ambient)", "waypoint"),
    ("sidecar", "sidecar (sidecar)", "sidecar"),
    ("ztunnel", "node-proxy (ambient)", "node proxy (an Envoy)"),
)


def ordering(bench: CostBench) -> list[str]:
    """Whether the local ordering of proxy kinds and of latency added is Istio's."""
    ours = [(i, label, bench.kinds[key][0]) for i, key, label in _ISTIO_ORDER if key in bench.kinds]
    ours.sort(key=lambda row: -row[2])
    istio = [i for i, _, _ in _ISTIO_ORDER]
    same = [i for i, _, _ in ours] == istio
    lines = [
        "Ordering by CPU per 1,000 requests per proxy: Istio "
        + " > ".join(istio)
        + "; local "
        + " > ".join(f"{label} {c:.3f}" for _, label, c in ours)
        + (" (same order)" if same else " (not Istio's order)")
        + "."
    ]
    side, amb = (
        bench.added_ms.get("sidecar", (None, None)),
        bench.added_ms.get("ambient", (None, None)),
    )
    if side[1] is not None and amb[1] is not None:
        same = amb[1] < side[1]
        lines.append(
            f"Latency added (p99): Istio ambient < sidecars; local ambient {amb[1]:+.2f} ms, "
            f"sidecar {side[1]:+.2f} ms ({'same order' if same else 'not Istio order'})."
        )
    return lines


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def _r(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench.cost", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--hold", default="5s")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the run directory here (cost.jsonl, samples)"
    )
    parser.add_argument(
        "--from-run", type=Path, default=None, help="take the figures of a kept run again"
    )
    parser.add_argument(
        "--idle", action="store_true", help="each setup's proxies' CPU with no load, then stop"
    )
    parser.add_argument(
        "--reading-cost",
        action="store_true",
        help="the CPU one usage reading of each kind costs the runner, then stop",
    )
    args = parser.parse_args(argv)
    if args.idle or args.reading_cost:
        from chaos.bench.costprobe import idle_cpu, reading_cost

        print("\n".join(idle_cpu() if args.idle else reading_cost()))
        return 0
    if args.from_run is not None:
        print("\n".join(render(figures(args.from_run, args.rate))))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        bench = measure(args.rate, args.hold, args.repetitions, Path(tmp))
        if args.keep is not None:
            shutil.copytree(Path(tmp) / "run", args.keep, dirs_exist_ok=True)
    print("\n".join(render(bench)))
    if args.json is not None:
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps(bench.__dict__, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
