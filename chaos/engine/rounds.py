"""The order of windows, round by round: ``repetitions: auto`` decides between rounds.

``rounds(experiment, records, run_dir)`` yields the windows to run. For a fixed
number of repetitions it is ``schedule(experiment)``. For ``auto`` it yields the
first round whole, then, before each later round, measures the windows run so
far (the same analysis ``finish`` makes) and asks
``chaos.analysis.adaptive.next_step``: stop (every hypothesis decided, the most
rounds run, or the next round would not fit in the time budget less what it holds
back for the cost step's first rounds, ``Experiment.cost_reserve_s``) or run the next
round with only the windows undecided hypotheses compare.

It is a lazy generator: the engine appends each window's record to ``records``
as it runs it, so the decision before round ``k`` sees every window of rounds
``0..k-1``. The engine calls it with one line, in place of ``schedule``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from chaos.analysis import FaultResult, SteadyState, analyze_run
from chaos.analysis.adaptive import Budget, Stop, next_step
from chaos.analysis.hypotheses import claims_for
from chaos.analysis.security import load_bypass
from chaos.engine.records import (
    WindowKey,
    WindowRecord,
    recorded_writes_of,
    schedule,
    windows_for_analysis,
)
from chaos.experiment import Experiment
from chaos.experiment.security import credentials_bound


def measured_so_far(
    experiment: Experiment, run_dir: Path, records: list[WindowRecord]
) -> list[FaultResult]:
    """Every finished window of the run so far, measured as ``finish`` measures it."""
    from chaos.rundir import SAMPLES_DIR
    from chaos.rundir.columns import load_columns
    from chaos.rundir.counters import read_counters

    windows = windows_for_analysis(records)
    if not windows or not (run_dir / SAMPLES_DIR).is_dir():
        return []
    analysis = analyze_run(
        load_columns(run_dir),
        windows,
        SteadyState(experiment.steady_state.max_error_rate, experiment.steady_state.max_p95_ms),
        experiment.timeline.recovered_for,
        counters=read_counters(run_dir),
        recorded_writes=recorded_writes_of(records),
        resamples=200,
        seed=experiment.seed,
        bypass=load_bypass(run_dir),
        max_credentials_exposed=credentials_bound(experiment.security),
    )
    return list(analysis.runs)


def rounds(
    experiment: Experiment,
    records: list[WindowRecord],
    run_dir: Path,
    *,
    clock: Callable[[], float] = time.monotonic,
    measure: Callable[[Experiment, Path, list[WindowRecord]], list[FaultResult]] = (
        measured_so_far
    ),
    say: Callable[[str], None] | None = None,
) -> Iterator[WindowKey]:
    """The windows to run, in order (see the module docstring)."""

    keys = schedule(experiment)
    if not experiment.adaptive:
        yield from keys
        return
    by_round: dict[int, list[WindowKey]] = {}
    for key in keys:
        by_round.setdefault(key.repetition, []).append(key)
    started = clock()
    for number in sorted(by_round):
        todo = by_round[number]
        if number > 0:
            runs = measure(experiment, run_dir, records)
            budget = Budget(
                max_rounds=experiment.planned_repetitions,
                seconds=experiment.budget,
                elapsed_s=clock() - started,
                windows_run=len(records),
                reserved_s=experiment.cost_reserve_s,
            )
            step = next_step(
                runs,
                claims_for(experiment.hypotheses, runs),
                budget,
                seed=experiment.seed,
                family=experiment.multiple_testing,
            )
            if isinstance(step, Stop):
                if say is not None:
                    say(f"repetitions: auto: stop, {step.reason}")
                return
            wanted = set(step.windows)
            todo = [k for k in todo if (k.setup, k.fault) in wanted]
            if say is not None:
                say(f"repetitions: auto: round {number + 1}, {len(todo)} windows ({step.reason})")
        yield from todo
    if say is not None:
        say(f"repetitions: auto: stop, the most rounds ({len(by_round)}) were run")
