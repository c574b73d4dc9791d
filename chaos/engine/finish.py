"""After the engine's windows: measure, write the results, the report, JUnit and the history.

The engine runs the windows and hands over what it recorded; this module, which
the CLI calls, turns a run directory into every output. It also decides the
exit code, the first that applies of:

- 3: the run was aborted (a stop condition, a signal, a run directory that
  cannot be written);
- 1: a hypothesis failed in a measured window (steady state not restored, not
  recovered, a stated comparative hypothesis refuted) or a fault had no effect;
- 4: a window broke: the runner could not measure it (a proxy that did not
  start, a port taken, traffic that died, a full samples disk). It is listed
  with its reason in ``results.json`` and the report and measured in nothing;
  the other windows still count. Nightly CI can retry on 4 and page on 1.
- 0: every window ran and every hypothesis held.

When one of these files cannot be written (a full disk at the very end), ``finish``
stops there and raises ``OutputError`` (exit 5): one line naming the file, saying
whether the journal shows every fault reverted, and which outputs were written
whole before it. Every window, and so every fault's revert and every topology's
teardown, has ended before ``finish`` is called, and each file is written to a
temporary name and renamed (the history in one transaction), so nothing
half-written is left.
"""

from __future__ import annotations

import platform
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chaos import __version__
from chaos.analysis import (
    BrokenWindow,
    RunAnalysis,
    SteadyState,
    analyze_run,
    write_analysis,
)
from chaos.analysis.adaptive import decisions_for, refuted_lines
from chaos.analysis.cost_io import finish_cost
from chaos.analysis.decisions import DecisionSet
from chaos.analysis.model import FaultResult
from chaos.analysis.overhead import run_overhead
from chaos.analysis.security import invariant_lines, load_bypass
from chaos.engine.records import (
    WindowRecord,
    broken_windows,
    recorded_writes_of,
    windows_for_analysis,
)
from chaos.errors import ChaosError, OutputError
from chaos.experiment import CertExpiryFault, Experiment
from chaos.experiment.security import credentials_bound, security_parameters
from chaos.outpaths import replace_file
from chaos.platforms.base import Platform
from chaos.report import HistoryStore, report_html, write_junit
from chaos.report.history import SCHEMA_VERSION
from chaos.rundir import (
    BUCKETS_FILE,
    JUNIT_FILE,
    META_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SAMPLES_DIR,
)
from chaos.rundir.columns import Latencies, load_columns
from chaos.rundir.counters import read_counters
from chaos.rundir.dataplane import tables_of
from chaos.rundir.journal import read_journal, unreverted_plans
from chaos.rundir.meta import RunMeta, write_meta


@dataclass(frozen=True)
class RunOutcome:
    """What the CLI prints and exits with."""

    exit_code: int
    report: Path | None
    failures: tuple[str, ...]
    runs: tuple[FaultResult, ...]
    broken: tuple[BrokenWindow, ...] = ()
    #: Things the user should know that change nothing in the result (a migrated store).
    notes: tuple[str, ...] = ()


#: Exit codes of a run (see the module docstring).
EXIT_OK, EXIT_FAILED, EXIT_ABORTED, EXIT_BROKEN = 0, 1, 3, 4
#: What ``finish`` writes into the run directory, in order.
_OUTPUTS = (RESULTS_FILE, BUCKETS_FILE, META_FILE, REPORT_FILE, JUNIT_FILE)


def exit_code(*, aborted: bool, failures: bool, broken: bool) -> int:
    """The run's exit code: aborted, then a failed hypothesis, then a broken window."""
    if aborted:
        return EXIT_ABORTED
    if failures:
        return EXIT_FAILED
    return EXIT_BROKEN if broken else EXIT_OK


