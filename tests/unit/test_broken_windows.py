"""The runner's own faults on the fake platform: a window that breaks is reverted, kept, named.

A proxy that does not start in a later window, traffic that dies during the hold:
the engine reverts what it applied, records the window as broken with the step it
broke in, goes on with the next window; ``finish`` lists it in ``results.json`` and
the report and exits 4 (1 and 3 keep their meaning). The same cases with real Envoy
and Locust are in tests/integration/test_runner_faults.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chaos.analysis import BrokenWindow, read_results, write_results
from chaos.engine.finish import EXIT_ABORTED, EXIT_BROKEN, EXIT_FAILED, EXIT_OK, exit_code, finish
from chaos.engine.records import schedule
from chaos.engine.run import Engine, RunOptions
from chaos.errors import FaultError
from chaos.experiment import Experiment, load_experiment
from chaos.rundir import JOURNAL_FILE, REPORT_FILE, RESULTS_FILE
from chaos.rundir.journal import read_journal
from chaos.testing.fake_platform import FakePlatform
from chaos.testing.fake_traffic import Death, FakeTraffic
from chaos.traffic.config import TrafficConfig
from tests.unit.test_engine import experiment_file


def _engine(
    tmp_path: Path, platform: FakePlatform, deaths: list[Death | None] | None = None
) -> tuple[Engine, Experiment]:
    """An engine whose n-th traffic dies as ``deaths[n]`` says (None: it runs through)."""
    experiment = load_experiment(experiment_file(tmp_path, hold="100ms"))
    started: list[FakeTraffic] = []

    def traffic(config: TrafficConfig) -> FakeTraffic:
        death = deaths[len(started)] if deaths and len(started) < len(deaths) else None
        started.append(FakeTraffic(config, death=death))
        return started[-1]

    options = RunOptions(run_dir=tmp_path / "run", traffic=traffic, tick_s=0.01)
    return Engine(experiment, platform, options), experiment


def _finish(engine: Engine, experiment: Experiment, platform: FakePlatform) -> int:
    records = engine.run()
    outcome = finish(
        experiment,
        platform,
        engine.run_dir,
        records,
        started_utc="2026-11-29T23:00:00+00:00",
        aborted_reason=engine.aborted,
        history=None,
    )
    return outcome.exit_code


def test_a_proxy_that_does_not_start_in_a_later_window_breaks_only_that_window(
    tmp_path: Path,
) -> None:
    starts: list[str] = []

    def second_start_fails(name: str) -> None:
        if name == "start":
            starts.append(name)
            if len(starts) == 2:
                raise FaultError("envoy exited with code 1 before it was ready")

    platform = FakePlatform(on_call=second_start_fails)
    engine, experiment = _engine(tmp_path, platform)
    code = _finish(engine, experiment, platform)

    first, second = engine.windows
    assert first.error is None and first.evidence is not None and first.evidence.took_effect
    assert second.error is not None and "did not start" in second.error
    assert "envoy exited with code 1" in second.error
    assert second.phase == "start" and second.inject_t is None
    # The second window touched nothing: one apply and one revert, both in the first window.
    assert platform.log.names().count("set_http_fault") == 1
    assert platform.log.names().count("clear_http_fault") == 1
    assert code == EXIT_BROKEN

    document = json.loads((engine.run_dir / RESULTS_FILE).read_text())
    label = schedule(experiment)[1]
    assert document["broken"] == [
        {
            "setup": label.setup,
            "fault": label.fault,
            "repetition": 0,
            "phase": "start",
            "reason": second.error,
            "injected": False,
        }
    ]
    failed = [e for e in read_journal(engine.run_dir) if e.kind == "window_failed"]
    assert [e.get_str("phase") for e in failed] == ["start"]
    html = (engine.run_dir / REPORT_FILE).read_text()
    assert "Broken windows: 1" in html and "envoy exited with code 1" in html
    assert "windows broken (exit 4)" in html


def test_traffic_that_dies_in_the_hold_breaks_the_window_and_the_fault_is_reverted(
    tmp_path: Path,
) -> None:
    applied: list[float] = []

    def dies_after_apply(now: float) -> str | None:
        if applied and now > applied[0] + 0.03:
            return "Locust main (pid 4242) was killed by signal 9"
        return None

    def note_apply(name: str) -> None:
        if name == "set_http_fault":
            applied.append(time.monotonic())

    platform = FakePlatform(on_call=note_apply)
    engine, experiment = _engine(tmp_path, platform, deaths=[dies_after_apply, None])
    code = _finish(engine, experiment, platform)

    first, second = engine.windows
    # the journal's record: the broken window left at once, its recovery phase never ran
    kinds = [e.kind for e in read_journal(engine.run_dir)]
    assert kinds.count("window_started") == 2 and kinds.count("recovery_ended") == 1
    assert kinds.index("window_failed") < kinds.index("recovery_ended")
    assert first.error == "Locust main (pid 4242) was killed by signal 9"
    assert first.phase == "hold" and first.inject_t is not None
    assert second.error is None
    # Every apply has its revert, the broken window's included, and both topologies stopped.
    assert platform.log.names() == ["start", "set_http_fault", "clear_http_fault", "stop"] * 2
    steps = [e.kind for e in read_journal(engine.run_dir) if e.kind.startswith("fault_")]
    assert steps.count("fault_applied") == steps.count("fault_reverted") == 2
    assert code == EXIT_BROKEN
    (broken,) = read_results(engine.run_dir).broken
    assert broken.phase == "hold" and broken.injected and "signal 9" in broken.reason


def test_a_broken_window_is_measured_in_nothing(tmp_path: Path) -> None:
    """Only windows that ran through are analysed: a broken one neither passes nor fails."""
    from chaos.engine.records import windows_for_analysis

    platform = FakePlatform(fail_on=["set_http_fault"])
    engine, _ = _engine(tmp_path, platform)
    records = engine.run()
    assert all(r.error and r.inject_t is not None for r in records)
    assert windows_for_analysis(records) == []


def test_a_run_directory_that_cannot_be_written_aborts_with_one_line(tmp_path: Path) -> None:
    """The journal on a full disk: RunDirectoryError (exit 3), the fault still reverted."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this machine")
    platform = FakePlatform()
    engine, experiment = _engine(tmp_path, platform)
    writes: list[str] = []

    def full_after_apply(name: str) -> None:
        if name == "set_http_fault" and not writes:
            writes.append(name)
            # From now on every journal line goes to a device that is always full.
            engine.journal._file.close()
            engine.journal._file = full.open("a", encoding="utf-8")

    platform.log.on_call = full_after_apply
    code = _finish(engine, experiment, platform)
    assert code == EXIT_ABORTED
    assert engine.aborted is not None
    assert engine.aborted.startswith(f"{engine.run_dir / JOURNAL_FILE}: cannot write the journal")
    assert "No space left on device" in engine.aborted
    # Reverted and stopped though nothing more could be journaled; the second window never ran.
    assert platform.log.names() == ["start", "set_http_fault", "clear_http_fault", "stop"]


