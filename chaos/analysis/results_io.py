"""``results.json`` and ``buckets.csv`` of a run directory: the engine writes, the report reads.

``results.json`` holds ``runs`` (one object per setup, fault and repetition),
``summary`` (per setup and fault), ``comparisons``, ``broken`` (the windows the
runner could not measure, each with its reason; absent in older files) and, when
the run made them, ``decisions`` (the hypotheses' outcomes, see
``chaos.analysis.hypotheses``; files without it still read). Infinite and undefined
numbers are written as ``null`` (strict JSON); a null ``time_to_recover_s`` means
not recovered. Both files are written to a temporary name and renamed, so a
reader never sees half a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from chaos.analysis.buckets import BUCKET_COLUMNS
from chaos.analysis.decisions import DecisionSet
from chaos.analysis.decisions_io import decision_set_from_dict, decision_set_to_dict
from chaos.analysis.model import (
    BrokenWindow,
    Comparison,
    CounterDeltas,
    Estimate,
    FaultResult,
    FaultWindow,
    RunAnalysis,
    SteadyState,
    Summary,
)
from chaos.analysis.overhead import RunOverhead
from chaos.analysis.security import (
    security_from_dict,
    security_summary,
    security_to_dict,
)
from chaos.analysis.shares import SHARE_SOURCE
from chaos.errors import InputError
from chaos.outpaths import replace_file
from chaos.rundir import BUCKETS_FILE, RESULTS_FILE
from chaos.rundir.dataplane import Table, tables_to_json

FORMAT_VERSION = 1
_LABELS = ("setup", "fault", "repetition")


def _clean(value: object) -> object:
    """JSON-ready copy of ``value`` with non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def run_to_dict(r: FaultResult) -> dict[str, object]:
    """The ``runs`` entry of one result: the flat keys first, then the window and method."""
    w = r.window
    return {
        "setup": w.setup,
        "fault": w.fault,
        "fault_type": w.fault_type,
        "repetition": w.repetition,
        "aborted": w.aborted,
        "had_impact": r.had_impact,
        "time_to_impact_s": r.time_to_impact_s,
        "time_to_recover_s": r.time_to_recover_s,
        "impact_duration_s": r.impact_duration_s,
        "relapsed": r.relapsed,
        "failed_requests": r.failed_requests,
        "total_requests": r.total_requests,
        "error_rate_during_fault": r.error_rate_during_fault,
        "p50_ms_during_fault": r.p50_ms_during_fault,
        "p95_ms_during_fault": r.p95_ms_during_fault,
        "p99_ms_during_fault": r.p99_ms_during_fault,
        "baseline_error_rate": r.baseline_error_rate,
        "baseline_p50_ms": r.baseline_p50_ms,
        "baseline_p95_ms": r.baseline_p95_ms,
        "steady_state_before": r.steady_state_before,
        "steady_state_after": r.steady_state_after,
        "writes_lost": r.writes_lost,
        "writes_duplicated": r.writes_duplicated,
        "counters": asdict(r.counters),
        "errors_by_kind": dict(r.errors_by_kind),
        "dropped_requests": r.dropped_requests,
        "security": None if r.security is None else security_to_dict(r.security),
        "window": {
            "inject_t": w.inject_t,
            "revert_t": w.revert_t,
            "end_t": w.end_t,
            "warmup_start_t": w.warmup_start_t,
            "self_healing": w.self_healing,
            "share_counters": list(w.share_counters),
            "client_counter": w.client_counter,
        },
        "affected_share": r.affected_share,
        "affected_share_source": SHARE_SOURCE if r.affected_share is not None else None,
        "steady_state": asdict(r.steady),
        "recovered_for_s": r.recovered_for_s,
    }


