"""End to end on a real kind cluster brought up by ``sidecar-chaos cluster up``.

Marked ``kind``; skipped (with the reason) when the context ``kind-sidecar-chaos`` is
not reachable, which is always the case where this project is built (no container
engine). ``make e2e-kind`` runs ``cluster up``, these tests and the game day on
Kubernetes, then ``cluster down``, wherever Docker and kind exist.

What only this file proves: the manifests start on a real API server and kubelet
(admission, defaulting, Istio's injection and ambient enrolment), the plain sidecar's
mTLS and JWT work between real pods, and the chain answers in every setup; in-cluster
Locust (master Job + workers) sends through each setup's client-side proxy with a
token minted from ``cluster up``'s key, its samples come back through the real exec
stream, and a mesh VirtualService fault reaches it (it would not through a
port-forward).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pandas as pd
import pytest

from chaos.errors import ChaosError
from chaos.experiment import Setup
from chaos.platforms.base import HostsTraffic, HttpFault, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.cluster import default_state_dir, read_versions
from chaos.platforms.kubernetes.clusteridentity import JWT_ISSUER
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.podexec import KubePodExec
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.topology import KubeTopology
from chaos.platforms.kubernetes.traffic import CLOCK_FILE
from chaos.platforms.shared.idp import ALGORITHM
from chaos.rundir.samples import load_samples, samples_dir
from chaos.traffic.config import Endpoint, TrafficConfig

pytestmark = pytest.mark.kind

READY_WITHIN_S = 180.0
#: Every namespace cluster up deploys, sc-baseline (no proxy) included.
SETUPS = list(names.DEPLOYED_SETUPS)


@pytest.fixture(scope="module")
def api() -> Iterator[KubeApi]:
    try:
        client = KubeApi.from_kubeconfig(context=names.KIND_CONTEXT)
    except ChaosError as exc:
        pytest.skip(f"no kind cluster {names.KIND_CONTEXT!r} in the kubeconfig: {exc}")
    try:
        client.server_version()
    except ChaosError as exc:
        client.close()
        pytest.skip(f"kind cluster {names.KIND_CONTEXT!r} not reachable: {exc}")
    yield client
    client.close()


def _demo_pods(api: KubeApi, setup: names.Setup) -> list[PodState]:
    return [
        p
        for p in api.list_pods(names.namespace_of(setup), names.managed_labels())
        if p.labels.get(names.LABEL_APP) in names.SERVICES and not p.deleting
    ]


def _wait_ready(api: KubeApi, setup: names.Setup) -> list[PodState]:
    deadline = time.monotonic() + READY_WITHIN_S
    pods = _demo_pods(api, setup)
    while time.monotonic() < deadline:
        pods = _demo_pods(api, setup)
        if len(pods) == len(names.SERVICES) * names.REPLICAS and all(p.ready for p in pods):
            return pods
        time.sleep(2)
    not_ready = [p.name for p in pods if not p.ready]
    raise AssertionError(f"{setup}: pods not ready within {READY_WITHIN_S:.0f} s: {not_ready}")


def _token(state_dir: Path) -> str:
    """A token signed with the key ``cluster up`` left in the state directory."""
    idp_dir = state_dir / "idp"
    jwks = json.loads((idp_dir / "jwks.json").read_text())
    kid = jwks["keys"][0]["kid"]
    key = (idp_dir / f"{kid}.key.pem").read_bytes()
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER,
        "aud": names.JWT_AUDIENCE,
        "sub": "e2e",
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


_CALL = """
import sys, urllib.request, urllib.error
url, host, token = sys.argv[1:4]
headers = {"Host": host}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(errors="replace"))
"""


def _call_checkout(api: KubeApi, setup: names.Setup, pod: str, token: str) -> tuple[int, str]:
    """From frontend's app container, call checkout as the app does (through its proxy)."""
    if setup is names.Setup.SIDECAR:
        url = f"http://127.0.0.1:{names.OUTBOUND_PORT}/"
    else:
        url = f"http://{names.service_host('checkout', setup)}:{names.APP_PORT}/"
    out = KubePodExec(api).exec(
        names.namespace_of(setup),
        pod,
        names.APP_CONTAINER,
        ["python", "-c", _CALL, url, "checkout", token],
        timeout_s=30,
    )
    status, _, body = out.strip().partition("\n")
    return int(status), body


@pytest.mark.parametrize("setup", SETUPS)
def test_every_demo_pod_is_ready_on_its_node(api: KubeApi, setup: names.Setup) -> None:
    for pod in _wait_ready(api, setup):
        assert pod.node_name == names.NODE_HOSTNAMES[pod.labels[names.LABEL_NODE]], pod.name


@pytest.mark.parametrize("setup", SETUPS)
def test_each_setup_has_its_own_proxy(api: KubeApi, setup: names.Setup) -> None:
    for pod in _wait_ready(api, setup):
        plain = pod.container(names.SIDECAR_CONTAINER)
        istio = pod.container(names.ISTIO_PROXY_CONTAINER)
        if setup is names.Setup.SIDECAR:
            assert plain is not None and plain.ready and istio is None, pod.name
        elif setup is names.Setup.MESH:
            assert istio is not None and istio.native_sidecar and plain is None, pod.name
        else:  # ambient (ztunnel and waypoints are not in the pod), baseline (no proxy)
            assert plain is None and istio is None, pod.name


