"""An experiment's ``dataplane:`` deviations on the cluster: written into the setup's
DestinationRules and VirtualServices when the window starts, undone at its end (and by
``clean``), an HTTP fault on top keeping them; what a cluster cannot apply is exit 2.

The fake API server checks every DestinationRule and VirtualService write against the
repository's copies of Istio's CRD schemas, as the real one does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chaos.cli.app import app
from chaos.errors import PlatformError
from chaos.experiment import Setup
from chaos.experiment.dataplane import DataPlaneSpec
from chaos.platforms.base import HttpFault, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import DESTINATION_RULE, VIRTUAL_SERVICE
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.shared.envoy_common import ProxyOptions
from chaos.rundir.dataplane import DATAPLANE_KIND
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.fakecluster import comparable

ABORT = HttpFault(percent=50, abort_status=503)
MESH = names.Setup.MESH
NS = names.namespace_of(MESH)
DEVIATIONS = DataPlaneSpec.model_validate(
    {
        "setups": {
            "mesh": {
                "retries": {"attempts": 0},
                "outlier_detection": True,
                "connection_lifetime": 3.0,
                "route_timeout": 2.0,
            }
        }
    }
)


@pytest.fixture
def platform(kubeconfig: Path, pod_exec: FakePodExec) -> KubernetesPlatform:
    return KubernetesPlatform(
        kubeconfig=kubeconfig, ready_timeout_s=10.0, rollout_timeout_s=10.0, watch_timeout_s=1
    )


@pytest.fixture
def installed(seeded: FakeCluster, api: KubeApi) -> FakeCluster:
    """The mesh's DestinationRules and VirtualServices as `cluster up` installs them."""
    for service in names.SERVICES:
        api.create(istio.destination_rule(service, MESH, ProxyOptions()))
        vs = istio.virtual_service(service, MESH, ProxyOptions())

        def put(obj: dict[str, Any], spec: dict[str, Any] = vs["spec"]) -> dict[str, Any]:
            obj["spec"] = spec
            return obj

        api.update(VIRTUAL_SERVICE, NS, service, put)
    return seeded


def _http(api: KubeApi, service: str) -> list[dict[str, Any]]:
    vs = api.get(VIRTUAL_SERVICE, NS, service)
    assert vs is not None
    http: list[dict[str, Any]] = vs["spec"]["http"]
    return http


def _traffic_policy(api: KubeApi, service: str) -> dict[str, Any]:
    dr = api.get(DESTINATION_RULE, NS, service)
    assert dr is not None
    policy: dict[str, Any] = dr["spec"]["trafficPolicy"]
    return policy


def test_a_fault_over_the_deviations_keeps_them_and_its_revert_goes_back_to_them(
    platform: KubernetesPlatform, installed: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    cluster_up = comparable(installed)
    recorded: list[tuple[str, dict[str, Any]]] = []
    options = StartOptions(
        run_dir=tmp_path / "mesh-x-1",
        run_marker="run-1",
        dataplane=DEVIATIONS,
        record=lambda kind, **data: recorded.append((kind, data)),
    )
    with platform.start(Setup.MESH, options) as topology:
        # Istio's retries (2 x connect-failure,...) off, the route timeout 2 s, outlier
        # detection with the DestinationRule's API defaults, connections closed after 3 s.
        (route,) = _http(api, "checkout")
        assert route["retries"] == {"attempts": 0}
        assert route["timeout"] == "2.000s"
        policy = _traffic_policy(api, "checkout")
        assert policy["connectionPool"]["tcp"]["maxConnectionDuration"] == "3s"
        assert policy["outlierDetection"]["consecutive5xxErrors"] == 5
        assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}
        deviated = _http(api, "checkout")

        ops = topology.ops
        assert isinstance(ops, KubeFaultOps)
        target = [p for p in ops.workload.pods if p.name == "checkout-0"]
        (site,) = ops.http_fault_sites(target, "inbound")
        ops.set_http_fault(site, ABORT)
        (faulted,) = _http(api, "checkout")
        assert faulted["fault"]["abort"]["httpStatus"] == 503
        assert faulted["retries"] == {"attempts": 0}  # the deviation holds under the fault
        assert faulted["timeout"] == "2.000s"
        ops.clear_http_fault(site)
        assert _http(api, "checkout") == deviated  # back to the deviation, not Istio's
        ops.set_http_fault(site, ABORT)  # and a second fault is built on it again
        assert _http(api, "checkout")[0]["retries"] == {"attempts": 0}
    assert comparable(installed) == cluster_up  # what `cluster up` installed

    (table,) = [data for kind, data in recorded if kind == DATAPLANE_KIND]
    assert table["setup"] == "mesh"
    deviations = {row["name"] for row in table["rows"] if row["deviation"]}
    assert deviations, table
    assert any("retr" in name for name in deviations), deviations


