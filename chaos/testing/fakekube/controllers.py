"""The fake's controllers: DaemonSets and Jobs keep their pods; Istio's readiness rules.

Deployments roll through ReplicaSets (:mod:`.deployments`). Here:

* a DaemonSet rolls node by node with maxSurge 1 / maxUnavailable 0 (Istio's ztunnel): the
  old pod goes only when the new one on its node is Ready; its status has the DaemonSet
  controller's counts (``desiredNumberScheduled``, ``updatedNumberScheduled``,
  ``numberAvailable``, ...) so a client can wait for a rollout;
* a ztunnel pod (``app=ztunnel`` in ``istio-system``) is Ready only while istiod has a
  ready pod (its readiness needs the first xDS answer); it turns Ready when istiod does;
* a new pod an admission webhook refuses (:mod:`.admission`) leaves the old one running,
  and its controller retries when istiod is ready again;
* a deleted pod of a ReplicaSet or DaemonSet comes back under a new name; a Job starts one.
"""

from __future__ import annotations

from typing import Any

from chaos.testing.fakekube import admission
from chaos.testing.fakekube.deployments import WorkloadBase
from chaos.testing.fakekube.podnames import is_ready, set_ready, template_hash
from chaos.testing.fakekube.rules import Obj

#: On each pod: a hash of the template it was made from (DaemonSet rollouts compare it).
GENERATION = "fake.sidecar-chaos.dev/template-hash"


class Controllers(WorkloadBase):
    """Mixed into :class:`~.store.FakeCluster` (which has the objects and the writes)."""

    _settling = False
    _istiod_was_ready = False

    def _admit(self, prefix: str, kind: str, namespace: str, obj: Obj) -> None:
        admission.admit(prefix, kind, namespace, obj, self._lookup, self._listing)

    def _adopt(self, namespace: str, pod: Obj) -> None:
        """A pod created for a Deployment or DaemonSet (not by the fake) is of its template."""
        annotations = pod["metadata"].setdefault("annotations", {})
        for ref in pod["metadata"].get("ownerReferences") or []:
            owner = (
                self._lookup("apps/v1", "daemonsets", namespace, str(ref.get("name")))
                if ref.get("kind") == "DaemonSet"
                else None
            )
            if owner is not None:
                annotations.setdefault(GENERATION, template_hash(owner))

    def _initial_readiness(self, namespace: str, pod: Obj) -> None:
        self._adopt(namespace, pod)
        labels = pod["metadata"].get("labels") or {}
        ztunnel = namespace == admission.ISTIO_NAMESPACE and labels.get("app") == "ztunnel"
        if ztunnel and admission.istio_installed(self._lookup):
            set_ready(pod, admission.istiod_ready(self._listing))

    # -- writes ----------------------------------------------------------------------------

    def _pod_turned_ready(self, namespace: str, pod: Obj) -> bool:
        labels = pod["metadata"].get("labels") or {}
        ztunnel = namespace == admission.ISTIO_NAMESPACE and labels.get("app") == "ztunnel"
        return not ztunnel or admission.istiod_ready(self._listing)

    def _pods_changed(self, namespace: str) -> None:
        """A pod turned Ready: its ReplicaSet, Deployment or DaemonSet goes on."""
        self._sync_deployments(namespace)
        for ds in self._listing("apps/v1", "daemonsets", namespace):
            self._roll("DaemonSet", namespace, ds)
            self._daemonset_status(namespace, ds)
        self._settle()

    def _after_write(self, resource: Any, namespace: str, obj: Obj) -> None:
        if resource.kind in ("Deployment", "ReplicaSet"):
            self._sync_deployments(namespace)
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
        for ns in sorted({k[2] for k in self._objects if k[:2] == ("apps/v1", "deployments")}):
            self._sync_deployments(ns)
        for pod in self._listing("v1", "pods", admission.ISTIO_NAMESPACE):
            labels = pod["metadata"].get("labels") or {}
            starting = self.starting(admission.ISTIO_NAMESPACE, pod["metadata"]["name"])
            if labels.get("app") == "ztunnel" and not is_ready(pod) and not starting:
                set_ready(pod, True)
                self._bump(
                    self.resources[("v1", "pods")], admission.ISTIO_NAMESPACE, "MODIFIED", pod
                )
        for ds in self._listing("apps/v1", "daemonsets", admission.ISTIO_NAMESPACE):
            self._roll("DaemonSet", admission.ISTIO_NAMESPACE, ds)

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
            if any(
                is_ready(p) for p in new
            ):  # maxUnavailable 0: the old goes once the new is Ready
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
        available = {str((p.get("spec") or {}).get("nodeName")) for p in pods if is_ready(p)}
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
            if kind == "ReplicaSet":
                self._sync_deployments(namespace)
                continue
            owner = self._objects.get(("apps/v1", "daemonsets", namespace, str(name)))
            if kind != "DaemonSet" or owner is None:
                continue
            node = pod["spec"].get("nodeName")
            if not any(
                p["spec"].get("nodeName") == node
                for p in self._owned_pods(namespace, kind, str(name))
            ):
                self._pod_from_template(namespace, "DaemonSet", owner, node_name=node)
            self._daemonset_status(namespace, owner)


__all__ = ["GENERATION", "Controllers"]
