"""Decisions on comparative hypotheses: supported, refuted, equivalent or undecided.

From the measured windows (``FaultResult``) and the experiment's hypotheses this
module makes one typed ``Decision`` per hypothesis and fault (the types are in
:mod:`chaos.analysis.decisions`, their words in :mod:`chaos.analysis.statements`);
:mod:`chaos.analysis.adaptive` tells an adaptive run with it whether to add a round
of repetitions (``next_step``).

How a decision is made (the report's method section says the same in words):

* The unit is the fault window: each window gives one value of the metric (its
  time to recover, time to impact, failed requests, error rate, or worst p95/p99
  during the fault). Requests are never pooled across windows.
* A window that did not recover counts as slower than any that did: its time to
  recover is the longest span any compared window could have measured (likewise
  "no impact" for time to impact). The difference is then "at least" that big.
* Each claim gets two one-sided exact permutation tests on the difference of
  means (``chaos.analysis.decide``): one for the claim, one against it. For
  ``lower``/``higher`` the claim is "differs in that direction by more than the
  minimal difference" and against it "by less"; for ``equivalent`` the claim is
  TOST within the margin and against it "outside the margin". For any true
  difference at most one of the two can be a false alarm, so both use the claim's
  share of alpha.
* The family (every claim of the run) is controlled with Holm's procedure,
  written as alpha recycling (Bretz et al. 2009): each of ``m`` claims starts with
  ``alpha / m``; a decided claim hands its share on, equally, to the undecided ones.
* ``repetitions: auto`` looks after each round of repetitions; each claim spends
  its share over the looks with a Pocock-type spending function (information
  fraction = rounds so far / most rounds the budget allows), a look counting only
  what the exact test could attain there. A claim decided at a look stays decided.
* Undecided claims say how many more repetitions (per setup) would likely decide
  them: the normal-approximation sample size for 80 % power at the observed
  difference and spread, at least what the exact test needs to reach its level.
* Without hypotheses the setups are ranked on time to recover: for each fault and
  pair of setups, "one recovers faster" (two-sided) or "equivalent within
  ``RANK_MARGIN_S``".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from chaos.analysis.decide import (
    Look,
    boundaries,
    difference_interval,
    needed_per_group,
    p_greater,
    p_less,
    pooled_sd,
    tost,
)
from chaos.analysis.decisions import (
    RANK_MARGIN_S,
    Claim,
    Decision,
    Outcome,
    SequentialPlan,
)
from chaos.analysis.model import FaultResult
from chaos.analysis.statements import statement
from chaos.experiment.hypotheses import Hypothesis

# -- values per window --------------------------------------------------------------


def _measured(r: FaultResult) -> bool:
    return not r.window.aborted and r.had_impact is not None


def _span(r: FaultResult, metric: str) -> float:
    w = r.window
    if metric == "time_to_recover":
        return w.end_t - (w.inject_t if w.self_healing else w.revert_t)
    return w.end_t - w.inject_t


def _raw(r: FaultResult, metric: str) -> float | None:
    """The window's value; ``inf`` for not recovered / no impact; None when unmeasurable."""
    if metric == "time_to_recover":
        return math.inf if r.time_to_recover_s is None else r.time_to_recover_s
    if metric == "time_to_impact":
        return math.inf if r.time_to_impact_s is None else r.time_to_impact_s
    if metric == "failed_requests":
        return float(r.failed_requests)
    if metric == "error_rate":
        return r.error_rate_during_fault
    if metric == "p95":
        return r.p95_ms_during_fault
    if metric == "p99":
        return r.p99_ms_during_fault
    if metric in ("served_unauthenticated", "credentials_exposed", "bypass_served"):
        s = r.security
        if s is None:
            return None
        if metric == "credentials_exposed":
            return s.credentials_share
        return float(
            s.served_unauthenticated if metric == "served_unauthenticated" else s.bypass_served
        )
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(frozen=True)
class _Values:
    """A claim's window values, by round, with infinite values replaced by the cap."""

    x: list[tuple[int, float]]
    y: list[tuple[int, float]]
    cap: float
    censored: bool

    def upto(self, rounds: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([v for r, v in self.x if r < rounds], dtype=np.float64)
        y = np.array([v for r, v in self.y if r < rounds], dtype=np.float64)
        return x, y


def _values(runs: Sequence[FaultResult], claim: Claim) -> _Values:
    mine = [r for r in runs if r.fault == claim.fault and _measured(r)]
    cap = max((_span(r, claim.metric) for r in mine), default=0.0)
    censored = False

    def side(setup: str) -> list[tuple[int, float]]:
        nonlocal censored
        out = []
        for r in mine:
            if r.setup != setup:
                continue
            v = _raw(r, claim.metric)
            if v is None:
                continue
            if math.isinf(v):
                censored = True
                v = max(cap, 0.0)
            out.append((r.repetition, float(v)))
        return out

    x, y = side(claim.setup), side(claim.compared_to)
    return _Values(x, y, cap, censored)


# -- one claim at one look ----------------------------------------------------------


def _tests(claim: Claim, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    """(p for the claim, p against it)."""
    if claim.implicit:
        p_diff = min(1.0, 2.0 * min(p_less(x, y, seed=seed), p_greater(x, y, seed=seed)))
        return p_diff, tost(x, y, claim.margin, seed=seed)
    d = claim.min_difference
    if claim.expect == "lower":
        return p_less(x, y, -d, seed=seed), p_greater(x, y, -d, seed=seed)
    if claim.expect == "higher":
        return p_greater(x, y, d, seed=seed), p_less(x, y, d, seed=seed)
    m = claim.margin
    outside = min(1.0, 2.0 * min(p_greater(x, y, m, seed=seed), p_less(x, y, -m, seed=seed)))
    return tost(x, y, m, seed=seed), outside


def _looks(values: _Values, rounds: int, last: int, plan: SequentialPlan) -> list[Look]:
    """Looks 1..``rounds``; ``last`` is the last round run (the final look when ``final``)."""
    if not plan.adaptive:
        x, y = values.upto(rounds)
        return [Look(len(x), len(y), 1.0)]
    looks = []
    for r in range(1, rounds + 1):
        x, y = values.upto(r)
        t = 1.0 if plan.final and r == last else min(1.0, r / max(plan.max_rounds, 1))
        looks.append(Look(len(x), len(y), t))
    return looks


def _outcome(claim: Claim, p_for: float, p_against: float, threshold: float) -> Outcome:
    if claim.implicit:
        if p_for <= threshold:
            return "supported"
        return "equivalent" if p_against <= threshold else "undecided"
    if p_for <= threshold:
        return "equivalent" if claim.expect == "equivalent" else "supported"
    return "refuted" if p_against <= threshold else "undecided"


@dataclass(frozen=True)
class _State:
    outcome: Outcome
    rounds: int
    p_for: float
    p_against: float
    threshold: float
    level: float = 0.0


def _evaluate(
    claim: Claim,
    values: _Values,
    rounds: int,
    last: int,
    level: float,
    plan: SequentialPlan,
    seed: int,
) -> _State:
    looks = _looks(values, rounds, last, plan)
    threshold = boundaries(level, looks, plan.spending)[-1]
    x, y = values.upto(rounds)
    if len(x) == 0 or len(y) == 0:
        return _State("undecided", rounds, 1.0, 1.0, threshold, level)
    p_for, p_against = _tests(claim, x, y, seed)
    outcome = _outcome(claim, p_for, p_against, threshold)
    return _State(outcome, rounds, p_for, p_against, threshold, level)


# -- the family ---------------------------------------------------------------------


def decide(
    runs: Sequence[FaultResult],
    claims: Sequence[Claim],
    plan: SequentialPlan = SequentialPlan(),  # noqa: B008 - frozen (immutable) dataclass
    *,
    seed: int = 0,
) -> list[Decision]:
    """One decision per claim (see the module docstring), in the order of ``claims``."""
    values = [_values(runs, c) for c in claims]
    rounds_seen = max((r.repetition + 1 for r in runs if _measured(r)), default=0)
    m = len(claims)
    ordered = plan.family == "in-order" and not any(c.implicit for c in claims)
    levels = [(plan.alpha if ordered else plan.alpha / m) if m else 0.0] * m
    states: list[_State | None] = [None] * m
    last: list[_State | None] = [None] * m
    notes = [""] * m
    looks = range(1, rounds_seen + 1) if plan.adaptive else [rounds_seen]
    for rounds in looks:
        if ordered:
            _in_order(claims, values, rounds, rounds_seen, plan, seed, states, last, notes)
            continue
        while True:
            newly = []
            for i, claim in enumerate(claims):
                if states[i] is not None:
                    continue
                state = _evaluate(claim, values[i], rounds, rounds_seen, levels[i], plan, seed)
                last[i] = state
                if state.outcome != "undecided":
                    states[i] = state
                    newly.append(i)
            if not newly:
                break
            open_ = [i for i in range(m) if states[i] is None]
            if not open_:
                break
            freed = sum(levels[i] for i in newly)
            for i in newly:
                levels[i] = 0.0
            for i in open_:
                levels[i] += freed / len(open_)
    decisions = []
    for i, claim in enumerate(claims):
        state = states[i] or last[i] or _State("undecided", 0, 1.0, 1.0, 0.0)
        level = levels[i] if states[i] is None else state.level
        decisions.append(_decision(claim, values[i], state, level, plan, seed, notes[i]))
    return decisions


def _in_order(
    claims: Sequence[Claim],
    values: list[_Values],
    rounds: int,
    last_round: int,
    plan: SequentialPlan,
    seed: int,
    states: list[_State | None],
    last: list[_State | None],
    notes: list[str],
) -> None:
    """One look of fixed-sequence testing: each claim at full alpha, once all before it held.

    A claim is tested only when every claim before it was supported (or shown
    equivalent); a refuted or undecided claim stops the chain. The claims after it
    are evaluated for the report but stay undecided, with a note saying why.
    """
    blocker: tuple[str, str] | None = None
    for i, claim in enumerate(claims):
        done = states[i]
        if blocker is None and done is not None:
            if done.outcome in ("supported", "equivalent"):
                continue
            blocker = (claims[i].hypothesis, done.outcome)
            continue
        state = _evaluate(claim, values[i], rounds, last_round, plan.alpha, plan, seed)
        if blocker is not None:
            name, outcome = blocker
            last[i] = replace(state, outcome="undecided")
            notes[i] = (
                f"not tested: {name} before it (in order) was refuted"
                if outcome == "refuted"
                else f"waits for {name} before it (tested in order)"
            )
            continue
        last[i] = state
        notes[i] = ""
        if state.outcome == "undecided":
            blocker = (claim.hypothesis, "undecided")
            continue
        states[i] = state
        if state.outcome == "refuted":
            blocker = (claim.hypothesis, "refuted")


def _mean(a: np.ndarray) -> float | None:
    return float(a.mean()) if len(a) else None


def _more(claim: Claim, x: np.ndarray, y: np.ndarray, level: float) -> int | None:
    if len(x) == 0 or len(y) == 0:
        return None
    d = float(x.mean() - y.mean())
    sd = pooled_sd(x, y)
    if claim.implicit:
        options = [
            needed_per_group(abs(d), sd, level / 2.0),
            needed_per_group(claim.margin - abs(d), sd, level, equivalence=True),
        ]
    elif claim.expect == "equivalent":
        options = [
            needed_per_group(claim.margin - abs(d), sd, level, equivalence=True),
            needed_per_group(abs(d) - claim.margin, sd, level / 2.0),
        ]
    else:
        toward = -d if claim.expect == "lower" else d
        options = [
            needed_per_group(toward - claim.min_difference, sd, level),
            needed_per_group(claim.min_difference - toward, sd, level),
        ]
    found = [n for n in options if n is not None]
    if not found:
        return None
    return max(1, min(found) - min(len(x), len(y)))


def _decision(
    claim: Claim,
    values: _Values,
    state: _State,
    level: float,
    plan: SequentialPlan,
    seed: int,
    note: str = "",
) -> Decision:
    x, y = values.upto(state.rounds)
    low, high = difference_interval(x, y, seed=seed) if len(x) and len(y) else (None, None)
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else None
    faster = None
    if claim.implicit and state.outcome == "supported" and diff is not None:
        faster = claim.setup if diff < 0 else claim.compared_to
    more = _more(claim, x, y, level) if state.outcome == "undecided" else None
    p = state.p_against if state.outcome in ("refuted",) else state.p_for
    if claim.implicit and state.outcome == "equivalent":
        p = state.p_against
    decision = Decision(
        claim=claim,
        outcome=state.outcome,
        repetitions=state.rounds,
        n_setup=len(x),
        n_compared=len(y),
        mean_setup=_mean(x),
        mean_compared=_mean(y),
        difference=diff,
        low=None if low is None or math.isnan(low) else low,
        high=None if high is None or math.isnan(high) else high,
        censored=values.censored,
        p_value=p,
        threshold=state.threshold,
        level=level,
        more_repetitions=more,
        faster=faster,
        statement="",
        note=note,
    )
    return replace(decision, statement=statement(decision))


# -- claims from the experiment ------------------------------------------------------


def claims_for(
    hypotheses: Sequence[Hypothesis],
    runs: Sequence[FaultResult],
) -> list[Claim]:
    """The claims of the stated hypotheses (one per fault for ``all``), or the ranking."""
    faults = list(dict.fromkeys(r.fault for r in runs))
    setups_of = {f: {r.setup for r in runs if r.fault == f} for f in faults}
    claims: list[Claim] = []
    for i, h in enumerate(hypotheses):
        label = h.label(i)
        targets = faults if h.all_faults else [str(h.fault)]
        for fault in targets:
            if h.all_faults and not {h.setup, h.compared_to} <= setups_of.get(fault, set()):
                continue
            claims.append(
                Claim(
                    hypothesis=label,
                    fault=fault,
                    metric=h.metric,
                    setup=h.setup,
                    compared_to=h.compared_to,
                    expect=h.expect,
                    min_difference=h.min_difference_value,
                    margin=h.margin_value,
                )
            )
    if hypotheses:
        return claims
    return ranking_claims(runs)


def ranking_claims(runs: Sequence[FaultResult]) -> list[Claim]:
    """Every pair of setups per fault on time to recover (used when no hypotheses are given)."""
    claims = []
    faults = list(dict.fromkeys(r.fault for r in runs))
    for fault in faults:
        setups = list(dict.fromkeys(r.setup for r in runs if r.fault == fault))
        for a, b in combinations(setups, 2):
            claims.append(
                Claim(
                    hypothesis=f"{a}-vs-{b}",
                    fault=fault,
                    metric="time_to_recover",
                    setup=a,
                    compared_to=b,
                    expect="lower",
                    margin=RANK_MARGIN_S,
                    implicit=True,
                )
            )
    return claims
