"""A game day against a team's own workload (``target: {namespace, selector, container}``).

The cluster is the fake API server (official client unmodified), exec and port-forward
the fake PodExec. A "team namespace" is created by the test as a team would have it
(their Deployments, Service, maybe their own VirtualService; nothing of the tool's);
the platform finds the pods by their labels, checks the setup they run, and its
faults must change nothing there but what they journal and revert.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from chaos.cli.app import app
from chaos.engine.run import Engine, RunOptions
from chaos.errors import FaultError, InputError, StartupError
from chaos.experiment import Setup, load_experiment
from chaos.experiment.models import EXTRA_HOST, EXTRA_TARGET
from chaos.platforms.base import HttpFault, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import pending_changes, read_ledger
from chaos.platforms.kubernetes.existing import ExistingFaultOps, detect_setup
from chaos.platforms.kubernetes.kinds import POD, SERVICE, VIRTUAL_SERVICE
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.topology import KubeTopology
from chaos.platforms.kubernetes.traffic import TrafficTimings
from chaos.rundir.journal import read_journal
from chaos.rundir.samples import load_samples
from chaos.testing.fake_traffic import FakeTraffic
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.traffic.config import TrafficConfig
from tests.kubernetes.fakecluster import comparable
from tests.kubernetes.fakekubelet import FakeKubelet

TEAM = "shop"
SELECTOR = {"app": "cart", "team": "shop"}
ABORT = HttpFault(percent=50, abort_status=503)


def team_namespace(
    api: KubeApi,
    proxy: str,
    *,
    ambient: bool = False,
    hostname: str = "fake-node",
) -> None:
    """The team's namespace: a Deployment ``cart`` (2 pods) and its Service, as they made it.

    ``proxy``: ``istio-proxy`` (injected), ``native`` (istio-proxy as a native
    sidecar), a plain sidecar container's name, or ``""`` (none: ambient).
    """
    labels = {"istio.io/dataplane-mode": "ambient"} if ambient else {}
    api.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEAM, "labels": labels}}
    )
    spec: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": hostname},
        "containers": [{"name": "cart", "image": "shop/cart:1.4"}],
    }
    if proxy == "native":
        spec["initContainers"] = [
            {"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}
        ]
    elif proxy:
        spec["containers"].append({"name": proxy, "image": "envoyproxy/envoy:v1.36.2"})
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "cart", "namespace": TEAM, "labels": {"app": "cart"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": SELECTOR},
                "template": {"metadata": {"labels": dict(SELECTOR)}, "spec": spec},
            },
        }
    )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "cart-svc", "namespace": TEAM},
            "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 9090}]},
        }
    )


def team_objects(cluster: FakeCluster) -> dict[str, Any]:
    """Everything in the team's namespace but the volatile fields (pods by owner)."""
    found = comparable(cluster)
    return {k: v for k, v in found.items() if f"/namespaces/{TEAM}/" in f"/{k}/" or TEAM in k}


def target_extra(container: str | None = None) -> dict[str, str]:
    return {
        EXTRA_TARGET: json.dumps(
            {"namespace": TEAM, "selector": SELECTOR, "container": container}, sort_keys=True
        )
    }


@pytest.fixture
def platform(kubeconfig: Path, pod_exec: FakePodExec) -> KubernetesPlatform:
    return KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        ready_timeout_s=5.0,
        rollout_timeout_s=5.0,
        watch_timeout_s=1,
    )


@contextmanager
def running(
    platform: KubernetesPlatform, setup: str, run_dir: Path, extra: dict[str, str]
) -> Iterator[tuple[KubeTopology, ExistingFaultOps]]:
    options = StartOptions(run_dir=run_dir, run_marker="run-1", extra=extra)
    with platform.start(Setup(setup), options) as topology:
        assert isinstance(topology, KubeTopology)
        ops = topology.ops
        assert isinstance(ops, ExistingFaultOps)
        yield topology, ops


# -- finding the team's pods -------------------------------------------------------------