def versions(target: Platform) -> dict[str, str]:
    """The platform's versions (Envoy, ...), Locust's and Python's, for the method section."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        locust_version = version("locust")
    except PackageNotFoundError:
        locust_version = "unknown"
    return {
        **target.versions(),
        "locust": locust_version,
        "python": platform.python_version(),
    }


def _connection_lifetime(experiment: Experiment, target: Platform) -> str:
    """How long proxies keep upstream connections (it bounds how fast an expiry shows)."""
    default = target.parameters().get("connection_lifetime_s", "platform default")
    values = {
        f.name or f.type: f.connection_lifetime
        for f in experiment.faults
        if isinstance(f, CertExpiryFault) and f.connection_lifetime is not None
    }
    text = f"{default:g} s" if isinstance(default, float) else str(default)
    if values:
        text += " (" + ", ".join(f"{name}: {v:g} s" for name, v in values.items()) + ")"
    return text


def judge(records: list[WindowRecord], runs: list[FaultResult], aborted: bool) -> list[str]:
    """Every broken hypothesis, one line each (empty: all held)."""
    failures: list[str] = []
    for r in records:
        if r.error is None and r.evidence is not None and not r.evidence.took_effect:
            failures.append(f"{r.key.label}: the fault had no effect ({r.evidence.detail})")
    for run in runs:
        label = f"{run.setup}/{run.fault}#{run.repetition + 1}"
        if run.window.aborted:
            continue
        if not run.steady_state_before:
            failures.append(f"{label}: steady state did not hold before the fault")
        elif run.time_to_recover_s is None or not run.steady_state_after:
            failures.append(f"{label}: steady state not restored within the recovery window")
    if aborted:
        failures.append("the run was aborted")
    return failures


def finish(
    experiment: Experiment,
    target: Platform,
    run_dir: Path,
    records: list[WindowRecord],
    *,
    started_utc: str,
    aborted_reason: str | None,
    history: Path | None,
) -> RunOutcome:
    """Analyse the run directory, write every output, decide the exit code.

    ``OutputError`` (exit 5) when an output cannot be written; see the module docstring.
    """
    with _writing_outputs(run_dir):
        return _finish(
            experiment,
            target,
            run_dir,
            records,
            started_utc=started_utc,
            aborted_reason=aborted_reason,
            history=history,
        )


def _rendered_report(run_dir: Path, latencies: Mapping[Path, Latencies] | None) -> str:
    """The report's HTML; a failure to render it is one line (``OutputError``, exit 5)."""
    try:
        return report_html([run_dir], latencies=latencies)
    except ChaosError:
        raise
    except Exception as exc:  # a bug or an odd run: the results are written, say so in one line
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        raise OutputError(
            run_dir / REPORT_FILE, f"the report could not be rendered ({why})"
        ) from exc


@contextmanager
def _writing_outputs(run_dir: Path) -> Iterator[None]:
    """An ``OutputError`` from the block, said in one line with what was written before it."""
    try:
        yield
    except OutputError as exc:
        written = [name for name in _OUTPUTS if (run_dir / name).is_file()]
        raise OutputError(
            exc.path,
            f"{exc.reason}; {_faults_state(run_dir)}; written whole before it: "
            f"{', '.join(written) or 'none of results, meta, report, junit'}",
        ) from exc


def _faults_state(run_dir: Path) -> str:
    """What the journal says of the run's faults once its windows are over."""
    try:
        left = unreverted_plans(read_journal(run_dir))
    except ChaosError:
        return "the windows had ended"
    if not left:
        return "the windows had ended and every fault was reverted"
    return (
        f"the windows had ended; {len(left)} fault(s) not reverted, "
        f"see `sidecar-chaos clean {run_dir}`"
    )


