"""The self-contained HTML comparison report: ``render_report(run_dirs, out)``.

Jinja2 (autoescape on, strict undefined) renders view models built here from each
run directory; charts are PNG data URIs, styles inline, no script at all, and a
Content-Security-Policy that lets the page load nothing but its own data: images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np

from chaos.analysis import BrokenWindow, FaultResult, Summary
from chaos.analysis.decisions import Decision, DecisionSet
from chaos.analysis.statements import claim_text
from chaos.outpaths import write_atomically
from chaos.report.charts import (
    TimelineInput,
    latency_cdf_chart,
    latency_quantiles,
    setup_color,
    timeline_chart,
    ttr_spread_chart,
)
from chaos.report.cost import CostView, cost_view
from chaos.report.dataplane import DataPlaneView, dataplane_view, placement_note
from chaos.report.method import method_paragraphs
from chaos.report.rundata import RunData, load_run
from chaos.report.security import SECURITY_METHOD, SecurityView, security_view
from chaos.report.verdict import FaultVerdict, fault_verdict, seconds
from chaos.rundir.columns import Latencies, load_latencies
from chaos.rundir.samples import samples_dir

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    """The report's Jinja2 environment: autoescaping everything, failing on unknown names."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _median(values: Sequence[float | int | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return float(np.median(xs)) if xs else None


def _num(x: float | None, digits: int = 0, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.{digits}f}{unit}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def interval(low: float | None, high: float | None) -> str:
    """``[1.20–2.31]`` for a TTR interval; an open end is written ``∞``."""

    def end(x: float | None) -> str:
        return "∞" if x is None else f"{x:.2f}"

    return f"[{end(low)}–{end(high)}]"


@dataclass(frozen=True)
class SetupRow:
    """One setup's line in a fault's tables (medians over the measured repetitions)."""

    setup: str
    color: str
    ttr: str
    ttr_interval: str
    recovered: str
    impact: str
    failed: str
    error_rate: str
    p95: str
    p99: str
    blast: str
    blast_pods: str
    writes: str
    retries: str
    tls: str
    ejections: str
    connect_failures: str
    restarts: str
    errors_by_kind: str


@dataclass(frozen=True)
class FaultView:
    """A fault's section: verdict, tables and charts."""

    name: str
    anchor: str
    summary: str
    verdict: FaultVerdict
    rows: list[SetupRow]
    statements: list[str]
    timeline: str
    spread: str
    cdf: str
    #: Said next to the verdict when an HTTP fault reached different pods per setup.
    placement: str = ""


@dataclass(frozen=True)
class HypothesisView:
    """One decided claim in the headline."""

    name: str
    fault: str
    outcome: str
    claim: str
    effect: str
    repetitions: str
    statement: str


@dataclass(frozen=True)
class RunView:
    """One run directory's part of the report."""

    label: str
    anchor: str
    run_dir: str
    description: str
    outcome: str
    faults: list[FaultView]
    versions: list[tuple[str, str]]
    parameters: list[tuple[str, str]]
    experiment_text: str
    hypotheses: list[HypothesisView]
    stop_reason: str
    method: list[str]
    effective_text: str
    #: Windows the runner could not measure, with their reasons (not in any table or chart).
    broken: list[BrokenWindow] = field(default_factory=list)
    #: What each setup's data plane did (retries, timeouts, certificates...), from meta.json.
    dataplane: DataPlaneView | None = None
    #: What each setup let through (None: no window has security counts).
    security: SecurityView | None = None
    #: The cost step's section (``chaos.report.cost``), None without one.
    cost: CostView | None = None


@dataclass(frozen=True)
class CrossRunRow:
    """Median TTR of one setup and fault in each run, and the change from the first run."""

    fault: str
    setup: str
    color: str
    cells: list[str]
    change: str


