"""The whole analysis of a run in one call: every window, the buckets, summaries, comparisons."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from chaos.analysis.counters import counter_frame
from chaos.analysis.model import (
    FaultWindow,
    RunAnalysis,
    SteadyState,
)
from chaos.analysis.security import BypassAttempt, measure_security
from chaos.analysis.shares import affected_share
from chaos.analysis.stats import compare_all, summarize
from chaos.analysis.window import SampleSet, measure_window, window_buckets
from chaos.rundir.columns import SampleColumns
from chaos.rundir.counters import CounterSample
from chaos.rundir.writes import RecordedWrites


def analyze_run(
    samples: pd.DataFrame | SampleColumns,
    windows: Sequence[FaultWindow],
    steady: SteadyState,
    recovered_for_s: float,
    *,
    counters: Sequence[CounterSample] | pd.DataFrame | None = None,
    recorded_writes: RecordedWrites | None = None,
    width_s: float = 0.1,
    resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    min_repetitions: int = 3,
    bypass: Sequence[BypassAttempt] = (),
    max_credentials_exposed: float = 0.001,
) -> RunAnalysis:
    """Measure every window, bucket its timeline, summarize and compare the setups.

    ``samples`` is a frame or, at scale, :func:`chaos.rundir.columns.load_columns`'
    arrays. ``bypass`` holds the bypass probe's attempts and ``max_credentials_exposed``
    the credential bound (each window's ``security``). The samples are sorted and
    converted once; pass the result to
    ``write_results(run_dir, a.runs, a.summaries, a.comparisons, a.buckets)``.
    """
    prepared = SampleSet(samples)
    frame = (
        counters
        if counters is None or isinstance(counters, pd.DataFrame)
        else counter_frame(counters)
    )
    runs = [
        measure_window(
            prepared,
            w,
            steady,
            recovered_for_s,
            counters=frame,
            recorded_writes=recorded_writes,
            width_s=width_s,
        )
        for w in windows
    ]
    c = prepared.columns
    runs = [
        dataclasses.replace(
            r,
            security=measure_security(
                c.t,
                c.status,
                prepared.failed,
                c.auth,
                w.warmup_start_t,
                w.end_t,
                bypass,
                max_credentials_exposed,
            ),
            affected_share=affected_share(frame, w),
        )
        for r, w in zip(runs, windows, strict=True)
    ]
    timelines = [window_buckets(prepared, w, width_s) for w in windows]
    buckets = pd.concat(timelines, ignore_index=True) if timelines else pd.DataFrame()
    return RunAnalysis(
        runs=runs,
        summaries=summarize(runs, resamples=resamples, seed=seed),
        comparisons=compare_all(runs, alpha=alpha, min_repetitions=min_repetitions),
        buckets=buckets,
    )
