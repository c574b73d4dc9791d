"""What the Kubernetes platform cannot do is refused at its line (exit 2), before anything runs.

* ``direction: outbound`` with ambient: a waypoint ignores a VirtualService route's
  ``sourceLabels`` match (istio/istio#51565, ``pilot/pkg/networking/core/listener_waypoint.go``),
  so the fault for one client would be dropped silently.
* cert-expiry's ``connection_lifetime``: the connection lifetime on the cluster is what
  ``cluster up`` installed; the fault would not honour it.
"""

from __future__ import annotations

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


GAMEDAY = Path(__file__).resolve().parents[2] / "experiments" / "gameday.yaml"


def test_the_game_day_runs_on_kubernetes_as_make_e2e_kind_runs_it() -> None:
    base = ["run", str(GAMEDAY), "--platform", "kubernetes", "--dry-run"]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 2, refused.output
    assert "connection_lifetime: not possible on kubernetes" in refused.output
    # The Makefile's e2e-kind leaves it out.
    planned = CliRunner().invoke(app, [*base, "--set", "faults.2.connection_lifetime=null"])
    assert planned.exit_code == 0, planned.output
