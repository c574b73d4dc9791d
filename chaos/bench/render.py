"""``BENCHMARKS.md`` from one bench run: numbers, ratios, the machine and the command."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from chaos.bench.realrun import FAULTS
from chaos.bench.resilience import render_resilience
from chaos.bench.startup import TARGET_STARTUP_S

if TYPE_CHECKING:
    from chaos.bench.results import BenchResults

#: The issue's goal for the finish step at 10 M samples.
FINISH_GOAL_S, FINISH_GOAL_MIB = 10.0, 1024.0
#: Measured before issue 11 (same harness, same machine, heavily loaded then), and before
#: write ids became 64-bit keys (``python -m chaos.bench.finish_scale measure`` on 10 M).
FINISH_BEFORE_10M = (
    "CPU 31.9 s, peak 2,692 MiB (load average about 20); with write ids still held as "
    "Python strings: CPU 13.0 s, peak 1,150 MiB (load average 3.6)"
)


def _n(x: float | None, digits: int = 2, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:,.{digits}f}{unit}"


def _failed(results: BenchResults, name: str) -> list[str]:
    error = results.errors.get(name)
    return [f"_Not measured: this figure failed ({error})._", ""] if error else []


def _machine(results: BenchResults) -> list[str]:
    m = results.machine
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items())
    load = " / ".join(f"{x:.1f}" for x in m.load_before)
    after = " / ".join(f"{x:.1f}" for x in m.load_after)
    took = ", ".join(f"{k} {v:g} s" for k, v in results.took.items())
    return [
        "## Machine and command",
        "",
        f"- command: `{results.command}` (started {results.started_utc}, "
        f"took {results.seconds:g} s: {took})",
        f"- {m.cores} cores, {m.cpu}",
        f"- load average (1/5/15 min) at the start: {load}; at the end: {after}. The "
        "machine is shared with other work (other engineers' builds and tests): a load "
        f"above {m.cores} means the bench competed for the cores, and wall times are "
        "inflated; CPU times are steadier.",
        f"- versions: {versions}",
        "",
    ]


def _startup(results: BenchResults) -> list[str]:
    lines = [
        "## Topology start-up per setup",
        "",
        f"Six pods from start to every process ready (target {TARGET_STARTUP_S:g} s), and "
        "a closed-loop client sending GET / through the whole chain on the last start.",
        "",
        *_failed(results, "startup"),
        "| setup | starts | median s | ratio to target | teardown s | req/s | p50 ms | p99 ms "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.startup:
        t = r.throughput
        lines.append(
            f"| {r.setup} | {len(r.startup_s)} | {r.startup_median_s:.2f} | "
            f"{r.ratio_to_target:.2f} | {statistics.median(r.teardown_s):.2f} | "
            + (
                f"{t.rps:,.0f} | {t.p50_ms:.1f} | {t.p99_ms:.1f} | {t.errors} |"
                if t
                else "– | – | – | – |"
            )
        )
    return [*lines, ""]


def _loadgen(results: BenchResults) -> list[str]:
    lines = [
        "## Load generators against one Envoy",
        "",
        "A real Envoy answering `GET /` with a `direct_response`, pinned to the first "
        "core; the generator pinned to the second. CPU per request is the generator's own "
        "process over steady windows. The Locust rows (`chaos.bench.driver."
        "measure_driver_cost`) run at once, each against its own listener, and take turns: "
        "one runs while the others are paused (SIGSTOP), round after round, so a machine "
        "that drifts over the minutes weighs on every row alike; their CPU is the "
        "scheduler's run time in nanoseconds. The plain Locust rows are the same loads "
        "without recording; the driver's `recording off` rows show what recording costs.",
        "",
        *_failed(results, "target"),
        *_failed(results, "locust"),
        "| generator | requests/s | CPU µs per request | against plain Locust (CPU) "
        "| against wrk (CPU) | samples lost | note |",
        "|---|---|---|---|---|---|---|",
    ]
    by_name = {r.generator: r for r in results.loadgen}
    wrk = next((r for r in results.loadgen if r.generator.startswith("wrk")), None)
    wrk_cpu = wrk.cpu_us_per_request if wrk else None
    for r in results.loadgen:
        base = by_name.get(r.baseline or "")
        vs_plain = (
            r.cpu_us_per_request / base.cpu_us_per_request
            if base and r.cpu_us_per_request and base.cpu_us_per_request
            else None
        )
        vs_wrk = r.cpu_us_per_request / wrk_cpu if r.cpu_us_per_request and wrk_cpu else None
        against = f"{_n(vs_plain, 3, 'x')} ({base.generator})" if base and vs_plain else "–"
        lost = "–" if r.samples_lost is None else f"{r.samples_lost:,}"
        lines.append(
            f"| {r.generator} | {_n(r.requests_per_s, 0)} | {_n(r.cpu_us_per_request, 1)} | "
            f"{against} | {_n(vs_wrk, 1, 'x')} | {lost} | {r.note} |"
        )
    if results.short:
        lines += ["", "_`--short`: the plain Locust and driver rows are left out._"]
    return [*lines, "", *_lateness(results), *_workers(results)]


def _lateness(results: BenchResults) -> list[str]:
    lines = [
        "## Open-loop schedule accuracy",
        "",
        "The open-loop driver against the same Envoy target, one Locust process, a cap "
        "of 50 requests in flight: lateness is each request's recorded `send_lag_ms` "
        "(actual send minus its scheduled start) over a steady window.",
        "",
        *_failed(results, "target"),
        "| rate | window s | sent | achieved requests/s | dropped | lateness p50 ms "
        "| lateness p99 ms | worst ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    x = results.lateness
    if x is not None:
        lines.append(
            f"| {x.rate:,.0f} requests/s | {x.window_s:.1f} | {x.sent:,} | "
            f"{x.achieved_rps:,.0f} | {x.dropped:,} | {x.p50_ms:.2f} | {x.p99_ms:.2f} | "
            f"{x.max_ms:.1f} |"
        )
    return [*lines, ""]


def _workers(results: BenchResults) -> list[str]:
    cores = results.machine.cores
    lines = [
        "## Requests/s per worker-core as workers are added",
        "",
        f"The driver closed loop as fast as it goes (20 users) against the same target. "
        f"This machine has {cores} cores: Envoy has the first, every Locust process "
        f"shares the other {max(1, cores - 1)}, so workers beyond that compete for it; "
        "flat requests/s per busy worker-core is what says that distributed Locust adds "
        "no cost per request (more machines add the cores).",
        "",
        *_failed(results, "target"),
        "| workers | Locust processes | requests/s | worker CPU (cores) | master CPU (cores) "
        "| requests/s per worker-core | against 0 workers |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next((w.rps_per_worker_core for w in results.workers), None)
    for w in results.workers:
        per = w.rps_per_worker_core
        ratio = per / first if per and first else None
        lines.append(
            f"| {w.workers} | {1 if w.workers == 0 else w.workers + 1} | "
            f"{w.requests_per_s:,.0f} | {w.worker_cores:.2f} | {w.master_cores:.2f} | "
            f"{_n(per, 0)} | {_n(ratio, 2, 'x')} |"
        )
    return [*lines, ""]


def _fidelity(results: BenchResults) -> list[str]:
    lines = [
        "## Time-to-recover fidelity against an independent prober",
        "",
        "A sidecar topology (no retries), the driver at 200 requests/s and an independent "
        "prober (`chaos/bench/prober.py`: its own threads, client and clock) at 100/s "
        "through the ingress; faults whose truth is known by construction. Differences "
        "are the analysis minus the prober (the fidelity tests hold them within 100 ms).",
        "",
        *_failed(results, "fidelity"),
    ]
    if results.short:
        return [*lines, "_`--short`: not measured (tests/integration/test_fidelity.py)._", ""]
    lines += [
        "| fault | truth | analysis impact s | prober outage s | impact − truth ms "
        "| analysis TTR s | prober TTR s | TTR diff ms | TTI diff ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.fidelity:
        impact_err = None if r.impact_error_s is None else 1000 * r.impact_error_s
        ttr_err = None if r.ttr_error_s is None else 1000 * r.ttr_error_s
        tti_err = None if r.tti_error_s is None else 1000 * r.tti_error_s
        lines.append(
            f"| {r.fault} | {r.truth} | {_n(r.impact_s, 3)} | {r.prober_outage_s:.3f} | "
            f"{_n(impact_err, 0)} | {_n(r.ttr_s, 3)} | {r.prober_ttr_s:.3f} | "
            f"{_n(ttr_err, 0)} | {_n(tti_err, 0)} |"
        )
    return [*lines, ""]


def _realrun(results: BenchResults) -> list[str]:
    lines = [
        "## Injection lag per fault and setup",
        "",
        "From one real `sidecar-chaos run` (one repetition): the engine's inject timestamp "
        "(journal) to the first failed or slowed request of the first bucket that left the "
        "steady state (the analysis's time to impact); TTR alongside.",
        "",
        *_failed(results, "realrun"),
    ]
    run = results.realrun
    if run is None:
        return [*lines, ""]
    setups = list(run.setups)
    lines += [
        "| fault | "
        + " | ".join(f"{s} lag s" for s in setups)
        + " | median lag s | "
        + " | ".join(f"{s} TTR s" for s in setups)
        + " |",
        "|---" * (2 * len(setups) + 2) + "|",
    ]
    for fault in (f for f in FAULTS if any(r.fault == f for r in run.lags)):
        by = {r.setup: r for r in run.lags if r.fault == fault}
        lag = [_n(by[s].lag_s, 3) if s in by else "–" for s in setups]
        ttr = [_n(by[s].ttr_s, 2) if s in by else "–" for s in setups]
        lines.append(
            f"| {fault} | "
            + " | ".join(lag)
            + f" | {_n(run.median_lag(fault), 3)} | "
            + " | ".join(ttr)
            + " |"
        )
    lines += [
        "",
        "## Run wall time against its planned windows",
        "",
        "| windows | planned s (sum of warm-up + hold + recovery) | wall s | ratio "
        "| windows wall s (no finish) | ratio | start-up median s | teardown median s | exit |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {run.windows} | {run.planned_s:.0f} | {run.wall_s:.1f} | {run.overhead_ratio:.2f} "
        f"| {_n(run.windows_wall_s, 1)} | {_n(run.windows_ratio, 2)} "
        f"| {_n(run.startup_median_s, 2)} | {_n(run.teardown_median_s, 2)} | {run.exit_code} |",
        "",
        "Each window has a fresh topology; the next window's topology and Locust start during "
        "this window's recovery (in another slot) and this window's stop during the next one's "
        "warm-up, so start-up and teardown are paid between windows only where they outlast "
        "the recovery; the first start, the last stop and the finish step remain. The windows' "
        "wall time, start-up (while another window runs) and teardown are the run's own "
        "`results.json` `overhead` section (journal timestamps). Re-measure this table alone: "
        "`python -m chaos.bench --only overhead`.",
        "",
    ]
    return lines


def _finish(results: BenchResults) -> list[str]:
    lines = [
        "## Finish step at scale",
        "",
        "Analysis, results, report, JUnit and history of a run directory holding N "
        "synthetic samples (real sample chunks, 5,000 requests/s open loop, 6 windows, a "
        "quarter of them writes), in a fresh process (`chaos/bench/finish_scale.py`). Goal at "
        f"10 M: {FINISH_GOAL_S:g} s and {FINISH_GOAL_MIB:,.0f} MiB. Before issue 11 "
        f"at 10 M on this harness: {FINISH_BEFORE_10M}.",
        "",
        *_failed(results, "finish"),
        "| samples | wall s | CPU s | peak MiB | MiB before the step | CPU s per M samples "
        "| growth (CPU) from the previous size |",
        "|---|---|---|---|---|---|---|",
    ]
    previous: tuple[int, float] | None = None
    for n, m in results.finish:
        growth = "–"
        if previous is not None:
            growth = f"{m.cpu_seconds / previous[1]:.1f}x for {n / previous[0]:.0f}x samples"
        lines.append(
            f"| {n:,} | {m.seconds:.2f} | {m.cpu_seconds:.2f} | {m.peak_rss_mb:,.0f} | "
            f"{m.before_rss_mb:,.0f} | {m.cpu_seconds / (n / 1e6):.2f} | {growth} |"
        )
        previous = (n, m.cpu_seconds)
    return [*lines, "", *_growth(results), ""]


def _growth(results: BenchResults) -> list[str]:
    """A least-squares line through CPU seconds against samples: fixed cost + cost per M."""
    if len(results.finish) < 2:
        return []
    n = [s / 1e6 for s, _ in results.finish]
    cpu = [m.cpu_seconds for _, m in results.finish]
    mean_n, mean_cpu = statistics.fmean(n), statistics.fmean(cpu)
    slope = sum((a - mean_n) * (b - mean_cpu) for a, b in zip(n, cpu, strict=True)) / sum(
        (a - mean_n) ** 2 for a in n
    )
    fixed = mean_cpu - slope * mean_n
    worst = max(abs(fixed + slope * a - b) for a, b in zip(n, cpu, strict=True))
    return [
        f"Growth: CPU ≈ {fixed:.2f} s + {slope:.2f} s per million samples (least squares; "
        f"no size is off the line by more than {worst:.2f} s): linear, plus a fixed cost "
        "(imports, the report's charts) that dominates below 1 M."
    ]


def render_markdown(results: BenchResults) -> str:
    """The whole of ``BENCHMARKS.md``."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m chaos.bench`); every number below comes from "
        "that one run, on loopback. Re-run it to refresh this file.",
        "",
        *_machine(results),
        *_startup(results),
        *_loadgen(results),
        *_fidelity(results),
        *_realrun(results),
        *(
            render_resilience(list(results.realrun.resilience), results.realrun.setups)
            if results.realrun is not None
            else []
        ),
        *_finish(results),
        *results.cost,
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
