"""A run from the command line: where it writes checked first, its directory made, the engine
run, the outcome recorded, pushed and printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chaos.cliconsole import _plain, _warn, err, out
from chaos.errors import InputError

if TYPE_CHECKING:
    from chaos.metrics.hooks import Monitoring
    from chaos.platforms.base import Platform
    from chaos.spec import Experiment


def _run_dir(out_dir: Path | None, name: str) -> Path:
    if out_dir is not None:
        return out_dir
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"{stamp}-{name}"


def _check_outputs(run_dir: Path | None, history: Path | None) -> None:
    """Where a run will write, checked before anything starts (nothing is created)."""
    from chaos.history import HistoryStore
    from chaos.outpaths import check_run_dir

    if run_dir is not None:
        check_run_dir(run_dir, "--out")
    if history is not None:
        if history.is_dir() or not history.name:
            raise InputError(f"--history: {history} is not a file path (use --no-history to skip)")
        HistoryStore(history).check()


def _execute(
    experiment: Experiment,
    platform: Platform,
    file: Path,
    run_dir: Path,
    workers: int,
    history: Path | None,
    monitoring: Monitoring | None = None,
    overrides: tuple[list[str], list[str]] = ([], []),
) -> int:
    from datetime import UTC, datetime

    from chaos.engine.run import Engine, RunOptions, copy_experiment
    from chaos.engine.view import make_view
    from chaos.metrics.hooks import Monitoring, push_after_run, start_live_metrics, tee
    from chaos.outcome import finish
    from chaos.outpaths import create_run_dir
    from chaos.report.effective import write_effective_experiment
    from chaos.report.summary import run_summary

    _check_outputs(run_dir, history)
    monitoring = monitoring or Monitoring()
    live = start_live_metrics(monitoring, experiment.name, _plain)  # a taken port: exit 2 now
    create_run_dir(run_dir)
    copy_experiment(file, run_dir)
    write_effective_experiment(run_dir, experiment, *overrides)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    _plain(f"run directory: {run_dir}")
    view = tee(make_view(out), live)
    options = RunOptions(run_dir=run_dir, workers=workers, view=view)
    engine = Engine(experiment, platform, options)
    try:
        records = engine.run()
    finally:
        view.close()
    outcome = finish(
        experiment,
        platform,
        run_dir,
        records,
        started_utc=started,
        aborted_reason=engine.aborted,
        history=history,
    )
    push_after_run(run_dir, monitoring, _warn)
    for note in outcome.notes:
        _warn(note)
    for failure in outcome.failures:
        err.print(f"hypothesis failed: {failure}", markup=False, highlight=False, soft_wrap=True)
    for broken in outcome.broken:
        err.print(
            # the first line: a startup failure appends log lines (results.json keeps them)
            f"window broken: {broken.label} in {broken.phase}: {broken.reason.splitlines()[0]}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if engine.aborted:
        err.print(f"aborted: {engine.aborted}", markup=False, highlight=False)
    for line in run_summary(run_dir, outcome.exit_code, outcome.report):
        _plain(line)
    return outcome.exit_code