def test_the_workload_is_the_teams_pods_found_by_their_labels(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "istio-proxy", hostname="sidecar-chaos-worker")
    extra = {**target_extra(), EXTRA_HOST: "http://cart-svc.shop.svc.cluster.local:9090"}
    with running(platform, "mesh", tmp_path / "run", extra) as (topology, ops):
        assert topology.ingress_url == "http://cart-svc.shop.svc.cluster.local:9090"
        assert topology.hosted_traffic() is not None  # Locust in its own namespace
        live = sorted(p.name for p in api.list_pods(TEAM))
        assert [p.name for p in topology.pods] == live
        assert {p.service for p in topology.pods} == {"cart-svc"}  # the Service selecting them
        assert [p.replica for p in topology.pods] == [0, 1]
        assert {p.node for p in topology.pods} == {"sidecar-chaos-worker"}
        assert ops.namespace == TEAM
        assert topology.journal_record()["namespace"] == TEAM
        assert topology.recorded_writes() is None  # the demo's write log: not theirs to read
        assert topology.journal_record()["target"] == "shop pods app=cart,team=shop"


@pytest.mark.parametrize(
    ("container", "proxy", "ns_ambient", "pod_ambient", "expected"),
    [
        (None, "istio-proxy", False, False, names.Setup.MESH),
        (None, "native", False, False, names.Setup.MESH),
        (None, "", True, False, names.Setup.AMBIENT),
        (None, "", False, True, names.Setup.AMBIENT),
        ("envoy", "envoy", False, False, names.Setup.SIDECAR),
        (None, "envoy", False, False, None),
        ("gateway", "envoy", False, False, None),
    ],
)
def test_the_setup_is_detected_from_the_pods(
    container: str | None,
    proxy: str,
    ns_ambient: bool,
    pod_ambient: bool,
    expected: names.Setup | None,
) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "cart"}]}
    statuses = [{"name": "cart", "restartCount": 0}]
    init_statuses = []
    if proxy == "native":
        spec["initContainers"] = [{"name": "istio-proxy", "restartPolicy": "Always"}]
        init_statuses = [{"name": "istio-proxy", "restartCount": 0}]
    elif proxy:
        spec["containers"].append({"name": proxy})
        statuses.append({"name": proxy, "restartCount": 0})
    labels = {"app": "cart", **({"istio.io/dataplane-mode": "ambient"} if pod_ambient else {})}
    pod = PodState.of(
        {
            "metadata": {"name": "cart-1", "namespace": TEAM, "labels": labels},
            "spec": spec,
            "status": {"containerStatuses": statuses, "initContainerStatuses": init_statuses},
        }
    )
    ns_labels = {"istio.io/dataplane-mode": "ambient"} if ns_ambient else {}
    detected, why = detect_setup([pod], ns_labels, container)
    assert detected == expected, why
    assert why


def test_a_setup_mismatch_is_one_line_before_anything_changes(
    platform: KubernetesPlatform,
    api: KubeApi,
    fake_server: Any,
    pod_exec: FakePodExec,
    tmp_path: Path,
) -> None:
    team_namespace(api, "istio-proxy")
    before = team_objects(fake_server.cluster)
    with (
        pytest.raises(InputError) as caught,
        running(platform, "sidecar", tmp_path / "run", target_extra("envoy")),
    ):
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert "says sidecar, the pods show mesh" in message
    assert "istio-proxy" in message
    assert team_objects(fake_server.cluster) == before
    assert pod_exec.calls == []
    assert read_ledger(tmp_path / "run") == ([], [])


def test_a_team_pod_that_is_not_ready_stops_the_start(
    kubeconfig: Path, api: KubeApi, fake_server: Any, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    team_namespace(api, "istio-proxy")
    cluster: FakeCluster = fake_server.cluster
    pods = cluster.resources[("v1", "pods")]
    name = sorted(p.name for p in api.list_pods(TEAM))[0]
    obj = cluster.get(pods, TEAM, name)
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    cluster.replace(pods, TEAM, name, obj, status_only=True)
    impatient = KubernetesPlatform(
        kubeconfig=kubeconfig, pod_exec=lambda _api: pod_exec, ready_timeout_s=0.3
    )
    with (
        pytest.raises(StartupError, match=f"pods not ready after 0.3 s: {name}"),
        running(impatient, "mesh", tmp_path / "run", target_extra()),
    ):
        pass
    assert pod_exec.calls == []


def test_a_missing_namespace_or_no_matching_pod_is_an_input_error(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    with (
        pytest.raises(InputError, match="no namespace shop"),
        running(platform, "mesh", tmp_path / "a", target_extra()),
    ):
        pass
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEAM}})
    with (
        pytest.raises(InputError, match="no pod matches"),
        running(platform, "mesh", tmp_path / "b", target_extra()),
    ):
        pass


