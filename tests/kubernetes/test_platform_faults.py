"""Every fault mechanism of the Kubernetes platform against the fake API server.

The official client (unmodified) talks HTTP to the fake; exec and port-forward go
through the real ``KubePodExec`` and the fake's websockets to the fake pods. Each test
applies a mechanism, checks what changed in the cluster, reverts, and checks the cluster
is as it was found (twice-revert included).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from chaos.errors import FaultError, InputError
from chaos.experiment import Setup
from chaos.platforms.base import Event, EventKind, HttpFault, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import read_ledger
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import (
    CONFIGMAP,
    DEPLOYMENT,
    POD,
    REQUEST_AUTHENTICATION,
    SECRET,
    VIRTUAL_SERVICE,
)
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.topology import KubeTopology
from chaos.platforms.shared.pki import _BACKDATE as BACKDATE
from chaos.platforms.shared.pki import CERT_FILE
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.fakecluster import JWKS, comparable

ABORT = HttpFault(percent=50, abort_status=503)
DELAY = HttpFault(percent=100, delay_ms=250)


@pytest.fixture
def platform(kubeconfig: Path, pod_exec: FakePodExec) -> KubernetesPlatform:
    # The real KubePodExec: exec and port-forward go through the fake API server's
    # websockets to ``pod_exec``, on streams of their own beside the REST calls and watch.
    return KubernetesPlatform(
        kubeconfig=kubeconfig,
        ready_timeout_s=10.0,
        rollout_timeout_s=10.0,
        watch_timeout_s=1,
    )


@contextmanager
def running(platform: KubernetesPlatform, setup: str, run_dir: Path) -> Iterator[KubeTopology]:
    options = StartOptions(run_dir=run_dir, run_marker="run-1")
    with platform.start(Setup(setup), options) as topology:
        assert isinstance(topology, KubeTopology)
        yield topology


def ops_of(topology: KubeTopology) -> KubeFaultOps:
    ops = topology.ops
    assert isinstance(ops, KubeFaultOps)
    return ops


def locust_workers(api: KubeApi) -> None:
    """Two ambient Locust workers, one per node (nothing pins them: they land anywhere)."""
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sc-traffic"}})
    for name, host in (("a", "sidecar-chaos-worker"), ("b", "sidecar-chaos-worker2")):
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"locust-worker-{name}",
                    "namespace": "sc-traffic",
                    "labels": {names.LABEL_TRAFFIC_ROLE: "worker"},
                },
                "spec": {
                    "nodeName": host,
                    "containers": [{"name": "locust", "image": names.APP_IMAGE}],
                },
            }
        )


def live_pods(api: KubeApi, ns: str, service: str, replica: int) -> list[str]:
    labels = {names.LABEL_APP: service, names.LABEL_REPLICA: str(replica)}
    return [p.uid for p in api.list_pods(ns, labels) if not p.deleting]


# -- start ------------------------------------------------------------------------------


def test_start_finds_the_demo_workload(
    platform: KubernetesPlatform, seeded: FakeCluster, tmp_path: Path
) -> None:
    with running(platform, "mesh", tmp_path / "run") as topology:
        assert [p.name for p in topology.pods] == [
            "frontend-0",
            "frontend-1",
            "checkout-0",
            "checkout-1",
            "payments-0",
            "payments-1",
        ]
        assert {p.node for p in topology.pods} == {"node-1", "node-2"}
        assert topology.ingress_url == "http://frontend.sc-mesh.svc.cluster.local:8080"
        record = topology.journal_record()
        assert record["context"] == "kind-sidecar-chaos"
        assert record["namespace"] == "sc-mesh"
        restarts = [s for s in topology.read_counters() if s.name == "restarts"]
        assert len(restarts) == 6 and all(s.value == 0 for s in restarts)


def test_start_without_cluster_up_is_an_input_error(
    platform: KubernetesPlatform, fake_server: object, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="cluster up"), running(platform, "mesh", tmp_path):
        pass


# -- HTTP faults ------------------------------------------------------------------------


def test_sidecar_http_fault_switches_the_filter_through_the_admin_runtime(
    platform: KubernetesPlatform,
    seeded: FakeCluster,
    pod_exec: FakePodExec,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    before = comparable(seeded)
    with running(platform, "sidecar", tmp_path / "run") as topology:
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.name == "checkout-0"]
        (site,) = ops.http_fault_sites(target, "inbound")
        assert site.affects == ("checkout-0",)
        assert "runtime_modify" in site.mechanism
        live = ops.live(target[0]).name
        ops.set_http_fault(site, ABORT)
        runtime = pod_exec.runtime[("sc-sidecar", live)]
        assert runtime["fault.inbound.abort.percent"] == "50"
        pod_exec.serve("sc-sidecar", live, 100)
        assert ops.http_faults_injected(site) == 50
        ops.clear_http_fault(site)
        ops.clear_http_fault(site)  # twice is safe
        assert pod_exec.runtime[("sc-sidecar", live)] == {}
        pod_exec.serve("sc-sidecar", live, 100)
        assert ops.http_faults_injected(site) == 50  # no more injections once cleared
    assert comparable(seeded) == before


def test_mesh_inbound_fault_rewrites_the_whole_http_list_and_restores_it(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    original = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")
    assert original is not None
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.name == "checkout-1"]
        (site,) = ops.http_fault_sites(target, "inbound")
        # A route has no per-endpoint fault: every replica of the service is hit.
        assert site.affects == ("checkout-0", "checkout-1")
        ops.set_http_fault(site, ABORT)
        ops.set_http_fault(site, ABORT)  # applying twice does not stack
        changed = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")
        assert changed is not None
        http = changed["spec"]["http"]
        assert len(http) == 1
        assert http[0]["fault"] == {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}
        assert http[0]["retries"] == original["spec"]["http"][0]["retries"]
        assert changed["metadata"]["annotations"][names.ANNOTATION_RUN] == "run-1"
        ops.clear_http_fault(site)
        ops.clear_http_fault(site)
        assert comparable(seeded) == before
    assert comparable(seeded) == before
    methods = [(m, p) for m, p, _ in seeded.calls if "virtualservices/checkout" in p]
    assert ("PUT", "/apis/networking.istio.io/v1/namespaces/sc-mesh/virtualservices/checkout") in [
        (m, p.split("?")[0]) for m, p in methods
    ]


def test_mesh_outbound_fault_adds_a_route_for_one_source(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.name in ("frontend-0", "payments-0")]
        (site,) = ops.http_fault_sites(target, "outbound")  # payments calls nobody
        assert site.affects == ("frontend-0",)
        ops.set_http_fault(site, DELAY)
        http = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")["spec"]["http"]  # type: ignore[index]
        assert [r.get("name") for r in http] == ["sidecar-chaos-fault", "default"]
        assert http[0]["match"] == [
            {"sourceLabels": {names.LABEL_APP: "frontend", names.LABEL_REPLICA: "0"}}
        ]
        assert http[0]["fault"]["delay"]["fixedDelay"] == "250ms"
        assert "fault" not in http[1]
        ops.clear_http_fault(site)
    assert comparable(seeded) == before


def test_ambient_fault_goes_to_the_virtualservice_the_waypoint_serves(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    with running(platform, "ambient", tmp_path / "run") as topology:
        ops = ops_of(topology)
        (site,) = ops.http_fault_sites(list(ops.workload.pods[:1]), "inbound")
        assert "frontend-waypoint" in site.mechanism
        ops.set_http_fault(site, ABORT)
        assert "fault" in api.get(VIRTUAL_SERVICE, "sc-ambient", "frontend")["spec"]["http"][0]  # type: ignore[index]
    # Leaving the topology reverts what a fault left applied.
    assert comparable(seeded) == before


def test_a_missing_virtualservice_is_created_as_ours_and_deleted_on_revert(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    api.delete(VIRTUAL_SERVICE, "sc-mesh", "payments")
    before = comparable(seeded)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.service == "payments"]
        (site,) = ops.http_fault_sites(target, "inbound")
        ops.set_http_fault(site, ABORT)
        ours = api.get(VIRTUAL_SERVICE, "sc-mesh", "sc-fault-payments")
        assert ours is not None
        assert ours["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
        assert ours["spec"]["hosts"] == ["payments.sc-mesh.svc.cluster.local"]
        ops.clear_http_fault(site)
        assert api.get(VIRTUAL_SERVICE, "sc-mesh", "sc-fault-payments") is None
    assert comparable(seeded) == before


# -- crashes ----------------------------------------------------------------------------


def _wait_for(events: list[Event], kind: EventKind, subject: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(e.kind == kind and e.subject == subject for e in list(events)):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("setup", "container", "command"),
    [
        ("sidecar", "envoy-sidecar", "/bin/sh -c kill -TERM 1"),
        ("mesh", "istio-proxy", "pilot-agent request POST quitquitquit"),
    ],
)
def test_crash_execs_in_the_proxy_and_counts_restarts_from_pod_status(
    platform: KubernetesPlatform,
    seeded: FakeCluster,
    pod_exec: FakePodExec,
    tmp_path: Path,
    setup: str,
    container: str,
    command: str,
) -> None:
    with running(platform, setup, tmp_path / "run") as topology:
        events: list[Event] = []
        lock = threading.Lock()

        def collect(event: Event) -> None:
            with lock:
                events.append(event)

        topology.subscribe(collect)
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.name == "payments-1"]
        (proxy,) = ops.crash_targets(target, None)
        assert proxy.name == f"payments-1/{container}" and proxy.affects == ("payments-1",)
        assert ops.proxy_restarts(proxy) == 0
        ops.kill_proxy(proxy)
        live = ops.live(target[0]).name
        assert pod_exec.calls[-1] == (
            "exec",
            names.namespace_of(names.Setup(setup)),
            live,
            container,
            command,
        )
        assert ops.proxy_restarts(proxy) == 1
        assert _wait_for(events, EventKind.RESTARTED, "payments-1")
        counters = {(s.proxy, s.name): s.value for s in topology.read_counters()}
        assert counters[(f"payments-1/{container}", "restarts")] == 1.0


def test_ambient_crash_deletes_the_nodes_ztunnel_and_hits_every_pod_on_the_node(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    istiod_before = api.get(DEPLOYMENT, "istio-system", "istiod")
    locust_workers(api)
    with running(platform, "ambient", tmp_path / "run") as topology:
        ops = ops_of(topology)
        target = [p for p in ops.workload.pods if p.name == "checkout-0"]
        (proxy,) = ops.crash_targets(target, None)
        assert proxy.name == "ztunnel/node-1"
        assert proxy.affects == (
            "frontend-0",
            "checkout-0",
            "payments-0",
            # the load generator is on the node too (not the worker on the other node)
            "sc-traffic/locust-worker-a (Locust worker) on sidecar-chaos-worker",
        )
        ops.kill_proxy(proxy)
        ztunnels = api.pods_on_node("istio-system", "sidecar-chaos-worker", {"app": "ztunnel"})
        assert [p.name for p in ztunnels] != ["ztunnel-node-1"]  # a new pod, same node
        assert len(ztunnels) == 1
        assert ops.proxy_restarts(proxy) == 1
        other = api.pods_on_node("istio-system", "sidecar-chaos-worker2", {"app": "ztunnel"})
        assert [p.name for p in other] == ["ztunnel-node-2"]
    assert api.get(DEPLOYMENT, "istio-system", "istiod") == istiod_before


# -- control plane ----------------------------------------------------------------------


def test_control_plane_outage_scales_istiod_to_zero_and_back_to_the_recorded_count(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    api.scale("istio-system", "istiod", 2)
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    with running(platform, "mesh", run_dir) as topology:
        ops = ops_of(topology)
        assert not ops.control_plane_state().stopped
        ops.stop_control_plane(None)
        ops.stop_control_plane(None)  # twice: the first recorded count stays
        assert api.read_scale("istio-system", "istiod") == 0
        state = ops.control_plane_state()
        assert state.stopped, state.detail
        _, pending = read_ledger(run_dir)
        assert [(c.action, c.name, c.before) for c in pending] == [("scale", "istiod", 2)]
        ops.start_control_plane()
        ops.start_control_plane()
        assert api.read_scale("istio-system", "istiod") == 2
    assert comparable(seeded) == before


def test_sidecar_setup_has_no_control_plane_to_stop(
    platform: KubernetesPlatform, seeded: FakeCluster, tmp_path: Path
) -> None:
    before = comparable(seeded)
    with running(platform, "sidecar", tmp_path / "run") as topology:
        ops = ops_of(topology)
        assert ops.control_plane_mechanisms(None) == []
        ops.stop_control_plane(None)
        assert not ops.control_plane_state().stopped
        ops.start_control_plane()
    assert comparable(seeded) == before


# -- policy desync ----------------------------------------------------------------------


def test_mesh_policy_desync_swaps_the_requestauthentication_key_set(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        assert ops.validates_tokens()
        ops.rotate_signing_key()
        rules = api.get(REQUEST_AUTHENTICATION, "sc-mesh", "jwt")["spec"]["jwtRules"]  # type: ignore[index]
        assert rules[0]["issuer"] == "https://idp.sidecar-chaos"
        swapped = json.loads(rules[0]["jwks"])
        assert rules[0]["jwks"] != JWKS and swapped["keys"][0]["kid"] == "sidecar-chaos-desync"
        ops.restore_signing_key()
        ops.restore_signing_key()
    assert comparable(seeded) == before


def test_ambient_without_requestauthentication_validates_no_tokens(
    platform: KubernetesPlatform, seeded: FakeCluster, tmp_path: Path
) -> None:
    with running(platform, "ambient", tmp_path / "run") as topology:
        assert not ops_of(topology).validates_tokens()


def test_sidecar_policy_desync_swaps_the_key_set_and_recreates_the_pods(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    uids = live_pods(api, "sc-sidecar", "frontend", 0)
    with running(platform, "sidecar", tmp_path / "run") as topology:
        ops = ops_of(topology)
        ops.rotate_signing_key()
        data = api.get(CONFIGMAP, "sc-sidecar", names.JWKS_CONFIGMAP)["data"]  # type: ignore[index]
        assert data["jwks.json"] != JWKS
        assert live_pods(api, "sc-sidecar", "frontend", 0) != uids  # re-read at start
        ops.restore_signing_key()
        data = api.get(CONFIGMAP, "sc-sidecar", names.JWKS_CONFIGMAP)["data"]  # type: ignore[index]
        assert data == {"jwks.json": JWKS}
    assert comparable(seeded) == before


# -- cert expiry ------------------------------------------------------------------------


def test_sidecar_cert_expiry_installs_a_short_lived_cert_and_restores_the_secret(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    secret = names.certs_secret_name("checkout", 1)
    original = api.get(SECRET, "sc-sidecar", secret)
    uids = live_pods(api, "sc-sidecar", "checkout", 1)
    with running(platform, "sidecar", tmp_path / "run") as topology:
        ops = ops_of(topology)
        pod = next(p for p in ops.workload.pods if p.name == "checkout-1")
        not_after = ops.expire_identity(pod, 30.0)
        data = api.get(SECRET, "sc-sidecar", secret)["data"]  # type: ignore[index]
        cert = x509.load_pem_x509_certificate(base64.b64decode(data[CERT_FILE]))
        # The certificate's own record: valid 30 s from issuance (its start is backdated by
        # the CA), and what the fault reports as its end is that end (X.509 keeps seconds).
        valid = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert valid == timedelta(seconds=30) + BACKDATE
        assert int(not_after) == int(cert.not_valid_after_utc.timestamp())
        assert live_pods(api, "sc-sidecar", "checkout", 1) != uids  # the init step re-ran
        ops.restore_identity(pod)
        ops.restore_identity(pod)
        assert api.get(SECRET, "sc-sidecar", secret)["data"] == original["data"]  # type: ignore[index]
    assert comparable(seeded) == before


def test_mesh_cert_expiry_sets_a_short_ttl_and_blocks_istiod(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        pod = next(p for p in ops.workload.pods if p.name == "payments-0")
        ops.expire_identity(pod, 20.0)
        template = api.get(DEPLOYMENT, "sc-mesh", "payments-0")["spec"]["template"]  # type: ignore[index]
        config = json.loads(template["metadata"]["annotations"]["proxy.istio.io/config"])
        assert config == {"proxyMetadata": {"SECRET_TTL": "20s"}}
        # istiod goes once, after every target's TTL (the fault driver asks for it).
        assert api.read_scale("istio-system", "istiod") == 1
        ops.block_rotation()
        assert api.read_scale("istio-system", "istiod") == 0
        ops.restore_identity(pod)
        assert api.read_scale("istio-system", "istiod") == 1
    assert comparable(seeded) == before


def test_pods_of_other_namespaces_are_not_touched(
    platform: KubernetesPlatform, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    others = {ns: [p.uid for p in api.list_pods(ns)] for ns in ("sc-sidecar", "sc-ambient")}
    with running(platform, "mesh", tmp_path / "run") as topology:
        ops = ops_of(topology)
        ops.rotate_signing_key()
        for proxy in ops.crash_targets(ops.workload.pods, None):
            ops.kill_proxy(proxy)
        ops.restore_signing_key()
    assert {ns: [p.uid for p in api.list_pods(ns)] for ns in others} == others
    assert api.list_objects(POD, "kube-system") == []
    assert not [c for c in seeded.calls if "kube-system" in c[1] and c[0] != "GET"]


def test_sidecar_cert_expiry_can_use_the_ca_cluster_up_kept_on_disk(
    kubeconfig: Path, pod_exec: FakePodExec, seeded: FakeCluster, api: KubeApi, tmp_path: Path
) -> None:
    api.delete(SECRET, "sc-sidecar", "sidecar-chaos-ca")
    before = comparable(seeded)
    without = KubernetesPlatform(kubeconfig=kubeconfig, pod_exec=lambda _api: pod_exec)
    with running(without, "sidecar", tmp_path / "run-1") as topology:
        pod = topology.pods[0]
        with pytest.raises(FaultError, match="no CA to issue a short-lived certificate"):
            ops_of(topology).expire_identity(pod, 30.0)
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        ca_dir=tmp_path / "ca",  # where the seed (as cluster up) saved it
        rollout_timeout_s=10.0,
        watch_timeout_s=1,
    )
    with running(platform, "sidecar", tmp_path / "run-2") as topology:
        pod = topology.pods[0]
        ops_of(topology).expire_identity(pod, 30.0)
        assert comparable(seeded) != before
        ops_of(topology).restore_identity(pod)
    assert comparable(seeded) == before


def test_versions_come_from_the_cluster(kubeconfig: Path, seeded: FakeCluster) -> None:
    versions = KubernetesPlatform(kubeconfig=kubeconfig).versions()
    assert versions["kubernetes"] == "v1.34.0"
    assert versions["istio"] == "1.28.0"


def test_a_kill_that_closes_its_own_exec_session_still_counts(
    platform: KubernetesPlatform, seeded: FakeCluster, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    pod_exec.kills_close_the_session = True
    with running(platform, "sidecar", tmp_path / "run") as topology:
        ops = ops_of(topology)
        (proxy,) = ops.crash_targets([topology.pods[0]], None)
        ops.kill_proxy(proxy)  # no error: the session died with the proxy
        assert ops.proxy_restarts(proxy) == 1
