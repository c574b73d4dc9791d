"""CrashLoopBackOff arithmetic of the supervisor (pure)."""

from __future__ import annotations

import pytest

from chaos.platforms.local.backoff import BackoffPolicy


def test_kubelet_defaults_restart_at_once_then_double_from_10_s_to_a_300_s_cap() -> None:
    policy = BackoffPolicy()
    assert [policy.delay_s(n) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert policy.reset_after_s == 600


def test_backing_off_from_the_first_crash() -> None:
    policy = BackoffPolicy(first_restart_immediate=False)
    assert [policy.delay_s(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_short_test_schedule() -> None:
    policy = BackoffPolicy(
        initial_s=0.2, factor=2, max_s=1.6, reset_after_s=3, first_restart_immediate=False
    )
    assert [policy.delay_s(n) for n in range(1, 7)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 1.6, 1.6])


def test_a_long_crash_loop_stays_at_the_cap() -> None:
    assert BackoffPolicy().delay_s(100_000) == 300


def test_other_factors() -> None:
    policy = BackoffPolicy(initial_s=1, factor=3, max_s=100, reset_after_s=10)
    assert [policy.delay_s(n) for n in range(1, 7)] == [0, 1, 3, 9, 27, 81]
    constant = BackoffPolicy(
        initial_s=0.5, factor=1, max_s=0.5, reset_after_s=10, first_restart_immediate=False
    )
    assert {constant.delay_s(n) for n in range(1, 10)} == {0.5}


def test_consecutive_crashes_count_up_until_a_clean_run_resets_them() -> None:
    policy = BackoffPolicy(initial_s=0.2, factor=2, max_s=1.6, reset_after_s=3)
    assert policy.crashes_after(0, ran_for_s=0.1) == 1
    assert policy.crashes_after(1, ran_for_s=0.1) == 2
    assert policy.crashes_after(4, ran_for_s=2.99) == 5
    # Ran cleanly for reset_after_s: this crash counts as the first again.
    assert policy.crashes_after(4, ran_for_s=3.0) == 1
    assert policy.crashes_after(4, ran_for_s=100.0) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": -1},
        {"factor": 0.5},
        {"initial_s": 10, "max_s": 5},
        {"reset_after_s": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        BackoffPolicy(**kwargs)


def test_crash_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="crashes must be >= 1"):
        BackoffPolicy().delay_s(0)
