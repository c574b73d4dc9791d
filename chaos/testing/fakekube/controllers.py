"""The fake's controllers: Deployments, DaemonSets and Jobs keep their pods.

Enough of kube-controller-manager for the faults to be seen as on a real cluster:

* a Deployment keeps ``spec.replicas`` pods (they name the Deployment as owner directly:
  no ReplicaSets); a changed pod template rolls **surge first** (RollingUpdate with one
  replica: maxSurge 1, maxUnavailable 0): the new pod is created, the old one deleted only
  once the new one exists; a new pod an admission webhook refuses (:mod:`.admission`)
  leaves the old one running, and the controller retries when istiod is ready again;
* a DaemonSet rolls node by node with maxSurge 1 / maxUnavailable 0 (Istio's ztunnel): the
  old pod goes only when the new one on its node is Ready; its status has the DaemonSet
  controller's counts (``desiredNumberScheduled``, ``updatedNumberScheduled``,
  ``numberAvailable``, ...) so a client can wait for a rollout;
* a ztunnel pod (``app=ztunnel`` in ``istio-system``) is Ready only while istiod has a
  ready pod (its readiness needs the first xDS answer); it turns Ready when istiod does;
* a deleted pod of a Deployment or DaemonSet comes back under a new name; a Job starts one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import threading
from typing import Any

from chaos.testing.fakekube import admission
from chaos.testing.fakekube.rules import ApiError, Obj

#: On each pod: a hash of the template it was made from (what ``pod-template-hash`` is).
GENERATION = "fake.sidecar-chaos.dev/template-hash"
Key = tuple[str, str, str, str]


def template_hash(owner: Obj) -> str:
    template = (owner.get("spec") or {}).get("template") or {}
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _set_ready(pod: Obj, ready: bool) -> None:
    status = pod.setdefault("status", {})
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    for field in ("containerStatuses", "initContainerStatuses"):
        for entry in status.get(field) or []:
            entry["ready"] = ready


class Controllers:
    """Mixed into :class:`~.store.FakeCluster` (which has the objects and the writes)."""

    _lock: threading.RLock
    _objects: dict[Key, Obj]
    resources: dict[tuple[str, str], Any]
    _settling = False
    _istiod_was_ready = False

    def _bump(self, resource: Any, namespace: str, type_: str, obj: Obj) -> None:
        raise NotImplementedError

    def create(self, resource: Any, namespace: str, body: Obj) -> Obj:
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

    def _admit(self, prefix: str, kind: str, namespace: str, obj: Obj) -> None:
        admission.admit(prefix, kind, namespace, obj, self._lookup, self._listing)

    def _adopt(self, namespace: str, pod: Obj) -> None:
        """A pod created for a Deployment or DaemonSet (not by the fake) is of its template."""
        annotations = pod["metadata"].setdefault("annotations", {})
        for ref in pod["metadata"].get("ownerReferences") or []:
            plural = {"Deployment": "deployments", "DaemonSet": "daemonsets"}.get(ref.get("kind"))
            owner = (
                self._lookup("apps/v1", plural, namespace, str(ref.get("name"))) if plural else None
            )
            if owner is not None:
                annotations.setdefault(GENERATION, template_hash(owner))

    def _initial_readiness(self, namespace: str, pod: Obj) -> None:
        self._adopt(namespace, pod)
        labels = pod["metadata"].get("labels") or {}
        ztunnel = namespace == admission.ISTIO_NAMESPACE and labels.get("app") == "ztunnel"
        if ztunnel and admission.istio_installed(self._lookup):
            _set_ready(pod, admission.istiod_ready(self._listing))

    # -- writes ----------------------------------------------------------------------------

    def _delete_pod(self, namespace: str, name: str) -> None:
        gone = self._objects.pop(("v1", "pods", namespace, name))
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
        owner_name = owner["metadata"]["name"]
        annotations = dict(meta.get("annotations") or {})
        annotations[GENERATION] = template_hash(owner)
        pod = {
            "metadata": {
                "name": f"{owner_name}-{secrets.token_hex(3)[:5]}",
                "labels": meta.get("labels") or {},
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": kind,
                        "name": owner_name,
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }
        try:
            return self.create(self.resources[("v1", "pods")], namespace, pod)
        except ApiError as exc:
            if exc.code == 500:  # a webhook failing closed: no pod for now
                return None
            raise

    def _after_write(self, resource: Any, namespace: str, obj: Obj) -> None:
        if resource.kind == "Deployment":
            self._reconcile_deployment(namespace, obj)
        if resource.kind == "DaemonSet":
            self._daemonset_status(namespace, obj)
        if resource.kind == "Pod":
            for ref in obj["metadata"].get("ownerReferences") or []:
                owner = self._lookup("apps/v1", "daemonsets", namespace, str(ref.get("name")))
                if ref.get("kind") == "DaemonSet" and owner is not None:
                    self._daemonset_status(namespace, owner)

    def _settle(self) -> None:
        """After every write: when istiod has just become ready, what waited for it goes on."""
        if self._settling or not admission.istio_installed(self._lookup):
            return
        ready = admission.istiod_ready(self._listing)
        back = ready and not self._istiod_was_ready
        self._istiod_was_ready = ready
        if back:
            self._settling = True
            try:
                self._control_plane_back()
            finally:
                self._settling = False

    def _control_plane_back(self) -> None:
        """istiod is ready: refused pods are created, ztunnels turn Ready, rollouts go on."""
        for prefix, plural, ns, name in sorted(self._objects):
            if (prefix, plural) == ("apps/v1", "deployments"):
                current = self._objects.get((prefix, plural, ns, name))
                if current is not None:
                    self._roll("Deployment", ns, current)
                    self._reconcile_deployment(ns, current)
        for pod in self._listing("v1", "pods", admission.ISTIO_NAMESPACE):
            if (pod["metadata"].get("labels") or {}).get("app") == "ztunnel" and not _ready(pod):
                _set_ready(pod, True)
                self._bump(
                    self.resources[("v1", "pods")], admission.ISTIO_NAMESPACE, "MODIFIED", pod
                )
        for ds in self._listing("apps/v1", "daemonsets", admission.ISTIO_NAMESPACE):
            self._roll("DaemonSet", admission.ISTIO_NAMESPACE, ds)

    def _reconcile_deployment(self, namespace: str, deployment: Obj) -> None:
        name = deployment["metadata"]["name"]
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        pods = self._owned_pods(namespace, "Deployment", name)
        for extra in pods[wanted:]:
            self._delete_pod(namespace, extra["metadata"]["name"])
        # Counted again each time: a created pod may bring istiod back, which reconciles too.
        while len(self._owned_pods(namespace, "Deployment", name)) < wanted:
            if self._pod_from_template(namespace, "Deployment", deployment) is None:
                break  # refused by a webhook: retried when istiod is ready
        pods = self._owned_pods(namespace, "Deployment", name)
        generation = template_hash(deployment)
        ready = sum(1 for p in pods if _ready(p))
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": sum(
                1
                for p in pods
                if (p["metadata"].get("annotations") or {}).get(GENERATION) == generation
            ),
        }
        key = ("apps/v1", "deployments", namespace, name)
        if self._objects[key].get("status") != status:
            self._objects[key]["status"] = status
            self._bump(
                self.resources[("apps/v1", "deployments")],
                namespace,
                "MODIFIED",
                self._objects[key],
            )

    def _roll(self, kind: str, namespace: str, owner: Obj) -> None:
        """Pods of an older template are replaced, surge first (see the module docstring)."""
        generation = template_hash(owner)
        name = owner["metadata"]["name"]

        def current(pod: Obj) -> bool:
            return (pod["metadata"].get("annotations") or {}).get(GENERATION) in (None, generation)

        pods = self._owned_pods(namespace, kind, name)
        old = [p for p in pods if not current(p)]
        if not old:
            return
        if kind == "Deployment":
            fresh = len(pods) - len(old)
            wanted = int((owner.get("spec") or {}).get("replicas", 1))
            for _ in range(max(0, wanted - fresh)):
                if self._pod_from_template(namespace, kind, owner) is None:
                    return  # refused: the old pods stay
            for pod in old:
                self._delete_pod(namespace, pod["metadata"]["name"])
            return
        for pod in old:
            node = str((pod.get("spec") or {}).get("nodeName"))
            new = [
                p
                for p in self._owned_pods(namespace, kind, name)
                if current(p) and str((p.get("spec") or {}).get("nodeName")) == node
            ]
            if not new:
                made = self._pod_from_template(namespace, kind, owner, node_name=node)
                new = [made] if made is not None else []
            if any(_ready(p) for p in new):  # maxUnavailable 0: the old goes once the new is Ready
                self._delete_pod(namespace, pod["metadata"]["name"])
        self._daemonset_status(namespace, owner)

    def _daemonset_status(self, namespace: str, ds: Obj) -> None:
        name = ds["metadata"]["name"]
        generation = template_hash(ds)
        pods = self._owned_pods(namespace, "DaemonSet", name)
        nodes = {str((p.get("spec") or {}).get("nodeName")) for p in pods}
        updated = {
            str((p.get("spec") or {}).get("nodeName"))
            for p in pods
            if (p["metadata"].get("annotations") or {}).get(GENERATION) in (None, generation)
        }
        available = {str((p.get("spec") or {}).get("nodeName")) for p in pods if _ready(p)}
        status = {
            "observedGeneration": ds["metadata"].get("generation", 1),
            "desiredNumberScheduled": len(nodes),
            "currentNumberScheduled": len(nodes),
            "updatedNumberScheduled": len(updated),
            "numberReady": len(available),
            "numberAvailable": len(available),
            "numberUnavailable": len(nodes - available),
            "numberMisscheduled": 0,
        }
        key = ("apps/v1", "daemonsets", namespace, name)
        if key in self._objects and self._objects[key].get("status") != status:
            self._objects[key]["status"] = status
            self._bump(
                self.resources[("apps/v1", "daemonsets")], namespace, "MODIFIED", self._objects[key]
            )

    def _replace_owned_pod(self, namespace: str, pod: Obj) -> None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            kind, name = ref.get("kind"), ref.get("name")
            plural = {"Deployment": "deployments", "DaemonSet": "daemonsets"}.get(kind)
            if plural is None:
                continue
            owner = self._objects.get(("apps/v1", plural, namespace, name))
            if owner is None:
                continue
            if kind == "Deployment":
                self._reconcile_deployment(namespace, owner)
            else:
                node = pod["spec"].get("nodeName")
                if not any(
                    p["spec"].get("nodeName") == node
                    for p in self._owned_pods(namespace, kind, name)
                ):
                    self._pod_from_template(namespace, "DaemonSet", owner, node_name=node)
                self._daemonset_status(namespace, owner)


__all__ = ["GENERATION", "Controllers"]
