"""policy-mismatch on a cluster: an Istio AuthorizationPolicy, journaled, proven, reverted.

Against the fake API server, which checks every AuthorizationPolicy against the CRD's
schema (as the real server refuses what the CRD's schema rejects) and whose Istio
proxies count ``rbac.denied`` / ``rbac.allowed`` as Istio evaluates the namespace's
policies (a DENY that matches denies; else an ALLOW must match, where one applies).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.errors import PlatformError
from chaos.experiment import PolicyMismatchFault
from chaos.faults.policy import PolicyMismatchFaultDriver
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.authzops import mismatch_policy, policy_name
from chaos.platforms.kubernetes.changes import read_ledger
from chaos.platforms.kubernetes.kinds import AUTHORIZATION_POLICY
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.testing.fakekube import istio
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from tests.kubernetes.fakecluster import comparable
from tests.kubernetes.test_platform_faults import ops_of, platform, running  # noqa: F401


def _spec(rule: str, service: str) -> PolicyMismatchFault:
    return PolicyMismatchFault.model_validate(
        {"type": "policy-mismatch", "rule": rule, "target": {"service": service}}
    )


def _clients(api: KubeApi, ns: str, service: str) -> list[tuple[str, str]]:
    return [(ns, p.name) for p in api.list_pods(ns, {names.LABEL_APP: service})]


@pytest.mark.parametrize(
    ("setup", "rule", "service", "caller"),
    [
        ("mesh", "deny-caller", "checkout", "frontend"),
        ("ambient", "allow-other", "payments", "checkout"),
    ],
)
def test_an_authorization_policy_denies_the_caller_and_is_deleted_on_revert(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
    setup: str,
    rule: str,
    service: str,
    caller: str,
) -> None:
    ns = names.namespace_of(names.Setup(setup))
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    with running(platform, setup, run_dir) as topology:
        ops = ops_of(topology)
        pods = [p for p in ops.workload.pods if p.service == service]
        driver = PolicyMismatchFaultDriver(
            _spec(rule, service), ops, fault_id="f", name="pm", seed=1
        )
        (change,) = driver.plan().changes
        assert f"AuthorizationPolicy {policy_name(service)}" in change.subject
        assert f"caller cluster.local/ns/{ns}/sa/{caller}" in change.action
        assert sorted(driver.blast_radius()) == sorted(p.name for p in pods)
        # before the rollout the caller is allowed: nothing counts as denied
        sites = ops.authz_sites(pods)
        for client in _clients(api, ns, caller):
            istio.send(pod_exec, client, service, ns, 5)
        assert sum(ops.authz_denials(s) for s in sites) == 0
        driver.apply()
        # recorded in the ledger before the POST, then made
        _, changes = read_ledger(run_dir)
        assert [(c.action, c.kind, c.name) for c in changes] == [
            ("create", "AuthorizationPolicy", policy_name(service))
        ]
        stored = api.get(AUTHORIZATION_POLICY, ns, policy_name(service))
        assert stored is not None
        principals = stored["spec"]["rules"][0]["from"][0]["source"]["principals"]
        if rule == "deny-caller":
            assert stored["spec"]["action"] == "DENY"
            assert principals == [f"cluster.local/ns/{ns}/sa/{caller}"]
        else:
            assert stored["spec"]["action"] == "ALLOW"
            assert principals == [f"cluster.local/ns/{ns}/sa/not-{caller}"]
        if setup == "ambient":
            assert stored["spec"]["targetRefs"][0]["name"] == names.waypoint_name(service)
        else:
            assert stored["spec"]["selector"] == {"matchLabels": {"app": service}}
        clients = _clients(api, ns, caller)
        for client in clients:
            istio.send(pod_exec, client, service, ns, 10)
        evidence = driver.verify()
        assert evidence.took_effect, evidence.detail
        # the proxies' own count: every request of the caller after the rollout
        enforcers = 1 if setup == "ambient" else len(pods)
        assert f": {10 * len(clients) * enforcers}" in evidence.detail
        driver.revert()
        driver.revert()  # idempotent
        assert api.get(AUTHORIZATION_POLICY, ns, policy_name(service)) is None
        # after revert the caller is allowed again: denials do not rise
        denied = sum(ops.authz_denials(s) for s in ops.authz_sites(pods))
        for client in clients:
            istio.send(pod_exec, client, service, ns, 3)
        assert sum(ops.authz_denials(s) for s in ops.authz_sites(pods)) == denied
    assert comparable(seeded) == before


def test_the_fake_refuses_a_policy_the_crd_schema_rejects(
    seeded: FakeCluster, api: KubeApi
) -> None:
    good = mismatch_policy(names.Setup.MESH, "sc-mesh", "checkout", "deny-caller", "x")
    bad_action = {**good, "spec": {**good["spec"], "action": "PERMIT"}}
    with pytest.raises(PlatformError, match=r"422|Invalid"):
        api.create(bad_action)
    both = {
        **good,
        "spec": {
            **good["spec"],
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "w"}],
        },
    }
    with pytest.raises(PlatformError, match=r"422|Invalid"):
        api.create(both)  # selector and targetRefs: the CRD allows one of them
    typo = {**good, "spec": {**good["spec"], "rule": good["spec"]["rules"]}}
    with pytest.raises(PlatformError, match=r"422|Invalid"):
        api.create(typo)
    api.create(good)  # the one the fault writes passes
    assert api.get(AUTHORIZATION_POLICY, "sc-mesh", good["metadata"]["name"]) is not None
