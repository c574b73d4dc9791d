"""The end-of-run console summary: decisions (or verdicts), the exit code's meaning, the report.

``summary_lines`` is pure; ``run_summary`` reads a finished run directory and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chaos.analysis import read_results
from chaos.analysis.decisions import DecisionSet
from chaos.analysis.statements import claim_text
from chaos.errors import InputError
from chaos.report.rundata import abort_reason
from chaos.report.verdict import FaultVerdict, fault_verdict
from chaos.rundir.journal import read_journal

#: What each exit code of ``run`` means.
EXIT_MEANINGS: dict[int, str] = {
    0: "every hypothesis held",
    1: "a hypothesis failed (steady state not restored, a fault without effect, or a "
    "stated hypothesis refuted)",
    2: "the experiment or an option was invalid",
    3: "the run was aborted",
    4: "a window broke: the runner could not measure it (see 'window broken' above); "
    "no hypothesis failed in the others",
}


def _more(n: int | None) -> str:
    return "" if n is None else f", about {n} more repetition(s) per setup would decide it"


def summary_lines(
    decided: DecisionSet | None,
    verdicts: Sequence[FaultVerdict],
    exit_code: int,
    report: Path | str | None,
    *,
    aborted: str | None = None,
    limit: int = 12,
) -> list[str]:
    """A few lines for the console: one per hypothesis (or fault verdict), then exit and report."""
    lines: list[str] = []
    if decided is not None and decided.stated:
        lines.append("hypotheses:")
        for d in decided.decisions[:limit]:
            reps = f"after {d.repetitions} repetition(s)"
            extra = _more(d.more_repetitions) if d.outcome == "undecided" else ""
            lines.append(
                f"  {d.outcome.upper():<10} {d.claim.hypothesis}: {claim_text(d.claim)} "
                f"({reps}{extra})"
            )
        if len(decided.decisions) > limit:
            lines.append(f"  ... and {len(decided.decisions) - limit} more in the report")
        if decided.stop_reason:
            lines.append(f"repetitions: auto stopped: {decided.stop_reason}")
    elif verdicts:
        lines.append("verdicts:")
        for v in verdicts[:limit]:
            lines.append(f"  {v.badge.upper():<10} {v.fault}: {v.sentence}")
    if aborted:
        lines.append(f"aborted: {aborted}")
    meaning = EXIT_MEANINGS.get(exit_code, "unknown")
    lines.append(f"exit code {exit_code}: {meaning}")
    if report is not None:
        lines.append(f"report: {report}")
    return lines


def run_summary(run_dir: Path, exit_code: int, report: Path | None) -> list[str]:
    """``summary_lines`` for a finished run directory (no results: exit code and report only)."""
    aborted = abort_reason(read_journal(run_dir))
    try:
        analysis = read_results(run_dir)
    except InputError:
        return summary_lines(None, [], exit_code, report, aborted=aborted)
    faults = list(dict.fromkeys(r.fault for r in analysis.runs))
    verdicts = [
        fault_verdict(
            f,
            analysis.summaries,
            analysis.comparisons,
            decided=analysis.decided,
            abort_cause=aborted or "by a stop condition",
        )
        for f in faults
    ]
    return summary_lines(analysis.decided, verdicts, exit_code, report, aborted=aborted)
