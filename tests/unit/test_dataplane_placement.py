"""Where an HTTP fault sits in each setup, as Istio 1.28.0 places a VirtualService fault.

Istio applies a VirtualService ``fault`` in the client's sidecar on the outbound route to
the destination, for all its replicas (mesh); in ambient the destination's waypoint
applies it, for all replicas. A hand-written sidecar applies it on the target's inbound.
"""

from __future__ import annotations

from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.base import Pod
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.shared.layout import build_layout


def _ops(setup: Setup) -> LocalFaultOps:
    return LocalFaultOps(build_layout(setup, Path("/run"), slot=60, ingress_port=18060))


def _pods(ops: LocalFaultOps, service: str, replicas: tuple[int, ...] = (0, 1)) -> list[Pod]:
    return [p for p in ops.workload.pods if p.service == service and p.replica in replicas]


def test_mesh_fault_on_a_service_sits_on_its_callers_outbound() -> None:
    ops = _ops(Setup.MESH)
    sites = ops.http_fault_sites(_pods(ops, "payments"), "inbound")
    assert [(s.proxy, s.direction) for s in sites] == [
        ("checkout-0.proxy", "outbound"),
        ("checkout-1.proxy", "outbound"),
    ]
    assert all(s.affects == ("payments-0", "payments-1") for s in sites)


def test_where_a_virtual_service_cannot_place_it_the_target_keeps_it() -> None:
    ops = _ops(Setup.MESH)
    # One replica: a VirtualService cannot single it out; the replica's inbound takes it.
    (site,) = ops.http_fault_sites(_pods(ops, "payments", (0,)), "inbound")
    assert (site.proxy, site.direction, site.affects) == (
        "payments-0.proxy",
        "inbound",
        ("payments-0",),
    )


def test_mesh_fault_on_the_frontend_sits_at_the_ingress_its_caller() -> None:
    # The frontend's caller is the ingress (on Kubernetes: the Locust workers' sidecars),
    # so a VirtualService fault on the frontend is applied there, for both replicas.
    ops = _ops(Setup.MESH)
    (site,) = ops.http_fault_sites(_pods(ops, "frontend"), "inbound")
    assert (site.proxy, site.direction, site.affects) == (
        "ingress",
        "outbound",
        ("frontend-0", "frontend-1"),
    )
    assert site.requests_stat == "http.ingress.downstream_rq_total"
    assert "runtime_modify" in site.mechanism


def test_every_site_names_the_counter_of_the_requests_through_it() -> None:
    expected = {
        Setup.SIDECAR: ("checkout-0.proxy", "http.inbound.downstream_rq_total"),
        Setup.MESH: ("checkout-0.proxy", "http.inbound.downstream_rq_total"),
        Setup.AMBIENT: ("waypoint-checkout", "http.waypoint.downstream_rq_total"),
    }
    for setup, (proxy, stat) in expected.items():
        ops = _ops(setup)
        (site,) = ops.http_fault_sites(_pods(ops, "checkout", (0,)), "inbound")
        assert (site.proxy, site.requests_stat) == (proxy, stat), setup
        assert ops.client_requests_counter() == "ingress:http.ingress.downstream_rq_total"


def test_ambient_puts_it_at_the_waypoint_for_every_replica() -> None:
    ops = _ops(Setup.AMBIENT)
    (site,) = ops.http_fault_sites(_pods(ops, "payments", (0,)), "inbound")
    assert site.proxy == "waypoint-payments" and site.affects == ("payments-0", "payments-1")


def test_the_table_states_each_setups_fault_placement_with_its_source() -> None:
    from chaos.platforms.shared.dataplane import DEFAULTS
    from chaos.platforms.shared.dataplane_rows import rows

    placement = {
        s: next(r for r in rows(DEFAULTS[s]) if r.name == "HTTP fault placement")
        for s in (Setup.SIDECAR, Setup.MESH, Setup.AMBIENT)
    }
    assert "waypoint" in placement[Setup.AMBIENT].value
    assert "ingress for frontend" in placement[Setup.MESH].value
    assert "TranslateFault" in placement[Setup.MESH].source
    assert not any(r.deviation for r in placement.values())
