"""Decisions on cost hypotheses, with the same tests as the resilience hypotheses.

One value per cost window (the unit, as for fault windows): the window's client p99
(``added_latency_p99``: baseline's mean is the same on both sides, so comparing p99
compares the latency added), its proxies' CPU-seconds per 1,000 requests, or their
PSS together. Each claim gets the two one-sided exact permutation tests of
``chaos.analysis.decide`` (for the claim and against it; TOST for ``equivalent``), and
the cost family is controlled with Holm's procedure at alpha 0.05. Broken windows and
windows at a rate that was not offered are left out (a rate not offered is not the
setup's cost at that rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chaos.analysis.cost import CostAnalysis, WindowCost
from chaos.analysis.decide import difference_interval, holm, p_greater, p_less, tost
from chaos.experiment.cost import COST_UNITS, CostHypothesis, CostStep

ALPHA = 0.05


@dataclass(frozen=True)
class CostDecision:
    """One cost hypothesis, decided."""

    name: str
    text: str
    metric: str
    setup: str
    compared_to: str
    rate: float
    outcome: str  # supported | refuted | equivalent | undecided
    #: Mean of ``setup`` minus mean of ``compared_to`` (the metric's unit) and its interval.
    difference: float | None
    low: float | None
    high: float | None
    p_for: float
    p_against: float
    n_setup: int
    n_compared: int
    unit: str


def window_value(metric: str, w: WindowCost) -> float | None:
    """A window's value of ``metric`` (None when it has none)."""
    if metric == "added_latency_p99":
        return w.latency_ms.get("p99")
    if metric == "proxy_cpu_per_1k_requests":
        if not w.cpu_per_1k:
            return None
        return sum(v for k, v in w.cpu_per_1k.items() if k != "app")
    return w.proxy_pss_mb


def _values(cost: CostAnalysis, metric: str, setup: str, rate: float) -> np.ndarray:
    found = [
        window_value(metric, w)
        for w in cost.windows
        if w.setup == setup and w.rate == rate and not w.broken and w.offered
    ]
    return np.array([v for v in found if v is not None], dtype=np.float64)


def _tests(h: CostHypothesis, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    d = h.min_difference
    if h.expect == "lower":
        return p_less(x, y, -d, seed=seed), p_greater(x, y, -d, seed=seed)
    if h.expect == "higher":
        return p_greater(x, y, d, seed=seed), p_less(x, y, d, seed=seed)
    m = h.margin or 0.0
    outside = min(1.0, 2.0 * min(p_greater(x, y, m, seed=seed), p_less(x, y, -m, seed=seed)))
    return tost(x, y, m, seed=seed), outside


def decide_cost(cost: CostAnalysis, step: CostStep, seed: int = 0) -> list[CostDecision]:
    """Every cost hypothesis of ``step``, decided on ``cost``'s windows (Holm family)."""
    hypotheses: Sequence[CostHypothesis] = step.hypotheses
    if not hypotheses:
        return []
    rows = []
    for i, h in enumerate(hypotheses):
        rate = step.rate_of(h)
        x = _values(cost, h.metric, h.setup.value, rate)
        y = _values(cost, h.metric, h.compared_to.value, rate)
        p_for, p_against = _tests(h, x, y, seed) if len(x) and len(y) else (1.0, 1.0)
        rows.append((i, h, rate, x, y, p_for, p_against))
    accept = holm([r[5] for r in rows], ALPHA)
    reject = holm([r[6] for r in rows], ALPHA)
    decisions = []
    for (i, h, rate, x, y, p_for, p_against), yes, no in zip(rows, accept, reject, strict=True):
        if yes:
            outcome = "equivalent" if h.expect == "equivalent" else "supported"
        else:
            outcome = "refuted" if no else "undecided"
        difference = low = high = None
        if len(x) and len(y):
            difference = float(x.mean() - y.mean())
            low, high = difference_interval(x, y, seed=seed)
        decisions.append(
            CostDecision(
                name=h.label(i),
                text=h.describe(rate),
                metric=h.metric,
                setup=h.setup.value,
                compared_to=h.compared_to.value,
                rate=rate,
                outcome=outcome,
                difference=difference,
                low=low,
                high=high,
                p_for=p_for,
                p_against=p_against,
                n_setup=len(x),
                n_compared=len(y),
                unit=COST_UNITS[h.metric],
            )
        )
    return decisions


def refuted_cost_lines(decisions: Sequence[CostDecision]) -> list[str]:
    """One line per refuted cost hypothesis (the run fails with them, exit 1)."""
    return [f"{d.name}: {d.text}: refuted" for d in decisions if d.outcome == "refuted"]


__all__ = ["CostDecision", "decide_cost", "refuted_cost_lines", "window_value"]
