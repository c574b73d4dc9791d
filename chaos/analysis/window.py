"""What one fault window did: time to impact, time to recover, impact, writes, counters.

The rules, in the words the report uses:

* A **bucket** (``width_s``, 100 ms by default, aligned at injection) is *within
  the steady state* when its error rate is <= ``max_error_rate`` and its p95
  latency (over all its requests, failed ones included) is <= ``max_p95_ms``. A
  bucket without requests is within it unless a failed or slow request was in
  flight across it: under closed-loop load an outage that hangs requests leaves
  empty buckets, and those must not pass for health.
* A request is **bad** when it failed or took longer than ``max_p95_ms``.
* **Time to impact**: from injection to the first bad request inside the first
  bucket that leaves the steady state. A lone bad request in a bucket that stays
  within the steady state is noise, not impact. ``had_impact`` is False (and
  time to impact None) when every bucket from injection to the window's end stays
  within the steady state: the fault had no visible effect.
* **Time to recover**: from the revert (from injection for ``self_healing``
  faults) to the first stretch of ``recovered_for_s`` (the hold period) in which
  every bucket is within the steady state and some request was seen. The
  recovery instant is the start of that stretch, refined with raw sample times:
  the first request sent after the last bad request of the bucket just before
  it. A recovery instant before the revert (the system routed around the fault)
  gives 0. Without impact it is 0. ``None`` means not recovered within the
  window (the stretch must fit before ``end_t``). A relapse after the stretch
  does not undo the recovery; it sets ``relapsed`` and usually clears
  ``steady_state_after``.
* **Impact duration**: recovery instant minus impact instant (for an abort at
  100 % for D seconds, about D).
* **During the fault**: ``[inject_t, revert_t)``; for self-healing faults
  ``[inject_t, max(revert_t, recovery instant))`` or up to ``end_t`` when not
  recovered. When that period is empty (a self-healing fault with no impact),
  the whole window ``[inject_t, end_t)`` is used. ``p95``/``p99`` during the
  fault are the worst bucket's; ``p50`` is over all requests of the period (a
  latency fault of X ms shows as ``p50_ms_during_fault - baseline_p50_ms``).
* Requests, failures, error kinds and writes count over ``[inject_t, end_t)``;
  the baseline is ``[warmup_start_t, inject_t)``. The steady state *before* is
  judged on the baseline's requests that also ended before injection: one still
  in flight when a crash resets it failed because of the fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from chaos.analysis.buckets import (
    BoolArray,
    BucketStats,
    FloatArray,
    Grid,
    bucket_stats,
)
from chaos.analysis.counters import counter_deltas
from chaos.analysis.model import (
    CounterDeltas,
    FaultResult,
    FaultWindow,
    SteadyState,
    split_dropped,
    split_dropped_columns,
    validate_columns,
    validate_samples,
)
from chaos.rundir.columns import SampleColumns
from chaos.rundir.counters import CounterSample
from chaos.rundir.writes import NO_WRITE, RecordedWrites

_EPS = 1e-9


class SampleSet:
    """Samples sorted by time with their columns as arrays, prepared once for many windows.

    Built from a samples frame or, at scale, from :class:`SampleColumns` as
    :func:`chaos.rundir.columns.load_columns` reads them (no Python object per row).
    DROPPED rows (open-loop requests never sent) are taken out of both: their
    scheduled times are kept in ``dropped_t`` (sorted), to be counted apart.
    """

    def __init__(self, samples: pd.DataFrame | SampleColumns) -> None:
        if isinstance(samples, SampleColumns):
            validate_columns(samples)
            columns, self.dropped_t = split_dropped_columns(samples)
        else:
            validate_samples(samples)
            samples, self.dropped_t = split_dropped(samples)
            if not samples["t"].is_monotonic_increasing:
                samples = samples.sort_values("t", kind="stable")
            columns = SampleColumns.from_frame(samples)
        self.columns = columns
        self.t, self.latency_ms = columns.t, columns.latency_ms
        self.failed = columns.failed()
        self.max_latency_s = float(self.latency_ms.max()) / 1000.0 if len(self.t) else 0.0

    def __len__(self) -> int:
        return len(self.t)

    def span(self, start: float, stop: float) -> slice:
        """Positions of the samples sent in ``[start, stop)``."""
        lo = int(np.searchsorted(self.t, start, side="left"))
        hi = int(np.searchsorted(self.t, stop, side="left"))
        return slice(lo, hi)

    def bad(self, part: slice, steady: SteadyState) -> BoolArray:
        """Which samples of ``part`` failed or were slower than the steady state's p95 bound."""
        return self.failed[part] | (self.latency_ms[part] > steady.max_p95_ms)

    def errors_by_kind(self, part: slice) -> dict[str, int]:
        """Failed requests of ``part`` per error kind, most frequent first."""
        kinds = self.columns.coded("error_kind")[part][self.failed[part]]
        counts = np.bincount(kinds, minlength=len(self.columns.names))
        order = sorted(np.flatnonzero(counts), key=lambda k: -counts[k])
        return {str(self.columns.names[k]): int(counts[k]) for k in order}


