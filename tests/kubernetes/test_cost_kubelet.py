"""Cost on a cluster: the proxies' CPU and memory from the kubelets' resource metrics.

The fake API server serves ``/api/v1/nodes/{node}/proxy/metrics/resource`` from its
pods in the kubelet's Prometheus text format (kubernetes
``pkg/kubelet/metrics/collectors/resource_metrics.go``); the platform reads it through
the official client, maps containers to proxy kinds and turns two readings into a
window's CPU, as on the local platform.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_io import add_cost_to_results
from chaos.engine.preflight import platform_checks
from chaos.engine.run import Engine, RunOptions
from chaos.errors import InputError, UsageError
from chaos.experiment import Setup, load_experiment
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.anonymous import ANONYMOUS_SCRIPT, front_door
from chaos.platforms.kubernetes.api import KubeApi, NotFoundError
from chaos.platforms.kubernetes.bypass import KubeBypassProbe, probe_command
from chaos.platforms.kubernetes.manifests import istio as istio_manifests
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.usage import (
    KubeUsage,
    kind_of_container,
    parse_resource_metrics,
    resource_path,
)
from chaos.platforms.usage import MeasuresUsage, usage_between
from chaos.report.cost import cost_lines
from chaos.rundir.chunks import encode_chunk
from chaos.rundir.cost import ProxyKind, read_cost
from chaos.testing.fake_traffic import FakeTraffic
from chaos.testing.fakekube import anonexec, bypassexec, istio
from chaos.testing.fakekube.api import FakeApiServer
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.testing.fakekube.resourcemetrics import DEFAULT_WORKING_SET
from chaos.testing.fakekube.store import FakeCluster
from chaos.traffic.config import CLUSTER, LOOPBACK, TrafficConfig
from tests.kubernetes.test_platform_faults import platform, running  # noqa: F401

pytestmark = pytest.mark.usefixtures("seeded")


def _nodes(api: KubeApi, cluster: FakeCluster) -> list[str]:
    """A Node object for every node the seeded pods run on (as a real cluster has)."""
    pods = cluster.select(cluster.resource("v1", "pods"), None, None, None)
    found = sorted({p["spec"]["nodeName"] for p in pods})
    for node in found:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        cluster.create(cluster.resource("v1", "nodes"), "", body)
    return found


def test_the_fake_kubelet_answers_in_the_prometheus_text_format(
    api: KubeApi, seeded: FakeCluster
) -> None:
    node = names.NODE_HOSTNAMES["node-1"]
    _nodes(api, seeded)
    text = api.get_text(resource_path(node))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The kubelet's three STABLE container families, typed as it types them.
    assert families["container_cpu_usage_seconds"].type == "counter"
    assert families["container_memory_working_set_bytes"].type == "gauge"
    assert families["container_start_time_seconds"].type == "gauge"
    cpu = families["container_cpu_usage_seconds"].samples
    # Only the node's pods: the ztunnel of node-1 and the demo replicas placed there.
    assert {s.labels["pod"] for s in cpu} >= {"ztunnel-node-1"}
    assert all(set(s.labels) == {"container", "pod", "namespace"} for s in cpu)
    assert all(s.timestamp is not None for s in cpu)  # the kubelet's sample time
    assert "ztunnel-node-2" not in {s.labels["pod"] for s in cpu}


def test_an_unknown_node_is_not_found_as_the_api_server_answers(api: KubeApi) -> None:
    with pytest.raises(NotFoundError, match="not-a-node"):
        api.get_text(resource_path("not-a-node"))


def _reader(api: KubeApi, setup: names.Setup) -> KubeUsage:
    return KubeUsage(api, setup, names.namespace_of(setup))


@pytest.mark.parametrize(
    ("setup", "kinds"),
    [
        (names.Setup.SIDECAR, {ProxyKind.SIDECAR, ProxyKind.APP}),
        (names.Setup.MESH, {ProxyKind.MESH_SIDECAR, ProxyKind.CONTROL_PLANE, ProxyKind.APP}),
        (
            names.Setup.AMBIENT,
            {ProxyKind.NODE_PROXY, ProxyKind.WAYPOINT, ProxyKind.CONTROL_PLANE, ProxyKind.APP},
        ),
        # No proxy at all, not even Istio's control plane: only its apps' own work.
        (names.Setup.BASELINE, {ProxyKind.APP}),
    ],
)
def test_each_setup_counts_its_own_proxy_kinds(
    api: KubeApi, seeded: FakeCluster, setup: names.Setup, kinds: set[ProxyKind]
) -> None:
    _nodes(api, seeded)
    reading = _reader(api, setup).read()
    assert reading.missing == ()
    assert {p.kind for p in reading.processes} == kinds
    assert reading.memory == "working-set"
    # Every demo replica's app is counted; the Locust pods never are.
    apps = [p for p in reading.processes if p.kind is ProxyKind.APP]
    assert len(apps) == len(names.SERVICES) * names.REPLICAS
    assert not any(names.TRAFFIC_NAMESPACE in p.name for p in reading.processes)


def _outcomes(output: str) -> set[tuple[str, int]]:
    return {(r["outcome"], r["status"]) for r in map(json.loads, output.splitlines())}


def test_the_fake_serves_baseline_in_plaintext_and_istio_refuses_its_pods(
    api: KubeApi, seeded: FakeCluster, pod_exec: FakePodExec, tmp_path: Path
) -> None:
    """sc-baseline's pods answer plaintext without a token; from them (outside the mesh) a
    STRICT mesh namespace refuses the plaintext, as Istio 1.28.0 does (fakekube.istio)."""
    api.create(istio_manifests.peer_authentication(names.Setup.MESH))  # cluster up's STRICT
    # plaintext straight to each pod IP's app port, no token, no client certificate
    for setup, outcome in ((names.Setup.BASELINE, "served"), (names.Setup.MESH, "refused")):
        probe = KubeBypassProbe(api, pod_exec, setup, 10, 6, 1.0, tmp_path / "probe")
        targets = probe.targets()
        assert len(targets) == len(names.SERVICES) * names.REPLICAS
        answered = bypassexec.answer(seeded, probe_command(targets, 10, 6, 1.0))
        assert answered is not None
        assert _outcomes(answered) == {(outcome, 200 if outcome == "served" else 0)}
    # a token-less request from baseline's Locust worker (in no data plane) to its front door
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sc-traffic"}})
    worker = {"apiVersion": "v1", "kind": "Pod"}
    labels = {names.LABEL_TRAFFIC_ROLE: "worker", SETUP_LABEL: "baseline"}
    worker["metadata"] = {"name": "w", "namespace": "sc-traffic", "labels": labels}
    worker["spec"] = {"containers": [{"name": "locust", "image": names.APP_IMAGE}]}
    api.create(worker)
    host, port = front_door(names.Setup.BASELINE, None)
    command = probe_command([("sc-traffic", "frontend", host, port)], 5, 3, 1.0, ANONYMOUS_SCRIPT)
    answered = anonexec.answer(seeded, "sc-traffic", "w", command)
    assert answered is not None and _outcomes(answered) == {("served", 200)}
    # Istio's data plane: a baseline pod's plaintext into sc-mesh is refused, counted nowhere
    frontend = next(p for p in api.list_pods("sc-baseline") if p.labels["app"] == "frontend")
    before = {k: dict(v) for k, v in pod_exec.counters.items()}
    assert istio.send(pod_exec, ("sc-baseline", frontend.name), "checkout", "sc-mesh", 5) == (
        "refused"
    )
    assert pod_exec.counters == before
    assert istio.send(pod_exec, ("sc-baseline", frontend.name), "checkout", "sc-baseline", 5) == (
        "sent"
    )
    assert pod_exec.counters == before  # no Istio there: nothing of Istio counts it
    # an in-mesh caller's mTLS is accepted and authorized at checkout's sidecars
    mesh_frontend = next(p for p in api.list_pods("sc-mesh") if p.labels["app"] == "frontend")
    assert istio.send(pod_exec, ("sc-mesh", mesh_frontend.name), "checkout", "sc-mesh", 5) == "sent"
    assert pod_exec.counters != before


def test_a_windows_cpu_is_what_the_kubelet_counted_between_the_readings(
    api: KubeApi, seeded: FakeCluster, fake_server: FakeApiServer
) -> None:
    _nodes(api, seeded)
    reader = _reader(api, names.Setup.MESH)
    first = reader.read()
    proxy = next(p for p in first.processes if p.kind is ProxyKind.MESH_SIDECAR)
    namespace, pod, container = proxy.name.split("/")
    fake_server.resource_metrics.charge(namespace, pod, container, 0.75)
    fake_server.resource_metrics.set_working_set(namespace, pod, container, 31e6)
    costs = {c.name: c for c in usage_between(first, reader.read())}
    assert costs[proxy.name].cpu_s == pytest.approx(0.75)
    assert costs[proxy.name].cpu_interval_s > 0  # the kubelet's own sample interval
    assert costs[proxy.name].pss_bytes == 31_000_000  # the working set, in the PSS slot
    others = [c for name, c in costs.items() if name != proxy.name]
    assert all(c.cpu_s == 0 for c in others)
    assert all(c.pss_bytes == DEFAULT_WORKING_SET for c in others)


def test_a_container_restarted_mid_window_breaks_it(api: KubeApi, seeded: FakeCluster) -> None:
    _nodes(api, seeded)
    reader = _reader(api, names.Setup.SIDECAR)
    first = reader.read()
    proxy = next(p for p in first.processes if p.kind is ProxyKind.SIDECAR)
    namespace, pod, container = proxy.name.split("/")
    seeded.restart_container(namespace, pod, container)
    with pytest.raises(UsageError, match="restarted"):
        usage_between(first, reader.read())


def test_no_new_kubelet_sample_in_the_hold_breaks_the_window(
    api: KubeApi, seeded: FakeCluster, fake_server: FakeApiServer
) -> None:
    _nodes(api, seeded)
    reader = _reader(api, names.Setup.AMBIENT)
    fake_server.resource_metrics.hold_sample()
    first = reader.read()
    with pytest.raises(UsageError, match="no new sample"):
        usage_between(first, reader.read())


def test_a_node_that_is_gone_leaves_its_containers_missing(
    api: KubeApi, seeded: FakeCluster
) -> None:
    nodes = _nodes(api, seeded)
    seeded.delete(seeded.resource("v1", "nodes"), "", nodes[0], None)
    reading = _reader(api, names.Setup.MESH).read()
    assert reading.missing  # never counted as zero CPU


_COST = """\
name: kube-cost
platform: kubernetes
setups: [sidecar, mesh]
traffic: {{users: 5, spawn_rate: 5, rate: 20, endpoints: [{{name: r, path: /}}]}}
timeline: {{warmup: 1s, hold: 1s, recovery: 1s}}
faults:
  - {{type: crash, target: {{service: payments, replica: 0}}}}
