"""Per-bucket (100 ms by default) throughput, error rate and latency percentiles.

Latency percentiles are taken over *all* requests of a bucket, failed ones
included: leaving failures out would let a bucket of fast 503s look healthy, and
a request that hung until its timeout is exactly the latency a user felt. A
bucket full of fast failures is caught by its error rate instead.

Percentiles interpolate linearly between order statistics (numpy's default).
Everything is vectorized: one sort of (bucket, latency) and index arithmetic, so
an hour at 5,000 requests/s (18 M rows) is a few seconds, not a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from chaos.analysis.model import split_dropped

#: Columns of a bucket frame, in order.
BUCKET_COLUMNS: tuple[str, ...] = (
    "t",
    "requests",
    "errors",
    "error_rate",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
)

# Guards floor() against binary fractions: 0.3 / 0.1 == 2.9999999999999996.
_EPS = 1e-9

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Grid:
    """Buckets ``[origin + k * width, origin + (k + 1) * width)``, k in 0..n-1, cut at ``stop``."""

    origin: float
    width: float
    n: int
    stop: float

    @classmethod
    def over(cls, start: float, stop: float, width: float) -> Grid:
        """The grid aligned at ``start`` that covers ``[start, stop)``."""
        n = max(0, math.ceil((stop - start) / width - _EPS))
        return cls(origin=start, width=width, n=n, stop=stop)

    def starts(self) -> FloatArray:
        """Start time of every bucket."""
        return self.origin + np.arange(self.n, dtype=np.float64) * self.width

    def lengths(self) -> FloatArray:
        """Length of every bucket in seconds (the last one may be cut short by ``stop``)."""
        starts = self.starts()
        return np.minimum(starts + self.width, self.stop) - starts

    def index(self, t: FloatArray) -> IntArray:
        """Bucket index of each time (may fall outside 0..n-1)."""
        return np.floor((t - self.origin) / self.width + _EPS).astype(np.int64)


@dataclass(frozen=True)
class BucketStats:
    """Per-bucket numbers on a grid, as arrays (NaN where a bucket has no requests)."""

    grid: Grid
    requests: IntArray
    errors: IntArray
    p50: FloatArray
    p95: FloatArray
    p99: FloatArray

    @property
    def error_rate(self) -> FloatArray:
        """Errors over requests; NaN for an empty bucket."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.requests > 0, self.errors / self.requests, np.nan)

    def frame(self) -> pd.DataFrame:
        """The stats as a frame with ``BUCKET_COLUMNS``."""
        lengths = self.grid.lengths()
        with np.errstate(invalid="ignore", divide="ignore"):
            throughput = np.where(lengths > 0, self.requests / lengths, 0.0)
        return pd.DataFrame(
            {
                "t": self.grid.starts(),
                "requests": self.requests,
                "errors": self.errors,
                "error_rate": self.error_rate,
                "throughput_rps": throughput,
                "p50_ms": self.p50,
                "p95_ms": self.p95,
                "p99_ms": self.p99,
            },
            columns=list(BUCKET_COLUMNS),
        )


def bucket_stats(
    t: FloatArray, latency_ms: FloatArray, failed: BoolArray, grid: Grid
) -> BucketStats:
    """Count and take percentiles per bucket of ``grid``; samples outside it are ignored."""
    idx = grid.index(t)
    inside = (idx >= 0) & (idx < grid.n) & (t < grid.stop)
    idx = idx[inside]
    latency = latency_ms[inside]
    requests = np.bincount(idx, minlength=grid.n).astype(np.int64)
    errors = np.bincount(idx, weights=failed[inside], minlength=grid.n).astype(np.int64)
    # One float sort of (bucket, latency) packed as bucket * span + latency is ~4x faster
    # than np.lexsort on millions of rows; unpacking loses at most one ulp of the packed
    # key (well under a microsecond of latency for any realistic run).
    span = float(latency.max()) + 1.0 if len(latency) else 1.0
    packed = np.sort(idx * span + latency)
    first = np.cumsum(requests) - requests
    p50, p95, p99 = (_percentile(packed, first, requests, span, q) for q in (0.50, 0.95, 0.99))
    return BucketStats(grid=grid, requests=requests, errors=errors, p50=p50, p95=p95, p99=p99)


def _percentile(
    packed: FloatArray, first: IntArray, counts: IntArray, span: float, q: float
) -> FloatArray:
    """Linear-interpolated q-quantile of each bucket from the sorted packed keys."""
    out = np.full(len(counts), np.nan)
    has = counts > 0
    if not has.any():
        return out
    offset = np.flatnonzero(has) * span
    pos = q * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    base = first[has]
    low_value = packed[base + lo] - offset
    high_value = packed[base + hi] - offset
    out[has] = low_value + (high_value - low_value) * (pos - lo)
    return out


def sample_arrays(samples: pd.DataFrame) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Times, latencies and failed flags of a samples frame as numpy arrays."""
    t = samples["t"].to_numpy(dtype=np.float64)
    latency = samples["latency_ms"].to_numpy(dtype=np.float64)
    failed = (samples["error_kind"].to_numpy(dtype=object) != "").astype(np.bool_)
    return t, latency, failed


def bucketize(
    samples: pd.DataFrame,
    width_s: float = 0.1,
    *,
    start: float | None = None,
    stop: float | None = None,
) -> pd.DataFrame:
    """Per-bucket throughput, error rate and p50/p95/p99 latency of ``samples``.

    Without ``start``/``stop`` the buckets sit on multiples of ``width_s`` and span
    the first to the last sample; with them, they are aligned at ``start`` and
    cover ``[start, stop)``. Buckets without requests are kept (requests 0, rates
    and percentiles NaN) so a gap in traffic shows as a gap, not as nothing.
    ``t`` is the bucket's start; ``throughput_rps`` uses the bucket's real length.
    """
    if width_s <= 0:
        raise ValueError("width_s must be positive")
    t, latency, failed = sample_arrays(split_dropped(samples)[0])
    if start is None or stop is None:
        if len(t) == 0:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in BUCKET_COLUMNS})
        if start is None:
            start = math.floor(float(t.min()) / width_s + _EPS) * width_s
        if stop is None:
            last = math.floor((float(t.max()) - start) / width_s + _EPS)
            stop = start + (last + 1) * width_s
    grid = Grid.over(start, stop, width_s)
    return bucket_stats(t, latency, failed, grid).frame()
