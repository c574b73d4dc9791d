"""The fake cluster rolls a Deployment through ReplicaSets as kube-controller-manager does.

Each row is one documented behaviour, with where it is written down:

* the ReplicaSet per template, ``pod-template-hash``, owner chain, generated names:
  https://kubernetes.io/docs/concepts/workloads/controllers/deployment/ ("Creating a
  Deployment", "Pod-template-hash label") and ``pkg/controller/deployment/sync.go``
  (``getNewReplicaSet``);
* maxSurge / maxUnavailable, defaults 25 % (surge rounded up, unavailable down, both 0 means
  unavailable 1): the same page, "Max Surge" / "Max Unavailable", and
  ``pkg/controller/deployment/util/deployment_util.go`` (``ResolveFenceposts``,
  ``NewRSNewReplicas``); old ReplicaSets scaled down only while ``replicas - maxUnavailable``
  stay available: ``pkg/controller/deployment/rolling.go`` (``reconcileOldReplicaSets``);
* status and conditions: the page's "Deployment status" (``Progressing`` reason
  ``NewReplicaSetAvailable``, ``Available`` reason ``MinimumReplicasAvailable``);
* a rollback reuses the old ReplicaSet with the next revision: "Rolling Back a Deployment".
"""

from __future__ import annotations

from typing import Any

import pytest

from chaos.platforms.kubernetes.rollout import waiting_for
from chaos.testing.fakekube.podnames import HASH_LABEL, REVISION, SAFE
from chaos.testing.fakekube.store import FakeCluster

NS = "default"


def _deployment(replicas: int, strategy: dict[str, Any] | None, image: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]},
        },
    }
    if strategy is not None:
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": strategy}
    return {"metadata": {"name": "web"}, "spec": spec}


def _cluster() -> FakeCluster:
    return FakeCluster(pod_start_s=3600.0)  # pods report Ready only when a test says so


def _pods(cluster: FakeCluster) -> list[dict[str, Any]]:
    return cluster.select(cluster.resources[("v1", "pods")], NS)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def _start_all(cluster: FakeCluster) -> None:
    """The kubelet reports every started pod Ready, until the rollout stops making new ones."""
    for _ in range(50):
        starting = [p for p in _pods(cluster) if cluster.starting(NS, p["metadata"]["name"])]
        if not starting:
            return
        for pod in starting:
            cluster.report_ready(NS, pod["metadata"]["name"])


def _deploy(cluster: FakeCluster, replicas: int, strategy: dict[str, Any] | None) -> None:
    deployments = cluster.resources[("apps/v1", "deployments")]
    cluster.create(deployments, NS, _deployment(replicas, strategy, "web:1"))
    _start_all(cluster)


