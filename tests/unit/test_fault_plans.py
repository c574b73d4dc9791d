"""Fault plans: pure (from the layout alone), naming what is touched and how it is undone.

Also ``run --dry-run``: it prints the plan of every window and touches nothing (no
process, no socket, no run directory, no file).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from typer.testing import CliRunner

from chaos import plugins
from chaos.cli.app import app
from chaos.engine.records import schedule
from chaos.errors import FaultError
from chaos.experiment import FAULT_TYPES, LatencyFault, Setup, Target, load_experiment
from chaos.experiment import Fault as FaultSpec
from chaos.faults import driver_for
from chaos.faults.base import Fault, FaultPlan, resolve_targets
from chaos.faults.http import delay_ms
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.shared.layout import build_layout, workload_of

ROOT = Path(__file__).resolve().parents[2]
GAMEDAY = ROOT / "experiments" / "gameday.yaml"
_FAULT: TypeAdapter[FaultSpec] = TypeAdapter(FaultSpec)


def fault_spec(**fields: object) -> FaultSpec:
    return _FAULT.validate_python(fields)


def plan_of(setup: Setup, /, **fields: object) -> FaultPlan:
    layout = build_layout(setup, Path("/nonexistent/plan"), slot=11, ingress_port=18011)
    spec = fault_spec(**fields)
    driver: type[Fault[FaultSpec]] = driver_for(spec.type)
    return driver(spec, LocalFaultOps(layout), fault_id="f1", name="f", seed=1).plan()


def subjects(plan: FaultPlan) -> list[str]:
    return [c.subject for c in plan.changes]


def test_every_fault_type_has_a_registered_driver() -> None:
    assert set(plugins.names(plugins.FAULTS)) == set(FAULT_TYPES)
    for fault_type in FAULT_TYPES:
        driver: type[Fault[FaultSpec]] = driver_for(fault_type)
        assert driver.fault_type == fault_type


def test_an_unknown_fault_type_is_an_input_error() -> None:
    with pytest.raises(Exception, match="no fault of type 'nope'") as info:
        driver_for("nope")
    assert getattr(info.value, "exit_code", None) == 2


# -- what each plan touches, per setup ------------------------------------------------------------

LATENCY: dict[str, object] = {
    "type": "latency",
    "target": {"service": "checkout", "replica": 0},
    "delay": "200ms",
}


@pytest.mark.parametrize(
    ("setup", "touched", "radius", "mechanism", "undo"),
    [
        (Setup.SIDECAR, ["checkout-0.proxy"], ("checkout-0",), "admin API", "back to 0 %"),
        (Setup.MESH, ["checkout-0.proxy"], ("checkout-0",), "control plane", "without the fault"),
        (Setup.AMBIENT, ["waypoint-checkout"], ("checkout-0", "checkout-1"), "admin", "0 %"),
    ],
)
def test_latency_plan(
    setup: Setup, touched: list[str], radius: tuple[str, ...], mechanism: str, undo: str
) -> None:
    plan = plan_of(setup, **LATENCY)
    assert subjects(plan) == touched
    assert plan.blast_radius == radius
    assert mechanism in plan.changes[0].action
    assert "200ms" in plan.changes[0].action
    assert undo in plan.changes[0].undo
    assert not plan.self_healing


@pytest.mark.parametrize(
    ("setup", "touched", "radius"),
    [
        (Setup.SIDECAR, ["payments-0.proxy"], ("payments-0",)),
        (Setup.MESH, ["payments-0.proxy"], ("payments-0",)),
        # The node proxy carries every pod on its node: the blast radius is the node.
        (Setup.AMBIENT, ["ztunnel-node-1"], ("frontend-0", "checkout-0", "payments-0")),
    ],
)
def test_crash_plan(setup: Setup, touched: list[str], radius: tuple[str, ...]) -> None:
    plan = plan_of(setup, type="crash", target={"service": "payments", "replica": 0})
    assert subjects(plan) == touched
    assert plan.blast_radius == radius
    assert plan.self_healing
    assert "SIGKILL" in plan.changes[0].action and "restarts" in plan.changes[0].undo


def test_crash_loop_plan_says_how_often() -> None:
    plan = plan_of(
        Setup.MESH,
        type="crash",
        target={"service": "payments", "replica": 1},
        times=3,
        interval="2s",
    )
    assert plan.changes[0].action == "SIGKILL 3x every 2 s"


@pytest.mark.parametrize(
    ("setup", "undo"),
    [
        (Setup.SIDECAR, "re-run the init step"),
        (Setup.MESH, "re-issues through SDS"),
        (Setup.AMBIENT, "node proxy re-fetches"),
    ],
)
def test_cert_expiry_plan(setup: Setup, undo: str) -> None:
    plan = plan_of(setup, type="cert-expiry", target={"service": "checkout"}, ttl="2s")
    assert subjects(plan) == ["checkout-0 identity", "checkout-1 identity"]
    assert all(undo in c.undo for c in plan.changes)
    assert all("expires 2 s after injection" in c.action for c in plan.changes)


def test_control_plane_outage_plan_per_setup() -> None:
    spec: dict[str, object] = {
        "type": "control-plane-outage",
        "target": {"service": "checkout"},
        "cert_ttl": "5s",
    }
    sidecar = plan_of(Setup.SIDECAR, **spec)
    assert sidecar.blast_radius == ()
    assert "nothing to stop" in sidecar.changes[0].action
    mesh = plan_of(Setup.MESH, **spec)
    assert subjects(mesh) == ["CA", "config push", "all identities"]
    assert len(mesh.blast_radius) == 6
    ambient = plan_of(Setup.AMBIENT, **spec)
    assert subjects(ambient) == ["CA", "all identities"]


def test_policy_desync_plan_per_setup() -> None:
    spec: dict[str, object] = {"type": "policy-desync", "target": {"service": "frontend"}}
    assert "stale key set" in plan_of(Setup.SIDECAR, **spec).changes[0].action
    assert "pushes the new key set" in plan_of(Setup.MESH, **spec).changes[0].action
    ambient = plan_of(Setup.AMBIENT, **spec)
    assert ambient.blast_radius == ()
    assert "no JWT validation" in ambient.changes[0].action
    assert all(p.changes[0].undo == "restore the previous signing key" for p in (ambient,))


def test_describe_names_every_change_and_its_undo() -> None:
    plan = plan_of(Setup.MESH, type="cert-expiry", target={"service": "checkout"}, ttl="2s")
    lines = plan.describe()
    assert lines[0].startswith("mesh: certificate of every checkout replica expires after 2s")
    assert lines[0].endswith("(blast radius: checkout-0, checkout-1)")
    assert len(lines) == 1 + len(plan.changes)
    assert all("; undo: " in line for line in lines[1:])


def test_plan_is_json_serialisable() -> None:
    plan = plan_of(Setup.AMBIENT, type="crash", target={"node": "node-2"})
    data = json.loads(json.dumps(plan.to_json()))
    assert data["fault_type"] == "crash"
    assert data["changes"][0]["subject"] == "ztunnel-node-2"


# -- targets --------------------------------------------------------------------------------------


def test_a_share_of_pods_is_reproducible_from_the_seed() -> None:
    layout = build_layout(Setup.MESH, Path("/nonexistent"), slot=11, ingress_port=1)
    target = Target(service="checkout", share=0.5)
    picks = {
        tuple(p.name for p in resolve_targets(workload_of(layout), target, seed))
        for seed in range(20)
    }
    assert picks == {("checkout-0",), ("checkout-1",)}
    again = [p.name for p in resolve_targets(workload_of(layout), target, 3)]
    assert again == [p.name for p in resolve_targets(workload_of(layout), target, 3)]


def test_targets_by_node_and_replica() -> None:
    layout = build_layout(Setup.SIDECAR, Path("/nonexistent"), slot=11, ingress_port=1)
    on_node = resolve_targets(workload_of(layout), Target(node="node-2"), 0)
    assert [p.name for p in on_node] == ["frontend-1", "checkout-1", "payments-1"]
    one = resolve_targets(workload_of(layout), Target(service="payments", replica=1), 0)
    assert [p.name for p in one] == ["payments-1"]


@pytest.mark.parametrize(
    ("target", "field"),
    [
        (Target(service="inventory"), "target.service"),
        (Target(service="checkout", replica=7), "target.replica"),
        (Target(node="node-9"), "target.node"),
    ],
)
def test_a_target_that_selects_nothing_is_a_fault_error(target: Target, field: str) -> None:
    layout = build_layout(Setup.SIDECAR, Path("/nonexistent"), slot=11, ingress_port=1)
    with pytest.raises(FaultError, match=field):
        resolve_targets(workload_of(layout), target, 0)


def test_a_planning_only_ops_refuses_to_touch_a_topology() -> None:
    layout = build_layout(Setup.MESH, Path("/nonexistent"), slot=11, ingress_port=1)
    with pytest.raises(FaultError, match="can only be planned"):
        _ = LocalFaultOps(layout).topology


@pytest.mark.parametrize(
    ("fields", "ms"),
    [
        ({"delay": "250ms"}, 250),
        ({"distribution": {"kind": "uniform", "min": "100ms", "max": "300ms"}}, 200),
        ({"distribution": {"kind": "normal", "mean": "150ms", "stddev": "20ms"}}, 150),
    ],
)
def test_delay_of_a_distribution_is_its_mean(fields: dict[str, object], ms: int) -> None:
    spec = fault_spec(type="latency", target={"service": "checkout"}, **fields)
    assert isinstance(spec, LatencyFault)
    assert delay_ms(spec) == ms


# -- run --dry-run -------------------------------------------------------------------------------


class Touched(AssertionError):
    """A dry run tried to start a process or open a listening socket."""


def _forbid(*args: object, **kwargs: object) -> None:
    raise Touched(f"a dry run must not do this: {args!r}")


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        text = (task / "children").read_text()
        found |= {int(p) for p in text.split()}
    return found


def test_dry_run_prints_the_plan_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "Popen", _forbid)
    monkeypatch.setattr(socket.socket, "bind", _forbid)
    monkeypatch.setattr(os, "fork", _forbid)
    children = _children()
    out_dir = tmp_path / "run"

    result = CliRunner().invoke(app, ["run", str(GAMEDAY), "--dry-run", "--out", str(out_dir)])

    assert result.exit_code == 0, (result.stderr, result.exception)
    assert not isinstance(result.exception, Touched)
    assert list(tmp_path.iterdir()) == [], "a dry run created files"
    assert _children() == children
    lines = result.stdout.splitlines()
    experiment = load_experiment(GAMEDAY)
    keys = schedule(experiment)
    assert lines[0].startswith(
        f"experiment gameday: 3 setups x 4 faults x {experiment.repetitions}"
    )
    # Every window, numbered in the schedule's order, with its plan.
    numbered = [line.strip() for line in lines if line[:4].strip().rstrip(".").isdigit()]
    assert numbered == [f"{n}. {k.label}" for n, k in enumerate(keys, start=1)]
    text = result.stdout
    for touched in ("checkout-0.proxy", "waypoint-checkout", "payments-0.proxy", "ztunnel-node-1"):
        assert f"- {touched}: " in text, touched
    assert "checkout-1 identity: certificate expires" in text
    changes = [line for line in lines if line.strip().startswith("- ")]
    assert changes and all("; undo: " in line for line in changes)
    assert lines[-1] == "nothing was touched (dry run)"


def test_dry_run_honours_overrides_and_setups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", str(GAMEDAY), "--dry-run", "--setup", "mesh", "--set", "repetitions=1"],
    )
    assert result.exit_code == 0, result.stderr
    numbered = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    windows = [line for line in numbered if line[0].isdigit()]
    assert len(windows) == 4 and all(" mesh/" in w for w in windows), windows
    assert not (tmp_path / "reports").exists()


def test_an_http_fault_plan_names_the_counters_of_its_affected_share() -> None:
    target = {"service": "checkout", "replica": 0}
    sidecar = plan_of(Setup.SIDECAR, type="latency", target=target, delay=0.2)
    ambient = plan_of(Setup.AMBIENT, type="latency", target=target, delay=0.2)
    assert sidecar.share_counters == ("checkout-0.proxy:http.inbound.downstream_rq_total",)
    assert ambient.share_counters == ("waypoint-checkout:http.waypoint.downstream_rq_total",)
    assert (
        sidecar.client_counter
        == ambient.client_counter
        == ("ingress:http.ingress.downstream_rq_total")
    )
    # Only HTTP faults have a share: a crash's blast radius is its claim.
    crash = plan_of(Setup.SIDECAR, type="crash", target=target)
    assert crash.share_counters == () and crash.client_counter == ""
