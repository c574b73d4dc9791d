"""The decision statistics: exact values on hand-checked cases, and calibration by simulation.

Calibration (seeded, each test well under a few seconds):
* two identical distributions, many times -> the share of false "supported" stays
  at or below alpha, with a tolerance of three binomial standard errors;
* a known difference -> the test reaches the power ``needed_per_group`` promises
  (80 %), within 0.05 (two Monte Carlo standard errors at 400 draws, plus the
  discreteness of exact tests).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from chaos.analysis.decide import (
    Look,
    attainable,
    boundaries,
    difference_interval,
    holm,
    needed_per_group,
    p_greater,
    p_less,
    smallest_p,
    spent,
    tost,
)
from chaos.analysis.decisions import Claim, SequentialPlan
from chaos.analysis.hypotheses import decide
from tests.unit.windows import window_result


def _tolerance(alpha: float, draws: int) -> float:
    return 3.0 * math.sqrt(alpha * (1 - alpha) / draws)


def test_complete_separation_gives_the_smallest_exact_p() -> None:
    assert p_less([1, 2, 3], [7, 8, 9]) == pytest.approx(1 / 20)
    assert p_greater([1, 2, 3], [7, 8, 9]) == 1.0
    assert p_less([1, 2, 3, 4], [7, 8, 9, 10]) == pytest.approx(1 / 70)
    assert smallest_p(3, 3) == pytest.approx(0.05)


def test_a_shift_moves_the_null() -> None:
    x, y = [1.0, 1.1, 0.9, 1.0], [3.0, 3.1, 2.9, 3.0]
    # x is lower by 2; "lower by more than 1" holds, "lower by more than 3" does not
    assert p_less(x, y, -1.0) == pytest.approx(1 / 70)
    assert p_less(x, y, -3.0) == 1.0


def test_identical_values_give_p_one() -> None:
    assert p_less([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]) == 1.0


def test_tost_needs_the_whole_interval_inside_the_margin() -> None:
    x = [1.0, 1.02, 0.98, 1.01, 0.99]
    y = [1.01, 0.99, 1.0, 1.02, 0.98]
    assert tost(x, y, margin=0.5) == pytest.approx(1 / 252)
    assert tost(x, y, margin=0.001) > 0.05  # not shown equivalent


def test_monte_carlo_beyond_the_exact_limit_is_valid() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 12), rng.normal(2, 1, 12)  # C(24, 12) > MAX_EXACT
    p = p_less(x, y, seed=1)
    assert 0 < p < 0.01
    assert p == p_less(x, y, seed=1)  # seeded


def test_holm_steps_down() -> None:
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([0.01, 0.02, 0.03], 0.05) == [True, True, True]
    assert holm([0.2, 0.01], 0.05) == [False, True]


def test_spending_functions_reach_alpha_at_the_end() -> None:
    for kind in ("pocock", "obrien-fleming"):
        assert spent(0.05, 1.0, kind) == pytest.approx(0.05)
        assert spent(0.05, 0.0, kind) == 0.0
        assert spent(0.05, 0.3, kind) < spent(0.05, 0.6, kind) < 0.05
    # O'Brien-Fleming keeps almost everything for the end
    assert spent(0.05, 0.25, "obrien-fleming") < spent(0.05, 0.25, "pocock") / 10


def test_boundaries_do_not_waste_alpha_on_looks_that_cannot_reject() -> None:
    looks = [Look(n, n, n / 6) for n in range(1, 7)]
    b = boundaries(0.05, looks)
    assert sum(attainable(level, k.n_x, k.n_y) for level, k in zip(b, looks, strict=True)) <= 0.05
    # 3 against 3 cannot reach the Pocock share of its look, so the fourth look gets it
    assert attainable(b[2], 3, 3) == 0.0
    assert b[3] == pytest.approx(spent(0.05, 4 / 6))


def test_interval_covers_the_difference() -> None:
    low, high = difference_interval([1.0, 1.2, 0.8], [3.0, 3.3, 2.7])
    assert low <= -2.0 <= high
    assert high < 0


def test_needed_per_group_reaches_the_exact_floor() -> None:
    assert needed_per_group(10.0, 0.1, 0.05) == 3  # huge effect: what 3 vs 3 can do
    assert needed_per_group(10.0, 0.1, 0.01) == 5
    assert needed_per_group(-1.0, 1.0, 0.05) is None


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_false_positive_rate_of_the_permutation_test_is_at_most_alpha(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    draws, alpha = 2000, 0.05
    rejected = 0
    for _ in range(draws):
        # skewed, like recovery times
        x = rng.lognormal(0.0, 0.6, n)
        y = rng.lognormal(0.0, 0.6, n)
        rejected += p_less(x, y) <= alpha
    assert rejected / draws <= alpha + _tolerance(alpha, draws)


@pytest.mark.parametrize(("effect", "level"), [(3.0, 0.05), (2.0, 0.0125), (1.5, 0.01)])
def test_power_is_what_the_sample_size_promises(effect: float, level: float) -> None:
    n = needed_per_group(effect, 1.0, level)
    assert n is not None and n <= 11
    rng = np.random.default_rng(7)
    draws = 400
    hits = sum(
        p_less(rng.normal(0.0, 1.0, n), rng.normal(effect, 1.0, n)) <= level for _ in range(draws)
    )
    assert hits / draws >= 0.8 - 0.05


def _simulated_run(rng: np.random.Generator, rounds: int, shift: float) -> list:
    runs = []
    for rep in range(rounds):
        for fault in ("a", "b", "c"):
            runs.append(window_result("mesh", fault, rep, ttr=float(rng.lognormal(0, 0.5))))
            ttr = float(rng.lognormal(0, 0.5)) + shift
            runs.append(window_result("sidecar", fault, rep, ttr=ttr))
    return runs


CLAIMS = [Claim(f"h-{f}", f, "time_to_recover", "mesh", "sidecar", "lower") for f in "abc"]


def test_sequential_holm_family_keeps_false_positives_at_most_alpha() -> None:
    """Three true-null claims, looked at after each of 6 rounds: any false "supported"."""
    rng = np.random.default_rng(11)
    draws, alpha = 300, 0.05
    plan = SequentialPlan(adaptive=True, max_rounds=6)
    wrong = 0
    for _ in range(draws):
        decisions = decide(_simulated_run(rng, 6, 0.0), CLAIMS, plan)
        wrong += any(d.outcome == "supported" for d in decisions)
    assert wrong / draws <= alpha + _tolerance(alpha, draws)


def test_sequential_family_decides_a_large_difference() -> None:
    rng = np.random.default_rng(12)
    plan = SequentialPlan(adaptive=True, max_rounds=6)
    decisions = decide(_simulated_run(rng, 6, 5.0), CLAIMS, plan)
    assert [d.outcome for d in decisions] == ["supported"] * 3
    assert all(d.repetitions <= 6 for d in decisions)


def test_in_order_family_keeps_false_positives_at_most_alpha() -> None:
    """Fixed-sequence testing, each claim at full alpha, looked at after each of 6 rounds."""
    rng = np.random.default_rng(13)
    draws, alpha = 300, 0.05
    plan = SequentialPlan(adaptive=True, max_rounds=6, family="in-order")
    wrong = 0
    for _ in range(draws):
        decisions = decide(_simulated_run(rng, 6, 0.0), CLAIMS, plan)
        wrong += any(d.outcome == "supported" for d in decisions)
    assert wrong / draws <= alpha + _tolerance(alpha, draws)


def test_in_order_decides_three_clean_separations_at_the_last_look_of_three() -> None:
    rng = np.random.default_rng(14)
    runs = _simulated_run(rng, 3, 20.0)
    holm = decide(runs, CLAIMS, SequentialPlan(adaptive=True, max_rounds=5))
    assert [d.outcome for d in holm] == ["undecided"] * 3  # 3 vs 3: p >= 0.05 > 0.05 / 3
    ordered = decide(runs, CLAIMS, SequentialPlan(adaptive=True, max_rounds=5, family="in-order"))
    assert [d.outcome for d in ordered] == ["supported"] * 3
    # not the last look (the run goes on): the spending function holds alpha back
    early = SequentialPlan(adaptive=True, max_rounds=5, family="in-order", final=False)
    assert [d.outcome for d in decide(runs, CLAIMS, early)] == ["undecided"] * 3


def test_in_order_stops_the_chain_at_a_refuted_claim() -> None:
    rng = np.random.default_rng(15)
    runs = _simulated_run(rng, 4, 20.0)
    wrong_way = Claim("h-a", "a", "time_to_recover", "mesh", "sidecar", "higher")
    decisions = decide(runs, [wrong_way, *CLAIMS[1:]], SequentialPlan(family="in-order"))
    assert [d.outcome for d in decisions] == ["refuted", "undecided", "undecided"]
    assert decisions[1].note == "not tested: h-a before it (in order) was refuted"
    assert "not tested: h-a" in decisions[2].statement
