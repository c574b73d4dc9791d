"""Bucket statistics against straightforward pandas/numpy references."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from chaos.analysis import BUCKET_COLUMNS, bucketize, empty_samples
from chaos.testing.synthetic import Outage, synthetic_samples


def frame(t: list[float], latency: list[float], kinds: list[str]) -> pd.DataFrame:
    n = len(t)
    return pd.DataFrame(
        {
            "t": t,
            "endpoint": ["/a"] * n,
            "method": ["GET"] * n,
            "latency_ms": latency,
            "status": [503 if k else 200 for k in kinds],
            "error_kind": kinds,
            "write_id": [""] * n,
        }
    )


def test_counts_rates_and_throughput() -> None:
    samples = frame(
        [10.00, 10.05, 10.12, 10.19, 10.31],
        [1.0, 3.0, 5.0, 7.0, 9.0],
        ["", "http", "", "", "reset"],
    )
    b = bucketize(samples, 0.1)
    assert list(b.columns) == list(BUCKET_COLUMNS)
    assert b.t.to_numpy() == pytest.approx([10.0, 10.1, 10.2, 10.3])
    assert list(b.requests) == [2, 2, 0, 1]
    assert list(b.errors) == [1, 0, 0, 1]
    assert b.error_rate.iloc[0] == 0.5 and np.isnan(b.error_rate.iloc[2])
    assert b.throughput_rps.to_numpy() == pytest.approx([20.0, 20.0, 0.0, 10.0])
    # The failed request's latency counts: p50 of [1, 3] is 2.
    assert b.p50_ms.iloc[0] == pytest.approx(2.0)
    assert np.isnan(b.p95_ms.iloc[2])


def test_sample_on_an_edge_goes_to_the_later_bucket() -> None:
    samples = frame([0.3, 0.7], [1.0, 1.0], ["", ""])
    b = bucketize(samples, 0.1, start=0.0, stop=1.0)
    assert len(b) == 10
    assert list(b.requests) == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]


def test_percentiles_match_numpy_per_bucket() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    samples = frame(
        list(rng.uniform(0, 5, n)),
        list(rng.exponential(20, n)),
        list(np.where(rng.random(n) < 0.1, "timeout", "")),
    )
    b = bucketize(samples, 0.1).set_index("t")
    key = np.floor(samples.t / 0.1 + 1e-9).astype(int)
    for q, column in [(0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")]:
        expected = samples.groupby(key).latency_ms.quantile(q).to_numpy()
        assert b[column].to_numpy() == pytest.approx(expected, rel=1e-9)
    assert b.errors.sum() == (samples.error_kind != "").sum()


def test_start_and_stop_bound_and_align_the_buckets() -> None:
    samples = synthetic_samples(0.0, 10.0, 100, outages=[Outage(2.05, 2.55)])
    b = bucketize(samples, 0.1, start=2.05, stop=3.0)
    assert b.t.iloc[0] == pytest.approx(2.05)
    assert len(b) == 10  # the last bucket [2.95, 3.0) is cut short
    assert b.throughput_rps.iloc[-1] == pytest.approx(b.requests.iloc[-1] / 0.05)
    assert list(b.error_rate.iloc[:5]) == [1.0] * 5
    assert b.error_rate.iloc[5:].max() == 0.0


def test_empty_samples_give_an_empty_frame() -> None:
    b = bucketize(empty_samples())
    assert list(b.columns) == list(BUCKET_COLUMNS) and len(b) == 0
    bounded = bucketize(empty_samples(), start=0.0, stop=1.0)
    assert len(bounded) == 10 and bounded.requests.sum() == 0


def test_bad_width_is_refused() -> None:
    with pytest.raises(ValueError):
        bucketize(empty_samples(), 0.0)


def test_two_million_rows_complete_quickly() -> None:
    # A sanity check that the implementation is vectorized; timing targets are benchmarks.
    samples = synthetic_samples(0.0, 400.0, 5000, background_error_rate=0.01)
    assert len(samples) == 2_000_000
    # CPU time, not wall time: a loaded machine lengthens the wall clock, not the work
    began = time.process_time()
    b = bucketize(samples)
    cpu_s = time.process_time() - began
    assert len(b) == 4000 and b.requests.sum() == len(samples)
    assert cpu_s < 20.0