# -- HTTP faults in a mesh ---------------------------------------------------------------


def test_a_mesh_fault_creates_an_owned_virtual_service_and_removes_it(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "native")
    before = team_objects(fake_server.cluster)
    with running(platform, "mesh", tmp_path / "run", target_extra()) as (_, ops):
        with pytest.raises(FaultError, match="call graph"):
            ops.http_fault_sites(list(ops.workload.pods), "outbound")
        (site,) = ops.http_fault_sites(list(ops.workload.pods), "inbound")
        assert set(site.affects) == {p.name for p in ops.workload.pods}
        ops.set_http_fault(site, ABORT)
        ops.set_http_fault(site, ABORT)  # twice does not duplicate
        (vs,) = api.list_objects(VIRTUAL_SERVICE, TEAM)
        assert vs["metadata"]["name"] == "sc-fault-cart-svc"
        assert vs["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
        host = "cart-svc.shop.svc.cluster.local"
        assert vs["spec"]["hosts"] == [host]
        (route,) = vs["spec"]["http"]
        assert route["route"][0]["destination"] == {"host": host, "port": {"number": 9090}}
        assert route["fault"]["abort"] == {"httpStatus": 503, "percentage": {"value": 50.0}}
        # the only change in their namespace is that journaled VirtualService
        during = team_objects(fake_server.cluster)
        assert set(during) - set(before) == {
            f"networking.istio.io/v1/virtualservices/{TEAM}/sc-fault-cart-svc"
        }
        ops.clear_http_fault(site)
        ops.clear_http_fault(site)  # twice is safe
        assert api.list_objects(VIRTUAL_SERVICE, TEAM) == []
    assert team_objects(fake_server.cluster) == before


def test_a_mesh_fault_patches_the_teams_own_virtual_service_and_restores_it_exactly(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "istio-proxy")
    routes = [
        {
            "name": "canary",
            "match": [{"headers": {"x-canary": {"exact": "1"}}}],
            "route": [{"destination": {"host": "cart-svc", "subset": "v2"}}],
        },
        {
            "name": "stable",
            "route": [{"destination": {"host": "cart-svc", "subset": "v1"}}],
            "timeout": "2s",
        },
    ]
    api.create(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": "cart-routes",
                "namespace": TEAM,
                "annotations": {"owner": "team-shop"},
            },
            "spec": {"hosts": ["cart-svc"], "http": routes},
        }
    )
    before = team_objects(fake_server.cluster)
    run_dir = tmp_path / "run"
    with running(platform, "mesh", run_dir, target_extra()) as (_, ops):
        (site,) = ops.http_fault_sites([ops.workload.pods[0]], "inbound")
        ops.set_http_fault(site, HttpFault(percent=100, delay_ms=300))
        (vs,) = api.list_objects(VIRTUAL_SERVICE, TEAM)
        assert vs["metadata"]["name"] == "cart-routes"  # theirs, nothing of ours beside it
        http = vs["spec"]["http"]
        assert [r["name"] for r in http] == ["canary", "stable"]  # the whole list, as read
        assert all(r["fault"]["delay"]["fixedDelay"] == "300ms" for r in http)
        assert http[1]["timeout"] == "2s"
        assert [c.action for c in read_ledger(run_dir)[1]] == ["field"]
        ops.clear_http_fault(site)
        after = api.get(VIRTUAL_SERVICE, TEAM, "cart-routes")
        assert after is not None and after["spec"]["http"] == routes
        assert after["metadata"]["annotations"] == {"owner": "team-shop"}
    assert team_objects(fake_server.cluster) == before


# -- a named sidecar ---------------------------------------------------------------------


