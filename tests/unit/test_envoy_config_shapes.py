"""Pure checks of the generated Envoy configs: names, hooks, resilience per setup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.experiment import Setup
from chaos.experiment.dataplane import DataPlaneFields
from chaos.platforms.local.envoy_config import (
    INBOUND_FAULT_KEYS,
    FaultConfig,
    ProxyConfig,
    ProxyOptions,
    fault_runtime_values,
    mesh_resources,
    proxy_configs,
)
from chaos.platforms.local.envoy_mesh import MeshState
from chaos.platforms.shared.dataplane import resolve
from chaos.platforms.shared.layout import build_layout


def _configs(setup: Setup, opts: ProxyOptions | None = None) -> list[ProxyConfig]:
    layout = build_layout(setup, Path("/run"), slot=50, ingress_port=18050)
    return proxy_configs(layout, opts or ProxyOptions())


def _text(config: ProxyConfig) -> str:
    return json.dumps(config.bootstrap)


@pytest.mark.parametrize("setup", list(Setup))
def test_every_proxy_listens_on_distinct_addresses(setup: Setup) -> None:
    bound: list[tuple[str, int]] = []
    for config in _configs(setup):
        static = config.bootstrap.get("static_resources", {})
        assert isinstance(static, dict)
        for lst in static.get("listeners", []):
            sock = lst["address"]["socket_address"]
            bound.append((sock["address"], sock["port_value"]))
    assert len(bound) == len(set(bound))


def test_names_and_counts_per_setup() -> None:
    assert [c.name for c in _configs(Setup.AMBIENT)] == [
        "ztunnel-node-1",
        "ztunnel-node-2",
        "waypoint-frontend",
        "waypoint-checkout",
        "waypoint-payments",
        "ingress",
    ]
    assert [c.group for c in _configs(Setup.SIDECAR)][:2] == ["frontend-0", "frontend-1"]


def test_resilience_defaults_differ_per_setup() -> None:
    # The hand-written sidecar retries nowhere; Istio (1.28.0, retry.go and route.go) retries
    # at the client side and resets-before-request at the server side; outlier detection only
    # from a DestinationRule (cluster_traffic_policy.go), so nowhere by default.
    sidecar = "".join(_text(c) for c in _configs(Setup.SIDECAR))
    assert "retry_policy" not in sidecar and "outlier_detection" not in sidecar
    ambient = "".join(_text(c) for c in _configs(Setup.AMBIENT))
    assert "retry_policy" in ambient and "outlier_detection" not in ambient
    assert "reset-before-request" in ambient
    layout = build_layout(Setup.MESH, Path("/run"), slot=50, ingress_port=18050)
    res = mesh_resources(layout, layout.pod("frontend-0"), ProxyOptions(), MeshState())
    assert "outlier_detection" not in json.dumps(res.clusters)
    assert "previous_hosts" in json.dumps(res.routes["outbound"])
    assert "reset-before-request" in json.dumps(res.routes["inbound"])


def test_connection_lifetime_is_a_parameter() -> None:
    default = "".join(_text(c) for c in _configs(Setup.SIDECAR))
    assert "max_connection_duration" not in default  # Envoy's and Istio's default: none
    policy = resolve(Setup.SIDECAR, DataPlaneFields(connection_lifetime=2.5))
    text = "".join(_text(c) for c in _configs(Setup.SIDECAR, ProxyOptions().with_policy(policy)))
    assert '"max_connection_duration": "2.500s"' in text


def test_sidecar_fault_hook_and_mesh_pushed_fault() -> None:
    text = _text(_configs(Setup.SIDECAR)[0])
    assert INBOUND_FAULT_KEYS.delay_percent in text and "admin_layer" in text
    layout = build_layout(Setup.MESH, Path("/run"), slot=50, ingress_port=18050)
    state = MeshState(faults={"inbound": FaultConfig(abort_percent=30), "outbound": None})
    res = mesh_resources(layout, layout.pod("checkout-1"), ProxyOptions(), state)
    assert '"numerator": 30' in json.dumps(res.routes["inbound"])
    assert "typed_per_filter_config" not in json.dumps(res.routes["outbound"])


def test_fault_runtime_values() -> None:
    on = fault_runtime_values("outbound", FaultConfig(delay_percent=40, delay_ms=250))
    assert on["fault.outbound.delay.percent"] == "40"
    assert on["fault.outbound.delay.duration_ms"] == "250"
    assert set(fault_runtime_values("outbound", None).values()) == {""}
    with pytest.raises(ValueError):
        FaultConfig(abort_percent=101)
