"""Medians, bootstrap intervals and the Mann-Whitney verdict across repetitions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from chaos.analysis import (
    FaultResult,
    FaultWindow,
    SteadyState,
    bootstrap_median,
    compare,
    compare_all,
    measure_window,
    summarize,
)
from chaos.testing.synthetic import Outage, synthetic_samples

SAMPLES = synthetic_samples(0.0, 30.0, 200, outages=[Outage(10.0, 12.0)])
STEADY = SteadyState(max_error_rate=0.01, max_p95_ms=50.0)


def base_result() -> FaultResult:
    w = FaultWindow("a", "crash", "crash", 1, 10.0, 10.0, 25.0, True, 0.0)
    return measure_window(SAMPLES, w, STEADY, 2.0)


BASE = base_result()


def results(setup: str, ttrs: list[float | None], fault: str = "crash") -> list[FaultResult]:
    out = []
    for i, ttr in enumerate(ttrs):
        w = replace(BASE.window, setup=setup, fault=fault, repetition=i + 1)
        out.append(replace(BASE, window=w, time_to_recover_s=ttr))
    return out


def test_bootstrap_is_seeded_and_brackets_the_median() -> None:
    values = [1.0, 1.2, 0.9, 1.4, 1.1, 3.0, 1.05]
    one = bootstrap_median(values, seed=4)
    assert one == bootstrap_median(values, seed=4)
    assert one.median == pytest.approx(float(np.median(values)))
    assert one.low is not None and one.high is not None and one.median is not None
    assert one.low <= one.median <= one.high
    assert one.n == 7


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_median([]).median is None
    single = bootstrap_median([2.5])
    assert (single.median, single.low, single.high) == (2.5, 2.5, 2.5)
    # Mostly not recovered: the median is infinite, reported as None, never NaN.
    mostly_inf = bootstrap_median([1.0, math.inf, math.inf])
    assert mostly_inf.median is None and mostly_inf.high is None
    assert mostly_inf.low == 1.0


def test_identical_distributions_are_not_significant() -> None:
    rs = results("a", [1.0, 1.2, 0.9, 1.1, 1.3]) + results("b", [1.1, 0.95, 1.25, 1.0, 1.2])
    c = compare(rs, "a", "b", "crash")
    assert not c.supported and c.faster is None
    assert c.p_value is not None and c.p_value > 0.05
    assert "no supported difference" in c.statement


def test_clearly_separated_setups_are_significant_in_the_right_direction() -> None:
    rs = results("a", [3.1, 2.9, 3.3, 3.0, 3.2]) + results("b", [1.0, 1.2, 0.9, 1.1, 1.05])
    c = compare(rs, "a", "b", "crash")
    assert c.supported and c.faster == "b"
    assert c.p_value is not None and c.p_value < 0.05
    assert c.median_a == pytest.approx(3.1) and c.median_b == pytest.approx(1.05)
    assert c.difference_s == pytest.approx(1.05 - 3.1)
    assert c.ratio == pytest.approx(3.1 / 1.05)
    assert c.statement.startswith("crash: b recovers faster than a")


def test_too_few_repetitions_are_said_so() -> None:
    rs = results("a", [3.0, 3.1]) + results("b", [1.0, 1.1, 1.2, 0.9, 1.0])
    c = compare(rs, "a", "b", "crash")
    assert not c.supported and c.p_value is None
    assert "not enough repetitions" in c.statement


def test_three_each_cannot_reach_significance_and_says_why() -> None:
    rs = results("a", [3.0, 3.1, 3.2]) + results("b", [1.0, 1.1, 1.2])
    c = compare(rs, "a", "b", "crash")
    assert not c.supported
    assert c.p_value == pytest.approx(0.1)
    assert "cannot reach" in c.statement


def test_not_recovered_ranks_worse_than_any_recovery() -> None:
    rs = results("a", [None, None, None, None, 50.0]) + results("b", [5.0, 6.0, 7.0, 5.5, 6.5])
    c = compare(rs, "a", "b", "crash")
    assert c.supported and c.faster == "b"
    assert c.median_a is None  # infinite
    assert c.difference_s is None and c.ratio is None
    assert "not recovered" in c.statement


def test_summary_per_setup_and_fault_leaves_out_aborted_runs() -> None:
    aborted = results("a", [100.0])[0]
    aborted = replace(aborted, window=replace(aborted.window, aborted=True, repetition=9))
    rs = [*results("a", [1.0, 2.0, 3.0]), aborted, *results("a", [7.0], fault="latency")]
    rs += results("b", [None, None, 4.0])
    by_key = {(s.setup, s.fault): s for s in summarize(rs)}
    assert set(by_key) == {("a", "crash"), ("a", "latency"), ("b", "crash")}
    a = by_key[("a", "crash")]
    assert (a.repetitions, a.aborted, a.recovered) == (4, 1, 3)
    assert a.time_to_recover_s.median == 2.0 and a.time_to_recover_s.n == 3
    assert a.failed_requests.median == BASE.failed_requests
    b = by_key[("b", "crash")]
    assert b.recovered == 1 and b.time_to_recover_s.median is None


def test_compare_all_pairs_setups_per_fault() -> None:
    rs = results("a", [1.0] * 3) + results("b", [2.0] * 3) + results("c", [3.0] * 3)
    rs += results("a", [1.0] * 3, fault="latency")
    pairs = {(c.fault, c.setup_a, c.setup_b) for c in compare_all(rs)}
    assert pairs == {("crash", "a", "b"), ("crash", "a", "c"), ("crash", "b", "c")}
