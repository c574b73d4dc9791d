"""``sidecar-chaos run`` end to end: what a run directory holds after a tiny real run.

The CLI runs as a subprocess in a leased slot (``conftest_faults.cli_argv``): a
sidecar topology, Locust through the ingress, an abort at 100 % on every frontend
pod for 2 s. The tests read only the files the run wrote.
"""

from __future__ import annotations

import csv
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from chaos.rundir.samples import sample_files
from tests.integration.conftest_faults import cli_argv, cli_env

pytestmark = pytest.mark.timeout(120)

EXPERIMENT = """\
name: outputs
setups: [sidecar]
repetitions: 1
seed: 3
traffic:
  users: 10
  spawn_rate: 50
  rate: 50
  endpoints:
    - {name: browse, path: /}
steady_state:
  max_error_rate: 0.01
  max_p95_ms: 1000
timeline:
  warmup: 1s
  hold: 2s
  recovery: 3s
  recovered_for: 1s
faults:
  - type: abort
    name: frontend-500
    target: {service: frontend}
    status: 500
    percent: 100
"""
HOLD_S = 2.0
RUN_KEYS = {
    "setup",
    "fault",
    "repetition",
    "time_to_impact_s",
    "time_to_recover_s",
    "failed_requests",
    "total_requests",
    "error_rate_during_fault",
    "p95_ms_during_fault",
    "steady_state_before",
    "steady_state_after",
    "aborted",
}
BUCKET_COLUMNS = [
    "t",
    "requests",
    "errors",
    "error_rate",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
]


def run_cli(
    tmp_path: Path, slot: int, *extra: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run the tiny experiment to the end; the run directory and the finished process."""
    experiment = tmp_path / "outputs.yaml"
    experiment.write_text(EXPERIMENT, encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = cli_argv(
        "run", str(experiment), "--history", str(tmp_path / "h.db"), "--out", str(run_dir), *extra
    )
    done = subprocess.run(
        argv,
        cwd=tmp_path,
        env=cli_env(slot),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return run_dir, done


def test_a_run_writes_every_output(tmp_path: Path, free_slot: int) -> None:
    run_dir, done = run_cli(tmp_path, free_slot)
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output  # the steady state came back: every hypothesis held
    assert "Traceback" not in done.stderr, output

    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert set(results) >= {"runs", "summary"}
    journal = [
        json.loads(line)
        for line in (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    # How long the admin calls took, by the journal's clock: a loaded machine makes them
    # slower, so every timing below is judged against them, never against a fixed bound.
    applied = next(e for e in journal if e["kind"] == "fault_applied")
    reverted = next(e for e in journal if e["kind"] == "fault_reverted")
    apply_s = applied["t"] - applied["inject_t"]  # inject_t is taken before the calls
    revert_s = reverted["t"] - reverted["revert_t"]
    held = reverted["revert_t"] - applied["inject_t"]
    (run,) = results["runs"]
    assert set(run) >= RUN_KEYS, RUN_KEYS - set(run)
    assert (run["setup"], run["fault"], run["repetition"]) == ("sidecar", "frontend-500", 0)
    assert run["aborted"] is False
    assert run["failed_requests"] > 0 and run["total_requests"] > run["failed_requests"]
    # impact and recovery within one 100 ms bucket (plus a request's 20 ms spacing) of the
    # moment the abort was on at every frontend, or off again
    assert run["time_to_impact_s"] is not None, run
    assert run["time_to_impact_s"] <= apply_s + 0.12 + 1e-6, (run, apply_s)
    assert run["time_to_recover_s"] is not None, run
    assert run["time_to_recover_s"] <= revert_s + 0.12 + 1e-6, (run, revert_s)
    assert run["error_rate_during_fault"] > 0.9, run  # 100 % on every frontend: all fail
    assert run["steady_state_before"] is True and run["steady_state_after"] is True
    # 50 requests/s on an even schedule: each one due while the abort was on at every
    # frontend failed; none due before the first admin call or after the last one did
    # (a request's slot is its due time; 2 of slack for the ends of each span)
    on_s = reverted["revert_t"] - applied["t"]
    span_s = reverted["t"] - applied["inject_t"]
    assert on_s >= HOLD_S
    assert 50 * on_s - 2 <= run["failed_requests"] <= 50 * span_s + 2, (run, on_s, span_s)
    (summary,) = results["summary"]
    assert (summary["setup"], summary["fault"]) == ("sidecar", "frontend-500")
    assert summary["time_to_recover_s"]["median"] == pytest.approx(run["time_to_recover_s"])

    with (run_dir / "buckets.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(BUCKET_COLUMNS) <= set(rows[0]), rows[:1]
    starts = np.array([float(r["t"]) for r in rows])
    assert np.allclose(np.diff(starts), 0.1), "buckets are not 100 ms apart"
    # Inside the hold (after the admin calls had switched it on everywhere, before the
    # revert's began) every request failed.
    on = (apply_s, held)
    during = [
        r
        for r in rows
        if on[0] <= float(r["t_rel"]) and float(r["t_rel"]) + 0.1 <= on[1] and int(r["requests"])
    ]
    healthy = [
        (r["t_rel"], r["requests"], r["errors"]) for r in during if r["errors"] != r["requests"]
    ]
    assert during and not healthy, healthy
    assert sum(int(r["errors"]) for r in rows) >= run["failed_requests"]

    kinds = [entry["kind"] for entry in journal]
    assert kinds.index("fault_applied") < kinds.index("fault_reverted"), kinds
    # Through the whole engine, the abort is measured as long as it was on: from the end of
    # its switching on to the start of its switching off at the least, to a bucket past
    # the calls at the most.
    impact = run["impact_duration_s"]
    assert held - apply_s - 0.1 - 1e-6 <= impact <= held + revert_s + 0.1 + 1e-6, (run, held)
    # where the window's time went, from the same journal's timestamps
    (window,) = results["overhead"]["windows"]
    t = {e["kind"]: e["t"] for e in reversed(journal)}  # each kind's first entry
    assert window["startup_s"] == round(t["topology_up"] - t["window_started"], 3)
    assert window["teardown_s"] == round(t["topology_stopped"] - t["recovery_ended"], 3)
    assert window["phases_s"] >= 1 + HOLD_S + 3  # warm-up, hold, recovery as planned
    assert window["startup_s"] > 0 and window["teardown_s"] > 0
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["exit_code"] == 0, meta
    suite = ET.parse(run_dir / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert cases and not suite.findall(".//failure"), ET.tostring(suite, encoding="unicode")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "frontend-500" in html and "</html>" in html
    with (run_dir / "counters.csv").open(encoding="utf-8") as f:
        counters = list(csv.DictReader(f))
    assert counters, "no proxy counters were sampled"
    # Envoy's own counters too, not only the supervisor's restarts.
    assert any(c["name"].startswith("cluster.") for c in counters), counters[:5]
    assert (tmp_path / "h.db").is_file()


def test_workers_record_samples_from_two_locust_processes(tmp_path: Path, free_slot: int) -> None:
    run_dir, done = run_cli(tmp_path, free_slot, "--workers", "2")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    files = sample_files(run_dir / "samples")
    # The master sends no requests, so it writes no file: one per worker.
    assert len(files) == 2, files
    assert len({f.name.split("-")[1] for f in files}) == 2  # two pids
    (run,) = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["runs"]
    assert run["failed_requests"] > 0 and run["time_to_recover_s"] is not None, run
