"""A finished run's results as Prometheus metrics, read from its run directory only.

One :class:`RunResults` collector per run; it is what ``--pushgateway`` pushes, under
the grouping key ``experiment`` and ``run_id`` (so those two labels are on every
series on the gateway). Names follow Prometheus' conventions: base units
(``_seconds``, ``_ratio``), ``_total`` for counts, snake_case, and only
low-cardinality labels (``setup``, ``fault``, ``estimate``, ``percentile``,
``outcome``; never ``quantile``, which Prometheus keeps for summaries: ``promtool check
metrics`` refuses it on a gauge).

Per setup and fault:

==============================================  ============================================
``sidecar_chaos_time_to_recover_seconds``        median and 95 % bootstrap bounds
                                                 (``estimate="median|low|high"``); ``+Inf``
                                                 is "not recovered"
``sidecar_chaos_time_to_impact_seconds``         the same, over repetitions that had an impact
``sidecar_chaos_error_ratio``                    error rate during the fault (same estimates)
``sidecar_chaos_fault_latency_seconds``          p95/p99 during the fault (``percentile``),
                                                 median over repetitions
``sidecar_chaos_failed_requests_total``          failed requests, every repetition
``sidecar_chaos_requests_total``                 requests, every repetition
``sidecar_chaos_repetitions``                    repetitions run
``sidecar_chaos_repetitions_recovered``          repetitions that recovered
``sidecar_chaos_hypothesis``                     1 for the outcome the hypothesis "the steady
                                                 state is restored" had (``outcome="held|
                                                 failed|error"``, as in ``junit.xml``), 0 else
==============================================  ============================================

Per fault and pair of setups: ``sidecar_chaos_comparison_supported`` (1 when the
difference in time to recover is significant) and
``sidecar_chaos_comparison_difference_seconds`` (median of ``setup_b`` minus ``setup_a``).

Per claim (a hypothesis on a fault, or the ranking when none is stated):
``sidecar_chaos_claim{hypothesis,fault,setup,compared_to,metric,outcome}``, 1 for its
outcome (supported, refuted, equivalent, undecided) and 0 for the others.

Per run: ``sidecar_chaos_run_exit_code``, ``sidecar_chaos_run_duration_seconds``,
``sidecar_chaos_run_finished_timestamp_seconds`` (Unix time) and
``sidecar_chaos_run_info`` (versions and platform as labels, value 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import median

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from chaos.analysis import (
    Comparison,
    Estimate,
    FaultResult,
    RunAnalysis,
    bootstrap_median,
    read_results,
)
from chaos.analysis.decisions import OUTCOMES, DecisionSet
from chaos.errors import InputError
from chaos.report.junit import window_problems
from chaos.report.prometheus_cost import cost_metrics
from chaos.rundir.journal import read_journal
from chaos.rundir.meta import RunMeta, read_meta

#: Prefix of every metric this tool exports (results here, live metrics in chaos.engine.live).
PREFIX = "sidecar_chaos"
#: The Pushgateway job the results are pushed under.
PUSH_JOB = "sidecar_chaos"

_KEY = ("setup", "fault")
_ESTIMATES = ("median", "low", "high")
HYPOTHESIS_OUTCOMES = ("held", "failed", "error")


@dataclass(frozen=True)
class RunIdentity:
    """The grouping key of a run on the Pushgateway."""

    experiment: str
    run_id: str

    def grouping_key(self) -> dict[str, str]:
        """``{"experiment": ..., "run_id": ...}``."""
        return {"experiment": self.experiment, "run_id": self.run_id}


class RunResults(Collector):
    """The metrics of one finished run (``meta.json``, ``results.json``, the journal)."""

    def __init__(self, run_dir: Path) -> None:
        self.meta: RunMeta = read_meta(run_dir)
        try:
            self.analysis: RunAnalysis | None = read_results(run_dir)
        except InputError:
            self.analysis = None  # aborted before any window was measured: run metrics only
        self.duration_s = _duration(run_dir, self.meta)
        self.run_dir = run_dir

    @property
    def identity(self) -> RunIdentity:
        """Experiment and run id, as the history store names the run."""
        return RunIdentity(self.meta.experiment_name, self.meta.run_id)

    def registry(self) -> CollectorRegistry:
        """A registry holding only this collector (what is pushed)."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(self)
        return registry

    def collect(self) -> Iterable[Metric]:
        yield from self._run_metrics()
        if self.analysis is not None:
            yield from self._result_metrics(self.analysis)
        yield from cost_metrics(self.run_dir)

    def _run_metrics(self) -> Iterator[Metric]:
        meta = self.meta
        if meta.exit_code is not None:
            code = GaugeMetricFamily(
                f"{PREFIX}_run_exit_code",
                "Exit code of the run: 0 held, 1 a hypothesis failed, 3 aborted.",
            )
            code.add_metric([], meta.exit_code)
            yield code
        if self.duration_s is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_run_duration_seconds",
                "Wall time of the run, from its start to its last window.",
                value=self.duration_s,
            )
        if meta.finished_utc is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_run_finished_timestamp_seconds",
                "When the run finished, as Unix time.",
                value=datetime.fromisoformat(meta.finished_utc).timestamp(),
            )
        info = GaugeMetricFamily(
            f"{PREFIX}_run_info",
            "Versions and platform of the run (value 1).",
            labels=["tool_version", "envoy_version", "platform"],
        )
        info.add_metric(
            [meta.tool_version, meta.envoy_version, str(meta.parameters.get("platform", ""))], 1
        )
        yield info

    def _result_metrics(self, analysis: RunAnalysis) -> Iterator[Metric]:
        groups: dict[tuple[str, str], list[FaultResult]] = {}
        for r in analysis.runs:
            groups.setdefault((r.setup, r.fault), []).append(r)
        summaries = {(s.setup, s.fault): s for s in analysis.summaries}

        ttr = _estimate_family(
            "time_to_recover_seconds",
            "Time to recover after the fault (median, 95 % bootstrap bounds); +Inf: not recovered.",
        )
        tti = _estimate_family(
            "time_to_impact_seconds", "Injection until the first failed or slowed request."
        )
        ratio = _estimate_family("error_ratio", "Error rate during the fault.")
        latency = GaugeMetricFamily(
            f"{PREFIX}_fault_latency_seconds",
            "Latency percentile (p95, p99) during the fault, median over repetitions.",
            labels=[*_KEY, "percentile"],
        )
        failed = CounterMetricFamily(
            f"{PREFIX}_failed_requests",
            "Requests that failed during the windows, every repetition.",
            labels=list(_KEY),
        )
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Requests sent during the windows, every repetition.",
            labels=list(_KEY),
        )
        repetitions = GaugeMetricFamily(f"{PREFIX}_repetitions", "Repetitions run.", labels=_KEY)
        recovered = GaugeMetricFamily(
            f"{PREFIX}_repetitions_recovered", "Repetitions that recovered.", labels=_KEY
        )
        hypothesis = GaugeMetricFamily(
            f"{PREFIX}_hypothesis",
            "1 for the outcome of 'the steady state is restored after the fault', 0 otherwise.",
            labels=[*_KEY, "outcome"],
        )
        for (setup, fault), runs in groups.items():
            key = [setup, fault]
            measured = [r for r in runs if not r.window.aborted and r.had_impact is not None]
            summary = summaries.get((setup, fault))
            if summary is not None:
                _add_estimate(ttr, key, summary.time_to_recover_s, none_is=math.inf)
                _add_estimate(ratio, key, summary.error_rate, none_is=None)
            impacts = [r.time_to_impact_s for r in measured if r.time_to_impact_s is not None]
            _add_estimate(tti, key, bootstrap_median(impacts, seed=self.meta.seed), none_is=None)
            for q, values in (
                ("p95", [r.p95_ms_during_fault for r in measured]),
                ("p99", [r.p99_ms_during_fault for r in measured]),
            ):
                known = [v for v in values if v is not None]
                if known:
                    latency.add_metric([*key, q], median(known) / 1000.0)
            failed.add_metric(key, sum(r.failed_requests for r in runs))
            requests.add_metric(key, sum(r.total_requests for r in runs))
            repetitions.add_metric(key, len(runs))
            recovered.add_metric(key, sum(r.recovered for r in measured))
            outcome = hypothesis_outcome(runs)
            for name in HYPOTHESIS_OUTCOMES:
                hypothesis.add_metric([*key, name], 1.0 if name == outcome else 0.0)
        yield from (ttr, tti, ratio, latency, failed, requests, repetitions, recovered, hypothesis)
        yield from _comparison_metrics(analysis.comparisons)
        if analysis.decided is not None:
            yield _claim_metrics(analysis.decided)