def run_from_dict(d: Mapping[str, Any]) -> FaultResult:
    """Inverse of ``run_to_dict``."""
    win = d["window"]
    counters = d["counters"]
    return FaultResult(
        window=FaultWindow(
            setup=str(d["setup"]),
            fault=str(d["fault"]),
            fault_type=str(d["fault_type"]),
            repetition=int(d["repetition"]),
            inject_t=float(win["inject_t"]),
            revert_t=float(win["revert_t"]),
            end_t=float(win["end_t"]),
            self_healing=bool(win["self_healing"]),
            warmup_start_t=float(win["warmup_start_t"]),
            aborted=bool(d["aborted"]),
            share_counters=tuple(str(k) for k in win.get("share_counters", ())),
            client_counter=str(win.get("client_counter", "")),
        ),
        steady=SteadyState(
            max_error_rate=float(d["steady_state"]["max_error_rate"]),
            max_p95_ms=float(d["steady_state"]["max_p95_ms"]),
        ),
        recovered_for_s=float(d["recovered_for_s"]),
        had_impact=None if d["had_impact"] is None else bool(d["had_impact"]),
        time_to_impact_s=_opt_float(d["time_to_impact_s"]),
        time_to_recover_s=_opt_float(d["time_to_recover_s"]),
        impact_duration_s=_opt_float(d["impact_duration_s"]),
        relapsed=bool(d["relapsed"]),
        failed_requests=int(d["failed_requests"]),
        total_requests=int(d["total_requests"]),
        error_rate_during_fault=_opt_float(d["error_rate_during_fault"]),
        p50_ms_during_fault=_opt_float(d["p50_ms_during_fault"]),
        p95_ms_during_fault=_opt_float(d["p95_ms_during_fault"]),
        p99_ms_during_fault=_opt_float(d["p99_ms_during_fault"]),
        baseline_error_rate=_opt_float(d["baseline_error_rate"]),
        baseline_p50_ms=_opt_float(d["baseline_p50_ms"]),
        baseline_p95_ms=_opt_float(d["baseline_p95_ms"]),
        steady_state_before=bool(d["steady_state_before"]),
        steady_state_after=bool(d["steady_state_after"]),
        writes_lost=_opt_int(d["writes_lost"]),
        writes_duplicated=_opt_int(d["writes_duplicated"]),
        counters=CounterDeltas(
            retries=int(counters["retries"]),
            retry_overflows=int(counters.get("retry_overflows", 0)),
            tls_failures=int(counters["tls_failures"]),
            ejections=int(counters["ejections"]),
            connect_failures=int(counters["connect_failures"]),
            restarts=int(counters["restarts"]),
            by_counter={str(k): int(v) for k, v in counters["by_counter"].items()},
        ),
        errors_by_kind={str(k): int(v) for k, v in d["errors_by_kind"].items()},
        dropped_requests=int(d.get("dropped_requests", 0)),
        security=security_from_dict(d.get("security")),
        affected_share=_opt_float(d.get("affected_share")),
    )


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _estimate(d: Mapping[str, Any]) -> Estimate:
    return Estimate(
        median=_opt_float(d["median"]),
        low=_opt_float(d["low"]),
        high=_opt_float(d["high"]),
        n=int(d["n"]),
    )


def summary_from_dict(d: Mapping[str, Any]) -> Summary:
    """Inverse of ``dataclasses.asdict`` on a ``Summary``."""
    return Summary(
        setup=str(d["setup"]),
        fault=str(d["fault"]),
        repetitions=int(d["repetitions"]),
        aborted=int(d["aborted"]),
        unmeasured=int(d["unmeasured"]),
        recovered=int(d["recovered"]),
        no_impact=int(d["no_impact"]),
        time_to_recover_s=_estimate(d["time_to_recover_s"]),
        failed_requests=_estimate(d["failed_requests"]),
        error_rate=_estimate(d["error_rate"]),
    )


def comparison_from_dict(d: Mapping[str, Any]) -> Comparison:
    """Inverse of ``dataclasses.asdict`` on a ``Comparison``."""
    return Comparison(
        fault=str(d["fault"]),
        setup_a=str(d["setup_a"]),
        setup_b=str(d["setup_b"]),
        n_a=int(d["n_a"]),
        n_b=int(d["n_b"]),
        median_a=_opt_float(d["median_a"]),
        median_b=_opt_float(d["median_b"]),
        difference_s=_opt_float(d["difference_s"]),
        ratio=_opt_float(d["ratio"]),
        p_value=_opt_float(d["p_value"]),
        supported=bool(d["supported"]),
        faster=None if d["faster"] is None else str(d["faster"]),
        statement=str(d["statement"]),
    )


def broken_from_dict(d: Mapping[str, Any]) -> BrokenWindow:
    """Inverse of ``dataclasses.asdict`` on a ``BrokenWindow``."""
    return BrokenWindow(
        setup=str(d["setup"]),
        fault=str(d["fault"]),
        repetition=int(d["repetition"]),
        phase=str(d["phase"]),
        reason=str(d["reason"]),
        injected=bool(d.get("injected", False)),
    )