@dataclass(frozen=True)
class _Classified:
    stats: BucketStats
    clean: BoolArray
    observed: BoolArray


def _classify(samples: SampleSet, grid: Grid, steady: SteadyState) -> _Classified:
    """Per bucket of ``grid``: its stats and whether it is within the steady state."""
    # Requests sent before the grid can still be in flight across its first buckets.
    part = samples.span(grid.origin - samples.max_latency_s - _EPS, grid.stop)
    t, latency = samples.t[part], samples.latency_ms[part]
    stats = bucket_stats(t, latency, samples.failed[part], grid)
    with np.errstate(invalid="ignore"):
        ok = (stats.error_rate <= steady.max_error_rate) & (stats.p95 <= steady.max_p95_ms)
    observed = stats.requests > 0
    bad = samples.bad(part, steady)
    start, end = t[bad], t[bad] + latency[bad] / 1000.0
    reach = (end >= grid.origin) & (start < grid.stop)
    first = np.clip(grid.index(start[reach]), 0, grid.n - 1)
    last = np.clip(grid.index(end[reach]), 0, grid.n - 1)
    marks = np.bincount(first, minlength=grid.n + 1) - np.bincount(last + 1, minlength=grid.n + 1)
    tainted = np.cumsum(marks)[: grid.n] > 0
    clean = np.where(observed, ok, ~tainted)
    return _Classified(stats=stats, clean=clean, observed=observed)


def _all_clean(
    samples: SampleSet,
    start: float,
    stop: float,
    steady: SteadyState,
    width: float,
    *,
    finished: bool = False,
) -> bool:
    """Whether the steady state held over ``[start, stop)`` as a whole.

    The hypothesis is about the period (its error rate and p95), not about each
    100 ms bucket: at tens of requests per second one error in a bucket of eight
    requests would otherwise break a steady state that clearly holds. With
    ``finished``, only requests that ended before ``stop`` count: before a fault,
    a request still in flight at injection is the fault's (a crash resets it), not
    evidence that the steady state did not hold.
    """
    if stop - start <= _EPS:
        return False
    part = samples.span(start, stop)
    failed = samples.failed[part]
    latency = samples.latency_ms[part]
    if finished:
        done = samples.t[part] + latency / 1000.0 <= stop
        failed, latency = failed[done], latency[done]
    if len(failed) == 0:
        return False
    p95 = float(np.quantile(latency, 0.95))
    return float(failed.mean()) <= steady.max_error_rate and p95 <= steady.max_p95_ms


