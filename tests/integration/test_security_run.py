"""A real run with the security section: the counts in results.json, the report's table,
and a stated credential bound that fails the run.

The CLI runs as a subprocess in a leased slot: a sidecar topology, Locust through the
ingress, the bypass probe, a policy mismatch at checkout. The assertions read the
files the run wrote (the samples, the probe's records, results.json, the report).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from chaos.rundir.columns import load_columns
from tests.integration.conftest_faults import cli_argv, cli_env

pytestmark = pytest.mark.timeout(120)

EXPERIMENT = """\
name: security
setups: [sidecar]
repetitions: 1
traffic:
  users: 5
  spawn_rate: 5
  rate: 20
  endpoints:
    - {name: browse, path: /}
steady_state: {max_error_rate: 0.01, max_p95_ms: 1000}
timeline: {warmup: 1s, hold: 2s, recovery: 2s, recovered_for: 1s}
security:
  max_credentials_exposed: 0.5     # stated: every app sees the bearer token, so it breaks
  bypass: {rate: 4, max_requests: 12}
faults:
  - type: policy-mismatch
    name: checkout-denied
    target: {service: checkout}
"""


def test_a_run_counts_what_got_through(tmp_path: Path, free_slot: int) -> None:
    experiment = tmp_path / "security.yaml"
    experiment.write_text(EXPERIMENT, encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = cli_argv(
        "run", str(experiment), "--history", str(tmp_path / "h.db"), "--out", str(run_dir)
    )
    done = subprocess.run(
        argv, cwd=tmp_path, env=cli_env(free_slot), capture_output=True, text=True, timeout=90
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 1, output  # the stated credential bound broke
    assert "security invariant broken in sidecar/checkout-denied#1: credentials" in output
    assert "served unauthenticated" not in output  # the mismatch failed closed

    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    (run,) = results["runs"]
    security = run["security"]
    # the probe's own records: bounded, and every one served by the plain sidecar's app
    records = [
        json.loads(line)
        for line in (run_dir / "bypass").glob("*.jsonl").__next__().read_text().splitlines()
    ]
    w = run["window"]
    assert 1 <= len(records) <= 12
    assert {r["outcome"] for r in records} == {"served"}
    in_window = [r for r in records if w["warmup_start_t"] <= r["t"] < w["end_t"]]
    assert security["bypass_sent"] == security["bypass_served"] == len(in_window) > 0
    # requests: the samples say which were served, and what each app said it received
    columns = load_columns(run_dir)
    inside = (columns.t >= w["warmup_start_t"]) & (columns.t < w["end_t"])
    served = inside & (columns.status > 0) & (columns.status < 400) & ~columns.failed()
    assert security["served"] == int(served.sum()) > 0
    assert security["served_unauthenticated"] == 0
    assert security["credentials_exposed"] == security["served"]
    assert run["errors_by_kind"].get("http", 0) > 0  # the policy denied requests (403)
    (total,) = results["security"]
    assert (total["setup"], total["windows"], total["windows_held"]) == ("sidecar", 1, 0)
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Security: what got through" in report
