"""policy-mismatch on the plain Envoy sidecar: its own bootstrap ConfigMap, rolled out.

Against the fake API server, whose Deployment controller rolls a changed pod template
through ReplicaSets, and whose plain sidecars read their bootstrap once, at start, and
apply its RBAC filter (:mod:`chaos.testing.fakekube.sidecarrbac`).

=============================================  ===============================================
what the fault relies on                       source
=============================================  ===============================================
a mounted ConfigMap is refreshed by the        https://kubernetes.io/docs/concepts/configuration/
kubelet only after its sync period + cache     configmap/#mounted-configmaps-are-updated-
TTL (no bound a run can wait on)               automatically
a Deployment rolls out "if and only if the     https://kubernetes.io/docs/concepts/workloads/
Pod template (.spec.template) is changed"      controllers/deployment/#updating-a-deployment
Envoy reads the ``-c`` bootstrap at start      https://www.envoyproxy.io/docs/envoy/latest/
only (static resources: no reload)             operations/cli#cmdoption-c
RBAC ``ALLOW``/``DENY``, counters              https://www.envoyproxy.io/docs/envoy/latest/
``http.<stat_prefix>.rbac.allowed/denied``     configuration/http/http_filters/rbac_filter
=============================================  ===============================================
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.errors import FaultError
from chaos.experiment import PolicyMismatchFault
from chaos.faults.policy import PolicyMismatchFaultDriver
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import (
    ChangeLedger,
    ClusterWriter,
    LedgerHeader,
    read_ledger,
)
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import CONFIGMAP, DEPLOYMENT
from chaos.platforms.kubernetes.manifests import core, envoy
from chaos.platforms.kubernetes.opsbase import demo_workload
from chaos.platforms.kubernetes.platform import KubernetesPlatform
from chaos.platforms.kubernetes.sidecarauthz import mismatch_name, with_rbac
from chaos.platforms.shared.envoy_common import ProxyOptions
from chaos.platforms.shared.envoy_rbac import RBAC_FILTER
from chaos.testing.fakekube.api import FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.testing.fakekube.sidecarrbac import FakeSidecars, decide, rbac_of
from tests.kubernetes.fakecluster import comparable, wait_rolled_out
from tests.kubernetes.test_platform_faults import ops_of, platform, running  # noqa: F401

NS = names.namespace_of(names.Setup.SIDECAR)


def _bootstrap(service: str) -> dict[str, object]:
    calls = [c for c in (names.CALLS[service],) if c is not None]
    return envoy.sidecar_bootstrap(service, calls, ProxyOptions(), issuer="https://idp")


def mount_bootstraps(api: KubeApi) -> None:
    """What ``cluster up`` adds to the sidecar setup: ``<service>-envoy``, mounted."""
    for service in names.SERVICES:
        api.create(core.envoy_config_map(service, NS, _bootstrap(service)))
        for replica in range(names.REPLICAS):
            deployment = names.deployment_name(service, replica)

            def mount(obj: dict[str, object], svc: str = service, r: int = replica) -> object:
                spec = obj["spec"]["template"]["spec"]  # type: ignore[index]
                spec["volumes"] = core.sidecar_volumes(
                    names.envoy_configmap_name(svc), names.certs_secret_name(svc, r)
                )
                return obj

            api.update(DEPLOYMENT, NS, deployment, mount)  # type: ignore[arg-type]
            wait_rolled_out(api, NS, deployment)


def _spec(rule: str, service: str) -> PolicyMismatchFault:
    return PolicyMismatchFault.model_validate(
        {"type": "policy-mismatch", "rule": rule, "target": {"service": service}}
    )


def _clients(api: KubeApi, service: str) -> list[tuple[str, str]]:
    return [(NS, p.name) for p in api.list_pods(NS, {names.LABEL_APP: service})]


@pytest.mark.parametrize(
    ("rule", "service", "caller"),
    [("deny-caller", "checkout", "frontend"), ("allow-other", "payments", "checkout")],
)
def test_the_sidecars_bootstrap_is_rolled_out_with_rbac_rules_and_rolled_back(
    platform: KubernetesPlatform,  # noqa: F811
    seeded: FakeCluster,
    api: KubeApi,
    pod_exec: FakePodExec,
    tmp_path: Path,
    rule: str,
    service: str,
    caller: str,
) -> None:
    mount_bootstraps(api)
    sidecars = FakeSidecars(pod_exec)
    before = comparable(seeded)
    original = api.get(CONFIGMAP, NS, names.envoy_configmap_name(service))
    run_dir = tmp_path / "run"
    with running(platform, "sidecar", run_dir) as topology:
        ops = ops_of(topology)
        pods = [p for p in ops.workload.pods if p.service == service]
        driver = PolicyMismatchFaultDriver(
            _spec(rule, service), ops, fault_id="f", name="pm", seed=1
        )
        (change,) = driver.plan().changes
        assert f"ConfigMap {names.envoy_configmap_name(service)}" in change.subject
        # the caller's identity as its certificate carries it
        assert f"spiffe://cluster.local/ns/{NS}/sa/{caller}" in change.action
        assert sorted(driver.blast_radius()) == sorted(p.name for p in pods)
        clients = _clients(api, caller)
        old_uids = {p.uid for p in api.list_pods(NS, {names.LABEL_APP: service})}
        for client in clients:
            assert sidecars.send(client, service, 5) == 0  # no RBAC filter: nothing denied
        driver.apply()
        # the ledger has the copy first, then each Deployment's volumes
        _, changes = read_ledger(run_dir)
        deployments = [names.deployment_name(service, r) for r in range(names.REPLICAS)]
        assert [(c.action, c.kind, c.name) for c in changes] == [
            ("create", "ConfigMap", mismatch_name(service)),
            *[("field", "Deployment", d) for d in deployments],
        ]
        # the team's ConfigMap is untouched; the pods were replaced by the rollout
        assert (
            api.get(CONFIGMAP, NS, names.envoy_configmap_name(service))["data"]
            == (  # type: ignore[index]
                original["data"]  # type: ignore[index]
            )
        )
        now = api.list_pods(NS, {names.LABEL_APP: service})
        assert now and not {p.uid for p in now} & old_uids
        for client in clients:
            assert sidecars.send(client, service, 10) == 10 * len(now)
        evidence = driver.verify()
        assert evidence.took_effect, evidence.detail
        assert f": {10 * len(clients) * len(now)}" in evidence.detail
        driver.revert()
        driver.revert()  # idempotent
        assert api.get(CONFIGMAP, NS, mismatch_name(service)) is None
        for d in deployments:
            volumes = api.get(DEPLOYMENT, NS, d)["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
            assert {"name": "envoy-bootstrap", "configMap": {"name": f"{service}-envoy"}} in volumes
        # the rolled-back pods have no RBAC filter: the caller is served again
        for client in clients:
            assert sidecars.send(client, service, 3) == 0
    assert comparable(seeded) == before


def test_a_configmap_edited_in_place_changes_nothing_until_the_pod_restarts(
    seeded: FakeCluster, api: KubeApi, pod_exec: FakePodExec
) -> None:
    # why the fault rolls out instead of editing in place: Envoy read its bootstrap at start
    mount_bootstraps(api)
    sidecars = FakeSidecars(pod_exec)
    (client, *_) = _clients(api, "frontend")
    assert sidecars.send(client, "checkout", 1) == 0
    caller = sidecars.principal(NS, seeded.get(seeded.resource("v1", "pods"), *client))
    edited = with_rbac(_bootstrap("checkout"), "deny-caller", caller)

    def edit(obj: dict[str, object]) -> object:
        obj["data"] = {envoy.BOOTSTRAP_FILE: json.dumps(edited)}
        return obj

    api.update(CONFIGMAP, NS, "checkout-envoy", edit)  # type: ignore[arg-type]
    assert sidecars.send(client, "checkout", 4) == 0


def test_the_rbac_filter_goes_after_jwt_authn_and_decides_as_envoy() -> None:
    caller = f"spiffe://cluster.local/ns/{NS}/sa/frontend"
    deny = with_rbac(_bootstrap("checkout"), "deny-caller", caller)
    (inbound,) = [x for x in deny["static_resources"]["listeners"] if x["name"] == "inbound"]
    filters = [
        f["name"] for f in inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    ]
    assert filters.index(RBAC_FILTER) == filters.index("envoy.filters.http.jwt_authn") + 1
    rules = rbac_of(deny)
    assert rules is not None
    assert not decide(rules, caller)
    assert decide(rules, caller.replace("frontend", "other"))
    other = rbac_of(with_rbac(_bootstrap("checkout"), "allow-other", caller))
    assert other is not None and not decide(other, caller)
    assert rbac_of(_bootstrap("checkout")) is None
    with pytest.raises(FaultError, match="one of deny-caller, allow-other"):
        with_rbac(_bootstrap("checkout"), "allow-any", caller)
    with pytest.raises(FaultError, match="already has an RBAC filter"):
        with_rbac(deny, "deny-caller", caller)


def test_a_dry_run_plans_the_copy_and_each_deployment_without_reading() -> None:
    writer = ClusterWriter(None, None, None, "run-1", dry_run=True)
    setup = names.Setup.SIDECAR
    ops = KubeFaultOps(setup, demo_workload(setup), writer)
    site = ops.authz_sites([p for p in ops.workload.pods if p.service == "payments"])[0]
    ops.set_authz_rule(site, "deny-caller")
    lines = [c.line() for c in writer.planned]
    assert lines[0].startswith(f"POST /api/v1/namespaces/{NS}/configmaps")
    assert all("spec.template.spec.volumes" in line for line in lines[1:])
    assert len(lines) == 1 + names.REPLICAS


def test_clean_after_a_dead_runner_rolls_the_pods_back_to_the_teams_config(
    seeded: FakeCluster, api: KubeApi, pod_exec: FakePodExec, kubeconfig: Path, tmp_path: Path
) -> None:
    mount_bootstraps(api)
    sidecars = FakeSidecars(pod_exec)
    before = comparable(seeded)
    run_dir = tmp_path / "run"
    ledger = ChangeLedger(run_dir, LedgerHeader("run-7", api.context, str(kubeconfig)))
    setup = names.Setup.SIDECAR
    ops = KubeFaultOps(setup, demo_workload(setup), ClusterWriter(api, pod_exec, ledger, "run-7"))
    (site,) = ops.authz_sites([p for p in ops.workload.pods if p.service == "checkout"])
    ops.set_authz_rule(site, "deny-caller")  # ... and the runner dies here
    clients = _clients(api, "frontend")
    assert sum(sidecars.send(c, "checkout", 2) for c in clients) > 0
    lines = KubernetesPlatform(kubeconfig=kubeconfig).clean(run_dir, [])
    # newest first: the Deployments back to the team's ConfigMap, then the copy deleted
    assert [line.split(": ")[-1] for line in lines] == [
        *["spec.template.spec.volumes restored"] * names.REPLICAS,
        "deleted",
    ]
    for deployment in (names.deployment_name("checkout", r) for r in range(names.REPLICAS)):
        wait_rolled_out(api, NS, deployment)
    assert sum(sidecars.send(c, "checkout", 2) for c in clients) == 0
    assert comparable(seeded) == before