def test_a_named_sidecar_takes_runtime_faults_and_crashes_by_exec_in_that_container(
    platform: KubernetesPlatform,
    api: KubeApi,
    fake_server: Any,
    pod_exec: FakePodExec,
    tmp_path: Path,
) -> None:
    team_namespace(api, "edge-envoy")
    before = team_objects(fake_server.cluster)
    extra = target_extra("edge-envoy")
    with running(platform, "sidecar", tmp_path / "run", extra) as (topology, ops):
        pod = ops.workload.pods[1]
        (site,) = ops.http_fault_sites([pod], "inbound")
        assert site.proxy == f"{pod.name}/edge-envoy"
        ops.set_http_fault(site, ABORT)
        assert pod_exec.runtime[(TEAM, pod.name)]["fault.inbound.abort.percent"] == "50"
        pod_exec.serve(TEAM, pod.name, 100)
        assert ops.http_faults_injected(site) == 50
        ops.clear_http_fault(site)
        assert pod_exec.runtime[(TEAM, pod.name)] == {}

        (target,) = ops.crash_targets([pod], None)
        assert target.name == f"{pod.name}/edge-envoy"
        ops.kill_proxy(target)
        assert ("exec", TEAM, pod.name, "edge-envoy", "/bin/sh -c kill -TERM 1") in pod_exec.calls
        assert ops.proxy_restarts(target) == 1
        live = PodState.of(api.get(POD, TEAM, pod.name) or {})
        assert live.restarts("cart") == 0  # only the named container restarted
        restarts = {s.proxy: s.value for s in topology.read_counters() if s.name == "restarts"}
        assert restarts[f"{pod.name}/edge-envoy"] == 1
    after = team_objects(fake_server.cluster)
    assert after == before  # same objects (pods compared by owner: restarts are healing)


def test_an_ambient_crash_deletes_the_ztunnel_of_the_pods_node(
    platform: KubernetesPlatform, api: KubeApi, seeded: FakeCluster, tmp_path: Path
) -> None:
    worker = names.NODE_HOSTNAMES["node-2"]
    team_namespace(api, "", ambient=True, hostname=worker)
    with running(platform, "ambient", tmp_path / "run", target_extra()) as (_, ops):
        pod = ops.workload.pods[0]
        (target,) = ops.crash_targets([pod], None)
        assert target.name == f"ztunnel/{worker}"
        (old,) = api.pods_on_node(names.ISTIO_NAMESPACE, worker, {"app": "ztunnel"})
        ops.kill_proxy(target)
        (new,) = [
            p
            for p in api.pods_on_node(names.ISTIO_NAMESPACE, worker, {"app": "ztunnel"})
            if not p.deleting
        ]
        assert new.uid != old.uid
        assert ops.proxy_restarts(target) == 1


# -- a whole run through the engine ------------------------------------------------------

EXPERIMENT = """\
name: team-gameday
platform: kubernetes
setups: [sidecar]
seed: 5
traffic:
  users: 1
  spawn_rate: 1
  rate: 10
  host: http://cart-svc.shop.svc.cluster.local:9090
  endpoints: [{name: browse, path: /}]
timeline: {warmup: 50ms, hold: 300ms, recovery: 50ms, recovered_for: 10ms}
faults:
  - type: abort
    name: cart-503
    target: {namespace: shop, selector: {app: cart, team: shop}, container: edge-envoy, replica: 0}
    percent: 50
  - type: crash
    name: cart-proxy-crash
    target: {namespace: shop, selector: {app: cart, team: shop}, container: edge-envoy, replica: 1}
"""


