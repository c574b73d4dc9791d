"""A run from the command line: where it writes checked first, its directory made, the engine
run, the outcome recorded, pushed and printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chaos.cli.console import err, out, say, warn_line
from chaos.errors import InputError

if TYPE_CHECKING:
    from chaos.cli.metrics import Monitoring
    from chaos.experiment import Experiment
    from chaos.platforms.base import Platform


def run_dir_for(out_dir: Path | None, name: str) -> Path:
    if out_dir is not None:
        return out_dir
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"{stamp}-{name}"


def check_outputs(run_dir: Path | None, history: Path | None) -> None:
    """Where a run will write, checked before anything starts (nothing is created)."""
    from chaos.outpaths import check_run_dir
    from chaos.report.history import HistoryStore

    if run_dir is not None:
        check_run_dir(run_dir, "--out")
    if history is not None:
        if history.is_dir() or not history.name:
            raise InputError(f"--history: {history} is not a file path (use --no-history to skip)")
        HistoryStore(history).check()


def execute(
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

    from chaos.cli.metrics import Monitoring, push_after_run, start_live_metrics, tee
    from chaos.engine.finish import finish
    from chaos.engine.run import Engine, RunOptions, copy_experiment
    from chaos.engine.view import make_view
    from chaos.outpaths import create_run_dir
    from chaos.report.effective import write_effective_experiment
    from chaos.report.summary import run_summary

    check_outputs(run_dir, history)
    monitoring = monitoring or Monitoring()
    live = start_live_metrics(monitoring, experiment.name, say)  # a taken port: exit 2 now
    create_run_dir(run_dir)
    copy_experiment(file, run_dir)
    write_effective_experiment(run_dir, experiment, *overrides)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    say(f"run directory: {run_dir}")
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
    push_after_run(run_dir, monitoring, warn_line)
    for note in outcome.notes:
        warn_line(note)
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
    from chaos.report.cost import cost_lines

    for line in cost_lines(run_dir):
        say(line)
    for line in run_summary(run_dir, outcome.exit_code, outcome.report):
        say(line)
    return outcome.exit_code