def _finish(
    experiment: Experiment,
    target: Platform,
    run_dir: Path,
    records: list[WindowRecord],
    *,
    started_utc: str,
    aborted_reason: str | None,
    history: Path | None,
) -> RunOutcome:
    windows = windows_for_analysis(records)
    broken = broken_windows(records)
    dataplane = tables_of(read_journal(run_dir))
    samples_root = run_dir / SAMPLES_DIR
    samples = load_columns(run_dir) if samples_root.is_dir() else None
    runs: list[FaultResult] = []
    refuted: list[str] = []
    analysis: RunAnalysis | None = None
    decided: DecisionSet | None = None
    if samples is not None and windows:
        writes = recorded_writes_of(records)
        analysis = analyze_run(
            samples,
            windows,
            SteadyState(experiment.steady_state.max_error_rate, experiment.steady_state.max_p95_ms),
            experiment.timeline.recovered_for,
            counters=read_counters(run_dir),
            recorded_writes=writes,
            seed=experiment.seed,
            bypass=load_bypass(run_dir),
            max_credentials_exposed=credentials_bound(experiment.security),
        )
        del writes
        decided = decisions_for(
            experiment.hypotheses,
            analysis.runs,
            adaptive=experiment.adaptive,
            max_rounds=experiment.planned_repetitions,
            seed=experiment.seed,
            family=experiment.multiple_testing,
        )
        runs = list(analysis.runs)
        refuted = refuted_lines(decided.decisions)
    if analysis is not None or broken:  # a run of broken windows only says so too
        write_analysis(
            run_dir,
            analysis,
            decided=decided,
            broken=broken,
            overhead=run_overhead(read_journal(run_dir)),
            dataplane=dataplane,
        )
    del analysis
    cost, refuted_cost = finish_cost(run_dir, experiment)  # the cost step's figures, if any
    refuted += refuted_cost
    # the report needs only the times and latencies: keep those, never two copies at the peak
    latencies = {run_dir: samples.sent_latencies()} if samples is not None else None
    del samples
    failures = judge(records, runs, aborted_reason is not None) + refuted
    if experiment.security is not None:  # declared: a broken invariant fails the run
        stated = "max_credentials_exposed" in experiment.security.model_fields_set
        failures += invariant_lines(runs, credentials=stated)
    code = exit_code(
        aborted=aborted_reason is not None, failures=bool(failures), broken=bool(broken)
    )
    v = versions(target)
    write_meta(
        run_dir,
        RunMeta(
            tool_version=__version__,
            envoy_version=v.get("envoy", "unknown"),
            locust_version=v["locust"],
            python_version=v["python"],
            seed=experiment.seed,
            experiment_name=experiment.name,
            started_utc=started_utc,
            finished_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            exit_code=code,
            run_uid=secrets.token_hex(6),
            dataplane=dataplane,
            setups=tuple(experiment.setups),
            faults=tuple(experiment.fault_names()),
            parameters={
                "repetitions": experiment.repetitions,
                "warmup_s": experiment.timeline.warmup,
                "hold_s": experiment.timeline.hold,
                "recovery_s": experiment.timeline.recovery,
                "recovered_for_s": experiment.timeline.recovered_for,
                "users": experiment.traffic.users,
                "rate_rps": experiment.traffic.rate,
                "max_error_rate": experiment.steady_state.max_error_rate,
                "max_p95_ms": experiment.steady_state.max_p95_ms,
                "connection_lifetime_s": _connection_lifetime(experiment, target),
                "platform": target.name,
                "aborted": aborted_reason,
                "broken_windows": len(broken),
                **security_parameters(experiment.security),
            },
        ),
    )
    report: Path | None = None
    if runs or broken or cost is not None:
        html = _rendered_report(run_dir, latencies)
        report = replace_file(run_dir / REPORT_FILE, lambda p: p.write_text(html, "utf-8"))
        del html
        write_junit(run_dir)
    del latencies
    notes: list[str] = []
    if history is not None:
        store = HistoryStore(history)
        store.record(run_dir)
        if store.migration_backup is not None:
            notes.append(
                f"history: {history} was migrated to schema version {SCHEMA_VERSION}; "
                f"the store as it was is kept in {store.migration_backup}"
            )
    return RunOutcome(code, report, tuple(failures), tuple(runs), tuple(broken), tuple(notes))
