"""Who an identity fault on the cluster reaches, journaled before it is applied.

* istiod at 0 serves every namespace of the mesh (sidecars and ztunnels get their
  certificates and config from it): each namespace is listed;
* ambient cert-expiry rolls the ztunnel DaemonSet (maxSurge 1, maxUnavailable 0; Istio's
  ``manifests/charts/ztunnel/templates/daemonset.yaml``): every node's ztunnel restarts, so
  each ztunnel pod and its node is listed, and every pod and Locust worker on those nodes.
  The workers are not pinned away (the fake schedules by ``nodeName`` / ``nodeSelector``
  only, no affinity): they are listed by name.
"""

from __future__ import annotations

from pathlib import Path

from chaos.experiment import CertExpiryFault, ControlPlaneOutageFault, Setup
from chaos.faults.identity import CertExpiryFaultDriver, ControlPlaneOutageFaultDriver
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.testing.fakekube.api import FakeCluster
from tests.kubernetes.test_platform_faults import (  # noqa: F401
    locust_workers,
    ops_of,
    platform,
    running,
)

ISTIOD = "every pod (istiod at 0: no certificate issued, no config pushed)"
MESH_NAMESPACES = ("sc-mesh", "sc-ambient", "sc-traffic")


def _expiry(service: str = "checkout") -> CertExpiryFault:
    return CertExpiryFault.model_validate(
        {"type": "cert-expiry", "ttl": "60s", "target": {"service": service, "replica": 0}}
    )


def test_ambient_cert_expiry_lists_every_ztunnel_restart_and_the_locust_workers(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    locust_workers(api)
    with running(platform, "ambient", tmp_path / "run") as topology:
        ops = ops_of(topology)
        driver = CertExpiryFaultDriver(_expiry(), ops, fault_id="f", name="c", seed=1)
        radius = driver.plan().blast_radius
    assert radius == (
        *(p.name for p in ops.workload.pods),  # every demo pod: all are on a node
        "istio-system/ztunnel-node-1 on sidecar-chaos-worker: restarted by the DaemonSet rollout",
        "istio-system/ztunnel-node-2 on sidecar-chaos-worker2: restarted by the DaemonSet rollout",
        "sc-traffic/locust-worker-a (Locust worker) on sidecar-chaos-worker",
        "sc-traffic/locust-worker-b (Locust worker) on sidecar-chaos-worker2",
        *(f"{ns}: {ISTIOD}" for ns in MESH_NAMESPACES),
    )


def test_istiod_at_zero_is_listed_as_reaching_every_namespace_of_the_mesh(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    tmp_path: Path,
) -> None:
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        expiry = CertExpiryFaultDriver(_expiry(), ops, fault_id="f", name="c", seed=1)
        assert expiry.plan().blast_radius == (
            "checkout-0",
            *(f"{ns}: {ISTIOD}" for ns in MESH_NAMESPACES),
        )
        outage = ControlPlaneOutageFaultDriver(
            ControlPlaneOutageFault.model_validate(
                {"type": "control-plane-outage", "target": {"service": "checkout"}}
            ),
            ops,
            fault_id="g",
            name="o",
            seed=1,
        )
        radius = outage.plan().blast_radius
        assert [f"{ns}: {ISTIOD}" for ns in MESH_NAMESPACES] == list(radius[-3:])
        assert set(radius[:-3]) == {p.name for p in ops.workload.pods}


def test_a_dry_run_names_the_nodes_it_cannot_read() -> None:
    ops = KubernetesPlatform().plan_ops(Setup("ambient"))
    driver = CertExpiryFaultDriver(_expiry(), ops, fault_id="f", name="c", seed=1)
    radius = driver.plan().blast_radius
    assert "ztunnel on sidecar-chaos-worker: restarted by the DaemonSet rollout" in radius
    assert "sc-traffic: Locust workers on sidecar-chaos-worker2" in radius