cost:
  setups: [{setups}]
  rates: [20]
  hold: 30s
"""


def test_a_cost_step_with_baseline_is_accepted_on_kubernetes(
    kubeconfig: Path, tmp_path: Path
) -> None:
    """``cluster up`` deploys sc-baseline: baseline is a setup a cost step may name."""
    kube = KubernetesPlatform(kubeconfig=kubeconfig)
    assert Setup.BASELINE in kube.setups
    path = tmp_path / "kube-cost.yaml"
    for setups in ("sidecar, mesh", "sidecar, baseline", "baseline, sidecar, mesh"):
        path.write_text(_COST.format(setups=setups))
        assert list(platform_checks(kube)(load_experiment(path))) == [], setups


def test_a_running_topology_reads_its_usage_for_the_cost_step(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    _nodes(api, seeded)
    with running(platform, "ambient", tmp_path / "run") as topology:
        assert isinstance(topology, MeasuresUsage)  # what the cost runner needs
        reading = topology.read_usage()
        assert {p.kind for p in reading.processes} >= {ProxyKind.NODE_PROXY, ProxyKind.WAYPOINT}
        # The growth line's counts: 6 app pods on the two workers, 3 services.
        assert topology.counts() == (len(names.SERVICES) * names.REPLICAS, 2, 3)


_RUN = """\
name: kube-cost-run
platform: kubernetes
setups: [sidecar, mesh]
seed: 3
traffic: {users: 1, spawn_rate: 1, rate: 20, endpoints: [{name: browse, path: /}]}
timeline: {warmup: 50ms, hold: 200ms, recovery: 50ms, recovered_for: 10ms}
faults:
  - type: abort
    name: checkout-503
    target: {service: checkout, replica: 0}
    percent: 50
