"""After a dead runner, ``clean`` undoes from the run directory's change ledger alone.

A real runner process (a subprocess) applies faults against the fake API server and
is SIGKILLed while they are applied; ``clean`` must leave the cluster as found.
Also: the kind-only context guard, and the dry-run listing (no API call at all).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chaos.errors import InputError
from chaos.experiment import Setup
from chaos.platforms import platform_factory
from chaos.platforms.base import HttpFault, StartOptions
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import LEDGER_FILE, read_ledger
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import VIRTUAL_SERVICE
from chaos.platforms.kubernetes.manifests.core import traffic_namespace
from chaos.platforms.kubernetes.platform import ALLOW_CONTEXT_ENV, KIND_DIR_ENV, KubernetesPlatform
from chaos.testing.fakekube.api import FakeApiServer, FakeCluster
from tests.kubernetes.fakecluster import comparable

RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from chaos.platforms.base import HttpFault, StartOptions
    from chaos.testing.fakekube.podexec import FakePodExec
    from chaos.testing.fakekube.api import FakeCluster
    from chaos.platforms.kubernetes.platform import KubernetesPlatform
    from chaos.experiment import Setup

    kubeconfig, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig, pod_exec=lambda api: None, watch_timeout_s=1
    )
    with platform.start(Setup.MESH, StartOptions(run_dir=run_dir, run_marker="crashed-run")) as top:
        ops = top.ops
        checkout = [p for p in ops.workload.pods if p.service == "checkout"]
        for site in ops.http_fault_sites(checkout, "inbound"):
            ops.set_http_fault(site, HttpFault(percent=100, abort_status=503))
        ops.rotate_signing_key()
        ops.stop_control_plane(None)  # last: Istio's webhooks refuse writes while it is down
        print("applied", flush=True)
        time.sleep(120)  # killed here, with every fault applied
    """
)


