"""The platform's fault mechanisms on a real kind cluster (``cluster up`` first).

Marked ``kind``; skipped with the reason where the context ``kind-sidecar-chaos`` is
not reachable (always, where this project is built). What only this file proves: exec
and port-forward through :class:`~chaos.platforms.kubernetes.api.KubePodExec` against a
real API server and kubelet (the fake speaks the same websocket sub-protocols, played by
fake pods), that a real kubelet restarts a killed proxy
and counts it in the pod status, that Envoy's admin takes the runtime keys, and that
istiod scales down and back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chaos.errors import ChaosError
from chaos.experiment import Setup
from chaos.platforms.base import HttpFault, StartOptions
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import VIRTUAL_SERVICE
from chaos.platforms.kubernetes.platform import KubernetesPlatform

pytestmark = pytest.mark.kind


@pytest.fixture(scope="module")
def platform() -> Iterator[KubernetesPlatform]:
    platform = KubernetesPlatform(context=names.KIND_CONTEXT)
    try:
        api = platform.connect()
    except ChaosError as exc:
        pytest.skip(f"no kind cluster {names.KIND_CONTEXT!r} in the kubeconfig: {exc}")
    try:
        api.server_version()
    except ChaosError as exc:
        pytest.skip(f"kind cluster {names.KIND_CONTEXT!r} not reachable: {exc}")
    finally:
        api.close()
    yield platform


def _eventually(check: Callable[[], bool], timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1.0)
    return False


@pytest.mark.parametrize("setup", ["sidecar", "mesh"])
def test_a_killed_proxy_is_restarted_by_the_kubelet(
    platform: KubernetesPlatform, setup: str, tmp_path: Path
) -> None:
    with platform.start(Setup(setup), StartOptions(run_dir=tmp_path)) as topology:
        ops = topology.ops
        assert isinstance(ops, KubeFaultOps)
        target = [p for p in ops.workload.pods if p.name == "payments-0"]
        (proxy,) = ops.crash_targets(target, None)
        before = ops.proxy_restarts(proxy)
        ops.kill_proxy(proxy)
        assert _eventually(lambda: ops.proxy_restarts(proxy) > before)


def test_the_sidecar_admin_runtime_through_a_port_forward(
    platform: KubernetesPlatform, tmp_path: Path
) -> None:
    with platform.start(Setup.SIDECAR, StartOptions(run_dir=tmp_path)) as topology:
        ops = topology.ops
        assert isinstance(ops, KubeFaultOps)
        (site,) = ops.http_fault_sites(list(topology.pods[:1]), "inbound")
        ops.set_http_fault(site, HttpFault(percent=100, abort_status=503))
        assert ops.http_faults_injected(site) >= 0  # the admin answered through the forward
        ops.clear_http_fault(site)


def test_mesh_fault_and_outage_are_reverted_on_the_cluster(
    platform: KubernetesPlatform, tmp_path: Path
) -> None:
    api: KubeApi = platform.connect()
    try:
        original = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")
        replicas = api.read_scale(names.ISTIO_NAMESPACE, "istiod")
        with platform.start(Setup.MESH, StartOptions(run_dir=tmp_path)) as topology:
            ops = topology.ops
            assert isinstance(ops, KubeFaultOps)
            target = [p for p in ops.workload.pods if p.service == "checkout"]
            (site,) = ops.http_fault_sites(target, "inbound")
            ops.set_http_fault(site, HttpFault(percent=50, abort_status=503))
            ops.stop_control_plane(None)
            assert _eventually(lambda: ops.control_plane_state().stopped)
        restored = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")
        assert restored is not None and original is not None
        assert restored["spec"] == original["spec"]
        assert api.read_scale(names.ISTIO_NAMESPACE, "istiod") == replicas
    finally:
        api.close()
