"""In-cluster traffic without a cluster: real Locust pods behind the fake API server.

The platform creates the Locust master Job and workers through the unmodified official
client against the fake API server; a fake kubelet (``fakekubelet``) runs each pod's
``locust`` container as a real Locust process with the manifest's command and env,
sending to a real Envoy (``direct_response``) on loopback that stands for the
frontend Service. The samples come back through exec (``FakePodExec`` hands the
kubelet's pods to it, which runs the real copy script on the pod's directories).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chaos.engine.run import Engine, RunOptions
from chaos.errors import InputError, TrafficError
from chaos.experiment import Setup, load_experiment
from chaos.platforms.base import HostedTraffic, HostsTraffic, RunningTopology, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import (
    ChangeLedger,
    ClusterWriter,
    LedgerHeader,
    pending_changes,
)
from chaos.platforms.kubernetes.clusteridentity import JWT_ISSUER
from chaos.platforms.kubernetes.kinds import CONFIGMAP, DEPLOYMENT, JOB, POD, SECRET, SERVICE
from chaos.platforms.kubernetes.platform import INGRESS_ENV, KubernetesPlatform
from chaos.platforms.kubernetes.samplecopy import (
    SYNC_SCRIPT,
    ClockReading,
    PodClock,
    shift_chunks,
)
from chaos.platforms.kubernetes.traffic import (
    CLOCK_FILE,
    STOP_COMMAND,
    ClusterTraffic,
    TrafficTimings,
)
from chaos.platforms.local.envoy_process import envoy_binary
from chaos.platforms.shared.envoy_common import jwt_filter, router_filter
from chaos.platforms.shared.idp import IdentityProvider, check_token
from chaos.proc import spawn, stop_processes
from chaos.rundir.chunks import encode_chunk, iter_chunks
from chaos.rundir.journal import read_journal
from chaos.rundir.samples import DROPPED, load_samples, samples_dir
from chaos.testing.fake_platform import FakePlatform, FakeTopology
from chaos.testing.fake_traffic import FakeTraffic, healthy
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.traffic.config import CLUSTER, Endpoint, TrafficConfig
from tests.kubernetes.fakecluster import comparable
from tests.kubernetes.fakekubelet import FakeKubelet

FRONTEND = f"{names.service_host('frontend', names.Setup.MESH)}:{names.APP_PORT}"
TRAFFIC_KINDS = (CONFIGMAP, SECRET, SERVICE, JOB, DEPLOYMENT, POD)


# -- pure parts -------------------------------------------------------------------------


def _cfg(host: str, **kwargs: Any) -> TrafficConfig:
    kwargs.setdefault("endpoints", [Endpoint("a", "GET", "/")])
    return TrafficConfig(host=host, out_dir=Path("/x"), duration_s=1, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "http://frontend.sc-mesh.svc.cluster.local:8080",
        "http://127.0.0.1:15001",
        "https://checkout.sc-ambient.svc.cluster.local",
    ],
)
def test_in_cluster_traffic_goes_to_the_cluster_s_own_services(url: str) -> None:
    assert _cfg(url, network=CLUSTER).network == CLUSTER


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.96.0.10:8080",
        "http://frontend.svc.cluster.local",
        "http://a.b.c.svc.cluster.local",
        "http://frontend.sc-mesh.svc.cluster.local.evil.com",
        "ftp://frontend.sc-mesh.svc.cluster.local",
    ],
)
def test_in_cluster_traffic_never_reaches_an_external_host(url: str) -> None:
    with pytest.raises(InputError, match="cluster's own Services"):
        assert _cfg(url, network=CLUSTER).network == CLUSTER


def test_local_traffic_keeps_to_loopback() -> None:
    with pytest.raises(InputError, match="loopback"):
        _cfg(f"http://{FRONTEND}")
    with pytest.raises(InputError, match="network"):
        _cfg("http://127.0.0.1:1", network="internet")


def test_a_user_locustfile_goes_into_the_cluster_in_the_traffic_config_map(
    tmp_path: Path,
) -> None:
    own = tmp_path / "mine.py"
    own.write_text("from locust import HttpUser\n")
    config = _cfg(f"http://{FRONTEND}", locustfile=own, network=CLUSTER, endpoints=())
    writer = ClusterWriter(None, None, None, "dry-run", dry_run=True)
    traffic = ClusterTraffic(config, setup=names.Setup.MESH, writer=writer)
    [config_map] = [o for o in traffic.objects() if o["kind"] == "ConfigMap"]
    assert config_map["data"]["locustfile.py"] == "from locust import HttpUser\n"
    pod_config = TrafficConfig.from_json(config_map["data"]["traffic-config.json"])
    assert str(pod_config.locustfile) == "/etc/sidecar-chaos/traffic/locustfile.py"
    [job] = [o for o in traffic.objects() if o["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("-f") + 1] == (
        "/opt/sidecar-chaos/chaos/traffic/attach.py,/etc/sidecar-chaos/traffic/locustfile.py"
    )
    own.write_text("#" * (256 * 1024 + 1))
    with pytest.raises(InputError, match="do not fit the traffic ConfigMap"):
        ClusterTraffic(config, setup=names.Setup.MESH, writer=writer)


def _chunk(t: list[float]) -> bytes:
    n = len(t)
    strings = {
        "endpoint": ["browse"] * n,
        "method": ["GET"] * n,
        "error_kind": [""] * (n - 1) + ["http_503"],
        "write_id": [""] * n,
    }
    return encode_chunk(t, [1.5] * n, [200] * (n - 1) + [503], strings, [0.25] * n)


def test_chunks_move_onto_this_machine_s_clock_and_a_torn_tail_waits() -> None:
    first, second = _chunk([10.0, 10.5]), _chunk([11.0, 11.25, 11.5])
    data = first + second[:-7]  # the second chunk is still being written in the pod
    shifted, used = shift_chunks(data, 1000.0)
    assert used == len(first)
    [(chunk, _)] = list(iter_chunks(shifted))
    assert chunk.t.tolist() == [1010.0, 1010.5]
    assert chunk.status.tolist() == [200, 503]
    assert chunk.error_kind.tolist() == ["", "http_503"]
    assert chunk.send_lag_ms.tolist() == [0.25, 0.25]
    rest, used_rest = shift_chunks(data[used:] + second[-7:], 1000.0)
    assert used_rest == len(second)
    assert [c.t.tolist() for c, _ in iter_chunks(rest)] == [[1011.0, 1011.25, 1011.5]]


def test_a_pod_clock_is_mapped_through_wall_time_and_checked_by_the_round_trip() -> None:
    # The pod's monotonic clock is 500 s behind ours; both wall clocks agree.
    local_wall_minus_mono = 1_700_000_000.0
    reading = ClockReading(
        pod_mono=100.0,
        pod_wall=100.0 + 500.0 + local_wall_minus_mono,
        local_before=599.98,
        local_after=600.05,
        local_wall_minus_mono=local_wall_minus_mono,
    )
    clock = PodClock.first("w", reading)
    assert clock.method == "wall-clock"
    assert clock.offset_s == pytest.approx(500.0)
    assert clock.bound_s == pytest.approx(0.05)  # the reading happened inside the round trip
    # a later reading after the wall clock stepped by 2 s: the offset stays put (times
    # never jump), and the round trip still agrees with it
    stepped = ClockReading(200.0, 200.0 + 502.0 + local_wall_minus_mono, 699.99, 700.01, 1.7e9)
    clock.check(stepped)
    assert clock.offset_s == pytest.approx(500.0) and clock.worst_outside_s == 0.0
    assert clock.bound_s == pytest.approx(0.01)  # a shorter round trip: a tighter bound
    # a reading the fixed offset cannot explain (2 s outside its round trip) is recorded
    clock.check(ClockReading(300.0, 0.0, 802.0, 802.1, 0.0))
    assert clock.worst_outside_s == pytest.approx(2.0) and clock.readings == 3
    skewed = ClockReading(300.0, 300.0 + 503.0 + local_wall_minus_mono, 799.9, 800.1, 1.7e9)
    off = PodClock.first("w2", skewed)  # the wall clocks disagree by 3 s: the round trip wins
    assert off.method == "round-trip"
    assert off.offset_s == pytest.approx(500.0)
    assert off.bound_s == pytest.approx(0.1)


# -- real Locust pods behind the fake API server ------------------------------------------


@dataclass(frozen=True)
class JwtTarget:
    """A real Envoy that answers 200 only with a valid token of ``cluster up``'s key."""

    url: str
    admin_url: str

    def counter(self, name: str) -> int:
        stat = f"http.target.{name}"
        with urllib.request.urlopen(f"{self.admin_url}/stats?filter=^{stat}$", timeout=5) as r:
            for line in bytes(r.read()).decode().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == stat:
                    return int(value)
        return 0


