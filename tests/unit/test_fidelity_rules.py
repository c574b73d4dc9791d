"""Measurement rules the fidelity tests rely on, on synthetic samples."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaos.analysis import FaultWindow, SteadyState, measure_window

STEADY = SteadyState(max_error_rate=0.01, max_p95_ms=500.0)


def _samples(t: np.ndarray, latency_ms: np.ndarray, failed: np.ndarray) -> pd.DataFrame:
    n = len(t)
    return pd.DataFrame(
        {
            "t": t.astype("float64"),
            "endpoint": ["browse"] * n,
            "method": ["GET"] * n,
            "latency_ms": latency_ms.astype("float64"),
            "status": np.where(failed, 0, 200).astype("int64"),
            "error_kind": np.where(failed, "reset", ""),
            "write_id": [""] * n,
        }
    )


def test_requests_in_flight_at_a_crash_do_not_break_the_steady_state_before() -> None:
    # 200 rps for 1 s of warm-up; a crash at t=1.0 resets the 5 requests in flight
    # (sent in the last 25 ms, 40 ms each); everything after fails until t=2.5.
    t = np.arange(0.0, 5.0, 0.005)
    latency = np.full(len(t), 40.0)
    in_flight = (t >= 0.975) & (t < 1.0)
    down = (t >= 1.0) & (t < 2.5)
    latency[in_flight] = (1.001 - t[in_flight]) * 1000.0  # reset by the crash
    latency[down] = 1.0
    failed = in_flight | down
    window = FaultWindow("sidecar", "crash", "crash", 0, 1.0, 1.0, 5.0, True, 0.0)

    r = measure_window(_samples(t, latency, failed), window, STEADY, 1.0)

    assert in_flight.sum() / (t < 1.0).sum() > STEADY.max_error_rate  # would have failed it
    assert r.steady_state_before
    assert r.time_to_recover_s is not None and abs(r.time_to_recover_s - 1.5) < 0.01


def test_errors_that_ended_before_injection_still_break_it() -> None:
    t = np.arange(0.0, 5.0, 0.005)
    latency = np.full(len(t), 10.0)
    failed = (t >= 0.5) & (t < 0.55)  # 10 of 200 warm-up requests failed, long before
    window = FaultWindow("sidecar", "crash", "crash", 0, 1.0, 1.0, 5.0, True, 0.0)

    r = measure_window(_samples(t, latency, failed), window, STEADY, 1.0)

    assert not r.steady_state_before