def write_results(
    run_dir: Path | str,
    results: Sequence[FaultResult],
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    buckets: pd.DataFrame | None = None,
    decided: DecisionSet | None = None,
    broken: Sequence[BrokenWindow] = (),
    overhead: RunOverhead | None = None,
    dataplane: Mapping[str, Table] | None = None,
) -> None:
    """Write ``results.json`` and ``buckets.csv`` (header only when ``buckets`` is None).

    ``overhead``: each window's start-up and teardown time (from the journal), if known.
    ``dataplane``: each setup's data-plane table (``chaos.rundir.dataplane``), under
    ``"dataplane"``.

    Each is written whole or not at all; a failed write is an ``OutputError``.
    """
    directory = Path(run_dir)
    body: dict[str, object] = {
        "format": FORMAT_VERSION,
        "runs": [run_to_dict(r) for r in results],
        "summary": [asdict(s) for s in summaries],
        "comparisons": [asdict(c) for c in comparisons],
        "broken": [asdict(b) for b in broken],
        "security": security_summary(results),
    }
    if decided is not None:
        body["decisions"] = decision_set_to_dict(decided)
    if overhead is not None:
        body["overhead"] = overhead.to_dict()
    if dataplane:
        body["dataplane"] = tables_to_json(dataplane)
    document = _clean(body)
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    replace_file(directory / RESULTS_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    frame = buckets if buckets is not None else _empty_buckets()
    replace_file(directory / BUCKETS_FILE, lambda p: frame.to_csv(p, index=False))


def write_analysis(
    run_dir: Path | str,
    analysis: RunAnalysis | None,
    *,
    decided: DecisionSet | None = None,
    broken: Sequence[BrokenWindow] = (),
    overhead: RunOverhead | None = None,
    dataplane: Mapping[str, Table] | None = None,
) -> None:
    """:func:`write_results` of an analysis's runs, summaries, comparisons and buckets.

    ``analysis`` None (no window was measured: every one broke) writes no runs and a
    header-only ``buckets.csv``, with the rest as given.
    """
    write_results(
        run_dir,
        analysis.runs if analysis is not None else [],
        analysis.summaries if analysis is not None else [],
        analysis.comparisons if analysis is not None else [],
        analysis.buckets if analysis is not None else None,
        decided=decided,
        broken=broken,
        overhead=overhead,
        dataplane=dataplane,
    )


def _empty_buckets() -> pd.DataFrame:
    return pd.DataFrame(columns=[*_LABELS, "t", "t_rel", *BUCKET_COLUMNS[1:]])


def read_results(run_dir: Path | str) -> RunAnalysis:
    """Read back what ``write_results`` wrote, as typed objects."""
    directory = Path(run_dir)
    path = directory / RESULTS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        runs = [run_from_dict(d) for d in document["runs"]]
        summaries = [summary_from_dict(d) for d in document["summary"]]
        comparisons = [comparison_from_dict(d) for d in document["comparisons"]]
        broken = [broken_from_dict(d) for d in document.get("broken", [])]
        decided = decision_set_from_dict(document["decisions"]) if "decisions" in document else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError):
            why = f"{exc.args[0]} is missing"
        raise InputError(f"{path}: not a readable results file: {why}") from exc
    buckets_path = directory / BUCKETS_FILE
    buckets = _read_buckets(buckets_path) if buckets_path.exists() else _empty_buckets()
    return RunAnalysis(
        runs=runs,
        summaries=summaries,
        comparisons=comparisons,
        buckets=buckets,
        decided=decided,
        broken=broken,
    )


def _read_buckets(path: Path) -> pd.DataFrame:
    """``buckets.csv`` with the columns ``write_results`` writes, numbers as numbers."""
    expected = list(_empty_buckets().columns)
    try:
        frame = pd.read_csv(path, dtype={"setup": "str", "fault": "str"})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable buckets file: {why}") from exc
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a buckets file (no column {', '.join(missing[:4])})")
    for column in expected:
        if column in _LABELS:
            continue
        try:
            frame[column] = pd.to_numeric(frame[column], errors="raise")
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: column {column} holds something not a number") from exc
    return frame
