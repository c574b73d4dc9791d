"""``junit.xml`` for CI: one testcase per setup and fault hypothesis.

The hypothesis of a (setup, fault) testcase is "the steady state is restored
after the fault". Over its repetitions the testcase

* is an **error** when a repetition was aborted (a stop condition ended it), or
  when the run left no results at all (one ``run`` testcase then carries it);
* is a **failure** when a repetition did not recover, the steady state did not
  hold before the fault or after it, or the fault had no visible effect in any
  repetition (a fault that changed nothing tested nothing);
* passes otherwise, with the time to recover in its output.

Each stated hypothesis adds one testcase per fault it was checked on (classname
``<experiment>.hypotheses``): **refuted** is a failure, **undecided** is skipped
(with the repetitions it would need), supported and equivalent pass; the sentence
with the effect size and its interval is the output. An aborted repetition is
named as the journal names the abort (``interrupted by SIGINT`` or the stop
condition that held).

A window the runner could not measure (``broken`` in the results: a proxy that did
not start, traffic that died) is an **error** testcase of its own, with the reason.

Written with ``xml.etree`` so every string is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from chaos.analysis import FaultResult, Summary, read_results
from chaos.analysis.decisions import DecisionSet
from chaos.analysis.statements import claim_text
from chaos.errors import InputError
from chaos.outpaths import replace_file
from chaos.report.rundata import abort_reason
from chaos.report.verdict import seconds
from chaos.rundir import JUNIT_FILE, META_FILE
from chaos.rundir.journal import read_journal
from chaos.rundir.meta import RunMeta, read_meta


def window_problems(
    runs: Sequence[FaultResult], cause: str = "aborted by a stop condition"
) -> tuple[list[str], list[str]]:
    """(errors, failures) of one setup and fault, one line per repetition that broke."""
    errors, failures = [], []
    for r in sorted(runs, key=lambda r: r.repetition):
        tag = f"repetition {r.repetition}"
        if r.window.aborted:
            errors.append(f"{tag}: {cause}")
            continue
        if r.had_impact is None:
            errors.append(f"{tag}: no requests were measured")
            continue
        if not r.steady_state_before:
            failures.append(f"{tag}: the steady state did not hold before the fault")
        if r.time_to_recover_s is None:
            failures.append(f"{tag}: not recovered within the window")
        elif not r.steady_state_after:
            failures.append(f"{tag}: the steady state did not hold after the fault")
    measured = [r for r in runs if not r.window.aborted and r.had_impact is not None]
    if measured and all(r.had_impact is False for r in measured):
        failures.append("the fault had no visible effect in any repetition (did it take effect?)")
    return errors, failures


def _details(runs: Sequence[FaultResult], summary: Summary | None) -> str:
    lines = []
    if summary is not None:
        e = summary.time_to_recover_s
        lines.append(
            f"time to recover: median {seconds(e.median)} [{seconds(e.low)} .. {seconds(e.high)}] "
            f"over {e.n} measured repetition(s)"
        )
    for r in sorted(runs, key=lambda r: r.repetition):
        rate = "-" if r.error_rate_during_fault is None else f"{r.error_rate_during_fault:.1%}"
        lines.append(
            f"repetition {r.repetition}: time to recover {seconds(r.time_to_recover_s)}, "
            f"failed requests {r.failed_requests}/{r.total_requests}, error rate {rate}"
        )
    return "\n".join(lines)


def _suite(name: str, meta: RunMeta | None) -> ET.Element:
    suite = ET.Element("testsuite", name=name)
    if meta is not None:
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("seed", str(meta.seed)),
            ("started_utc", meta.started_utc),
            ("tool_version", meta.tool_version),
            ("envoy_version", meta.envoy_version),
            ("exit_code", "" if meta.exit_code is None else str(meta.exit_code)),
        ):
            ET.SubElement(props, "property", name=key, value=value)
    return suite


def write_junit(run_dir: Path | str) -> Path:
    """Write ``junit.xml`` into ``run_dir`` from its results (and meta) and return its path."""
    directory = Path(run_dir)
    meta = read_meta(directory) if (directory / META_FILE).exists() else None
    name = meta.experiment_name if meta else directory.name
    suite = _suite(name, meta)
    counts = {"tests": 0, "failures": 0, "errors": 0}
    try:
        analysis = read_results(directory)
    except InputError as exc:
        case = ET.SubElement(suite, "testcase", classname=name, name="run")
        ET.SubElement(case, "error", message="the run left no results", type="aborted").text = str(
            exc
        )
        counts.update(tests=1, errors=1)
        return _write(directory, suite, counts)
    reason = abort_reason(read_journal(directory))
    cause = f"aborted: {reason}" if reason else "aborted by a stop condition"
    groups: dict[tuple[str, str], list[FaultResult]] = {}
    for r in analysis.runs:
        groups.setdefault((r.setup, r.fault), []).append(r)
    summaries = {(s.setup, s.fault): s for s in analysis.summaries}
    for (setup, fault), runs in groups.items():
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{name}.{setup}",
            name=f"{fault}: steady state restored after the fault",
            time=f"{sum(r.window.end_t - r.window.warmup_start_t for r in runs):.3f}",
        )
        counts["tests"] += 1
        errors, failures = window_problems(runs, cause)
        details = _details(runs, summaries.get((setup, fault)))
        if errors:
            counts["errors"] += 1
            ET.SubElement(case, "error", message="; ".join(errors), type="aborted").text = details
        elif failures:
            counts["failures"] += 1
            ET.SubElement(
                case, "failure", message="; ".join(failures), type="hypothesis"
            ).text = details
        ET.SubElement(case, "system-out").text = details
    for broken in analysis.broken:  # the runner's own fault: an error, not a failure
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{name}.{broken.setup}",
            name=f"{broken.fault}#{broken.repetition + 1}: window measured",
        )
        ET.SubElement(
            case, "error", message=f"window broken in {broken.phase}", type="broken"
        ).text = broken.reason
        counts["tests"] += 1
        counts["errors"] += 1
    if analysis.decided is not None:
        _hypotheses(suite, name, analysis.decided, counts)
    if not groups and not analysis.broken and meta is not None and meta.exit_code not in (None, 0):
        case = ET.SubElement(suite, "testcase", classname=name, name="run")
        ET.SubElement(
            case, "error", message=f"run exited with code {meta.exit_code}", type="aborted"
        )
        counts["tests"] += 1
        counts["errors"] += 1
    return _write(directory, suite, counts)


def _hypotheses(suite: ET.Element, name: str, decided: DecisionSet, counts: dict[str, int]) -> None:
    """One testcase per stated hypothesis and fault: refuted fails, undecided is skipped."""
    if not decided.stated:
        return
    for d in decided.decisions:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{name}.hypotheses",
            name=f"{d.claim.hypothesis}: {claim_text(d.claim)}",
        )
        counts["tests"] += 1
        if d.outcome == "refuted":
            counts["failures"] += 1
            ET.SubElement(case, "failure", message="refuted", type="hypothesis").text = d.statement
        elif d.outcome == "undecided":
            counts["skipped"] = counts.get("skipped", 0) + 1
            more = (
                f"undecided: would need about {d.more_repetitions} more repetition(s)"
                if d.more_repetitions is not None
                else "undecided"
            )
            ET.SubElement(case, "skipped", message=more)
        ET.SubElement(case, "system-out").text = d.statement


def _write(directory: Path, suite: ET.Element, counts: dict[str, int]) -> Path:
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", {k: str(v) for k, v in counts.items()})
    root.append(suite)
    ET.indent(root)
    tree = ET.ElementTree(root)
    return replace_file(
        directory / JUNIT_FILE, lambda p: tree.write(p, encoding="utf-8", xml_declaration=True)
    )