def test_an_engine_run_against_the_team_workload_reverts_everything_it_journaled(
    api: KubeApi, kubeconfig: Path, fake_server: Any, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    team_namespace(api, "edge-envoy")
    before = team_objects(fake_server.cluster)
    path = tmp_path / "team.yaml"
    path.write_text(EXPERIMENT, encoding="utf-8")
    experiment = load_experiment(path)
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        watch_timeout_s=1,
        ingress_url="http://127.0.0.1:18080",  # the engine's FakeTraffic on this machine
    )
    hosts: list[str] = []

    def through_the_sidecars(now: float) -> tuple[int, int, float | None]:
        for pod in api.list_pods(TEAM):
            pod_exec.serve(TEAM, pod.name, 10)
        return 10, 0, 5.0

    def traffic(config: TrafficConfig) -> FakeTraffic:
        hosts.append(config.host)
        return FakeTraffic(config, through_the_sidecars)

    run_dir = tmp_path / "run"
    windows = Engine(
        experiment, platform, RunOptions(run_dir=run_dir, traffic=traffic, tick_s=0.05)
    ).run()
    assert len(windows) == 2
    for window in windows:
        assert window.error is None, window.error
        assert window.evidence is not None and window.evidence.took_effect, window.evidence
    journal = read_journal(run_dir)
    assert pending_changes(run_dir, journal) == []
    assert {e.data.get("namespace") for e in journal if e.kind == "topology_up"} == {TEAM}
    assert hosts == ["http://127.0.0.1:18080"] * 2  # the opt-out wins over traffic.host
    assert team_objects(fake_server.cluster) == before


# -- the spec, through the CLI -----------------------------------------------------------

SPEC = """\
name: team
platform: {platform}
setups: [mesh]
traffic:
  users: 1
  spawn_rate: 1
  rate: 5
  endpoints: [{{name: home, path: /}}]
faults:
  - type: abort
    target:
      namespace: {namespace}
      selector: {{app: cart}}
"""