def _quantile(values: FloatArray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


@dataclass(frozen=True)
class _Recovery:
    instant: float | None  # None: not recovered
    stretch_end_bucket: int


def _recovery(
    samples: SampleSet,
    grid: Grid,
    c: _Classified,
    ref: float,
    hold: float,
    steady: SteadyState,
) -> _Recovery:
    """The start of the first clean stretch of ``hold`` seconds at or after ``ref``'s bucket."""
    length = max(1, math.ceil(hold / grid.width - _EPS))
    if grid.n < length:
        return _Recovery(None, 0)
    clean_sum = np.r_[0, np.cumsum(c.clean)]
    seen_sum = np.r_[0, np.cumsum(c.observed)]
    k = np.arange(grid.n - length + 1)
    starts = grid.starts()[: len(k)]
    candidate = (
        (clean_sum[k + length] - clean_sum[k] == length)
        & (seen_sum[k + length] - seen_sum[k] > 0)
        & (k >= grid.index(np.array([ref]))[0])
        & (starts + hold <= grid.stop + _EPS)
    )
    found = np.flatnonzero(candidate)
    if len(found) == 0:
        return _Recovery(None, 0)
    k0 = int(found[0])
    instant = float(starts[k0])
    if k0 > 0 and not c.clean[k0 - 1]:
        # The first request sent after the last sign of trouble in the bucket before:
        # its last bad request, or (an empty bucket crossed by a hung request) its start.
        before = samples.span(instant - grid.width, instant)
        bad_t = samples.t[before][samples.bad(before, steady)]
        if len(bad_t):
            after = int(np.searchsorted(samples.t, bad_t[-1], side="right"))
        else:
            after = int(np.searchsorted(samples.t, instant - grid.width, side="left"))
        if after < len(samples):
            instant = float(samples.t[after])
    return _Recovery(instant, k0 + length)


def measure_window(
    samples: pd.DataFrame | SampleColumns | SampleSet,
    window: FaultWindow,
    steady: SteadyState,
    recovered_for_s: float,
    *,
    counters: pd.DataFrame | Sequence[CounterSample] | None = None,
    recorded_writes: RecordedWrites | None = None,
    width_s: float = 0.1,
) -> FaultResult:
    """Measure one fault window (the rules are in this module's docstring).

    ``samples`` may be a frame or a ``SampleSet`` prepared once for many windows;
    ``counters`` are proxy counter readings (a frame from ``counter_frame`` or a
    list); ``recorded_writes`` are the ids ``payments`` recorded (None: writes are
    not checked and ``writes_lost``/``writes_duplicated`` are None).
    """
    s = samples if isinstance(samples, SampleSet) else SampleSet(samples)
    w = window
    grid = Grid.over(w.inject_t, w.end_t, width_s)
    c = _classify(s, grid, steady)
    total = int(c.stats.requests.sum())
    ref = w.inject_t if w.self_healing else w.revert_t

    had_impact: bool | None = None
    impact_t: float | None = None
    ttr: float | None = None
    recovery_t: float | None = None
    relapsed = False
    if total > 0:
        dirty = np.flatnonzero(~c.clean)
        had_impact = len(dirty) > 0
        if not had_impact:
            ttr = 0.0
        else:
            k1 = int(dirty[0])
            start = float(grid.starts()[k1])
            part = s.span(start, start + width_s)
            bad_t = s.t[part][s.bad(part, steady)]
            impact_t = float(bad_t[0]) if len(bad_t) else start
            rec = _recovery(s, grid, c, ref, recovered_for_s, steady)
            if rec.instant is not None:
                ttr = max(0.0, rec.instant - ref)
                relapsed = bool((~c.clean[rec.stretch_end_bucket :]).any())
            # The impact ends at the first recovery after it, which may come before the
            # revert (the system routed around the fault) or after it.
            recovery_t = _recovery(s, grid, c, impact_t, recovered_for_s, steady).instant

    in_window = s.span(w.inject_t, w.end_t)
    failed = s.failed[in_window]

    fault_end = _fault_end(w, ttr)
    fault = s.span(w.inject_t, fault_end)
    fault_stats = bucket_stats(
        s.t[fault], s.latency_ms[fault], s.failed[fault], Grid.over(w.inject_t, fault_end, width_s)
    )
    n_fault = fault.stop - fault.start
    seen = fault_stats.requests > 0

    warm = s.span(w.warmup_start_t, w.inject_t)
    n_warm = warm.stop - warm.start
    lost, duplicated = _writes(s, in_window, recorded_writes)
    after_start = max(w.end_t - recovered_for_s, w.inject_t)
    return FaultResult(
        window=w,
        steady=steady,
        recovered_for_s=recovered_for_s,
        had_impact=had_impact,
        time_to_impact_s=None if impact_t is None else max(0.0, impact_t - w.inject_t),
        time_to_recover_s=ttr,
        impact_duration_s=(
            recovery_t - impact_t
            if impact_t is not None and recovery_t is not None and recovery_t >= impact_t
            else None
        ),
        relapsed=relapsed,
        failed_requests=int(failed.sum()),
        total_requests=total,
        error_rate_during_fault=float(s.failed[fault].mean()) if n_fault else None,
        p50_ms_during_fault=_quantile(s.latency_ms[fault], 0.5),
        p95_ms_during_fault=float(fault_stats.p95[seen].max()) if seen.any() else None,
        p99_ms_during_fault=float(fault_stats.p99[seen].max()) if seen.any() else None,
        baseline_error_rate=float(s.failed[warm].mean()) if n_warm else None,
        baseline_p50_ms=_quantile(s.latency_ms[warm], 0.5),
        baseline_p95_ms=_quantile(s.latency_ms[warm], 0.95),
        steady_state_before=_all_clean(
            s, w.warmup_start_t, w.inject_t, steady, width_s, finished=True
        ),
        steady_state_after=_all_clean(s, after_start, w.end_t, steady, width_s),
        writes_lost=lost,
        writes_duplicated=duplicated,
        counters=counter_deltas(counters, w) if counters is not None else CounterDeltas(),
        errors_by_kind=s.errors_by_kind(in_window),
        dropped_requests=int(
            np.searchsorted(s.dropped_t, w.end_t) - np.searchsorted(s.dropped_t, w.inject_t)
        ),
    )


def _fault_end(w: FaultWindow, ttr: float | None) -> float:
    if w.self_healing:
        end = w.end_t if ttr is None else max(w.revert_t, w.inject_t + ttr)
    else:
        end = w.revert_t
    if end - w.inject_t <= _EPS:
        end = w.end_t
    return min(end, w.end_t)


def _writes(
    s: SampleSet, part: slice, recorded: RecordedWrites | None
) -> tuple[int | None, int | None]:
    """Acknowledged writes missing from the record, and writes recorded more than once."""
    if recorded is None:
        return None, None
    keys = s.columns.write_key[part]
    written = keys != NO_WRITE
    if not written.any():
        return 0, 0
    status = s.columns.status[part][written]
    keys = keys[written]
    times = recorded.counts_of(keys)
    # distinct ids counted, but only the few missing or doubled ones need the dedup
    acked = (status >= 200) & (status < 300)
    lost = len(np.unique(keys[acked & (times == 0)]))
    duplicated = len(np.unique(keys[times > 1]))
    return lost, duplicated


def window_buckets(
    samples: pd.DataFrame | SampleColumns | SampleSet, window: FaultWindow, width_s: float = 0.1
) -> pd.DataFrame:
    """Buckets of ``[warmup_start_t, end_t)`` aligned at injection, for timelines.

    Adds ``setup``, ``fault``, ``repetition`` and ``t_rel`` (seconds since injection).
    """
    s = samples if isinstance(samples, SampleSet) else SampleSet(samples)
    w = window
    before = math.ceil((w.inject_t - w.warmup_start_t) / width_s - _EPS)
    origin = w.inject_t - before * width_s
    part = s.span(origin, w.end_t)
    stats = bucket_stats(
        s.t[part], s.latency_ms[part], s.failed[part], Grid.over(origin, w.end_t, width_s)
    )
    frame = stats.frame()
    frame.insert(0, "repetition", w.repetition)
    frame.insert(0, "fault", w.fault)
    frame.insert(0, "setup", w.setup)
    frame.insert(4, "t_rel", frame["t"] - w.inject_t)
    return frame
