"""Decisions on cost hypotheses, with the same tests as the resilience hypotheses.

One value per cost window (the unit, as for fault windows): the window's client p99
(``added_latency_p99``: baseline's mean is the same on both sides, so comparing p99
compares the latency added), its proxies' CPU-seconds per 1,000 requests, or their
PSS together. Each claim gets the two one-sided exact permutation tests of
``chaos.analysis.decide`` (for the claim and against it; TOST for ``equivalent``), and
the cost family is controlled with Holm's procedure at alpha 0.05.

With the experiment's ``repetitions: auto`` the step looks after every round from its
``repetitions`` on, up to ``most_rounds``: each look is a chance of a false decision, so
each hypothesis gets an equal share of alpha (Bonferroni over the family, since Holm's
order may change between looks) spent over the looks with the Pocock-type function of
``decide.boundaries`` (information fraction: rounds seen / most rounds; the last look
spends what is left). Broken windows and
windows at a rate that was not offered are left out (a rate not offered is not the
setup's cost at that rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chaos.analysis.cost import CostAnalysis, WindowCost
from chaos.analysis.decide import (
    Look,
    boundaries,
    difference_interval,
    holm,
    p_greater,
    p_less,
    tost,
)
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


def _values(
    cost: CostAnalysis, metric: str, setup: str, rate: float, upto: int | None = None
) -> np.ndarray:
    found = [
        window_value(metric, w)
        for w in cost.windows
        if w.setup == setup
        and w.rate == rate
        and not w.broken
        and w.offered
        and (upto is None or w.repetition <= upto)
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


def rounds_seen(cost: CostAnalysis) -> int:
    """The highest repetition among the cost windows (0 without any)."""
    return max((w.repetition for w in cost.windows), default=0)


def look_threshold(
    cost: CostAnalysis,
    step: CostStep,
    h: CostHypothesis,
    level: float,
    most_rounds: int,
    *,
    final: bool,
) -> float:
    """The p-value threshold of ``h`` at this look, alpha ``level`` spent over the looks."""
    seen = rounds_seen(cost)
    rate = step.rate_of(h)
    looks = []
    for r in range(min(step.repetitions, seen), seen + 1):
        n_x = len(_values(cost, h.metric, h.setup.value, rate, r))
        n_y = len(_values(cost, h.metric, h.compared_to.value, rate, r))
        t = 1.0 if final and r == seen else min(1.0, r / most_rounds)
        looks.append(Look(n_x, n_y, t))
    return boundaries(level, looks, "pocock")[-1]


def decide_cost(
    cost: CostAnalysis,
    step: CostStep,
    seed: int = 0,
    *,
    most_rounds: int | None = None,
    final: bool = True,
) -> list[CostDecision]:
    """Every cost hypothesis of ``step``, decided on ``cost``'s windows.

    ``most_rounds`` above ``step.repetitions``: the step is adaptive and this is one of
    its looks (``final``: the last one); see the module docstring.
    """
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
    if most_rounds is not None and most_rounds > step.repetitions:
        level = ALPHA / len(rows)
        limits = [look_threshold(cost, step, r[1], level, most_rounds, final=final) for r in rows]
        accept = [r[5] <= limit for r, limit in zip(rows, limits, strict=True)]
        reject = [r[6] <= limit for r, limit in zip(rows, limits, strict=True)]
    else:
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


def open_setups(decisions: Sequence[CostDecision]) -> set[str]:
    """The setups the undecided cost hypotheses compare (what another round must measure)."""
    return {s for d in decisions if d.outcome == "undecided" for s in (d.setup, d.compared_to)}


__all__ = [
    "CostDecision",
    "decide_cost",
    "look_threshold",
    "open_setups",
    "refuted_cost_lines",
    "rounds_seen",
    "window_value",
]