cost:
  setups: [baseline, sidecar, mesh]
  rates: [20]
  hold: 600ms
  warmup: 100ms
  repetitions: 2
"""

#: What the fake charges each proxy container per request the load sends (CPU-s).
_PER_REQUEST_S = 0.0005
#: The latency the fake load records per setup (ms): the chain alone in baseline, more
#: where proxies are on the path. The fake's own figures, not a measurement.
_LATENCY_MS = {"baseline": 3.0, "sidecar": 5.0, "mesh": 6.5}


class _Load(FakeTraffic):
    """Load on this machine: its requests cost the proxies CPU at the fake kubelet, and
    its samples (one per scheduled request, each a 200) land where the engine reads them."""

    def __init__(self, config: TrafficConfig, server: FakeApiServer, api: KubeApi) -> None:
        super().__init__(config)
        self.server, self.api = server, api
        self.charged_t: float | None = None
        # The window's own directory names its setup (cost-<setup>-<rate>rps-r<n> for a
        # cost window, <setup>-<fault>-<n> for a fault window).
        self.setup = config.out_dir.name.removeprefix("cost-").split("-")[0]

    def check(self) -> None:
        super().check()
        now = time.monotonic()
        begun = self.charged_t if self.charged_t is not None else self.started_t or now
        self.charged_t = now
        cost = (now - begun) * self.config.rate * _PER_REQUEST_S
        for ns in ("sc-sidecar", "sc-mesh"):
            for pod in self.api.list_pods(ns):
                for c in pod.containers:
                    if c.name in (names.SIDECAR_CONTAINER, names.ISTIO_PROXY_CONTAINER):
                        self.server.resource_metrics.charge(ns, pod.name, c.name, cost)

    def stop(self, grace_s: float | None = None) -> None:
        first = self.stopped_t is None
        super().stop(grace_s)
        if first and self.started_t is not None and self.stopped_t is not None:
            n = int((self.stopped_t - self.started_t) * self.config.rate)
            t = [self.started_t + i / self.config.rate for i in range(n)]
            strings = {"endpoint": ["browse"] * n, "method": ["GET"] * n}
            strings |= {"error_kind": [""] * n, "write_id": [""] * n}
            self.config.out_dir.mkdir(parents=True, exist_ok=True)
            chunk = encode_chunk(t, [_LATENCY_MS[self.setup]] * n, [200] * n, strings)
            (self.config.out_dir / "samples-1-load.chs").write_bytes(chunk)


def test_a_cost_step_on_the_fake_cluster_records_each_proxy_from_the_kubelets(
    seeded: FakeCluster,
    fake_server: FakeApiServer,
    kubeconfig: Path,
    pod_exec: FakePodExec,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    _nodes(api, seeded)
    path = tmp_path / "kube-cost.yaml"
    path.write_text(_RUN, encoding="utf-8")
    experiment = load_experiment(path)
    kube = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        ready_timeout_s=10.0,
        watch_timeout_s=1,
        ingress_url="http://127.0.0.1:18080",  # the engine's own load (no Locust pods)
    )
    run_dir = tmp_path / "run"
    options = RunOptions(run_dir=run_dir, traffic=lambda c: _Load(c, fake_server, api), tick_s=0.05)
    Engine(experiment, kube, options).run()
    records = read_cost(run_dir)
    assert sorted((r.setup, r.repetition, r.broken) for r in records) == [
        (setup, repetition, "")
        for setup in ("baseline", "mesh", "sidecar")
        for repetition in (1, 2)
    ]
    assert {r.memory for r in records} == {"working-set"}
    by_setup = {r.setup: {p.kind for p in r.processes} for r in records}
    assert by_setup["baseline"] == {ProxyKind.APP}  # sc-baseline's pods: apps alone
    assert by_setup["sidecar"] == {ProxyKind.SIDECAR, ProxyKind.APP}
    assert by_setup["mesh"] == {ProxyKind.MESH_SIDECAR, ProxyKind.CONTROL_PLANE, ProxyKind.APP}
    baseline_pods = {
        p.name.split("/")[0] for r in records if r.setup == "baseline" for p in r.processes
    }
    assert baseline_pods == {"sc-baseline"}  # nothing of istio-system is baseline's cost
    cost = analyze_cost(run_dir)
    assert cost is not None and cost.memory == "working-set"
    # Latency added over baseline, on a cluster: each setup's windows minus baseline's.
    added = {s.setup: s.added_ms for s in cost.setups}
    assert added["baseline"] == {}
    for setup in ("sidecar", "mesh"):
        p99 = added[setup]["p99"]
        assert p99.mean == pytest.approx(_LATENCY_MS[setup] - _LATENCY_MS["baseline"])
    add_cost_to_results(run_dir, cost)
    assert "proxy working set MB" in cost_lines(run_dir)[0]  # never called PSS here
    for w in cost.windows:
        if w.setup == "baseline":
            assert set(w.cpu_per_1k) <= {ProxyKind.APP.value}  # no proxy kind to cost
            continue
        proxy = ProxyKind.SIDECAR if w.setup == "sidecar" else ProxyKind.MESH_SIDECAR
        assert w.cpu_per_1k[proxy.value] > 0  # what the load charged, as the kubelet counted
        assert w.cpu_per_1k.get(ProxyKind.CONTROL_PLANE.value, 0.0) == 0.0  # never charged


def _pod(namespace: str, labels: dict[str, str]) -> PodState:
    return PodState("p", namespace, "uid", labels, "node", "Running", True, False, ())


#: Which container is which proxy kind. Labels as Istio 1.28.0's charts set them: ztunnel's
#: DaemonSet ``app: ztunnel`` (manifests/charts/ztunnel/templates/daemonset.yaml), istiod
#: ``app: istiod`` (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml),
#: a gateway released as ``istio-ingressgateway`` ``istio: ingressgateway`` (its name
#: without ``istio-``: manifests/charts/gateway/templates/_helpers.tpl), a waypoint's pods
#: ``gateway.networking.k8s.io/gateway-name`` and its container ``istio-proxy``
#: (manifests/charts/istio-control/istio-discovery/files/waypoint.yaml), the injected
#: sidecar ``istio-proxy`` (files/injection-template.yaml); ours ``envoy-sidecar``, ``app``.
_KINDS = [
    ("sidecar", "sc-sidecar", {}, "envoy-sidecar", ProxyKind.SIDECAR),
    ("sidecar", "sc-sidecar", {}, "app", ProxyKind.APP),
    ("sidecar", "sc-sidecar", {}, "certs-init", None),
    ("sidecar", "istio-system", {"app": "istiod"}, "discovery", None),  # no Istio in it
    ("mesh", "sc-mesh", {}, "istio-proxy", ProxyKind.MESH_SIDECAR),
    ("mesh", "istio-system", {"app": "istiod"}, "discovery", ProxyKind.CONTROL_PLANE),
    ("mesh", "istio-system", {"app": "ztunnel"}, "istio-proxy", None),  # ambient's only
    ("mesh", "istio-system", {"istio": "ingressgateway"}, "istio-proxy", ProxyKind.INGRESS),
    ("ambient", "istio-system", {"app": "ztunnel"}, "istio-proxy", ProxyKind.NODE_PROXY),
    (
        "ambient",
        "sc-ambient",
        {"gateway.networking.k8s.io/gateway-name": "checkout-waypoint"},
        "istio-proxy",
        ProxyKind.WAYPOINT,
    ),
    ("ambient", "sc-traffic", {"app": "locust"}, "locust", None),  # the load, never counted
    ("ambient", "sc-mesh", {}, "istio-proxy", None),  # another setup's namespace
    # baseline: its apps alone, nothing of Istio (its traffic crosses no proxy)
    ("baseline", "sc-baseline", {}, "app", ProxyKind.APP),
    ("baseline", "istio-system", {"app": "istiod"}, "discovery", None),
    ("baseline", "istio-system", {"app": "ztunnel"}, "istio-proxy", None),
    ("baseline", "istio-system", {"istio": "ingressgateway"}, "istio-proxy", None),
    ("baseline", "sc-sidecar", {}, "envoy-sidecar", None),
]


@pytest.mark.parametrize(("setup", "namespace", "labels", "container", "kind"), _KINDS)
def test_every_container_maps_to_its_proxy_kind(
    setup: str, namespace: str, labels: dict[str, str], container: str, kind: ProxyKind | None
) -> None:
    assert kind_of_container(names.Setup(setup), _pod(namespace, labels), container) is kind


def test_cost_windows_give_in_cluster_locust_the_clusters_own_url(
    kubeconfig: Path, tmp_path: Path
) -> None:
    path = tmp_path / "kube-cost.yaml"
    path.write_text(_RUN, encoding="utf-8")
    engine = Engine(
        load_experiment(path), KubernetesPlatform(kubeconfig=kubeconfig), RunOptions(tmp_path)
    )
    configure = engine._cost_runner().traffic_config
    url = f"http://{names.service_host('frontend', names.Setup.MESH)}:{names.APP_PORT}"
    # The load runs in the cluster (hosted traffic): its Service URL is checked as one.
    config = configure(url, None, tmp_path / "samples", CLUSTER)
    assert (config.host, config.network) == (url, CLUSTER)
    with pytest.raises(InputError):  # the same URL for Locust on this machine: refused
        configure(url, None, tmp_path / "samples", LOOPBACK)
    engine.journal.close()  # the engine opened the run's journal; it never ran


#: A kubelet's answer as resource_metrics.go writes it (the node's and pods' series and
#: the scrape error beside the containers'; ms timestamps on the sampled ones), one
#: container's series kept.
_KUBELET_TEXT = (Path(__file__).parent / "kubelet-metrics-resource.txt").read_text()


def test_a_real_kubelets_answer_is_read_per_container() -> None:
    (usage,) = parse_resource_metrics(_KUBELET_TEXT).values()
    assert (usage.namespace, usage.pod, usage.container) == (
        "sc-mesh",
        "checkout-0-abc",
        "istio-proxy",
    )
    assert usage.cpu_s == 12.5 and usage.cpu_at == pytest.approx(1733570000.123)
    assert usage.working_set_bytes == 42_000_000 and usage.started == 1.7335e9
