"""What the Kubernetes platform cannot do is refused at its line (exit 2), before anything runs.

* ``direction: outbound`` with ambient: a waypoint ignores a VirtualService route's
  ``sourceLabels`` match (istio/istio#51565, ``pilot/pkg/networking/core/listener_waypoint.go``),
  so the fault for one client would be dropped silently.
* cert-expiry's ``connection_lifetime``: the connection lifetime on the cluster is what
  ``cluster up`` installed; the fault would not honour it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chaos.cli.app import app

SPEC = """\
name: refusals
platform: kubernetes
setups: [{setups}]
traffic:
  users: 1
  spawn_rate: 1
  rate: 5
  endpoints: [{{name: home, path: /}}]
faults:
  - type: {type}
{field}
    target: {{service: checkout}}
"""


@pytest.mark.parametrize(
    ("setups", "type_", "field", "line", "message"),
    [
        ("mesh, ambient", "abort", "    status: 503\n    direction: outbound", 12,
         "faults.0.direction: outbound is not possible in ambient on kubernetes"),
        ("mesh", "cert-expiry", "    ttl: 30s\n    connection_lifetime: 10s", 12,
         "faults.0.connection_lifetime: not possible on kubernetes"),
    ],
)  # fmt: skip
def test_what_the_cluster_cannot_do_is_refused_at_its_line(
    tmp_path: Path, setups: str, type_: str, field: str, line: int, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(SPEC.format(setups=setups, type=type_, field=field), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: {message}" in result.output, result.output
    assert "Traceback" not in result.output


def test_outbound_in_mesh_alone_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    text = SPEC.format(
        setups="mesh", type="abort", field="    status: 503\n    direction: outbound"
    )
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def test_the_local_game_day_is_refused_on_kubernetes_at_what_it_cannot_do() -> None:
    refused = CliRunner().invoke(
        app, ["run", str(EXPERIMENTS / "gameday.yaml"), "--platform", "kubernetes", "--dry-run"]
    )
    assert refused.exit_code == 2, refused.output
    # one line at the first field the cluster cannot do (bypass probe, connection lifetime...)
    assert re.match(r"error: .*gameday\.yaml:\d+: ", refused.output), refused.output


def test_the_game_day_make_e2e_kind_runs_plans_on_kubernetes() -> None:
    recipe = MAKEFILE.read_text().split("\ne2e-kind:", 1)[1].split("\n\n", 1)[0]
    (name,) = (w.rstrip(";") for w in recipe.split() if w.startswith("experiments/"))
    planned = CliRunner().invoke(app, ["run", str(EXPERIMENTS.parent / name), "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "platform kubernetes" in planned.output


def test_the_cost_example_with_baseline_is_accepted_on_kubernetes() -> None:
    """``cluster up`` deploys sc-baseline: the example's cost step (baseline first) is valid."""
    done = CliRunner().invoke(
        app, ["validate", str(EXPERIMENTS / "cost.yaml"), "--set", "platform=kubernetes"]
    )
    assert done.exit_code == 0, done.output
    assert done.output.strip().endswith(": ok (cost: 1 faults, setups sidecar, mesh, ambient)")


_PROXY_FAULT = """\
name: refusals
platform: kubernetes
setups: [mesh, baseline]
traffic: {{users: 1, spawn_rate: 1, rate: 5, endpoints: [{{name: home, path: /}}]}}
faults:
  - type: abort
    status: 503
    target: {{service: checkout{setups}}}
cost:
  setups: [baseline, mesh]
  rates: [10]
"""


@pytest.mark.parametrize(
    ("setups", "at"),
    [
        (", setups: [mesh, baseline]", "faults.0.target.setups.1"),
        ("", "faults.0.target"),  # every setup, baseline with them
    ],
)
def test_baseline_named_for_a_proxy_fault_is_one_line_at_the_fault(
    tmp_path: Path, setups: str, at: str
) -> None:
    """As on the local platform: baseline has no proxy, so a fault that targets one is
    refused at the fault's line, with the cluster's baseline now a setup it offers."""
    path = tmp_path / "x.yaml"
    path.write_text(_PROXY_FAULT.format(setups=setups), encoding="utf-8")
    refused = CliRunner().invoke(app, ["validate", str(path)])
    assert refused.exit_code == 2, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1, refused.output
    assert lines[0].startswith(f"error: {path}:8: {at}: abort targets a proxy and baseline"), lines
    assert "Traceback" not in refused.output and "Setup." not in refused.output
    # the same file with the fault on mesh alone: valid on the cluster
    path.write_text(_PROXY_FAULT.format(setups=", setups: [mesh]"), encoding="utf-8")
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 0, done.output


def test_baseline_among_the_setups_on_kubernetes_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    text = SPEC.format(setups="baseline, mesh", type="abort", field="    status: 503")
    path.write_text(text.replace("{service: checkout}", "{service: checkout, setups: [mesh]}"))
    refused = CliRunner().invoke(app, ["validate", str(path)])
    assert refused.exit_code == 2, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1, refused.output
    assert lines[0].startswith(f"error: {path}:3: setups.0: baseline"), refused.output
    assert "Setup." not in refused.output


def test_baseline_for_a_teams_own_workload_is_one_line_at_its_setup(tmp_path: Path) -> None:
    """sc-baseline is the demo chain: no reference for a team's pods, said at its line."""
    path = tmp_path / "team.yaml"
    path.write_text(
        """\
name: team-cost
platform: kubernetes
setups: [mesh]
traffic:
  users: 1
  spawn_rate: 1
  rate: 5
  host: http://cart-svc.shop.svc.cluster.local:9090
  endpoints: [{name: home, path: /}]
faults:
  - type: crash
    target: {namespace: shop, selector: {app: cart}, container: edge-envoy}
cost:
  setups: [mesh, baseline]
  rates: [10]
""",
        encoding="utf-8",
    )
    refused = CliRunner().invoke(app, ["validate", str(path)])
    assert refused.exit_code == 2, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1, refused.output
    assert lines[0].startswith(f"error: {path}:14: cost.setups.1: baseline is the demo chain")
    assert "no reference for a team's own workload" in lines[0]