def _claim_metrics(decided: DecisionSet) -> Metric:
    """1 for each claim's outcome (supported, refuted, equivalent, undecided), 0 for the others."""
    family = GaugeMetricFamily(
        f"{PREFIX}_claim",
        "1 for the outcome of a hypothesis on a fault (or of the ranking), 0 for the others.",
        labels=["hypothesis", "fault", "setup", "compared_to", "metric", "outcome"],
    )
    for d in decided.decisions:
        c = d.claim
        for outcome in OUTCOMES:
            labels = [c.hypothesis, c.fault, c.setup, c.compared_to, c.metric, outcome]
            family.add_metric(labels, 1.0 if outcome == d.outcome else 0.0)
    return family


def _comparison_metrics(comparisons: Sequence[Comparison]) -> Iterator[Metric]:
    """Whether statistics back "setup A recovers faster than B", per fault and pair."""
    labels = ["fault", "setup_a", "setup_b"]
    supported = GaugeMetricFamily(
        f"{PREFIX}_comparison_supported",
        "1 when the difference in time to recover between setup_a and setup_b is significant.",
        labels=labels,
    )
    difference = GaugeMetricFamily(
        f"{PREFIX}_comparison_difference_seconds",
        "Median time to recover of setup_b minus setup_a (positive: setup_a is faster).",
        labels=labels,
    )
    for c in comparisons:
        key = [c.fault, c.setup_a, c.setup_b]
        supported.add_metric(key, 1.0 if c.supported else 0.0)
        if c.difference_s is not None:
            difference.add_metric(key, c.difference_s)
    yield from (supported, difference)