@pytest.mark.parametrize(
    ("platform_name", "namespace", "message"),
    [
        ("local", "shop", "faults.0.target.namespace: an existing workload is a Kubernetes"),
        ("kubernetes", "kube-system", "faults.0.target.namespace: kube-system is never targeted"),
    ],
)
def test_spec_errors_name_file_and_line_with_exit_2(
    tmp_path: Path, platform_name: str, namespace: str, message: str
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(SPEC.format(platform=platform_name, namespace=namespace), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:12: {message}" in result.output
    assert "Traceback" not in result.output


# -- in-cluster Locust against the team's URL, with their own locustfile ----------------

TEAM_LOCUSTFILE = """\
from locust import HttpUser, constant, task


class Shopper(HttpUser):
    wait_time = constant(0.1)

    @task
    def cart(self):
        self.client.get("/cart")
"""

LOCUST_EXPERIMENT = """\
name: team-load
platform: kubernetes
setups: [mesh]
seed: 7
traffic:
  users: 2
  spawn_rate: 2
  rate: 20
  host: http://cart-svc.shop.svc.cluster.local:9090
  locustfile: shopper.py
timeline: {warmup: 300ms, hold: 700ms, recovery: 300ms, recovered_for: 100ms}
faults:
  - type: abort
    name: cart-503
    target: {namespace: shop, selector: {app: cart, team: shop}}
    percent: 50
"""


class _Counting(http.server.BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def team_service() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback standing for the team's Service."""

    class Handler(_Counting):
        paths: ClassVar[list[str]] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", Handler.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_in_cluster_locust_runs_the_teams_locustfile_against_their_url(
    api: KubeApi,
    kubeconfig: Path,
    fake_server: Any,
    team_service: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    cluster: FakeCluster = fake_server.cluster
    team_namespace(api, "istio-proxy")
    meta = {"name": names.TRAFFIC_NAMESPACE, "labels": names.managed_labels()}
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    before = comparable(cluster)
    (tmp_path / "shopper.py").write_text(TEAM_LOCUSTFILE, encoding="utf-8")
    path = tmp_path / "team.yaml"
    path.write_text(LOCUST_EXPERIMENT, encoding="utf-8")
    address, paths = team_service
    run_dir = tmp_path / "run"
    services = {"cart-svc.shop.svc.cluster.local:9090": address}
    with FakeKubelet(cluster, tmp_path / "kubelet", services) as kubelet:
        pod_exec = FakePodExec(cluster, handler=kubelet.exec)
        platform = KubernetesPlatform(
            kubeconfig=kubeconfig,
            pod_exec=lambda _api: pod_exec,
            watch_timeout_s=1,
            traffic_timings=TrafficTimings(startup_timeout_s=60.0, sync_interval_s=0.2),
            idp_dir=tmp_path / "no-idp",
        )
        options = RunOptions(run_dir=run_dir, workers=1, tick_s=0.2)
        [window] = Engine(load_experiment(path), platform, options).run()
        assert window.error is None, window.error
        assert kubelet.errors == []
        shipped = list(kubelet.work.glob("*/volumes/traffic-config/locustfile.py"))
        assert shipped and shipped[0].read_text() == TEAM_LOCUSTFILE
    entries = read_journal(run_dir)
    assert pending_changes(run_dir, entries) == []
    samples = load_samples(run_dir / "samples")
    assert len(samples) > 0 and set(samples["endpoint"]) == {"/cart"}
    assert len(samples) <= len(paths) and set(paths) == {"/cart"}
    # the VirtualService fault came and went; the Locust objects too: all as found
    assert comparable(cluster) == before


def test_the_dry_run_reads_the_team_workload_and_lists_its_calls_without_writing(
    api: KubeApi, kubeconfig: Path, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "istio-proxy")
    api.create(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "cart-routes", "namespace": TEAM},
            "spec": {"hosts": ["cart-svc"], "http": [{"route": [{"destination": {"host": "x"}}]}]},
        }
    )
    before = comparable(fake_server.cluster)
    path = tmp_path / "team.yaml"
    text = SPEC.format(platform="kubernetes", namespace=TEAM).replace(
        "faults:", "  host: http://cart-svc.shop.svc.cluster.local:9090\nfaults:"
    )
    path.write_text(
        text
        + "  - type: crash\n    target: {namespace: shop, selector: {app: cart}, replica: 1}\n",
        encoding="utf-8",
    )
    args = ["run", str(path), "--dry-run", "--kubeconfig", str(kubeconfig)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    pods = sorted(p.name for p in api.list_pods(TEAM))
    vs_path = f"/apis/networking.istio.io/v1/namespaces/{TEAM}/virtualservices/cart-routes"
    assert f"via PUT {vs_path} (the team's" in result.output
    assert f"{pods[1]}/istio-proxy" in result.output  # replica 1: the second pod by name
    assert "quitquitquit" in result.output
    assert "nothing was touched (dry run)" in result.output
    assert comparable(fake_server.cluster) == before


def test_clean_restores_the_teams_virtual_service_after_the_runner_lost_track(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "istio-proxy")
    routes = [{"name": "all", "route": [{"destination": {"host": "cart-svc"}}], "timeout": "3s"}]
    api.create(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "cart-routes", "namespace": TEAM},
            "spec": {"hosts": ["cart-svc.shop.svc.cluster.local"], "http": routes},
        }
    )
    before = team_objects(fake_server.cluster)
    run_dir = tmp_path / "run"
    started = platform.start(
        Setup.MESH, StartOptions(run_dir=run_dir, run_marker="r", extra=target_extra())
    )
    topology = started.__enter__()  # a runner that dies holding it: no revert of its own
    ops = topology.ops
    assert isinstance(ops, ExistingFaultOps)
    (site,) = ops.http_fault_sites(list(ops.workload.pods), "inbound")
    ops.set_http_fault(site, ABORT)
    assert team_objects(fake_server.cluster) != before
    lines = KubernetesPlatform(kubeconfig=platform.kubeconfig).clean(run_dir, [])
    assert len(lines) == 1 and "cart-routes" in lines[0], lines
    assert team_objects(fake_server.cluster) == before
    started.__exit__(None, None, None)  # undoing again is safe
    assert team_objects(fake_server.cluster) == before


BASE = """\
name: team
platform: {platform}
setups: [mesh]
traffic:
  users: 1
  spawn_rate: 1
  rate: 5
  endpoints: [{{name: home, path: /}}]{traffic}
faults:
{faults}"""
CART = "{namespace: shop, selector: {app: cart}}"