def _row(
    run: RunData, summary: Summary | None, mine: list[FaultResult], setups: list[str]
) -> SetupRow:
    measured = [r for r in mine if not r.window.aborted and r.had_impact is not None]
    setup = mine[0].setup
    pods = sorted(
        {p for r in mine for p in run.blast_radius.get((r.setup, r.fault, r.repetition), ())}
    )
    lost = [r.writes_lost for r in measured if r.writes_lost is not None]
    dup = [r.writes_duplicated for r in measured if r.writes_duplicated is not None]
    kinds: dict[str, int] = {}
    for r in mine:  # every window, aborted ones too: the same failures results.json counts
        for k, v in r.errors_by_kind.items():
            kinds[k] = kinds.get(k, 0) + v
    dropped = sum(r.dropped_requests for r in measured)
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()) if v) or "none"
    if dropped:
        errors += f"; not sent (the driver's in-flight cap was full): {dropped:,}"
    est = summary.time_to_recover_s if summary else None
    counters = [r.counters for r in measured]
    return SetupRow(
        setup=setup,
        color=setup_color(setup, setups),
        ttr=seconds(est.median) if est and est.n else "–",
        ttr_interval=interval(est.low, est.high) if est and est.n else "",
        recovered=f"{sum(r.recovered for r in measured)}/{len(measured)}",
        impact=_num(_median([r.time_to_impact_s for r in measured]), 2, " s"),
        failed=_failed(summary, mine, measured),
        error_rate=_pct(summary.error_rate.median if summary else None),
        p95=_num(_median([r.p95_ms_during_fault for r in measured]), 1, " ms"),
        p99=_num(_median([r.p99_ms_during_fault for r in measured]), 1, " ms"),
        blast=str(len(pods)) if pods else "–",
        blast_pods=", ".join(pods),
        writes=f"{sum(lost)} / {sum(dup)}" if lost or dup else "–",
        retries=_num(_median([c.retries for c in counters])),
        tls=_num(_median([c.tls_failures for c in counters])),
        ejections=_num(_median([c.ejections for c in counters])),
        connect_failures=_num(_median([c.connect_failures for c in counters])),
        restarts=_num(_median([c.restarts for c in counters])),
        errors_by_kind=errors,
    )


def _failed(summary: Summary | None, mine: list[FaultResult], measured: list[FaultResult]) -> str:
    """Median failed requests over measured windows; the aborted windows' sum when none was."""
    if measured and summary is not None:
        return _num(summary.failed_requests.median)
    aborted = [r.failed_requests for r in mine if r.window.aborted]
    return f"{sum(aborted):,} (aborted)" if aborted else "–"