def hypothesis_outcome(runs: Sequence[FaultResult]) -> str:
    """``held``, ``failed`` or ``error``, by the rules of ``junit.xml``'s testcases."""
    errors, failures = window_problems(runs)
    return "error" if errors else "failed" if failures else "held"


def _estimate_family(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=[*_KEY, "estimate"])


def _add_estimate(
    family: GaugeMetricFamily, key: list[str], estimate: Estimate, *, none_is: float | None
) -> None:
    """Median and bounds; a ``None`` bound is ``none_is`` (+Inf for "not recovered") or left out."""
    if estimate.n == 0:
        return
    for name, value in zip(_ESTIMATES, (estimate.median, estimate.low, estimate.high), strict=True):
        shown = value if value is not None else none_is
        if shown is not None:
            family.add_metric([*key, name], shown)


def _duration(run_dir: Path, meta: RunMeta) -> float | None:
    """Seconds from ``run_started`` to ``run_finished`` on the journal's monotonic clock."""
    times = {
        e.kind: e.t for e in read_journal(run_dir) if e.kind in ("run_started", "run_finished")
    }
    if "run_started" in times and "run_finished" in times:
        return max(0.0, times["run_finished"] - times["run_started"])
    if meta.finished_utc is not None:
        started = datetime.fromisoformat(meta.started_utc)
        return max(0.0, (datetime.fromisoformat(meta.finished_utc) - started).total_seconds())
    return None