def _kill_once_applied(script: str, kubeconfig: Path, run_dir: Path) -> None:
    """Run ``script`` as a runner until it says ``applied``, then SIGKILL it (by its pid)."""
    runner = subprocess.Popen(
        [sys.executable, "-c", script, str(kubeconfig), str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline().strip() == "applied"
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        if runner.stdout is not None:
            runner.stdout.close()


def test_clean_after_a_killed_runner_leaves_the_cluster_as_found(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    _kill_once_applied(RUNNER, kubeconfig, run_dir)
    assert comparable(seeded) != before  # the runner died with its faults applied
    assert api.read_scale("istio-system", "istiod") == 0
    _, pending = read_ledger(run_dir)
    assert sorted(c.action for c in pending) == ["field", "field", "scale"]

    platform = KubernetesPlatform(kubeconfig=kubeconfig)
    lines = platform.clean(run_dir, [])
    assert len(lines) == 3, lines
    assert any("istiod: scaled back to 1" in line for line in lines)
    assert comparable(seeded) == before
    assert read_ledger(run_dir)[1] == []
    assert platform.clean(run_dir, []) == [
        "kubernetes: nothing to undo (every change was reverted)"
    ]


BASELINE_RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from chaos.platforms.base import StartOptions
    from chaos.platforms.kubernetes.platform import KubernetesPlatform
    from chaos.experiment import Setup
    from chaos.traffic.config import CLUSTER, Endpoint, TrafficConfig

    kubeconfig, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig, pod_exec=lambda api: None, watch_timeout_s=1,
        idp_dir=run_dir.parent / "no-signing-key",
    )
    options = StartOptions(run_dir=run_dir, run_marker="crashed-baseline")
    with platform.start(Setup.BASELINE, options) as top:
        hosted = top.hosted_traffic()
        config = TrafficConfig(
            host=top.ingress_url, out_dir=run_dir / "samples", duration_s=120.0,
            rate=20.0, endpoints=(Endpoint("browse", "GET", "/"),), network=hosted.network,
        )
        hosted.start(config).start()  # a cost window's in-cluster Locust, created
        print("applied", flush=True)
        time.sleep(120)  # killed here, with the load's objects in the cluster
    """
)


def _namespace(cluster: FakeCluster, namespace: str) -> dict[str, object]:
    """The namespace's objects (keys ``prefix/plural/namespace/name``) and its own."""
    return {
        k: v
        for k, v in comparable(cluster).items()
        if f"/{namespace}/" in k or k.endswith(f"/namespaces/{namespace}")
    }


def test_clean_after_a_killed_baseline_runner_leaves_sc_baseline_as_found(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    """A cost window of baseline writes nothing in sc-baseline: its in-cluster Locust (in
    sc-traffic) is all there is to undo, and ``clean`` deletes it by the ledger."""
    api.create(traffic_namespace())  # as cluster up creates it for the load
    before = comparable(seeded)
    baseline = _namespace(seeded, "sc-baseline")
    assert len(baseline) > 10, baseline  # seeded as cluster up leaves it
    run_dir = tmp_path / "run"
    _kill_once_applied(BASELINE_RUNNER, kubeconfig, run_dir)
    assert comparable(seeded) != before  # the runner died with its load's objects there
    _, pending = read_ledger(run_dir)
    created = sorted((c.action, c.kind, c.namespace, c.name) for c in pending)
    assert created == [
        ("create", kind, "sc-traffic", name)
        for kind, name in sorted(
            [
                ("ConfigMap", "locust-baseline"),
                ("Deployment", "locust-baseline-worker"),
                ("Job", "locust-baseline-master"),
                ("Service", "locust-baseline-master"),
            ]
        )
    ]
    lines = KubernetesPlatform(kubeconfig=kubeconfig).clean(run_dir, [])
    assert len(lines) == 4, lines
    assert _namespace(seeded, "sc-baseline") == baseline
    assert comparable(seeded) == before
    assert read_ledger(run_dir)[1] == []


def test_clean_of_a_change_whose_object_is_gone_is_fine(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(kubeconfig=kubeconfig, watch_timeout_s=1)
    run_dir = tmp_path / "run"
    options = StartOptions(run_dir=run_dir, run_marker="r")
    started = platform.start(Setup.MESH, options)
    topology = started.__enter__()
    ops = topology.ops
    assert isinstance(ops, KubeFaultOps)
    (site,) = ops.http_fault_sites(
        [p for p in ops.workload.pods if p.service == "payments"], "inbound"
    )
    ops.set_http_fault(site, HttpFault(percent=10, delay_ms=100))
    api.delete(VIRTUAL_SERVICE, "sc-mesh", "payments")  # someone removed it meanwhile
    lines = platform.clean(run_dir, [])
    assert lines == ["kubernetes: VirtualService sc-mesh/payments: already gone"]
    started.__exit__(None, None, None)  # nothing left to undo on the way out either


def test_a_context_that_is_not_kind_is_refused_unless_allowed(
    fake_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = fake_server.write_kubeconfig(tmp_path / "kc", context="prod-eu")
    platform = KubernetesPlatform(kubeconfig=kubeconfig)
    with (
        pytest.raises(
            InputError, match=r"'prod-eu' is not a kind cluster.*--allow-context prod-eu"
        ),
        platform.start(Setup.MESH, StartOptions(run_dir=tmp_path / "run")),
    ):
        pass
    assert fake_server.cluster.calls == []  # refused before any request
    assert not (tmp_path / "run" / LEDGER_FILE).exists()
    allowed = KubernetesPlatform(kubeconfig=kubeconfig, allow_context="prod-eu")
    allowed.connect().close()
    monkeypatch.setenv(ALLOW_CONTEXT_ENV, "prod-eu")
    KubernetesPlatform(kubeconfig=kubeconfig).connect().close()
    monkeypatch.setenv(ALLOW_CONTEXT_ENV, "prod-us")
    with pytest.raises(InputError, match="not a kind cluster"):
        KubernetesPlatform(kubeconfig=kubeconfig).connect()


def test_the_dry_run_lists_every_call_and_its_undo_without_a_cluster() -> None:
    platform = platform_factory("kubernetes")()
    assert isinstance(platform, KubernetesPlatform)
    ops = platform.plan_ops(Setup.MESH)
    pods = [p for p in ops.workload.pods if p.name == "checkout-0"]
    (site,) = ops.http_fault_sites(pods, "inbound")
    ops.set_http_fault(site, HttpFault(percent=50, abort_status=503))
    ops.clear_http_fault(site)
    (proxy,) = ops.crash_targets(pods, None)
    ops.kill_proxy(proxy)
    ops.stop_control_plane(None)
    ops.rotate_signing_key()
    planned = [p.line() for p in ops.writer.planned]
    assert planned == [
        "PUT /apis/networking.istio.io/v1/namespaces/sc-mesh/virtualservices/checkout "
        '(spec.http: fault {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}); '
        "undo: PUT /apis/networking.istio.io/v1/namespaces/sc-mesh/virtualservices/checkout "
        "(spec.http as read)",
        "exec sc-mesh/checkout-0 -c istio-proxy -- pilot-agent request POST quitquitquit; "
        "undo: none: the kubelet restarts the container",
        "PUT /apis/apps/v1/namespaces/istio-system/deployments/istiod/scale (replicas: 0); "
        "undo: PUT /apis/apps/v1/namespaces/istio-system/deployments/istiod/scale "
        "(replicas as read before)",
        "PUT /apis/security.istio.io/v1/namespaces/sc-mesh/requestauthentications/jwt "
        "(spec.jwtRules: jwks without the signing key); "
        "undo: PUT /apis/security.istio.io/v1/namespaces/sc-mesh/requestauthentications/jwt "
        "(spec.jwtRules as read)",
    ]
    (mechanism,) = ops.control_plane_mechanisms(None)
    assert "istiod/scale replicas 0" in mechanism.action
    assert json.dumps(ops.key_rotation_mechanism().action).count("requestauthentications/jwt") == 1


ENGINE_RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from chaos.engine.run import Engine, RunOptions
    from chaos.errors import PlatformError
    from chaos.platforms.kubernetes.platform import KubernetesPlatform
    from chaos.experiment import load_experiment
    from chaos.testing.fake_traffic import FakeTraffic

    class NoExec:  # no exec or port-forward here: counters simply have no reading
        def exec(self, *args, **kwargs):
            raise PlatformError("no exec in this test")

        def http(self, *args, **kwargs):
            raise PlatformError("no port-forward in this test")

    kubeconfig, experiment, run_dir = (Path(a) for a in sys.argv[1:4])
    platform = KubernetesPlatform(
        kubeconfig=kubeconfig,
        pod_exec=lambda api: NoExec(),
        watch_timeout_s=1,
        ingress_url="http://127.0.0.1:18080",
    )
    options = RunOptions(run_dir=run_dir, traffic=FakeTraffic, tick_s=0.05)
    Engine(load_experiment(experiment), platform, options).run()
    """
)

HELD_EXPERIMENT = """\
name: held
platform: kubernetes
setups: [mesh]
traffic: {users: 1, spawn_rate: 1, rate: 10, endpoints: [{name: browse, path: /}]}
timeline: {warmup: 50ms, hold: 2m, recovery: 50ms, recovered_for: 10ms}
faults:
  - type: abort
    target: {service: checkout}
    percent: 100
  - type: control-plane-outage
    target: {service: checkout}
"""


def test_sidecar_chaos_clean_after_the_engine_was_killed_mid_fault(
    seeded: FakeCluster, kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    before = comparable(seeded)
    experiment = tmp_path / "held.yaml"
    experiment.write_text(HELD_EXPERIMENT, encoding="utf-8")
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "KUBECONFIG": str(kubeconfig),
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", ENGINE_RUNNER, str(kubeconfig), str(experiment), str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            journal = run_dir / "journal.jsonl"
            if journal.is_file() and '"fault_applied"' in journal.read_text(encoding="utf-8"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the runner never applied its fault")
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
    vs = api.get(VIRTUAL_SERVICE, "sc-mesh", "checkout")
    assert vs is not None and "fault" in vs["spec"]["http"][0]  # died with the fault on

    cli = Path(sys.executable).parent / "sidecar-chaos"
    cleaned = subprocess.run(
        [str(cli), "clean", str(run_dir)], env=env, capture_output=True, text=True, timeout=60
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert "kubernetes: VirtualService sc-mesh/checkout: spec.http restored" in cleaned.stdout
    assert comparable(seeded) == before
    again = subprocess.run(
        [str(cli), "clean", str(run_dir)], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to undo" in again.stdout
    assert comparable(seeded) == before


def test_the_dry_run_lists_the_in_cluster_load_and_its_undo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from chaos.cli.dryrun import describe_plan
    from chaos.experiment import load_experiment

    monkeypatch.setenv(KIND_DIR_ENV, str(tmp_path / "no-cluster-state"))
    experiment = load_experiment(
        Path(__file__).parents[2] / "experiments" / "crash.yaml",
        ["platform=kubernetes", "setups=[mesh]"],
    )
    lines = describe_plan(experiment, platform_factory("kubernetes")())
    load = [line.strip() for line in lines if line.strip().startswith("traffic:")]
    created = [line for line in load if line.startswith("traffic: POST")]
    assert [line.split("(")[1].split(":")[0] for line in created] == [
        "ConfigMap locust-mesh",
        "Service locust-mesh-master",
        "Job locust-mesh-master",
        "Deployment locust-mesh-worker",
    ]
    assert all("/namespaces/sc-traffic/" in line and "undo: DELETE" in line for line in created)
    assert load[-1].startswith("traffic: no signing key in ")