def _cdf_quantiles(
    run: RunData, latencies: Latencies | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """Latency quantiles per (fault, setup) over injection..window end, from the samples."""
    if not run.runs:
        return {}  # every window broke: maybe no sample was ever written
    # without DROPPED rows: no latency
    t, latency = latencies or load_latencies(samples_dir(run.run_dir))
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in run.runs:
        lo, hi = np.searchsorted(t, [r.window.inject_t, r.window.end_t])
        parts.setdefault((r.fault, r.setup), []).append(latency[lo:hi])
    return {k: latency_quantiles(np.concatenate(v)) for k, v in parts.items()}


def _fault_view(
    run: RunData, fault: str, index: int, cdfs: dict[tuple[str, str], np.ndarray]
) -> FaultView:
    runs = [r for r in run.runs if r.fault == fault]
    setups = list(dict.fromkeys(r.setup for r in runs))
    summaries = {s.setup: s for s in run.analysis.summaries if s.fault == fault}
    rows = [_row(run, summaries.get(s), [r for r in runs if r.setup == s], setups) for s in setups]
    buckets = run.analysis.buckets
    if len(buckets):
        buckets = buckets[buckets["fault"].astype(str) == fault]
    duration = _median([r.window.revert_t - r.window.inject_t for r in runs]) or 0.0
    steady = runs[0].steady
    timeline = (
        timeline_chart(
            TimelineInput(
                buckets=buckets,
                setups=setups,
                fault_duration_s=duration,
                events=[e for e in run.events if e.fault == fault],
                max_error_rate=steady.max_error_rate,
                max_p95_ms=steady.max_p95_ms,
            )
        )
        if len(buckets)
        else ""
    )
    quantiles = {s: cdfs[(fault, s)] for s in setups if (fault, s) in cdfs}
    has_cdf = any(len(q) for q in quantiles.values())
    return FaultView(
        name=fault,
        anchor=f"f{index}",
        summary=run.fault_summaries.get(fault, runs[0].window.fault_type),
        verdict=fault_verdict(
            fault,
            run.analysis.summaries,
            run.analysis.comparisons,
            decided=run.analysis.decided,
            abort_cause=run.abort_cause,
        ),
        rows=rows,
        statements=_statements(run, fault),
        timeline=timeline,
        spread=ttr_spread_chart(runs, setups),
        cdf=latency_cdf_chart(quantiles, setups) if has_cdf else "",
        placement=placement_note(
            runs[0].window.fault_type,
            {
                s: [
                    p
                    for r in runs
                    if r.setup == s
                    for p in run.blast_radius.get((r.setup, r.fault, r.repetition), ())
                ]
                for s in setups
            },
            {s: _median([r.affected_share for r in runs if r.setup == s]) for s in setups},
        ),
    )


def _statements(run: RunData, fault: str) -> list[str]:
    decided = run.analysis.decided
    if decided is None:
        return [c.statement for c in run.analysis.comparisons if c.fault == fault]
    return [d.statement for d in decided.decisions if d.claim.fault == fault]


def _effect(d: Decision) -> str:
    unit = {"time_to_recover": " s", "time_to_impact": " s", "p95": " ms", "p99": " ms"}.get(
        d.claim.metric, ""
    )
    scale = 100.0 if d.claim.metric == "error_rate" else 1.0
    unit = " pp" if d.claim.metric == "error_rate" else unit
    if d.difference is None:
        return "–"
    bound = "≥ " if d.censored and d.difference > 0 else "≤ " if d.censored else ""
    text = f"{bound}{d.difference * scale:+.2f}{unit}"
    if d.low is not None and d.high is not None:
        text += f" [{d.low * scale:+.2f}, {d.high * scale:+.2f}]"
    return text


def hypothesis_views(decided: DecisionSet | None) -> list[HypothesisView]:
    """The headline rows: stated hypotheses only (the ranking is in the fault cards)."""
    if decided is None or not decided.stated:
        return []
    views = []
    for d in decided.decisions:
        if d.outcome == "undecided":
            reps = f"{d.repetitions} so far; " + (
                f"about {d.more_repetitions} more needed"
                if d.more_repetitions is not None
                else "more are not expected to decide"
            )
        else:
            reps = f"decided after {d.repetitions}"
        views.append(
            HypothesisView(
                name=d.claim.hypothesis,
                fault=d.claim.fault,
                outcome=d.outcome,
                claim=claim_text(d.claim),
                effect=_effect(d),
                repetitions=reps,
                statement=d.statement,
            )
        )
    return views


def _outcome(run: RunData) -> str:
    meta = run.meta
    if meta is None or meta.exit_code is None:
        return "unknown"
    code = meta.exit_code
    if code == 0:
        return "passed (exit 0)"
    if code == 4:
        return "windows broken (exit 4)"
    if code == 3 or run.abort_reason:
        return f"aborted (exit {code}): {run.abort_reason or 'see the journal'}"
    return f"failed (exit {code})"


def _run_view(run: RunData, index: int, latencies: Latencies | None = None) -> RunView:
    cdfs = _cdf_quantiles(run, latencies)
    meta = run.meta
    versions = (
        [
            ("sidecar-chaos", meta.tool_version),
            ("Envoy", meta.envoy_version),
            ("Locust", meta.locust_version),
            ("Python", meta.python_version),
            ("seed", str(meta.seed)),
            ("started (UTC)", meta.started_utc),
            ("finished (UTC)", meta.finished_utc or "did not finish"),
        ]
        if meta
        else [("meta.json", "missing")]
    )
    params = [
        (k, "–" if v is None else str(v))
        for k, v in sorted((meta.parameters if meta else {}).items())
    ]
    decided = run.analysis.decided
    security = security_view(list(run.runs))
    return RunView(
        label=run.label,
        anchor=f"r{index}",
        run_dir=str(run.run_dir),
        description=run.description,
        outcome=_outcome(run),
        faults=[_fault_view(run, f, i, cdfs) for i, f in enumerate(run.faults())],
        versions=versions,
        parameters=params,
        experiment_text=run.experiment_text,
        hypotheses=hypothesis_views(decided),
        stop_reason=(decided.stop_reason or "") if decided else "",
        method=method_paragraphs(decided) + ([SECURITY_METHOD] if security else []),
        effective_text=run.effective_text,
        broken=list(run.analysis.broken),
        dataplane=dataplane_view(meta),
        security=security,
        cost=cost_view(run.run_dir),
    )


def _unmeasured(run: RunData, fault: str, setup: str) -> str:
    """A cell for a setup and fault with no measured repetition: what the aborted ones showed."""
    ttrs = [
        seconds(r.time_to_recover_s)
        for r in run.runs
        if r.fault == fault and r.setup == setup and r.window.aborted
    ]
    return f"aborted: {', '.join(ttrs)}" if ttrs else "no measured repetition"


def _cross_rows(runs: Sequence[RunData]) -> list[CrossRunRow]:
    keys = list(dict.fromkeys((s.fault, s.setup) for r in runs for s in r.analysis.summaries))
    setups = list(dict.fromkeys(k[1] for k in keys))
    rows = []
    for fault, setup in keys:
        ests = [
            next(
                (
                    s.time_to_recover_s
                    for s in r.analysis.summaries
                    if (s.fault, s.setup) == (fault, setup)
                ),
                None,
            )
            for r in runs
        ]
        cells = [
            "not run"
            if e is None
            else _unmeasured(r, fault, setup)
            if e.n == 0
            else f"{seconds(e.median)} {interval(e.low, e.high)}"
            for e, r in zip(ests, runs, strict=True)
        ]
        first, last = ests[0], ests[-1]
        change = "–"
        if first and last and first.median is not None and last.median is not None:
            delta = last.median - first.median
            change = f"{delta:+.2f} s" + (
                f" ({last.median / first.median:.1f}x)" if first.median > 0 else ""
            )
        elif (
            first
            and last
            and first.n
            and last.n
            and (first.median is None) != (last.median is None)
        ):
            change = "now not recovered" if last.median is None else "now recovers"
        rows.append(CrossRunRow(fault, setup, setup_color(setup, setups), cells, change))
    return rows


def render_report(
    run_dirs: Sequence[Path], out: Path, *, latencies: Mapping[Path, Latencies] | None = None
) -> Path:
    """Write one self-contained HTML report comparing ``run_dirs`` to ``out``; return ``out``."""
    write_atomically(out, report_html(run_dirs, latencies=latencies), "--output")
    return out


def report_html(
    run_dirs: Sequence[Path], *, latencies: Mapping[Path, Latencies] | None = None
) -> str:
    """The self-contained HTML report comparing ``run_dirs``.

    ``latencies``: a run directory's request times and latencies already in memory
    (the finish step holds them), so the samples are not read a second time.
    """
    runs = [load_run(d) for d in run_dirs]
    held = latencies or {}
    views = [
        _run_view(r, i, held.get(d)) for i, (d, r) in enumerate(zip(run_dirs, runs, strict=True))
    ]
    names = list(dict.fromkeys(r.meta.experiment_name if r.meta else r.run_dir.name for r in runs))
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=f"Chaos report: {', '.join(names)}",
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            runs=views,
            labels=[r.label for r in runs],
            cross=_cross_rows(runs) if len(runs) > 1 else [],
        )
    )
