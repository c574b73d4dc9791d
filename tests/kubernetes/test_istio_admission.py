"""Cert-expiry and outages with Istio's webhooks failing closed while istiod is down.

The fake refuses (500, "failed calling webhook") what Istio's injector
(``failurePolicy: Fail``) and validator refuse while istiod has no ready pod: creating a
pod in an injection-enabled namespace and writing a ``networking``/``security.istio.io``
object. So an expiry that scales istiod to 0 before the next pod's rollout deadlocks on
a real cluster, and here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaos.errors import PlatformError
from chaos.experiment import CertExpiryFault, ControlPlaneOutageFault
from chaos.faults.identity import CertExpiryFaultDriver, ControlPlaneOutageFaultDriver
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.kinds import DAEMONSET, POD, VIRTUAL_SERVICE
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.testing.fakekube.api import FakeCluster
from tests.kubernetes.fakecluster import comparable, wait_rolled_out
from tests.kubernetes.test_platform_faults import ops_of, platform, running  # noqa: F401

ISTIO = "istio-system"


def test_webhooks_fail_closed_while_istiod_is_down(seeded: FakeCluster, api: KubeApi) -> None:
    api.scale(ISTIO, "istiod", 0)
    with pytest.raises(PlatformError, match=r'failed calling webhook "validation\.istio\.io"'):
        api.update(VIRTUAL_SERVICE, "sc-mesh", "checkout", lambda vs: vs)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "sc-mesh"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
    }
    with pytest.raises(PlatformError, match=r"namespace\.sidecar-injector"):
        api.create(pod)
    api.create({**pod, "metadata": {"name": "p", "namespace": "sc-sidecar"}})  # not injected
    api.scale(ISTIO, "istiod", 1)
    wait_rolled_out(api, ISTIO, "istiod")  # the webhooks answer once istiod is Ready
    api.create(pod)


def _cert_expiry(service: str) -> CertExpiryFault:
    return CertExpiryFault.model_validate(
        {"type": "cert-expiry", "ttl": "60s", "target": {"service": service}}
    )


def test_mesh_cert_expiry_on_two_pods_sets_both_ttls_then_scales_istiod_once(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    before = comparable(seeded)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        driver = CertExpiryFaultDriver(
            _cert_expiry("checkout"), ops, fault_id="f", name="c", seed=1
        )
        driver.apply()  # was: the second pod's rollout refused by the injector, until the timeout
        assert api.read_scale(ISTIO, "istiod") == 0
        scales = [c for c in seeded.calls if c[0] == "PUT" and c[1].endswith("istiod/scale")]
        assert len(scales) == 1
        for name in ("checkout-0", "checkout-1"):
            pods = api.list_pods("sc-mesh", {"app": "checkout"})
            assert any(p.name.startswith(name) and p.ready for p in pods)
        driver.revert()
        assert api.read_scale(ISTIO, "istiod") == 1
    assert comparable(seeded) == before


def test_ambient_cert_expiry_waits_for_the_ztunnel_rollout_before_stopping_istiod(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    with running(platform, "ambient", tmp_path / "run") as topology:
        ops = ops_of(topology)
        driver = CertExpiryFaultDriver(
            _cert_expiry("checkout"), ops, fault_id="f", name="c", seed=1
        )
        driver.apply()
        ztunnel = api.get(DAEMONSET, ISTIO, "ztunnel")
        assert ztunnel is not None
        status = ztunnel["status"]
        # Every node's ztunnel was replaced (it has the short TTL) before istiod went.
        assert status["updatedNumberScheduled"] == status["desiredNumberScheduled"] == 2
        assert status["numberAvailable"] == 2
        pods = api.list_objects(POD, ISTIO, {"app": "ztunnel"})
        assert len(pods) == 2
        for pod in pods:
            env = pod["spec"]["containers"][0].get("env", [])
            assert {"name": "SECRET_TTL", "value": "60s"} in env
        assert api.read_scale(ISTIO, "istiod") == 0
        driver.revert()


def test_outage_with_cert_ttl_counts_expired_certificates_from_their_times(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    spec = ControlPlaneOutageFault.model_validate(
        {"type": "control-plane-outage", "cert_ttl": "1s", "target": {"service": "checkout"}}
    )
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        driver = ControlPlaneOutageFaultDriver(spec, ops, fault_id="f", name="o", seed=1)
        driver.apply()
        deadline = time.monotonic() + 10.0
        pods = len(ops.workload.pods)
        while time.monotonic() < deadline and ops.control_plane_state().certs_expired < pods:
            time.sleep(0.1)
        state = ops.control_plane_state()
        assert state.certs_expired == len(ops.workload.pods)
        assert state.rotations_missed == len(ops.workload.pods)
        assert driver.verify().took_effect
        driver.revert()
