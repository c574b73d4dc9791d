"""``sidecar-chaos run`` end to end: a stop condition ends the run early, still reverting."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest_faults import (
    assert_nothing_left,
    fault_steps,
    start_run,
    write_experiment,
)

HOLD_S = 20.0


def test_a_stop_condition_ends_the_run_early_and_reverts(tmp_path: Path, free_slot: int) -> None:
    experiment = write_experiment(
        tmp_path,
        hold=f"{HOLD_S:g}s",
        percent=100,
        replica=None,  # every checkout replica: every request fails
        stop="{type: error_rate, above: 0.5, for: 1s}",
    )
    run = start_run(tmp_path, free_slot, experiment)
    code = run.wait(timeout_s=HOLD_S + 40)

    assert code == 3, f"exit code {code}\n{run.stderr}"
    entries = run.journal()
    by_kind = {e.kind: e for e in entries}
    assert list(fault_steps(entries).values()) == [
        ["fault_planned", "fault_applied", "fault_reverted"]
    ]
    aborted = by_kind["run_aborted"]
    assert "stop condition held: error rate above 50% for 1 s" in aborted.get_str("reason")
    # Ended by the condition (about 1-3 s into the hold), not by the end of the hold.
    held = by_kind["fault_reverted"].t - by_kind["fault_applied"].t
    assert 1.0 <= held < HOLD_S / 2, f"reverted {held:.1f} s after injection"
    assert "fault_verified" not in by_kind  # the hold never finished
    assert "aborted: stop condition held" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert_nothing_left(run)
    # The run is still written up: results and meta with the abort and the exit code.
    meta = (run.run_dir / "meta.json").read_text(encoding="utf-8")
    assert '"exit_code": 3' in meta and "stop condition held" in meta, meta