def test_clean_after_a_dead_runner_unwinds_the_fault_then_the_deviations(
    platform: KubernetesPlatform, installed: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    cluster_up = comparable(installed)
    run_dir = tmp_path / "run"
    options = StartOptions(run_dir=run_dir / "mesh-x-1", run_marker="run-1", dataplane=DEVIATIONS)
    with platform.start(Setup.MESH, options) as topology:
        ops = topology.ops
        assert isinstance(ops, KubeFaultOps)
        target = [p for p in ops.workload.pods if p.name == "checkout-0"]
        (site,) = ops.http_fault_sites(target, "inbound")
        ops.set_http_fault(site, ABORT)
        # The runner "dies" here: only the ledger is left for clean.
        lines = platform.clean(run_dir, [])
        assert any("VirtualService sc-mesh/checkout" in line for line in lines), lines
        assert comparable(installed) == cluster_up
    assert comparable(installed) == cluster_up  # leaving undoes nothing twice


def test_a_missing_destination_rule_is_created_for_the_run_and_deleted_after(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    options = StartOptions(run_dir=tmp_path / "w", run_marker="run-1", dataplane=DEVIATIONS)
    with platform.start(Setup.MESH, options):
        assert "outlierDetection" in _traffic_policy(api, "payments")
    assert api.get(DESTINATION_RULE, NS, "payments") is None
    assert comparable(seeded) == before


def test_no_deviation_writes_nothing(
    platform: KubernetesPlatform, installed: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    spec = DataPlaneSpec.model_validate({"setups": {"ambient": {"retries": {"attempts": 0}}}})
    options = StartOptions(run_dir=tmp_path / "w", run_marker="run-1", dataplane=spec)
    with platform.start(Setup.MESH, options) as topology:
        assert isinstance(topology.ops, KubeFaultOps)
        assert topology.ops.writer.active() == []


def test_the_fake_refuses_what_the_crd_schema_refuses(installed: FakeCluster, api: KubeApi) -> None:
    def bad(obj: dict[str, Any]) -> dict[str, Any]:
        obj["spec"]["trafficPolicy"]["connectionPool"] = {"http": {"maxRetries": 2**31}}
        return obj

    # int32 in the CRD (DestinationRule ConnectionPoolSettings.HTTPSettings.maxRetries)
    with pytest.raises(PlatformError, match=r"trafficPolicy\.connectionPool\.http\.maxRetries"):
        api.update(DESTINATION_RULE, NS, "checkout", bad)


SPEC = """\
name: dataplane
platform: kubernetes
setups: [{setups}]
traffic:
  users: 1
  spawn_rate: 1
  rate: 5
  endpoints: [{{name: home, path: /}}]
dataplane:
{block}
faults:
  - type: abort
    status: 503
    target: {{service: checkout}}
"""


@pytest.mark.parametrize(
    ("setups", "block", "line", "message"),
    [
        ("sidecar, mesh", "  setups:\n    sidecar:\n      retries: {attempts: 1}", 12,
         "dataplane.setups.sidecar.retries: not applied to the sidecar setup on kubernetes"),
        ("sidecar, mesh", "  outlier_detection: true", 10,
         "dataplane.outlier_detection: not applied to the sidecar setup on kubernetes"),
        ("mesh", "  setups:\n    mesh:\n      jwks_refresh: 5s", 12,
         "dataplane.setups.mesh.jwks_refresh: not applied on kubernetes: Istio 1.28.0"),
        ("mesh", "  max_retries: 3000000000", 10,
         "dataplane.max_retries: above 2147483647"),
    ],
)  # fmt: skip
def test_what_a_cluster_cannot_apply_is_refused_at_its_line(
    tmp_path: Path, setups: str, block: str, line: int, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(SPEC.format(setups=setups, block=block), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: {message}" in result.output, result.output
    assert "Traceback" not in result.output


def test_mesh_and_ambient_deviations_are_accepted(tmp_path: Path) -> None:
    block = "  connection_lifetime: 2s\n  setups:\n    ambient:\n      retries: {attempts: 0}"
    path = tmp_path / "x.yaml"
    path.write_text(SPEC.format(setups="mesh, ambient", block=block), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


ROOT = Path(__file__).resolve().parents[2]


def test_the_make_e2e_kind_game_day_plans_its_deviation_into_the_virtualservices() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ne2e-kind:", 1)[1].split("\n\n", 1)[0]
    (name,) = (w.rstrip(";") for w in recipe.split() if w.startswith("experiments/"))
    planned = CliRunner().invoke(app, ["run", str(ROOT / name), "--dry-run"])
    assert planned.exit_code == 0, planned.output
    # ambient without retries there (its waypoints' reset-before-request x2 off)
    head = "every ambient window's data-plane deviations (undone as it ends):"
    assert head in planned.output, planned.output
    block = planned.output.split(head, 1)[1].split("\n  1. ", 1)[0]
    for service in names.SERVICES:
        assert (
            f"PUT /apis/networking.istio.io/v1/namespaces/sc-ambient/virtualservices/{service} "
            '(spec.http: dataplane {"retries": {"attempts": 0}})'
        ) in block, block
    assert "destinationrules" not in block  # its traffic policy is Istio's own


def test_a_deviation_equal_to_the_default_writes_nothing(
    platform: KubernetesPlatform, installed: FakeCluster, tmp_path: Path
) -> None:
    spec = DataPlaneSpec.model_validate({"setups": {"mesh": {"load_balancing": "LEAST_REQUEST"}}})
    options = StartOptions(run_dir=tmp_path / "w", run_marker="run-1", dataplane=spec)
    with platform.start(Setup.MESH, options) as topology:
        assert isinstance(topology.ops, KubeFaultOps)
        assert topology.ops.writer.active() == []


ENGINE_RUN = """\
name: kube-dataplane
platform: kubernetes
setups: [mesh]
seed: 3
traffic: {users: 1, spawn_rate: 1, rate: 10, endpoints: [{name: browse, path: /}]}
timeline: {warmup: 50ms, hold: 300ms, recovery: 50ms, recovered_for: 10ms}
dataplane:
  setups:
    mesh:
      retries: {attempts: 0}
faults:
  - type: abort
    name: checkout-503
    target: {service: checkout}
    percent: 50
"""


def test_a_run_finishes_with_the_applied_table_in_meta_json_and_leaves_cluster_up_s(
    installed: FakeCluster, kubeconfig: Path, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    from chaos.engine.finish import finish
    from chaos.engine.run import Engine, RunOptions
    from chaos.experiment import load_experiment
    from chaos.testing.fake_traffic import FakeTraffic
    from chaos.traffic.config import TrafficConfig

    before = comparable(installed)
    path = tmp_path / "kube.yaml"
    path.write_text(ENGINE_RUN, encoding="utf-8")
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        ready_timeout_s=10.0,
        watch_timeout_s=1,
        ingress_url="http://127.0.0.1:18080",
    )

    def traffic(config: TrafficConfig) -> FakeTraffic:
        return FakeTraffic(config, lambda now: (10, 0, 5.0))

    run_dir = tmp_path / "run"
    experiment = load_experiment(path)
    engine = Engine(experiment, platform, RunOptions(run_dir=run_dir, traffic=traffic, tick_s=0.05))
    records = engine.run()
    (window,) = records
    assert window.error is None, window.error
    finish(
        experiment,
        platform,
        run_dir,
        records,
        started_utc="2026-12-07T12:00:00+00:00",
        aborted_reason=engine.aborted,
        history=None,
    )
    # results.json takes the same journal's tables (FakeTraffic records no samples, so
    # this run writes none; tests/unit/test_dataplane_report.py holds results.json to it)
    data = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    rows = data["dataplane"]["mesh"]
    changed = [r for r in rows if r["deviation"]]
    assert changed and all("retr" in r["name"] for r in changed), changed
    assert comparable(installed) == before
