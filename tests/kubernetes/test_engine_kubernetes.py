"""The real engine and fault drivers run an experiment on the Kubernetes platform.

The cluster is the fake API server (official client unmodified), exec and port-forward
the fake PodExec, traffic the engine's FakeTraffic whose script also passes requests
through every sidecar pod (so a fault filter switched on through the admin runtime
really injects). The run must complete, verify its faults from the cluster, revert
everything and leave the cluster as it found it.
"""

from __future__ import annotations

from pathlib import Path

from chaos.engine.run import Engine, RunOptions
from chaos.experiment import load_experiment
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import pending_changes
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.rundir.journal import read_journal
from chaos.testing.fake_traffic import FakeTraffic
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.traffic.config import TrafficConfig
from tests.kubernetes.fakecluster import comparable

EXPERIMENT = """\
name: kube
platform: kubernetes
setups: [sidecar, mesh]
seed: 3
traffic: {users: 1, spawn_rate: 1, rate: 10, endpoints: [{name: browse, path: /}]}
timeline: {warmup: 50ms, hold: 300ms, recovery: 50ms, recovered_for: 10ms}
faults:
  - type: abort
    name: checkout-503
    target: {service: checkout, replica: 0}
    percent: 50
  - type: crash
    name: payments-crash
    target: {service: payments, replica: 1}
"""


def test_a_run_on_the_fake_cluster_completes_and_leaves_it_as_found(
    seeded: FakeCluster, kubeconfig: Path, pod_exec: FakePodExec, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    path = tmp_path / "kube.yaml"
    path.write_text(EXPERIMENT, encoding="utf-8")
    experiment = load_experiment(path)
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda _api: pod_exec,
        ready_timeout_s=10.0,
        watch_timeout_s=1,
        # The opt-out ($SIDECAR_CHAOS_KUBE_INGRESS): the engine's own traffic on this
        # machine; FakeTraffic sends nothing, the URL only has to pass the loopback
        # check. In-cluster Locust is test_traffic.py's.
        ingress_url="http://127.0.0.1:18080",
    )

    def through_the_sidecars(now: float) -> tuple[int, int, float | None]:
        for pod in api.list_pods("sc-sidecar"):
            pod_exec.serve("sc-sidecar", pod.name, 10)
        return 10, 0, 5.0

    def traffic(config: TrafficConfig) -> FakeTraffic:
        return FakeTraffic(config, through_the_sidecars)

    run_dir = tmp_path / "run"
    engine = Engine(experiment, platform, RunOptions(run_dir=run_dir, traffic=traffic, tick_s=0.05))
    windows = engine.run()

    assert len(windows) == 4
    for window in windows:
        assert window.error is None, window.error
        assert window.revert_t is not None
    evidence = {(w.key.setup, w.key.fault): w.evidence for w in windows}
    sidecar_abort = evidence[("sidecar", "checkout-503")]
    assert sidecar_abort is not None and sidecar_abort.took_effect, sidecar_abort
    for setup in ("sidecar", "mesh"):
        crash = evidence[(setup, "payments-crash")]
        assert crash is not None and crash.took_effect, crash
    kinds = [e.kind for e in read_journal(run_dir)]
    assert kinds.count("fault_applied") == kinds.count("fault_reverted") == 4
    assert pending_changes(run_dir, read_journal(run_dir)) == []  # every change undone
    changed = [e for e in read_journal(run_dir) if e.kind == "object_changed"]
    assert changed, "the journal records the object changes too"
    assert comparable(seeded) == before