@pytest.mark.parametrize(
    ("platform_name", "traffic", "faults", "line", "message"),
    [
        ("kubernetes", "", "  - {type: abort, target: {selector: {app: cart}}}", 10,
         "faults.0.target.namespace: a selector needs the namespace"),
        ("kubernetes", "", "  - {type: abort, target: {namespace: shop}}", 10,
         "faults.0.target.selector: an existing workload needs the labels"),
        ("kubernetes", "", "  - {type: abort, target: {service: cart, container: envoy}}", 10,
         "faults.0.target.container: names the proxy of an existing workload"),
        ("kubernetes", "", f"  - {{type: cert-expiry, ttl: 1m, target: {CART}}}", 10,
         "faults.0.type: cert-expiry cannot target an existing workload"),
        ("kubernetes", "", f"  - {{type: abort, target: {CART}}}\n"
         "  - {type: crash, target: {service: checkout}}", 11,
         "faults.1.target: targets the demo workload while another"),
        ("kubernetes", "", f"  - {{type: abort, target: {CART}}}\n"
         "  - {type: crash, target: {namespace: shop, selector: {app: pay}}}", 11,
         "faults.1.target: an experiment targets one existing workload"),
        ("local", "\n  host: http://cart.shop.svc.cluster.local", "  - {type: crash, target: "
         "{service: checkout}}", 9, "traffic.host: an in-cluster URL is for platform: kubernetes"),
        ("kubernetes", "\n  host: http://example.com", f"  - {{type: abort, target: {CART}}}", 9,
         "traffic.host: must be an in-cluster URL"),
    ],
)  # fmt: skip
def test_every_spec_problem_of_an_existing_target_is_one_line_at_its_field(
    tmp_path: Path, platform_name: str, traffic: str, faults: str, line: int, message: str
) -> None:
    path = tmp_path / "team.yaml"
    text = BASE.format(platform=platform_name, traffic=traffic, faults=faults)
    path.write_text(text + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: {message}" in result.output, result.output
    assert "Traceback" not in result.output


def test_an_existing_target_without_its_url_is_refused_at_traffic(
    tmp_path: Path, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIDECAR_CHAOS_KUBE_INGRESS", raising=False)
    path = tmp_path / "team.yaml"
    path.write_text(SPEC.format(platform="kubernetes", namespace=TEAM), encoding="utf-8")
    args = ["run", str(path), "--dry-run", "--kubeconfig", str(kubeconfig)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{path}:4: traffic: the faults target pods app=cart in shop" in result.output


def test_an_ambient_http_fault_needs_a_waypoint_for_the_service(
    platform: KubernetesPlatform, api: KubeApi, fake_server: Any, tmp_path: Path
) -> None:
    team_namespace(api, "", ambient=True)
    with running(platform, "ambient", tmp_path / "a", target_extra()) as (_, ops):
        pods = list(ops.workload.pods)
        with pytest.raises(FaultError, match="cart-svc has none"):
            ops.http_fault_sites(pods, "inbound")

    def label(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].setdefault("labels", {})["istio.io/use-waypoint"] = "cart-waypoint"
        return obj

    api.update(SERVICE, TEAM, "cart-svc", label)
    before = team_objects(fake_server.cluster)
    with running(platform, "ambient", tmp_path / "b", target_extra()) as (_, ops):
        (site,) = ops.http_fault_sites(list(ops.workload.pods), "inbound")
        assert "waypoint" in site.mechanism
        ops.set_http_fault(site, ABORT)
        assert [v["metadata"]["name"] for v in api.list_objects(VIRTUAL_SERVICE, TEAM)] == [
            "sc-fault-cart-svc"
        ]
        ops.clear_http_fault(site)
    assert team_objects(fake_server.cluster) == before


def test_a_mesh_crash_of_a_native_sidecar_counts_its_init_container_restarts(
    platform: KubernetesPlatform,
    api: KubeApi,
    fake_server: Any,
    pod_exec: FakePodExec,
    tmp_path: Path,
) -> None:
    team_namespace(api, "native")
    with running(platform, "mesh", tmp_path / "run", target_extra()) as (_, ops):
        pod = ops.workload.pods[0]
        (target,) = ops.crash_targets([pod], None)
        ops.kill_proxy(target)
        command = "pilot-agent request POST quitquitquit"
        assert ("exec", TEAM, pod.name, "istio-proxy", command) in pod_exec.calls
        assert ops.proxy_restarts(target) == 1
        raw = api.get(POD, TEAM, pod.name) or {}
        assert raw["status"]["initContainerStatuses"][0]["restartCount"] == 1
