"""A real run of the fail-open variant: an ALLOW-any rule at frontend, anonymous callers.

The CLI runs as a subprocess in a leased slot, sidecar and mesh, Locust through the
ingress plus the bounded anonymous stream (no token). In mesh the token requirement is
an authorization policy (Istio's requestPrincipals), so the rollout opens it: the
anonymous requests the app answered count as served unauthenticated and fail the run,
and the proxies' shadow rules prove the rule let them through. The sidecar's jwt_authn
refuses them before authorization: it fails closed, and the rule had nothing to open.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from chaos.rundir import JOURNAL_FILE
from tests.integration.conftest_faults import cli_argv, cli_env

pytestmark = pytest.mark.timeout(150)

EXPERIMENT = """\
name: fail-open
setups: [sidecar, mesh]
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
  anonymous: {rate: 5, max_requests: 20}
faults:
  - type: policy-mismatch
    name: frontend-open
    rule: allow-any
    target: {service: frontend}
"""


def test_allow_any_fails_open_in_mesh_and_closed_in_sidecar(tmp_path: Path, free_slot: int) -> None:
    experiment = tmp_path / "failopen.yaml"
    experiment.write_text(EXPERIMENT, encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = cli_argv(
        "run", str(experiment), "--history", str(tmp_path / "h.db"), "--out", str(run_dir)
    )
    done = subprocess.run(
        argv, cwd=tmp_path, env=cli_env(free_slot), capture_output=True, text=True, timeout=120
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 1, output
    assert "security invariant broken in mesh/frontend-open#1" in output
    assert "security invariant broken in sidecar" not in output

    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    runs = {r["setup"]: r for r in results["runs"]}
    records = [
        json.loads(line)
        for path in sorted((run_dir / "bypass").glob("*.anonymous.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert records and {r["kind"] for r in records} == {"anonymous"}
    assert len(records) <= 2 * 20  # bounded per window
    for setup, run in runs.items():
        w, s = run["window"], run["security"]
        mine = [r for r in records if w["warmup_start_t"] <= r["t"] < w["end_t"]]
        assert s["anonymous_sent"] == len(mine) > 0, setup
        served = sum(r["outcome"] == "served" for r in mine)
        assert s["anonymous_served"] == served, setup
        if setup == "sidecar":
            assert served == 0 and {r["status"] for r in mine} == {401}
            assert s["served_unauthenticated"] == 0
        else:
            # while the rule was rolled out the app answered them; before and after, 403
            assert served > 0 and {r["status"] for r in mine} <= {200, 403}
            assert s["served_unauthenticated"] == served  # the load itself stayed verified

    journal = [
        json.loads(line)
        for line in (run_dir / JOURNAL_FILE).read_text(encoding="utf-8").splitlines()
    ]
    verified = [e for e in journal if e.get("kind") == "fault_verified"]
    assert len(verified) == 2, verified
    by_effect = {e["took_effect"]: e["detail"] for e in verified}
    # mesh: the proxies' shadow rules counted what the rule let through
    assert "let through that the standing policy denies" in by_effect[True]
    assert "refused before authorization" in by_effect[False]  # sidecar
