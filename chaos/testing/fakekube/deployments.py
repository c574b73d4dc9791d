"""The fake's Deployment and ReplicaSet controllers, and its kubelet's readiness delay.

What kube-controller-manager does (``pkg/controller/deployment``, ``pkg/controller/replicaset``
at Kubernetes 1.34; https://kubernetes.io/docs/concepts/workloads/controllers/deployment/):

* a Deployment owns ReplicaSets, one per pod template: ``<deployment>-<pod-template-hash>``,
  the hash (FNV-32a of the template, encoded in the safe alphabet, as ``ComputeHash``) added to
  the ReplicaSet's labels, selector and template; each ReplicaSet owns its pods (generated names
  ``<replicaset>-<5 chars>``), ``ownerReferences`` with ``controller: true`` at each step;
* ``RollingUpdate`` (the default) with ``maxSurge`` / ``maxUnavailable`` (ints or percentages,
  25 % each by default; surge rounded up, unavailable down; both 0 means unavailable 1:
  ``ResolveFenceposts``): the new ReplicaSet grows while all pods stay within
  ``replicas + maxSurge``; old ReplicaSets shrink (unhealthy pods first) while the available
  pods stay at least ``replicas - maxUnavailable``. So a rollout waits on the new pods'
  readiness. ``Recreate``: old pods first, then the new ReplicaSet;
* a template seen before (a rollback) reuses its ReplicaSet; each ReplicaSet and the Deployment
  carry ``deployment.kubernetes.io/revision``; old ReplicaSets stay, scaled to 0 (history);
* Deployment status as the controller reports it: ``observedGeneration``, ``replicas`` (all
  pods), ``updatedReplicas`` (the new ReplicaSet's), ``readyReplicas``, ``availableReplicas``
  (minReadySeconds 0), ``unavailableReplicas``; zero counts omitted (``omitempty``); conditions
  ``Available`` (``MinimumReplicasAvailable`` / ``MinimumReplicasUnavailable``) and
  ``Progressing`` (``NewReplicaSetAvailable`` once complete, else ``ReplicaSetUpdated``);
* the kubelet: a pod a controller creates reports Ready ``pod_start_s`` after its creation
  (applied at the next request to the fake: :meth:`WorkloadBase.tick`).

Deviations (named): conditions carry no timestamps; ``progressDeadlineSeconds`` never times out;
a pod's deletion is immediate (no graceful termination); pods a test writes directly are as
written (ready by default, no delay).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from chaos.testing.fakekube.podnames import (
    HASH_LABEL,
    REVISION,
    fenceposts,
    generated_suffix,
    is_ready,
    pod_template_hash,
    set_ready,
    template_hash,
)
from chaos.testing.fakekube.rules import ApiError, Obj

Key = tuple[str, str, str, str]


def _owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"].get("uid")
    return any(
        r.get("uid") == uid and r.get("controller")
        for r in obj["metadata"].get("ownerReferences") or []
    )


def _owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _revision(obj: Obj) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))


def _replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def _counts(status: Obj, *fields: str) -> Obj:
    """Status counts with zeros left out, as the API's ``omitempty`` does."""
    return {k: v for k, v in status.items() if v or k not in fields}


