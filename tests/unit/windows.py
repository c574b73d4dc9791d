"""Fault-window results with chosen values, for the decision tests (no samples needed)."""

from __future__ import annotations

from chaos.analysis import CounterDeltas, FaultResult, FaultWindow, SteadyState

#: The recovery window of these results: 7 s after the revert (so "not recovered" is 7 s).
RECOVERY_S = 7.0


def window_result(
    setup: str,
    fault: str,
    repetition: int,
    *,
    ttr: float | None = 1.0,
    impact: float | None = 0.1,
    failed: int = 10,
    total: int = 400,
    p95: float | None = 50.0,
    aborted: bool = False,
) -> FaultResult:
    """One measured window; ``ttr=None`` is "not recovered"."""
    start = 100.0 * (repetition + 1)
    window = FaultWindow(
        setup=setup,
        fault=fault,
        fault_type="crash",
        repetition=repetition,
        inject_t=start,
        revert_t=start + 4.0,
        end_t=start + 4.0 + RECOVERY_S,
        self_healing=False,
        warmup_start_t=start - 2.0,
        aborted=aborted,
    )
    return FaultResult(
        window=window,
        steady=SteadyState(0.01, 150.0),
        recovered_for_s=1.0,
        had_impact=True,
        time_to_impact_s=impact,
        time_to_recover_s=ttr,
        impact_duration_s=None,
        relapsed=False,
        failed_requests=failed,
        total_requests=total,
        error_rate_during_fault=failed / total if total else None,
        p50_ms_during_fault=10.0,
        p95_ms_during_fault=p95,
        p99_ms_during_fault=None if p95 is None else p95 * 1.5,
        baseline_error_rate=0.0,
        baseline_p50_ms=5.0,
        baseline_p95_ms=20.0,
        steady_state_before=True,
        steady_state_after=ttr is not None,
        writes_lost=None,
        writes_duplicated=None,
        counters=CounterDeltas(),
        errors_by_kind={"http": failed} if failed else {},
    )