@pytest.mark.parametrize("setup", SETUPS)
def test_the_chain_answers_through_the_proxies(api: KubeApi, setup: names.Setup) -> None:
    pods = _wait_ready(api, setup)
    frontend = next(p.name for p in pods if p.labels[names.LABEL_APP] == "frontend")
    status, body = _call_checkout(api, setup, frontend, _token(default_state_dir()))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["service"] == "checkout" and answer["upstream"]["service"] == "payments"


@pytest.mark.parametrize("setup", [names.Setup.SIDECAR, names.Setup.MESH])
def test_a_request_without_a_token_is_refused(api: KubeApi, setup: names.Setup) -> None:
    pods = _wait_ready(api, setup)
    frontend = next(p.name for p in pods if p.labels[names.LABEL_APP] == "frontend")
    status, _ = _call_checkout(api, setup, frontend, "")
    assert status in (401, 403)


def test_baseline_answers_plaintext_without_a_token(api: KubeApi) -> None:
    pods = _wait_ready(api, names.Setup.BASELINE)
    frontend = next(p.name for p in pods if p.labels[names.LABEL_APP] == "frontend")
    status, body = _call_checkout(api, names.Setup.BASELINE, frontend, "")
    assert status == 200, body


def _in_cluster_load(
    setup: names.Setup, run_dir: Path, during: Callable[[KubeTopology], None] | None = None
) -> pd.DataFrame:
    """A few seconds of in-cluster Locust against ``setup``; the samples it brought back."""
    platform = KubernetesPlatform(context=names.KIND_CONTEXT)
    out_dir = run_dir / "samples" / setup.value
    with platform.start(Setup(setup.value), StartOptions(run_dir=run_dir / "t")) as topology:
        hosted = topology.hosted_traffic() if isinstance(topology, HostsTraffic) else None
        assert hosted is not None, "set no $SIDECAR_CHAOS_KUBE_INGRESS for in-cluster traffic"
        config = TrafficConfig(
            host=topology.ingress_url,
            out_dir=out_dir,
            duration_s=120.0,
            users=10,
            rate=20.0,
            workers=2,
            endpoints=(Endpoint("browse", "GET", "/"),),
            token_refresh_s=1.0,
            network=hosted.network,
        )
        with hosted.start(config) as traffic:
            traffic.wait_started()
            time.sleep(5.0)
            if during is not None:
                assert isinstance(topology, KubeTopology)
                during(topology)
            traffic.stop()
        api = KubeApi.from_kubeconfig(context=names.KIND_CONTEXT)
        try:
            left = api.list_pods(names.TRAFFIC_NAMESPACE, {names.LABEL_APP: f"locust-{setup}"})
            assert all(p.deleting for p in left), [p.name for p in left]
        finally:
            api.close()
    clocks = json.loads((out_dir / CLOCK_FILE).read_text())["pods"]
    assert len(clocks) == 2, clocks
    return load_samples(samples_dir(out_dir))


@pytest.mark.parametrize("setup", SETUPS)
def test_in_cluster_locust_sends_through_the_setup_with_a_token(
    api: KubeApi, setup: names.Setup, tmp_path: Path
) -> None:
    _wait_ready(api, setup)
    samples = _in_cluster_load(setup, tmp_path)
    assert len(samples) > 50
    ok = (samples["status"] == 200).mean()
    assert ok > 0.99, samples["status"].value_counts()


def test_a_mesh_virtual_service_fault_reaches_in_cluster_traffic(
    api: KubeApi, tmp_path: Path
) -> None:
    """Istio applies it in the client-side proxy: only traffic from inside the mesh sees it."""
    _wait_ready(api, names.Setup.MESH)
    aborted_at: list[float] = []

    def abort_frontend(topology: KubeTopology) -> None:
        ops = topology.ops
        frontend = [p for p in ops.workload.pods if p.service == "frontend"]
        (site,) = ops.http_fault_sites(frontend, "inbound")
        ops.set_http_fault(site, HttpFault(percent=100, abort_status=503))
        aborted_at.append(time.monotonic())
        time.sleep(8.0)
        ops.clear_http_fault(site)
        aborted_at.append(time.monotonic())

    samples = _in_cluster_load(names.Setup.MESH, tmp_path, abort_frontend)
    start, end = aborted_at
    late = samples[(samples["t"] > start + 4.0) & (samples["t"] < end)]
    assert len(late) > 20 and (late["status"] == 503).mean() > 0.9, late["status"].value_counts()
    before = samples[samples["t"] < start]
    assert (before["status"] == 200).mean() > 0.99


def test_cluster_up_recorded_the_versions(api: KubeApi) -> None:
    versions = read_versions()
    assert versions is not None, f"no versions.json in {default_state_dir()}"
    assert versions["kubernetes"] == api.server_version()
    assert versions["istio"] and versions["envoy"]
