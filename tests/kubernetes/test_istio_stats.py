"""Istio's proxies export only the stats their matcher includes; the faults read theirs.

Istio 1.24's defaults (istio/istio ``pkg/bootstrap/config.go``:
``requiredEnvoyStatsMatcherInclusionPrefixes``, ``rbacEnvoyStatsMatcherInclusionSuffix``,
``requiredEnvoyStatsMatcherInclusionRegexes``; ``tools/packaging/common/envoy_bootstrap.json``:
prefixes ``reporter=``, ``component``, ``istio``) leave out every counter a fault's verify
reads. The fake's Istio proxies follow that (``FakePodExec.stats_matcher``); ``cluster up``
installs a matcher naming the counters, and where it is not installed (a team's own
Istio) verify names what is missing and reads the samples instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.experiment import AbortFault, CertExpiryFault, PolicyDesyncFault
from chaos.faults.http import AbortFaultDriver
from chaos.faults.identity import CertExpiryFaultDriver, PolicyDesyncFaultDriver
from chaos.platforms.base import HttpFault
from chaos.platforms.kubernetes import names, statsmatcher
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.cluster import istioctl_install_argv
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import CONFIGMAP
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.testing.fakekube import istio
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.traffic.live import LiveStats
from tests.kubernetes.fakecluster import mesh_configmap
from tests.kubernetes.test_platform_faults import ops_of, platform, running  # noqa: F401

ABORT = HttpFault(percent=50, abort_status=503)
MESH = "sc-mesh"

#: A real stat name of each counter we read, as Envoy names it in an Istio proxy.
READ = [
    "http.outbound_0.0.0.0_8080.fault.delays_injected",
    "http.outbound_0.0.0.0_8080.fault.aborts_injected",
    "http.inbound_0.0.0.0_8080.jwt_authn.denied",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.upstream_rq_retry",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.ssl.fail_verify_error",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.ssl.connection_error",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.ssl.fail_verify_san",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.ssl.fail_verify_no_cert",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.upstream_cx_connect_fail",
    "cluster.outbound|8080||payments.sc-mesh.svc.cluster.local.outlier_detection.ejections_enforced_total",
    "control_plane.connected_state",
]


@pytest.mark.parametrize("name", READ)
def test_istio_defaults_drop_what_we_read_and_cluster_ups_matcher_keeps_it(name: str) -> None:
    assert not statsmatcher.proxy_matcher(None).exports(name)
    assert statsmatcher.proxy_matcher(statsmatcher.proxy_stats_matcher()).exports(name)
    # (rbac.denied is one of Istio's own suffixes: not in READ.)


def test_istio_keeps_its_own_defaults() -> None:
    defaults = statsmatcher.proxy_matcher(None)
    assert defaults.exports("cluster.xds-grpc.upstream_cx_total")
    assert defaults.exports("http.inbound_0.0.0.0_8080.rbac.denied") is True
    assert defaults.exports("vhost.checkout.route.default.upstream_rq_total")


def test_cluster_up_installs_the_matcher_with_istioctl() -> None:
    argv = istioctl_install_argv()
    base = "meshConfig.defaultConfig.proxyStatsMatcher"
    for index, suffix in enumerate(statsmatcher.READ_SUFFIXES):
        assert f"{base}.inclusionSuffixes[{index}]={suffix}" in argv
    assert f"{base}.inclusionPrefixes[0]=control_plane." in argv
    # Every counter a fault or the sampler reads is in the list.
    for suffix in (
        *statsmatcher.FAULT_SUFFIXES,
        *statsmatcher.TLS_SUFFIXES,
        *statsmatcher.DENIED_SUFFIXES,
        *statsmatcher.COUNTER_SUFFIXES,
    ):
        assert suffix.lstrip(".") in statsmatcher.READ_SUFFIXES


def _team_istio(api: KubeApi) -> None:
    """Istio as a team installed it: the mesh config without our stats matcher."""
    current = api.get(CONFIGMAP, names.ISTIO_NAMESPACE, "istio")
    assert current is not None
    wanted = mesh_configmap(None)
    wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    api.replace(wanted)


def _frontends(api: KubeApi) -> list[tuple[str, str]]:
    return [(MESH, p.name) for p in api.list_pods(MESH, {names.LABEL_APP: "frontend"})]


def _worker_pod() -> dict[str, Any]:
    labels = {names.LABEL_TRAFFIC_ROLE: "worker", "sidecar-chaos.dev/setup": "mesh"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "locust-worker-0",
            "namespace": names.TRAFFIC_NAMESPACE,
            "labels": labels,
        },
        "spec": {
            "containers": [{"name": "locust", "image": names.APP_IMAGE}],
            "initContainers": [
                {"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}
            ],
        },
    }


@contextlib.contextmanager
def _mesh(
    platform: KubernetesPlatform,  # noqa: F811
    api: KubeApi,
    tmp_path: Path,
) -> Iterator[KubeFaultOps]:
    """The mesh setup running on the seeded fake, a Locust worker with its sidecar in the
    traffic namespace."""
    api.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": names.TRAFFIC_NAMESPACE}}
    )
    api.create(_worker_pod())
    with running(platform, "mesh", tmp_path / "run") as topology:
        yield ops_of(topology)


@pytest.fixture
def ours(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> Iterator[KubeFaultOps]:
    """Mesh on ``cluster up``'s Istio (its stats matcher installed)."""
    with _mesh(platform, api, tmp_path) as ops:
        yield ops


