"""Decisions end to end through a synthetic run directory: results.json, HTML, JUnit."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.analysis import read_results
from chaos.experiment import load_experiment
from chaos.report import render_report, write_junit
from chaos.report.effective import write_effective_experiment
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

FAULTS = (SyntheticFault("abort-checkout"), SyntheticFault("crash-payments", "crash"))
HYPOTHESES = """\
  - {name: mesh-faster, fault: abort-checkout, metric: time_to_recover,
     setup: mesh, compared_to: sidecar, expect: lower}
  - {name: mesh-slower, fault: abort-checkout, metric: time_to_recover,
     setup: mesh, compared_to: sidecar, expect: higher}
  - {name: same-p95, fault: crash-payments, metric: p95,
     setup: mesh, compared_to: sidecar, expect: equivalent, margin: 50ms}
  - {name: fewer-failures, metric: failed_requests, setup: mesh, compared_to: sidecar,
     expect: lower, min_difference: 100000}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticRun(
        faults=FAULTS,
        repetitions=5,
        recovery_s={"sidecar": 9.0, "mesh": 0.5},
        hypotheses_yaml=HYPOTHESES,
    )
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "run", spec)


def test_results_json_holds_one_decision_per_hypothesis_and_fault(run_dir: Path) -> None:
    document = json.loads((run_dir / "results.json").read_text())
    decided = document["decisions"]
    assert decided["stated"] is True
    outcomes = {
        (d["claim"]["hypothesis"], d["claim"]["fault"]): d["outcome"] for d in decided["decisions"]
    }
    assert outcomes == {
        ("mesh-faster", "abort-checkout"): "supported",
        ("mesh-slower", "abort-checkout"): "refuted",
        ("same-p95", "crash-payments"): "equivalent",
        # a difference of 100,000 requests is out of reach: refuted on both faults
        ("fewer-failures", "abort-checkout"): "refuted",
        ("fewer-failures", "crash-payments"): "refuted",
    }
    back = read_results(run_dir).decided
    assert back is not None and [d.outcome for d in back.decisions] == list(outcomes.values())


def test_headline_shows_each_hypothesis_with_effect_and_repetitions(run_dir: Path) -> None:
    html = render_report([run_dir], run_dir / "report.html").read_text()
    assert "<h3" in html and "Hypotheses</h3>" in html
    row = re.search(r"<td>mesh-faster</td>(.*?)</tr>", html, re.S)
    assert row is not None
    cells = row.group(1)
    assert 'class="badge supported"' in cells
    # the not-recovered sidecar makes the difference a bound, with its interval
    assert re.search(r"≤ -[\d.]+ s \[-[\d.]+, -[\d.]+\]", cells)
    assert "decided after 5" in cells
    assert "Holm" in html and "permutation" in html and "not independent" in html


def test_junit_has_a_case_per_hypothesis_and_refuted_fails(run_dir: Path) -> None:
    root = ET.parse(write_junit(run_dir)).getroot()
    cases = [c for c in root.iter("testcase") if c.get("classname", "").endswith(".hypotheses")]
    assert len(cases) == 5
    failed = sorted(c.get("name", "").split(":")[0] for c in cases if c.find("failure") is not None)
    assert failed == ["fewer-failures", "fewer-failures", "mesh-slower"]
    assert all(c.find("system-out") is not None for c in cases)


def test_undecided_hypothesis_is_skipped_with_the_repetitions_it_needs(tmp_path: Path) -> None:
    run = write_synthetic_run(
        tmp_path / "run",
        SyntheticRun(repetitions=2, hypotheses_yaml=HYPOTHESES.split("  - {name: mesh-slower")[0]),
    )
    root = ET.parse(write_junit(run)).getroot()
    skipped = [c.find("skipped") for c in root.iter("testcase")]
    messages = [s.get("message", "") for s in skipped if s is not None]
    assert len(messages) == 1
    assert re.fullmatch(r"undecided: would need about \d+ more repetition\(s\)", messages[0])


def test_abort_is_named_as_the_journal_names_it(tmp_path: Path) -> None:
    reason = "interrupted by SIGINT; every fault was reverted"
    run = write_synthetic_run(
        tmp_path / "run",
        SyntheticRun(
            aborted=(("sidecar", "abort-checkout", 0), ("mesh", "abort-checkout", 0)),
            abort_reason=reason,
            repetitions=1,
            exit_code=3,
        ),
    )
    junit = write_junit(run).read_text()
    assert f"aborted: {reason}" in junit
    assert "stop condition" not in junit
    html = render_report([run], tmp_path / "r.html").read_text()
    assert "stop condition" not in html
    assert f"aborted (exit 3): {reason}" in html
    # the failures results.json counts are on the page, not "none"
    document = json.loads((run / "results.json").read_text())
    failed = {r["setup"]: r["failed_requests"] for r in document["runs"]}
    for setup, count in failed.items():
        assert count > 0
        assert f"{count:,} (aborted)" in html, setup


def test_effective_experiment_is_shown_beside_the_original(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(repetitions=3))
    experiment = load_experiment(
        run / "experiment.yaml", overrides=["repetitions=1"], setups=["sidecar"]
    )
    path = write_effective_experiment(run, experiment, ["repetitions=1"], ["sidecar"])
    text = path.read_text()
    assert text.startswith("# the experiment as run, after: --set repetitions=1 --setup sidecar")
    again = load_experiment(path)  # the effective file is itself a valid experiment
    assert again.repetitions == 1 and again.setups == ("sidecar",)
    html = render_report([run], tmp_path / "r.html").read_text()
    assert "Effective experiment, as run" in html
    assert "--set repetitions=1 --setup sidecar" in html
    assert "repetitions: 3" in html  # the original, as written