@pytest.mark.parametrize(
    ("aborted", "failures", "broken", "code"),
    [
        (False, False, False, EXIT_OK),
        (False, False, True, EXIT_BROKEN),
        (False, True, True, EXIT_FAILED),
        (True, True, True, EXIT_ABORTED),
    ],
)
def test_exit_codes_in_order_of_precedence(
    aborted: bool, failures: bool, broken: bool, code: int
) -> None:
    assert exit_code(aborted=aborted, failures=failures, broken=broken) == code


def test_broken_windows_round_trip_and_old_results_have_none(tmp_path: Path) -> None:
    broken = BrokenWindow("mesh", "crash", 2, "traffic", "Locust main exited with code 1", False)
    write_results(tmp_path, [], [], [], broken=[broken])
    assert read_results(tmp_path).broken == [broken]
    assert broken.label == "mesh/crash#3"
    document = json.loads((tmp_path / RESULTS_FILE).read_text())
    del document["broken"]
    (tmp_path / RESULTS_FILE).write_text(json.dumps(document))
    assert read_results(tmp_path).broken == []


def test_junit_has_an_error_per_broken_window(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    from chaos.report import write_junit

    broken = BrokenWindow("mesh", "crash", 0, "hold", "Locust main (pid 7) was killed by signal 9")
    write_results(tmp_path, [], [], [], broken=[broken])
    root = ET.parse(write_junit(tmp_path)).getroot()
    assert root.get("tests") == "1" and root.get("errors") == "1"
    (case,) = root.iter("testcase")
    assert case.get("classname", "").endswith(".mesh")
    assert case.get("name") == "crash#1: window measured"
    error = case.find("error")
    assert error is not None and error.get("type") == "broken"
    assert error.get("message") == "window broken in hold" and "signal 9" in (error.text or "")