def _update(cluster: FakeCluster, image: str) -> dict[str, Any]:
    deployments = cluster.resources[("apps/v1", "deployments")]
    current = cluster.get(deployments, NS, "web")
    current["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return cluster.replace(deployments, NS, "web", current, status_only=False)


def _by_image(cluster: FakeCluster) -> dict[str, int]:
    found: dict[str, int] = {}
    for pod in _pods(cluster):
        image = pod["spec"]["containers"][0]["image"]
        found[image] = found.get(image, 0) + 1
    return found


# replicas, rollingUpdate, (new pods, old pods) right after the template change, before any
# new pod is Ready (why: the fenceposts, with the docs' rounding).
ROLLING = [
    (1, None, (1, 1)),  # 25 %: surge ceil(0.25)=1, unavailable floor(0.25)=0
    (4, None, (2, 3)),  # surge 1, unavailable 1: 5 pods at most, 3 available at least
    (2, {"maxSurge": 0, "maxUnavailable": 1}, (1, 1)),  # old first, then the new
    (3, {"maxSurge": "50%", "maxUnavailable": 0}, (2, 3)),  # ceil(1.5)=2 more pods
    (2, {"maxSurge": 0, "maxUnavailable": 0}, (1, 1)),  # both 0: unavailable becomes 1
]


@pytest.mark.parametrize(("replicas", "strategy", "first_step"), ROLLING)
def test_a_rollout_surges_and_waits_on_readiness(
    replicas: int, strategy: dict[str, Any] | None, first_step: tuple[int, int]
) -> None:
    cluster = _cluster()
    _deploy(cluster, replicas, strategy)
    updated = _update(cluster, "web:2")
    assert _by_image(cluster) == {"web:2": first_step[0], "web:1": first_step[1]}
    assert waiting_for(cluster.get(cluster.resources[("apps/v1", "deployments")], NS, "web"))
    assert updated["metadata"]["generation"] == 2
    _start_all(cluster)
    assert _by_image(cluster) == {"web:2": replicas}
    deployment = cluster.get(cluster.resources[("apps/v1", "deployments")], NS, "web")
    assert waiting_for(deployment) is None
    status = deployment["status"]
    assert status["observedGeneration"] == 2
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (
        replicas,
        replicas,
        replicas,
    )
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


def test_pods_belong_to_a_replicaset_the_deployment_owns() -> None:
    cluster = _cluster()
    _deploy(cluster, 2, None)
    deployment = cluster.get(cluster.resources[("apps/v1", "deployments")], NS, "web")
    (rs,) = cluster.select(cluster.resources[("apps/v1", "replicasets")], NS)
    hashed = rs["metadata"]["labels"][HASH_LABEL]
    assert set(hashed) <= set(SAFE)
    assert rs["metadata"]["name"] == f"web-{hashed}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: hashed}
    (owner,) = rs["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "Deployment",
        deployment["metadata"]["uid"],
        True,
    )
    for pod in _pods(cluster):
        assert pod["metadata"]["name"].startswith(f"web-{hashed}-")
        assert len(pod["metadata"]["name"]) == len(f"web-{hashed}-") + 5
        assert pod["metadata"]["labels"] == {"app": "web", HASH_LABEL: hashed}
        (ref,) = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == (
            "ReplicaSet",
            rs["metadata"]["name"],
            rs["metadata"]["uid"],
        )


def test_a_rollback_reuses_the_old_replicaset_with_the_next_revision() -> None:
    cluster = _cluster()
    _deploy(cluster, 1, None)
    replicasets = cluster.resources[("apps/v1", "replicasets")]
    (first,) = cluster.select(replicasets, NS)
    _update(cluster, "web:2")
    _start_all(cluster)
    _update(cluster, "web:1")
    _start_all(cluster)
    found = {rs["metadata"]["name"]: rs for rs in cluster.select(replicasets, NS)}
    assert len(found) == 2  # the rolled-out one stays, scaled to 0 (history)
    back = found[first["metadata"]["name"]]
    assert back["spec"]["replicas"] == 1
    assert back["metadata"]["annotations"][REVISION] == "3"
    (other,) = [rs for name, rs in found.items() if name != first["metadata"]["name"]]
    assert other["spec"]["replicas"] == 0
    deployment = cluster.get(cluster.resources[("apps/v1", "deployments")], NS, "web")
    assert deployment["metadata"]["annotations"][REVISION] == "3"


def test_a_new_pod_that_never_gets_ready_holds_the_old_one() -> None:
    cluster = _cluster()
    _deploy(cluster, 1, None)
    _update(cluster, "web:2")
    for _ in range(3):
        cluster.tick()  # time passes; the new pod's kubelet reports nothing
    assert _by_image(cluster) == {"web:2": 1, "web:1": 1}
    old = [p for p in _pods(cluster) if p["spec"]["containers"][0]["image"] == "web:1"]
    assert all(_ready(p) for p in old)
    deployment = cluster.get(cluster.resources[("apps/v1", "deployments")], NS, "web")
    assert waiting_for(deployment) == "1 old replicas pending termination"


def test_deleting_the_deployment_deletes_its_replicasets_and_pods() -> None:
    cluster = _cluster()
    _deploy(cluster, 2, None)
    cluster.delete(cluster.resources[("apps/v1", "deployments")], NS, "web")
    assert cluster.select(cluster.resources[("apps/v1", "replicasets")], NS) == []
    assert _pods(cluster) == []
