"""During a ``run``, ``status`` and ``token`` reach the topology the run brought up.

A real short run (one sidecar window, a long warm-up so nothing is injected yet while
we look): ``status --json`` names the run, its window and the ingress on its random
port, which answers; ``token --run`` mints a token that ingress accepts. When the run
ends, the runner has withdrawn its record itself.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from chaos.platforms.local import registry
from chaos.proc import start_ticks
from tests.integration.conftest_faults import assert_nothing_left, start_run, write_experiment
from tests.integration.test_cli_platform import cli

pytestmark = pytest.mark.slow


def test_status_and_token_reach_a_running_runs_topology(
    tmp_path: Path, free_slot: int, chaos_state_dir: Path
) -> None:
    experiment = write_experiment(tmp_path, hold="1s")
    run = start_run(
        tmp_path,
        free_slot,
        experiment,
        "--set",
        # Longer than the checks below take on a loaded machine (each CLI subprocess can take
        # seconds to start): the run is interrupted once they are done.
        "timeline.warmup=120s",
        "--set",
        "timeline.recovery=1s",
    )
    try:
        run.wait_for_entry("topology_up", timeout_s=60)
        shown = cli("status", "--json", "--setup", "sidecar")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert (status["kind"], status["setup"], status["slot"]) == ("run", "sidecar", free_slot)
        assert status["run_id"] == run.run_dir.name and status["run_dir"] == str(run.run_dir)
        assert status["window"] == "sidecar-checkout-500-1"
        assert status["owner_pid"] == run.proc.pid
        assert status["owner_start_ticks"] == start_ticks(run.proc.pid)
        assert status["ingress"].startswith("http://127.0.0.1:")
        assert [p.name for p in (chaos_state_dir / registry.RUNS_DIR).glob("*.json")] == [
            f"{free_slot}-{run.proc.pid}-{status['owner_start_ticks']}.json"
        ]

        # The ingress answers (and wants a token); `token` mints one it accepts.
        assert httpx.get(status["ingress"] + "/", timeout=10.0).status_code == 401
        minted = cli("token", "--setup", "sidecar", "--run", run.run_dir.name)
        # (the run's own journal and stderr say why, should its topology be gone by now)
        assert minted.returncode == 0, (minted.stderr, run.kinds(), run.stderr[-2000:])
        bearer = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        answer = httpx.get(status["ingress"] + "/", headers=bearer, timeout=10.0)
        # still in the 120 s warm-up: no fault yet, the minted token is accepted
        assert "fault_applied" not in run.kinds()
        assert answer.status_code == 200, answer.text

        # Interrupted in its warm-up (SIGINT: the runner tears down and finishes); the
        # topology is gone by the end of the windows; the report is not our subject, so
        # the runner is not waited for while it renders it (which takes seconds).
        run.proc.send_signal(signal.SIGINT)
        run.wait_for_entry("run_finished", timeout_s=60)
        assert list((chaos_state_dir / registry.RUNS_DIR).glob("*.json")) == []
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    # Withdrawn by the runner itself before the teardown (no reader has cleaned up).
    gone = cli("status", "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"topologies": []}
    assert_nothing_left(run)