class WorkloadBase:
    """Mixed into :class:`~.store.FakeCluster`: reads, pod creation, the workload controllers."""

    _lock: threading.RLock
    _objects: dict[Key, Obj]
    resources: dict[tuple[str, str], Any]
    #: How long after its creation a controller's pod reports Ready (the kubelet; 0: at once).
    pod_start_s: float = 0.0
    _starting: dict[tuple[str, str], float]
    _pending_sync: set[str]
    _workloads_busy = False

    def _bump(self, resource: Any, namespace: str, type_: str, obj: Obj) -> None:
        raise NotImplementedError

    def create(self, resource: Any, namespace: str, body: Obj) -> Obj:
        raise NotImplementedError

    def _writes(self) -> int:
        """How many writes so far (the resourceVersion)."""
        raise NotImplementedError

    def _pod_turned_ready(self, namespace: str, pod: Obj) -> bool:
        """Whether a started pod may turn Ready now (a ztunnel also needs istiod)."""
        return True

    def _pods_changed(self, namespace: str) -> None:
        raise NotImplementedError

    # -- reads -----------------------------------------------------------------------------

    def _lookup(self, prefix: str, plural: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get((prefix, plural, namespace, name))

    def _listing(self, prefix: str, plural: str, namespace: str) -> list[Obj]:
        return [o for k, o in sorted(self._objects.items()) if k[:3] == (prefix, plural, namespace)]

    def _owned_pods(self, namespace: str, kind: str, name: str) -> list[Obj]:
        return [
            obj
            for obj in self._listing("v1", "pods", namespace)
            if any(
                o.get("kind") == kind and o.get("name") == name
                for o in obj["metadata"].get("ownerReferences") or []
            )
        ]

    def _store(self, prefix: str, plural: str, namespace: str, obj: Obj) -> None:
        """A controller's write of an object it changed in place (one MODIFIED event)."""
        self._bump(self.resources[(prefix, plural)], namespace, "MODIFIED", obj)

    # -- pods ------------------------------------------------------------------------------

    def _delete_pod(self, namespace: str, name: str) -> None:
        gone = self._objects.pop(("v1", "pods", namespace, name))
        self._starting.pop((namespace, name), None)
        self._bump(self.resources[("v1", "pods")], namespace, "DELETED", gone)

    def _pod_from_template(
        self, namespace: str, kind: str, owner: Obj, node_name: str | None = None
    ) -> Obj | None:
        """A new pod of ``owner``; None when admission refused it (the controller retries)."""
        template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        if node_name is None:
            selector = spec.get("nodeSelector") or {}
            node_name = selector.get("kubernetes.io/hostname", "fake-node")
        spec["nodeName"] = node_name
        annotations = dict(meta.get("annotations") or {})
        annotations.setdefault("fake.sidecar-chaos.dev/template-hash", template_hash(owner))
        pod = {
            "metadata": {
                "name": f"{owner['metadata']['name']}-{generated_suffix()}",
                "labels": meta.get("labels") or {},
                "annotations": annotations,
                "ownerReferences": [{**_owner_ref(owner), "kind": kind}],
            },
            "spec": spec,
        }
        try:
            made = self.create(self.resources[("v1", "pods")], namespace, pod)
        except ApiError as exc:
            if exc.code == 500:  # a webhook failing closed: no pod for now
                return None
            raise
        if self.pod_start_s > 0 and kind != "Job":
            stored = self._objects[("v1", "pods", namespace, made["metadata"]["name"])]
            if is_ready(stored):
                set_ready(stored, False)
                self._store("v1", "pods", namespace, stored)
            self._starting[(namespace, made["metadata"]["name"])] = (
                time.monotonic() + self.pod_start_s
            )
        return made

    def tick(self) -> None:
        """The kubelet: started pods whose time has come report Ready; their owners go on."""
        with self._lock:
            now = time.monotonic()
            due = [key for key, at in self._starting.items() if at <= now]
            touched: set[str] = set()
            for namespace, name in due:
                pod = self._objects.get(("v1", "pods", namespace, name))
                if pod is None:
                    self._starting.pop((namespace, name), None)
                    continue
                if not self._pod_turned_ready(namespace, pod):
                    continue
                self._starting.pop((namespace, name), None)
                set_ready(pod, True)
                self._store("v1", "pods", namespace, pod)
                touched.add(namespace)
            for namespace in sorted(touched):
                self._pods_changed(namespace)

    def report_ready(self, namespace: str, name: str) -> None:
        """The kubelet reports a started pod Ready now (a test steps a rollout with it)."""
        with self._lock:
            if (namespace, name) in self._starting:
                self._starting[(namespace, name)] = 0.0
        self.tick()

    def starting(self, namespace: str, name: str) -> bool:
        """Whether a pod's kubelet has not reported it Ready yet (its start delay)."""
        return (namespace, name) in self._starting

    # -- ReplicaSets -----------------------------------------------------------------------

    def _owned_replicasets(self, namespace: str, deployment: Obj) -> list[Obj]:
        found = [
            rs
            for rs in self._listing("apps/v1", "replicasets", namespace)
            if _owned_by(rs, deployment)
        ]
        return sorted(found, key=lambda rs: (_revision(rs), rs["metadata"]["name"]))

    def _sync_replicaset(self, namespace: str, rs: Obj) -> None:
        """Keep ``spec.replicas`` pods (not-ready and newest go first), report the counts."""
        wanted = _replicas(rs)
        pods = [p for p in self._listing("v1", "pods", namespace) if _owned_by(p, rs)]
        if len(pods) > wanted:
            ranked = sorted(
                pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")), reverse=True
            )
            ranked.sort(key=is_ready)  # not ready first, then the newest (getPodsToDelete)
            for pod in ranked[: len(pods) - wanted]:
                self._delete_pod(namespace, pod["metadata"]["name"])
        while len([p for p in self._listing("v1", "pods", namespace) if _owned_by(p, rs)]) < wanted:
            if self._pod_from_template(namespace, "ReplicaSet", rs) is None:
                break  # refused by a webhook: retried when istiod is ready
        pods = [p for p in self._listing("v1", "pods", namespace) if _owned_by(p, rs)]
        ready = sum(1 for p in pods if is_ready(p))
        status = _counts(
            {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            },
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
        )
        if rs.get("status") != status:
            rs["status"] = status
            self._store("apps/v1", "replicasets", namespace, rs)

    def _scale_replicaset(self, namespace: str, rs: Obj, replicas: int) -> None:
        if _replicas(rs) != replicas:
            rs["spec"]["replicas"] = replicas
            rs["metadata"]["generation"] = int(rs["metadata"].get("generation", 1)) + 1
            self._store("apps/v1", "replicasets", namespace, rs)
        self._sync_replicaset(namespace, rs)

    def _new_replicaset(self, namespace: str, deployment: Obj, olds: list[Obj]) -> Obj:
        """The ReplicaSet of the Deployment's current template: found again, or created."""
        template = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
        hashed = pod_template_hash(template)
        revision = max((_revision(rs) for rs in olds), default=0) + 1
        for rs in olds:
            if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == hashed:
                if _revision(rs) < revision - 1 or _revision(rs) == 0:
                    rs["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
                    self._store("apps/v1", "replicasets", namespace, rs)
                return rs
        labels = {**((template.get("metadata") or {}).get("labels") or {}), HASH_LABEL: hashed}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy((deployment.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hashed
        name = deployment["metadata"]["name"]
        body = {
            "metadata": {
                "name": f"{name}-{hashed}",
                "labels": labels,
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [_owner_ref(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        self.create(self.resources[("apps/v1", "replicasets")], namespace, body)
        return self._objects[("apps/v1", "replicasets", namespace, f"{name}-{hashed}")]

    # -- Deployments -----------------------------------------------------------------------

    def _sync_deployments(self, namespace: str) -> None:
        """Every Deployment of ``namespace`` until nothing moves (the controller's resyncs).

        Not re-entered: a sync asked for meanwhile (a created pod brought istiod back) is
        queued and done after the current one.
        """
        self._pending_sync.add(namespace)
        if self._workloads_busy:
            return
        self._workloads_busy = True
        try:
            while self._pending_sync:
                ns = min(self._pending_sync)
                self._pending_sync.discard(ns)
                for _ in range(20):
                    before = self._writes()
                    for deployment in self._listing("apps/v1", "deployments", ns):
                        self._sync_deployment(ns, deployment)
                    if self._writes() == before:
                        break
        finally:
            self._workloads_busy = False

    def _sync_deployment(self, namespace: str, deployment: Obj) -> None:
        replicasets = self._owned_replicasets(namespace, deployment)
        new = self._new_replicaset(namespace, deployment, replicasets)
        olds = [rs for rs in replicasets if rs is not new]
        replicas = _replicas(deployment)
        strategy = ((deployment.get("spec") or {}).get("strategy") or {}).get("type")
        if strategy == "Recreate":
            for rs in olds:
                self._scale_replicaset(namespace, rs, 0)
            if not any((rs.get("status") or {}).get("replicas") for rs in olds):
                self._scale_replicaset(namespace, new, replicas)
        else:
            self._roll_out(namespace, deployment, new, olds)
        self._deployment_status(namespace, deployment, new, olds)

    def _roll_out(self, namespace: str, deployment: Obj, new: Obj, olds: list[Obj]) -> None:
        replicas = _replicas(deployment)
        surge, unavailable = fenceposts(deployment)
        all_rs = [new, *olds]
        # Scale up the new ReplicaSet within replicas + maxSurge (NewRSNewReplicas).
        total = sum(_replicas(rs) for rs in all_rs)
        if _replicas(new) > replicas:
            self._scale_replicaset(namespace, new, replicas)
        elif _replicas(new) < replicas:
            grown = min(replicas, _replicas(new) + max(0, replicas + surge - total))
            self._scale_replicaset(namespace, new, grown)
        else:
            self._sync_replicaset(namespace, new)
        # Scale down old ReplicaSets while replicas - maxUnavailable stay available.
        min_available = replicas - unavailable
        new_status = new.get("status") or {}
        new_unavailable = _replicas(new) - int(new_status.get("availableReplicas", 0))
        budget = sum(_replicas(rs) for rs in all_rs) - min_available - new_unavailable
        for rs in olds:  # unhealthy pods first (cleanupUnhealthyReplicas)
            if budget <= 0:
                break
            status = rs.get("status") or {}
            unhealthy = _replicas(rs) - int(status.get("availableReplicas", 0))
            cut = min(unhealthy, budget)
            if cut > 0:
                self._scale_replicaset(namespace, rs, _replicas(rs) - cut)
                budget -= cut
        available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in all_rs)
        budget = available - min_available
        for rs in olds:
            if budget <= 0:
                break
            cut = min(_replicas(rs), budget)
            if cut > 0:
                self._scale_replicaset(namespace, rs, _replicas(rs) - cut)
                budget -= cut
        for rs in olds:
            self._sync_replicaset(namespace, rs)

    def _deployment_status(
        self, namespace: str, deployment: Obj, new: Obj, olds: list[Obj]
    ) -> None:
        replicas = _replicas(deployment)
        _, unavailable = fenceposts(deployment)

        def count(rs: Obj, field: str) -> int:
            return int((rs.get("status") or {}).get(field, 0))

        total = sum(count(rs, "replicas") for rs in [new, *olds])
        ready = sum(count(rs, "readyReplicas") for rs in [new, *olds])
        available = sum(count(rs, "availableReplicas") for rs in [new, *olds])
        updated = count(new, "replicas")
        complete = updated == replicas and total == replicas and available == replicas
        rs_name = new["metadata"]["name"]
        minimum = available >= replicas - unavailable
        conditions = [
            {
                "type": "Available",
                "status": "True" if minimum else "False",
                "reason": "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if minimum
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{rs_name}" has successfully progressed.'
                if complete
                else f'ReplicaSet "{rs_name}" is progressing.',
            },
        ]
        status = _counts(
            {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
                "unavailableReplicas": max(0, replicas - available),
                "conditions": conditions,
            },
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
        annotations = deployment["metadata"].setdefault("annotations", {})
        revision = str(_revision(new))
        if deployment.get("status") != status or annotations.get(REVISION) != revision:
            deployment["status"] = status
            annotations[REVISION] = revision
            self._store("apps/v1", "deployments", namespace, deployment)

    def _delete_dependents(self, namespace: str, owner: Obj) -> None:
        """Background propagation: what ``owner`` controls goes, and what that controls."""
        for prefix, plural in (("apps/v1", "replicasets"), ("v1", "pods")):
            for obj in self._listing(prefix, plural, namespace):
                if not _owned_by(obj, owner):
                    continue
                gone = self._objects.pop((prefix, plural, namespace, obj["metadata"]["name"]))
                self._starting.pop((namespace, obj["metadata"]["name"]), None)
                self._bump(self.resources[(prefix, plural)], namespace, "DELETED", gone)
                self._delete_dependents(namespace, gone)


__all__ = ["WorkloadBase"]
