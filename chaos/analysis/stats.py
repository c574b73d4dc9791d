"""Across repetitions: medians with bootstrap intervals, and setup-versus-setup tests.

* A run that did not recover counts as infinitely slow: it ranks worse than any
  recovered run in the Mann-Whitney test and in medians (a median of "not
  recovered" is reported as None).
* Aborted runs and runs without traffic are left out of the statistics (their
  numbers are not measurements of the fault) and counted apart.
* Intervals are percentile bootstrap intervals of the median (95 %, 2,000
  resamples, seeded, so a report is reproducible); the quantiles of the
  bootstrap distribution are taken without interpolation so infinite values stay
  infinite instead of becoming NaN.
* ``compare`` uses a two-sided Mann-Whitney U test on recovery times (scipy:
  exact for small samples without ties, normal approximation otherwise). It says
  one setup is faster only when each side has at least ``min_repetitions`` runs,
  p < ``alpha``, and the rank test and the medians point the same way. With 3
  runs per side the smallest possible p is 0.1, so the statement says when the
  test cannot reach ``alpha`` at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy.stats import mannwhitneyu

from chaos.analysis.buckets import FloatArray
from chaos.analysis.model import Comparison, Estimate, FaultResult, Summary


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def bootstrap_median(
    values: Sequence[float] | FloatArray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Median of ``values`` (``inf`` allowed) and its percentile bootstrap interval."""
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        return Estimate(median=None, low=None, high=None, n=0)
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, n, size=(resamples, n))], axis=1)
    tail = (1.0 - confidence) / 2.0
    low = float(np.quantile(medians, tail, method="inverted_cdf"))
    high = float(np.quantile(medians, 1.0 - tail, method="inverted_cdf"))
    return Estimate(
        median=_finite(float(np.median(data))), low=_finite(low), high=_finite(high), n=n
    )


def _measured(results: Sequence[FaultResult]) -> list[FaultResult]:
    return [r for r in results if not r.window.aborted and r.had_impact is not None]


def _ttr(results: Sequence[FaultResult]) -> FloatArray:
    return np.array(
        [math.inf if r.time_to_recover_s is None else r.time_to_recover_s for r in results],
        dtype=np.float64,
    )


def _groups(results: Sequence[FaultResult]) -> dict[tuple[str, str], list[FaultResult]]:
    groups: dict[tuple[str, str], list[FaultResult]] = {}
    for r in results:
        groups.setdefault((r.setup, r.fault), []).append(r)
    return groups


def summarize(
    results: Sequence[FaultResult], *, resamples: int = 2000, seed: int = 0
) -> list[Summary]:
    """One summary per (setup, fault), in the order they first appear."""
    summaries = []
    for (setup, fault), group in _groups(results).items():
        used = _measured(group)
        rates = [r.error_rate_during_fault for r in used if r.error_rate_during_fault is not None]
        summaries.append(
            Summary(
                setup=setup,
                fault=fault,
                repetitions=len(group),
                aborted=sum(r.window.aborted for r in group),
                unmeasured=sum(r.had_impact is None and not r.window.aborted for r in group),
                recovered=sum(r.recovered for r in used),
                no_impact=sum(r.had_impact is False for r in used),
                time_to_recover_s=bootstrap_median(_ttr(used), resamples=resamples, seed=seed),
                failed_requests=bootstrap_median(
                    [float(r.failed_requests) for r in used], resamples=resamples, seed=seed
                ),
                error_rate=bootstrap_median(rates, resamples=resamples, seed=seed),
            )
        )
    return summaries


def _seconds(x: float) -> str:
    return "not recovered" if math.isinf(x) else f"{x:.2f} s"


def compare(
    results: Sequence[FaultResult],
    setup_a: str,
    setup_b: str,
    fault: str,
    *,
    alpha: float = 0.05,
    min_repetitions: int = 3,
) -> Comparison:
    """Whether ``setup_a`` or ``setup_b`` recovers faster from ``fault`` (see module docstring)."""
    a = _ttr(_measured([r for r in results if r.setup == setup_a and r.fault == fault]))
    b = _ttr(_measured([r for r in results if r.setup == setup_b and r.fault == fault]))
    n_a, n_b = len(a), len(b)
    med_a = float(np.median(a)) if n_a else math.nan
    med_b = float(np.median(b)) if n_b else math.nan
    with np.errstate(invalid="ignore"):
        difference = med_b - med_a
    fast, slow = min(med_a, med_b), max(med_a, med_b)
    ratio = slow / fast if fast > 0 and math.isfinite(slow) else math.inf

    def done(p: float | None, supported: bool, faster: str | None, statement: str) -> Comparison:
        return Comparison(
            fault=fault,
            setup_a=setup_a,
            setup_b=setup_b,
            n_a=n_a,
            n_b=n_b,
            median_a=_finite(med_a),
            median_b=_finite(med_b),
            difference_s=_finite(difference),
            ratio=_finite(ratio),
            p_value=p,
            supported=supported,
            faster=faster,
            statement=statement,
        )

    counts = f"n = {n_a} and {n_b}"
    if n_a < min_repetitions or n_b < min_repetitions:
        return done(
            None,
            False,
            None,
            f"{fault}: not enough repetitions to compare {setup_a} and {setup_b} "
            f"({counts}; at least {min_repetitions} each are needed).",
        )
    both = np.r_[a, b]
    p = 1.0 if bool((both == both[0]).all()) else float(mannwhitneyu(a, b).pvalue)
    u_a = float(np.sum(a[:, None] > b[None, :]) + 0.5 * np.sum(a[:, None] == b[None, :]))
    a_lower_ranks = u_a < n_a * n_b / 2
    faster = setup_a if med_a < med_b else setup_b if med_b < med_a else None
    consistent = faster is not None and a_lower_ranks == (faster == setup_a)
    medians = f"median {_seconds(med_a)} vs {_seconds(med_b)}"
    if p < alpha and consistent and faster is not None:
        slower = setup_b if faster == setup_a else setup_a
        by = f"{abs(difference):.2f} s faster" if math.isfinite(difference) else "recovers"
        times = f", {ratio:.1f}x" if math.isfinite(ratio) else ""
        return done(
            p,
            True,
            faster,
            f"{fault}: {faster} recovers faster than {slower} ({by}{times}; "
            f"{medians}, Mann-Whitney p = {p:.3g}, {counts}).",
        )
    floor_p = 2.0 / math.comb(n_a + n_b, n_a)
    caveat = (
        f"; with {counts} the test cannot reach p < {alpha:g}, run more repetitions"
        if floor_p >= alpha
        else ""
    )
    return done(
        p,
        False,
        None,
        f"{fault}: no supported difference between {setup_a} and {setup_b} "
        f"({medians}, Mann-Whitney p = {p:.3g}, {counts}{caveat}).",
    )


def compare_all(
    results: Sequence[FaultResult], *, alpha: float = 0.05, min_repetitions: int = 3
) -> list[Comparison]:
    """``compare`` for every pair of setups that ran the same fault."""
    setups_by_fault: dict[str, list[str]] = {}
    for setup, fault in _groups(results):
        setups_by_fault.setdefault(fault, []).append(setup)
    return [
        compare(results, a, b, fault, alpha=alpha, min_repetitions=min_repetitions)
        for fault, setups in setups_by_fault.items()
        for a, b in combinations(setups, 2)
    ]
