"""allow-any on a cluster: the fail-open rollout at frontend, proven by Istio's dry run.

The rule (an ALLOW for every request, ORed by Istio with the standing ``require-jwt``)
lets a token-less caller through; the proof is a copy of the standing policy in Istio's
dry-run mode (``istio.io/dry-run: "true"``: shadow rules, not enforced), whose
``rbac.istio_dry_run_allow_shadow_denied`` counts what the standing policy would have
denied (https://istio.io/latest/docs/tasks/security/authorization/authz-dry-run/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.analysis.security import load_bypass
from chaos.experiment import PolicyMismatchFault
from chaos.faults.policy import PolicyMismatchFaultDriver
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.authzops import (
    DRY_RUN_ANNOTATION,
    dry_run_name,
    policy_name,
)
from chaos.platforms.kubernetes.changes import ClusterWriter, read_ledger
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import AUTHORIZATION_POLICY
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.kubernetes.opsbase import demo_workload
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.rundir import BYPASS_DIR
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.fakecluster import comparable
from tests.kubernetes.test_anonymous_stream import _worker
from tests.kubernetes.test_platform_faults import ops_of, platform, running  # noqa: F401


@pytest.mark.parametrize("setup", ["mesh", "ambient"])
def test_allow_any_lets_token_less_callers_through_and_the_dry_run_counts_them(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
    setup: str,
) -> None:
    s = names.Setup(setup)
    ns = names.namespace_of(s)
    waypoints = tuple(names.SERVICES) if s is names.Setup.AMBIENT else ()
    api.create(istio.authorization_policy(s, waypoints=waypoints))  # what cluster up installs
    _worker(api, s)
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    spec = PolicyMismatchFault.model_validate(
        {"type": "policy-mismatch", "rule": "allow-any", "target": {"service": "frontend"}}
    )

    def stream(name: str, count: int) -> list[str]:
        out = tmp_path / name / BYPASS_DIR / "w.anonymous.jsonl"
        with topology.anonymous_stream(20.0, count, 5.0, out):
            pass
        return [a.outcome for a in load_bypass(tmp_path / name)]

    with running(platform, setup, run_dir) as topology:
        ops = ops_of(topology)
        driver = PolicyMismatchFaultDriver(spec, ops, fault_id="f", name="pm", seed=1)
        assert stream("before", 3) == ["denied"] * 3  # require-jwt holds
        driver.apply()
        _, changes = read_ledger(run_dir)
        assert [(c.action, c.name) for c in changes] == [
            ("create", dry_run_name("frontend")),  # the proof first
            ("create", policy_name("frontend")),
        ]
        shadow = api.get(AUTHORIZATION_POLICY, ns, dry_run_name("frontend"))
        assert shadow is not None
        assert shadow["metadata"]["annotations"][DRY_RUN_ANNOTATION] == "true"
        rule = api.get(AUTHORIZATION_POLICY, ns, policy_name("frontend"))
        assert rule is not None and rule["spec"] == {
            "action": "ALLOW",
            "rules": [{}],
            **(
                {"targetRefs": [istio.waypoint_target_ref("frontend")]}
                if waypoints
                else {"selector": {"matchLabels": {"app": "frontend"}}}
            ),
        }
        assert stream("during", 4) == ["served"] * 4  # fail open
        evidence = driver.verify()
        assert evidence.took_effect, evidence.detail
        # one shadow denial per anonymous request at each of frontend's enforcing proxies
        enforcers = 1 if waypoints else names.REPLICAS
        assert evidence.detail.endswith(f": {4 * enforcers}"), evidence.detail
        driver.revert()
        driver.revert()
        for name in (policy_name("frontend"), dry_run_name("frontend")):
            assert api.get(AUTHORIZATION_POLICY, ns, name) is None
        assert stream("after", 2) == ["denied"] * 2
    assert comparable(seeded) == before


def test_without_anonymous_callers_allow_any_says_nothing_reached_it(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    tmp_path: Path,
) -> None:
    api.create(istio.authorization_policy(names.Setup.MESH))
    spec = PolicyMismatchFault.model_validate(
        {"type": "policy-mismatch", "rule": "allow-any", "target": {"service": "frontend"}}
    )
    with running(platform, "mesh", tmp_path / "run") as topology:
        driver = PolicyMismatchFaultDriver(spec, ops_of(topology), fault_id="f", name="pm", seed=1)
        driver.apply()
        evidence = driver.verify()
        driver.revert()
    assert not evidence.took_effect
    assert "none sent" in evidence.detail


def test_a_dry_run_plans_the_proof_then_the_rule_and_reads_nothing() -> None:
    writer = ClusterWriter(None, None, None, "run-1", dry_run=True)
    setup = names.Setup.AMBIENT
    ops = KubeFaultOps(setup, demo_workload(setup), writer)
    (site,) = ops.authz_sites([p for p in ops.workload.pods if p.service == "frontend"])
    ops.set_authz_rule(site, "allow-any")
    calls = [c.call for c in writer.planned]
    assert len(calls) == 2
    assert dry_run_name("frontend") in calls[0] and policy_name("frontend") in calls[1]
    assert all(c.startswith("POST /apis/security.istio.io/v1/") for c in calls)