@pytest.fixture
def team(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> Iterator[KubeFaultOps]:
    """Mesh on a team's Istio: Istio's default stats matcher."""
    _team_istio(api)
    with _mesh(platform, api, tmp_path) as ops:
        yield ops


def _samples(ops: KubeFaultOps, **counts: int) -> None:
    """What the window's last second of samples shows (the traffic's live statistics)."""
    requests = counts.pop("requests", 20)
    ops.traffic_stats = lambda: LiveStats(0.0, 1.0, requests=requests, p95_ms=3.0, **counts)


def test_mesh_fault_is_counted_at_the_client_sidecars_with_cluster_ups_matcher(
    ours: KubeFaultOps, api: KubeApi, pod_exec: FakePodExec
) -> None:
    (site,) = ours.http_fault_sites(list(ours.workload.pods[2:4]), "inbound")  # checkout
    ours.set_http_fault(site, ABORT)
    for client in _frontends(api):
        istio.send(pod_exec, client, "checkout", MESH, 10)
    assert ours.http_faults_injected(site) == 10
    assert ours.unexported_counters(site) == []


def test_on_a_team_istio_the_counters_are_missing_and_verify_reads_the_samples(
    team: KubeFaultOps, api: KubeApi, pod_exec: FakePodExec
) -> None:
    spec = AbortFault.model_validate(
        {"type": "abort", "percent": 50, "status": 503, "target": {"service": "checkout"}}
    )
    driver = AbortFaultDriver(spec, team, fault_id="f", name="abort", seed=1)
    driver.apply()
    for client in _frontends(api):
        istio.send(pod_exec, client, "checkout", MESH, 10)
    # Injected, but Istio's default matcher creates no fault counter to read.
    assert all(team.http_faults_injected(s) == 0 for s in driver._sites())
    _samples(team, errors=10)
    evidence = driver.verify()
    assert evidence.took_effect
    assert "export no fault.aborts_injected" in evidence.detail
    assert "10 of 20 requests failed" in evidence.detail
    _samples(team, errors=0)
    assert not driver.verify().took_effect  # the samples show nothing either
    driver.revert()


def test_a_frontend_fault_in_mesh_is_counted_at_the_locust_workers_sidecars(
    ours: KubeFaultOps, pod_exec: FakePodExec
) -> None:
    (site,) = ours.http_fault_sites(list(ours.workload.pods[0:2]), "inbound")  # frontend
    ours.set_http_fault(site, ABORT)
    istio.send(pod_exec, (names.TRAFFIC_NAMESPACE, "locust-worker-0"), "frontend", MESH, 20)
    assert ours.http_faults_injected(site) == 10


def test_a_bad_token_is_refused_by_jwt_authn_not_rbac(
    ours: KubeFaultOps, api: KubeApi, pod_exec: FakePodExec
) -> None:
    before = ours.token_denials()
    ours.rotate_signing_key()
    for client in _frontends(api):
        istio.send(pod_exec, client, "checkout", MESH, 5)
    after = ours.token_denials()
    rises = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    assert rises and all(k.endswith("jwt_authn.denied") for k in rises)
    assert sum(rises.values()) == 2 * 5 * 2  # both clients, both checkout replicas
    ours.restore_signing_key()


def test_policy_desync_on_a_team_istio_decides_from_the_401s_in_the_samples(
    team: KubeFaultOps, api: KubeApi, pod_exec: FakePodExec
) -> None:
    spec = PolicyDesyncFault.model_validate(
        {"type": "policy-desync", "target": {"service": "checkout"}}
    )
    driver = PolicyDesyncFaultDriver(spec, team, fault_id="f", name="desync", seed=1)
    driver.apply()
    for client in _frontends(api):
        istio.send(pod_exec, client, "checkout", MESH, 5)  # refused, but counted nowhere
    _samples(team, errors=8, denied=8)
    evidence = driver.verify()
    assert evidence.took_effect, evidence.detail
    assert "export no jwt_authn.denied" in evidence.detail
    assert "8 of 20 requests answered 401/403" in evidence.detail
    _samples(team, errors=3, unavailable=3)  # failing, but not refused: not this fault
    assert not driver.verify().took_effect
    driver.revert()


def test_cert_expiry_on_a_team_istio_decides_from_the_failures_in_the_samples(
    team: KubeFaultOps,
) -> None:
    spec = CertExpiryFault.model_validate(
        {"type": "cert-expiry", "ttl": "1s", "target": {"service": "checkout", "replica": 0}}
    )
    driver = CertExpiryFaultDriver(spec, team, fault_id="f", name="expiry", seed=1)
    try:
        driver.apply()
        deadline = max(driver._not_after.values())
        while time.time() <= deadline:  # until the certificate's own expiry time
            time.sleep(0.1)
        _samples(team, errors=6, unavailable=6)
        evidence = driver.verify()
        assert evidence.took_effect, evidence.detail
        assert "export no " in evidence.detail and "ssl.connection_error" in evidence.detail
        assert "6 of 20 requests unanswered or 503" in evidence.detail
        _samples(team, errors=0)
        assert not driver.verify().took_effect
    finally:
        driver.revert()
