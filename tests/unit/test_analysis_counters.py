"""Counter rises over a window, with restarts resetting counters."""

from __future__ import annotations

from chaos.analysis import FaultWindow, counter_deltas, counter_frame
from chaos.rundir.counters import CounterSample

WINDOW = FaultWindow(
    setup="sidecar",
    fault="crash",
    fault_type="crash",
    repetition=1,
    inject_t=100.0,
    revert_t=100.0,
    end_t=130.0,
    self_healing=True,
    warmup_start_t=90.0,
)


def series(proxy: str, name: str, points: list[tuple[float, float]]) -> list[CounterSample]:
    return [CounterSample(t, proxy, name, v) for t, v in points]


def test_rise_counts_from_the_last_reading_before_injection() -> None:
    samples = series(
        "a", "cluster.orders.upstream_rq_retry", [(90, 5), (99, 7), (110, 12), (129, 20)]
    )
    assert counter_deltas(samples, WINDOW).retries == 13


def test_readings_after_the_window_are_ignored() -> None:
    samples = series("a", "cluster.orders.upstream_rq_retry", [(99, 0), (120, 4), (140, 100)])
    assert counter_deltas(samples, WINDOW).retries == 4


def test_a_drop_is_a_restart_not_a_negative_rise() -> None:
    # Envoy restarted between 105 and 110: its counters started again from 0.
    samples = series(
        "b", "cluster.x.upstream_cx_connect_fail", [(99, 50), (105, 60), (110, 3), (120, 8)]
    )
    assert counter_deltas(samples, WINDOW).connect_failures == 10 + 3 + 5


def test_categories_sum_over_proxies_and_keep_each_counter() -> None:
    samples = [
        *series("a", "cluster.p.ssl.fail_verify_error", [(99, 0), (120, 4)]),
        *series("b", "listener.0.ssl.connection_error", [(99, 1), (120, 3)]),
        *series("b", "cluster.p.outlier_detection.ejections_enforced_total", [(99, 0), (120, 2)]),
        *series("supervisor", "restarts", [(99, 1), (101, 2)]),
        *series("a", "cluster.p.upstream_rq_retry_success", [(99, 0), (120, 9)]),
    ]
    d = counter_deltas(counter_frame(samples), WINDOW)
    assert (d.tls_failures, d.ejections, d.restarts, d.retries) == (6, 2, 1, 0)
    assert d.by_counter["a:cluster.p.upstream_rq_retry_success"] == 9
    assert d.by_counter["b:listener.0.ssl.connection_error"] == 2


def test_no_readings_give_zeros() -> None:
    d = counter_deltas([], WINDOW)
    assert (d.retries, d.tls_failures, d.by_counter) == (0, 0, {})