def _target_bootstrap(port: int, admin: int, jwks_json: str) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "target",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            jwt_filter(JWT_ISSUER, names.JWT_AUDIENCE, {"inline_string": jwks_json}),
            router_filter(),
        ],
    }
    listener = {
        "name": "target",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "stats_flush_on_admin": True,
        "static_resources": {"listeners": [listener]},
    }


@pytest.fixture
def idp(tmp_path: Path) -> IdentityProvider:
    """The signing key as ``cluster up`` leaves it in its state directory."""
    return IdentityProvider(JWT_ISSUER, names.JWT_AUDIENCE, key_dir=tmp_path / "state" / "idp")


@pytest.fixture
def target(tmp_path: Path, idp: IdentityProvider) -> Iterator[JwtTarget]:
    work = tmp_path / "envoy"
    work.mkdir()
    port, admin_port = _free_port(), _free_port()
    config = work / "target.json"
    config.write_text(json.dumps(_target_bootstrap(port, admin_port, idp.jwks_json())))
    argv = [str(envoy_binary()), "--config-path", str(config), "--disable-hot-restart",
            "--concurrency", "1", "--log-level", "error", "--base-id", str(port)]  # fmt: skip
    proc = spawn(argv, log_path=work / "envoy.out", name="Envoy target")
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        deadline = time.monotonic() + 15.0
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{admin}/ready", timeout=1) as r,
            ):
                if r.status == 200:
                    break
            log = (work / "envoy.out").read_text()
            assert proc.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.05)
        yield JwtTarget(f"http://127.0.0.1:{port}", admin)
    finally:
        stop_processes([proc], 3.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def traffic_ns(api: KubeApi, seeded: FakeCluster) -> FakeCluster:
    """``sc-traffic`` as ``cluster up`` leaves it."""
    meta = {"name": names.TRAFFIC_NAMESPACE, "labels": names.managed_labels()}
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    return seeded


def _traffic_objects(api: KubeApi) -> dict[str, list[str]]:
    return {
        kind.kind: sorted(
            o["metadata"]["name"] for o in api.list_objects(kind, names.TRAFFIC_NAMESPACE)
        )
        for kind in TRAFFIC_KINDS
    }


def _config(out_dir: Path, host: str) -> TrafficConfig:
    return TrafficConfig(
        host=host,
        out_dir=out_dir,
        duration_s=30.0,  # a backstop: the test stops it after a few seconds
        users=4,
        rate=40.0,
        workers=2,
        endpoints=(Endpoint("browse", "GET", "/"),),
        request_timeout_s=2.0,
        network=CLUSTER,
    )


def _raw_samples(kubelet: FakeKubelet) -> list[Any]:
    chunks = []
    for path in sorted(kubelet.work.glob("*/volumes/out/samples/*.chs")):
        chunks += [c for c, _ in iter_chunks(path.read_bytes())]
    return chunks


def test_locust_pods_send_and_their_samples_come_back_complete_on_this_clock(
    traffic_ns: FakeCluster,
    api: KubeApi,
    kubeconfig: Path,
    target: JwtTarget,
    idp: IdentityProvider,
    tmp_path: Path,
) -> None:
    before = comparable(traffic_ns)
    records: list[tuple[str, dict[str, Any]]] = []
    run_dir = tmp_path / "run"
    out_dir = run_dir / "samples" / "mesh-abort-1"
    target_at = target.url.removeprefix("http://")
    with FakeKubelet(traffic_ns, tmp_path / "kubelet", {FRONTEND: target_at}) as kubelet:
        pod_exec = FakePodExec(traffic_ns, handler=kubelet.exec)
        platform = KubernetesPlatform(
            kubeconfig=kubeconfig,
            pod_exec=lambda _api: pod_exec,
            ready_timeout_s=10.0,
            watch_timeout_s=1,
            traffic_timings=TrafficTimings(startup_timeout_s=60.0, sync_interval_s=0.2),
            idp_dir=tmp_path / "state" / "idp",
        )
        options = StartOptions(
            run_dir=run_dir / "topologies" / "mesh-abort-1",
            run_marker="run-7",
            record=lambda kind, **data: records.append((kind, data)),
        )
        with platform.start(Setup.MESH, options) as topology:
            assert isinstance(topology, HostsTraffic)
            hosted = topology.hosted_traffic()
            assert hosted is not None and hosted.network == CLUSTER
            config = _config(out_dir, topology.ingress_url)
            started = time.monotonic()
            with hosted.start(config) as traffic:
                assert traffic.pids == []  # nothing of it runs on this machine
                traffic.wait_started()
                made = _traffic_objects(api)
                assert made["Job"] == ["locust-mesh-master"]
                assert made["Deployment"] == ["locust-mesh-worker"]
                assert len(made["Pod"]) == 3  # the master and two workers
                assert made["Secret"] == ["locust-mesh-token"]
                for kind in (JOB, DEPLOYMENT, SECRET, CONFIGMAP, SERVICE):
                    [obj] = [
                        o
                        for o in api.list_objects(kind, names.TRAFFIC_NAMESPACE)
                        if o["metadata"]["name"].startswith("locust-mesh")
                    ]
                    assert obj["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
                    assert obj["metadata"]["annotations"][names.ANNOTATION_RUN] == "run-7"
                # the workers' token: minted with cluster up's key, valid for the window
                secret = api.get(SECRET, names.TRAFFIC_NAMESPACE, "locust-mesh-token")
                assert secret is not None
                token = base64.b64decode(secret["data"]["token"]).decode()
                jwks = idp.jwks_json()
                check = check_token(token, jwks, issuer=JWT_ISSUER, audience=names.JWT_AUDIENCE)
                assert check.valid, check
                deadline = time.monotonic() + 20.0
                while (stats := traffic.live_stats()).requests == 0:
                    assert time.monotonic() < deadline, "no live stats from the pods"
                    time.sleep(0.2)
                assert stats.errors == 0
                traffic.check()
                traffic.stop()
                assert len(kubelet.pids) == 3
                # the deleted pods' processes end (the kubelet's part; bounded)
                deadline = time.monotonic() + 15.0
                while any(p.process and p.process.poll() is None for p in kubelet.pods.values()):
                    assert time.monotonic() < deadline, "a Locust pod's process outlived its pod"
                    time.sleep(0.1)
            stopped = time.monotonic()
            # stop deleted every object it made (the Job's pod with it)
            assert _traffic_objects(api) == {k.kind: [] for k in TRAFFIC_KINDS}
            ledger_dir = options.run_dir
            assert pending_changes(ledger_dir) == []
        assert kubelet.errors == []

    samples = load_samples(samples_dir(out_dir))
    sent = samples[samples["error_kind"] != DROPPED]
    # every request the server completed is a sample here, and nothing else is
    assert len(sent) == target.counter("downstream_rq_completed") > 0
    # ... and each one carried a valid token (the target denies a request without one)
    assert (samples["status"] == 200).all()
    assert target.counter("jwt_authn.allowed") == len(sent)
    # exactly what the pods wrote, with times moved onto this machine's monotonic clock
    raw = _raw_samples(kubelet)
    assert sum(len(c) for c in raw) == len(samples)
    clocks = json.loads((out_dir / CLOCK_FILE).read_text())["pods"]
    assert len(clocks) == 2 and {c["method"] for c in clocks} == {"wall-clock"}
    assert all(c["bound_s"] < 10.0 and c["worst_outside_s"] == 0.0 for c in clocks)
    assert [k for k, _ in records].count("traffic_clock") == 1
    raw_t = np.sort(np.concatenate([c.t for c in raw]))
    local_t = np.sort(samples["t"].to_numpy())
    offsets = {c["offset_s"] for c in clocks}
    assert all(abs(o) < 0.5 for o in offsets)  # one machine: the clocks nearly agree
    assert np.abs(local_t - raw_t).max() <= max(abs(o) for o in offsets) + 1e-6
    assert started <= local_t.min() and local_t.max() <= stopped
    # the fake cluster is left as found (sc-traffic as cluster up made it)
    assert comparable(traffic_ns) == before


def test_clean_after_a_dead_runner_deletes_the_traffic_objects(
    traffic_ns: FakeCluster, api: KubeApi, kubeconfig: Path, tmp_path: Path
) -> None:
    before = comparable(traffic_ns)
    run_dir = tmp_path / "run"
    topology_dir = run_dir / "topologies" / "sidecar-crash-1"
    ledger = ChangeLedger(topology_dir, LedgerHeader("run-9", api.context, str(kubeconfig)))
    writer = ClusterWriter(api, FakePodExec(traffic_ns), ledger, "run-9")
    config = _config(run_dir / "samples" / "sidecar-crash-1", "http://127.0.0.1:15001")
    traffic = ClusterTraffic(config, setup=names.Setup.SIDECAR, writer=writer)
    traffic.start()  # ... and the runner dies here: nothing stops it
    left = _traffic_objects(api)
    assert left["Job"] == ["locust-sidecar-master"] and len(left["Pod"]) == 3
    # the next run says what is in its way, and leaves the dead run's objects alone
    other_dir = tmp_path / "next" / "topologies" / "sidecar-crash-1"
    other = ChangeLedger(other_dir, LedgerHeader("run-10", api.context, str(kubeconfig)))
    next_writer = ClusterWriter(api, FakePodExec(traffic_ns), other, "run-10")
    with pytest.raises(TrafficError, match=r"exists already.*clean"):
        ClusterTraffic(config, setup=names.Setup.SIDECAR, writer=next_writer).start()
    next_writer.undo_all()
    assert _traffic_objects(api) == left
    lines = KubernetesPlatform(kubeconfig=kubeconfig).clean(run_dir, [])
    assert sum("deleted" in line for line in lines) == 4, lines
    assert _traffic_objects(api) == {k.kind: [] for k in TRAFFIC_KINDS}
    assert comparable(traffic_ns) == before
    assert pending_changes(run_dir) == []


# -- the engine takes the platform's traffic ------------------------------------------------


class _HostingTopology(FakeTopology):
    @property
    def ingress_url(self) -> str:
        return f"http://{FRONTEND}"

    def hosted_traffic(self) -> HostedTraffic:
        return HostedTraffic(start=self._start, network=CLUSTER)

    def _start(self, config: TrafficConfig) -> FakeTraffic:
        STARTED.append(config)
        return FakeTraffic(config, healthy)


STARTED: list[TrafficConfig] = []


class _HostingPlatform(FakePlatform):
    @contextlib.contextmanager
    def start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        yield _HostingTopology(self, setup, options)


def test_the_engine_runs_the_load_the_platform_hosts(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        "name: e\nsetups: [mesh]\nseed: 1\n"
        "traffic: {users: 1, spawn_rate: 1, rate: 10, endpoints: [{name: browse, path: /}]}\n"
        "timeline: {warmup: 20ms, hold: 50ms, recovery: 20ms, recovered_for: 10ms}\n"
        "faults: [{type: abort, name: a, target: {service: checkout, replica: 0}, percent: 50}]\n"
    )
    local: list[TrafficConfig] = []

    def on_this_machine(config: TrafficConfig) -> FakeTraffic:
        local.append(config)
        return FakeTraffic(config, healthy)

    STARTED.clear()
    options = RunOptions(run_dir=tmp_path / "run", traffic=on_this_machine, tick_s=0.01)
    windows = Engine(load_experiment(path), _HostingPlatform(), options).run()
    assert [w.error for w in windows] == [None]
    assert local == []  # the platform's own traffic, not Locust on this machine
    [config] = STARTED
    assert config.network == CLUSTER and config.host == f"http://{FRONTEND}"


def test_the_objects_of_a_window_pass_the_official_strict_schema(tmp_path: Path) -> None:
    """What :class:`ClusterTraffic` creates (with a token), as ``test_manifests`` checks."""
    from tests.kubernetes.test_manifests import _validate_builtin

    writer = ClusterWriter(None, None, None, "run-3", dry_run=True)
    config = _config(tmp_path, f"http://{FRONTEND}")
    traffic = ClusterTraffic(
        config, setup=names.Setup.MESH, writer=writer, token_source=lambda ttl: "a.b.c"
    )
    objects = traffic.objects("a.b.c")
    assert [o["kind"] for o in objects] == ["Secret", "ConfigMap", "Service", "Job", "Deployment"]
    for obj in objects:
        _validate_builtin(obj)
    pod_config = TrafficConfig.from_json(objects[1]["data"]["traffic-config.json"])
    assert pod_config.token_url == "file:///etc/sidecar-chaos/token/token"
    assert pod_config.network == CLUSTER and pod_config.workers == 2
    assert pod_config.host == f"http://{FRONTEND}"


def test_an_experiment_on_the_fake_cluster_runs_its_load_in_the_cluster(
    traffic_ns: FakeCluster,
    kubeconfig: Path,
    target: JwtTarget,
    tmp_path: Path,
) -> None:
    """The engine, a VirtualService fault and in-cluster Locust: run, revert, left as found."""
    before = comparable(traffic_ns)
    path = tmp_path / "kube.yaml"
    path.write_text(
        "name: kube\nplatform: kubernetes\nsetups: [mesh]\nseed: 3\n"
        "traffic: {users: 4, spawn_rate: 4, rate: 40, endpoints: [{name: browse, path: /}]}\n"
        "timeline: {warmup: 300ms, hold: 700ms, recovery: 300ms, recovered_for: 100ms}\n"
        "faults: [{type: abort, name: a, target: {service: checkout, replica: 0}, percent: 50}]\n"
    )
    run_dir = tmp_path / "run"
    target_at = target.url.removeprefix("http://")
    with FakeKubelet(traffic_ns, tmp_path / "kubelet", {FRONTEND: target_at}) as kubelet:
        pod_exec = FakePodExec(traffic_ns, handler=kubelet.exec)
        platform = KubernetesPlatform(
            kubeconfig=kubeconfig,
            pod_exec=lambda _api: pod_exec,
            ready_timeout_s=10.0,
            watch_timeout_s=1,
            traffic_timings=TrafficTimings(startup_timeout_s=60.0, sync_interval_s=0.2),
            idp_dir=tmp_path / "state" / "idp",
        )
        options = RunOptions(run_dir=run_dir, workers=1, tick_s=0.2)
        [window] = Engine(load_experiment(path), platform, options).run()
        assert window.error is None, window.error
        assert kubelet.errors == []
    entries = read_journal(run_dir)
    assert [e.data.get("processes") for e in entries if e.kind == "traffic_started"] == [[]]
    assert [e.data.get("minted") for e in entries if e.kind == "traffic_token"] == [True]
    assert pending_changes(run_dir, entries) == []
    samples = load_samples(run_dir / "samples")
    # The target's own count against the client's: every 200 the client recorded was allowed
    # by the target, and it allowed no request the client did not send. (Not equal: under
    # load a request may fail to connect, never reaching the target, or be allowed and then
    # cut by Locust's stop.)
    answered = int((samples["status"] == 200).sum())
    assert 0 < answered <= target.counter("jwt_authn.allowed") <= len(samples)
    assert window.inject_t is not None and window.end_t is not None
    assert samples["t"].min() < window.inject_t < window.end_t  # one clock: the engine's
    assert comparable(traffic_ns) == before


def _set_locust_status(cluster: FakeCluster, role: str, phase: str, state: dict[str, Any]) -> None:
    """What a kubelet reports for the Locust container of the pods of ``role``."""
    pods = cluster.resources[("v1", "pods")]
    for pod in cluster.select(pods, names.TRAFFIC_NAMESPACE, f"{names.LABEL_TRAFFIC_ROLE}={role}"):
        for item in pod["status"]["containerStatuses"]:
            if item["name"] == "locust":
                item["state"] = state
        pod["status"]["phase"] = phase
        name = pod["metadata"]["name"]
        cluster.replace(pods, names.TRAFFIC_NAMESPACE, name, pod, status_only=True)


def test_a_locust_pod_that_ends_or_cannot_start_breaks_the_window(
    traffic_ns: FakeCluster, api: KubeApi, kubeconfig: Path, tmp_path: Path
) -> None:
    def no_samples_yet(ns: str, pod: str, container: str, command: Any, _t: float) -> str | None:
        if tuple(command) == STOP_COMMAND:
            return ""
        if list(command[:3]) == ["python", "-c", SYNC_SCRIPT]:
            return json.dumps({"mono": time.monotonic(), "wall": time.time(), "files": {}})
        return None

    ledger = ChangeLedger(tmp_path / "t", LedgerHeader("run-4", api.context, str(kubeconfig)))
    pod_exec = FakePodExec(traffic_ns, handler=no_samples_yet)
    writer = ClusterWriter(api, pod_exec, ledger, "run-4")
    config = _config(tmp_path / "out", f"http://{FRONTEND}")
    timings = TrafficTimings(sync_interval_s=0.0, stop_grace_s=0.5)
    traffic = ClusterTraffic(config, setup=names.Setup.MESH, writer=writer, timings=timings)
    with pytest.raises(TrafficError, match=r"cannot start.*ErrImagePull") as raised, traffic:
        _set_locust_status(traffic_ns, "worker", "Pending", {"waiting": {"reason": "ErrImagePull"}})
        traffic.wait_started(timeout=10.0)
    # stopping could not end Locust in the workers either: said, not hidden, not raised
    assert any("still running" in note for note in raised.value.__notes__)
    assert _traffic_objects(api) == {k.kind: [] for k in TRAFFIC_KINDS}  # deleted on the way out

    traffic = ClusterTraffic(config, setup=names.Setup.MESH, writer=writer, timings=timings)
    with traffic:
        traffic.check()  # all running
        ended = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        _set_locust_status(traffic_ns, "master", "Succeeded", ended)
        with pytest.raises(TrafficError, match=r"ended during the window.*master"):
            traffic.check()
        _set_locust_status(traffic_ns, "worker", "Running", ended)
    assert _traffic_objects(api) == {k.kind: [] for k in TRAFFIC_KINDS}


def test_a_user_locustfile_too_big_for_the_config_map_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INGRESS_ENV, raising=False)
    own = tmp_path / "mine.py"
    own.write_text("from locust import HttpUser\n")
    path = tmp_path / "e.yaml"
    path.write_text(
        "name: e\nplatform: kubernetes\nsetups: [mesh]\n"
        f"traffic: {{users: 1, spawn_rate: 1, rate: 1, locustfile: {own}}}\n"
        "timeline: {warmup: 1s, hold: 1s, recovery: 1s, recovered_for: 100ms}\n"
        "faults: [{type: crash, name: c, target: {service: checkout, replica: 0}}]\n"
    )
    experiment = load_experiment(path)
    assert KubernetesPlatform().validate(experiment) == []  # shipped in the ConfigMap
    own.write_text("#" * (256 * 1024 + 1))
    [problem] = KubernetesPlatform().validate(experiment)
    assert problem.at == ("traffic", "locustfile") and "ConfigMap" in problem.message
    opted_out = KubernetesPlatform(ingress_url="http://127.0.0.1:18080")
    assert opted_out.validate(experiment) == []
