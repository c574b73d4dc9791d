"""``BENCHMARKS.md`` from one bench run: numbers, ratios, the machine and the command."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from chaos.bench.realrun import FAULTS
from chaos.bench.startup import TARGET_STARTUP_S

if TYPE_CHECKING:
    from chaos.bench.main import BenchResults

#: The issue's goal for the finish step at 10 M samples.
FINISH_GOAL_S, FINISH_GOAL_MIB = 10.0, 1024.0
#: Measured on main before issue 11 (same harness, same machine, heavily loaded then).
FINISH_BEFORE_10M = "CPU 31.9 s, peak 2,692 MiB (load average about 20)"


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
    return [
        "## Machine and command",
        "",
        f"- command: `{results.command}` (started {results.started_utc}, "
        f"took {results.seconds:g} s)",
        f"- {m.cores} cores, {m.cpu}",
        f"- load average (1/5/15 min) before: {load}; after: {after}. Above {m.cores} the "
        "machine was shared with other work and wall times are inflated; CPU times are "
        "steadier.",
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
        "## Load generators through one ingress (sidecar)",
        "",
        "Same URL, token and duration; CPU per request is the generator's own processes.",
        "",
        *_failed(results, "loadgen"),
        "| generator | requests/s | CPU µs per request | ratio to wrk (CPU) | note |",
        "|---|---|---|---|---|",
    ]
    wrk = next((r for r in results.loadgen if r.generator.startswith("wrk")), None)
    base = wrk.cpu_us_per_request if wrk else None
    for r in results.loadgen:
        ratio = r.cpu_us_per_request / base if r.cpu_us_per_request and base else None
        lines.append(
            f"| {r.generator} | {_n(r.requests_per_s, 0)} | {_n(r.cpu_us_per_request, 1)} | "
            f"{_n(ratio, 1, 'x')} | {r.note} |"
        )
    lines += [
        "",
        "## Open-loop schedule accuracy",
        "",
        "| rate | lateness p50 | lateness p99 |",
        "|---|---|---|",
        "| 1,000 requests/s | needs open-loop driver | needs open-loop driver |",
        "",
    ]
    return lines


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
    for fault in FAULTS:
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
        "| windows | planned s (warm-up + hold + recovery) | wall s | ratio | exit |",
        "|---|---|---|---|---|",
        f"| {run.windows} | {run.planned_s:.0f} | {run.wall_s:.1f} | {run.overhead_ratio:.2f} "
        f"| {run.exit_code} |",
        "",
        "The difference is topology start and stop per window, traffic start and the finish step.",
        "",
    ]
    return lines


def _finish(results: BenchResults) -> list[str]:
    lines = [
        "## Time-to-recover fidelity against an independent prober",
        "",
        "_Not in the bench yet: the prober lives in tests/integration/prober.py "
        "(test_fidelity.py checks the same thing with tolerances)._",
        "",
        "## Finish step at scale",
        "",
        "Analysis, results, report, JUnit and history of a run directory holding N "
        "synthetic samples (real sample chunks, 5,000 requests/s, 6 windows, a quarter "
        "of them writes), in a fresh process (`chaos/bench/finish_scale.py`). Goal at "
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
    return [*lines, ""]


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
        *_realrun(results),
        *_finish(results),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
