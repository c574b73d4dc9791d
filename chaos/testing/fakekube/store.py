"""The fake API server's state: objects, resourceVersions, the change log, tiny controllers.

See :mod:`.api` for what is modelled and what is not.
"""

from __future__ import annotations

import copy
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaos.testing.fakekube.controllers import Controllers
from chaos.testing.fakekube.rules import (
    ApiError,
    Obj,
    field_matches,
    label_matches,
    not_found,
)

#: Built-in resources: (api prefix, plural) -> (kind, namespaced).
BUILTIN: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "namespaces"): ("Namespace", False),
    ("v1", "nodes"): ("Node", False),
    ("v1", "pods"): ("Pod", True),
    ("v1", "secrets"): ("Secret", True),
    ("v1", "configmaps"): ("ConfigMap", True),
    ("v1", "services"): ("Service", True),
    ("v1", "serviceaccounts"): ("ServiceAccount", True),
    ("apps/v1", "deployments"): ("Deployment", True),
    ("apps/v1", "replicasets"): ("ReplicaSet", True),
    ("apps/v1", "daemonsets"): ("DaemonSet", True),
    ("batch/v1", "jobs"): ("Job", True),
}

#: Custom resources registered by default: Istio's and the Gateway API's.
DEFAULT_CUSTOM: tuple[tuple[str, str, str], ...] = (
    ("networking.istio.io/v1", "virtualservices", "VirtualService"),
    ("networking.istio.io/v1", "destinationrules", "DestinationRule"),
    ("security.istio.io/v1", "requestauthentications", "RequestAuthentication"),
    ("security.istio.io/v1", "authorizationpolicies", "AuthorizationPolicy"),
    ("security.istio.io/v1", "peerauthentications", "PeerAuthentication"),
    ("gateway.networking.k8s.io/v1", "gateways", "Gateway"),
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    prefix: str  # "v1" or "group/version"
    plural: str
    kind: str
    namespaced: bool


Key = tuple[str, str, str, str]  # prefix, plural, namespace ("" if cluster-scoped), name


@dataclass(frozen=True)
class Change:
    rv: int
    resource: Resource
    namespace: str
    type: str
    obj: Obj


class FakeCluster(Controllers):
    """The fake's state: objects, a resourceVersion counter, the change log, the calls.

    ``pod_start_s``: how long after its creation a pod a controller made reports Ready (the
    kubelet's start and readiness probe; 0: at once).
    """

    def __init__(self, *, pod_start_s: float = 0.0) -> None:
        self._lock = threading.RLock()
        self.pod_start_s = pod_start_s
        self._starting: dict[tuple[str, str], float] = {}
        self._pending_sync: set[str] = set()
        self._objects: dict[Key, Obj] = {}
        self._rv = 1
        self._changes: list[Change] = []
        self.resources: dict[tuple[str, str], Resource] = {
            key: Resource(key[0], key[1], kind, namespaced)
            for key, (kind, namespaced) in BUILTIN.items()
        }
        for prefix, plural, kind in DEFAULT_CUSTOM:
            self.register(prefix, plural, kind)
        #: Every request: (method, path with query, content type).
        self.calls: list[tuple[str, str, str]] = []
        for name in ("default", "kube-system"):
            self.create(self.resources[("v1", "namespaces")], "", {"metadata": {"name": name}})

    def register(self, prefix: str, plural: str, kind: str, namespaced: bool = True) -> None:
        """Make a custom resource known (what installing its CRD does)."""
        self.resources[(prefix, plural)] = Resource(prefix, plural, kind, namespaced)

    def resource(self, prefix: str, plural: str) -> Resource:
        found = self.resources.get((prefix, plural))
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return found

    def by_kind(self, api_version: str, kind: str) -> Resource:
        for resource in self.resources.values():
            if resource.prefix == api_version and resource.kind == kind:
                return resource
        raise ApiError(404, "NotFound", f"no kind {kind} in {api_version}")

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        with self._lock:
            obj = self._objects.get((resource.prefix, resource.plural, namespace, name))
            if obj is None:
                raise not_found(resource.kind, name)
            return copy.deepcopy(obj)

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[Obj]:
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (prefix, plural, ns, _), obj in sorted(self._objects.items())
                if prefix == resource.prefix
                and plural == resource.plural
                and (namespace is None or ns == namespace)
            ]
        return [o for o in found if selected(o, labels, fields)]

    def changes_since(self, rv: int) -> list[Change]:
        with self._lock:
            return [c for c in self._changes if c.rv > rv]

    def dump(self) -> dict[str, Obj]:
        """Every object by ``prefix/plural/namespace/name`` (for "left as found" checks)."""
        with self._lock:
            return {"/".join(k): copy.deepcopy(v) for k, v in sorted(self._objects.items())}

    # -- writes --------------------------------------------------------------------------

    def _writes(self) -> int:
        return self._rv

    def _bump(self, resource: Resource, namespace: str, type_: str, obj: Obj) -> None:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self._changes.append(Change(self._rv, resource, namespace, type_, copy.deepcopy(obj)))

    def create(self, resource: Resource, namespace: str, body: Obj) -> Obj:
        with self._lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "Invalid", "metadata.name: Required value")
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            name = meta["name"]
            if resource.namespaced:
                if not namespace:
                    raise ApiError(400, "BadRequest", "the namespace of the object is missing")
                if meta.get("namespace") not in (None, namespace):
                    raise ApiError(
                        400, "BadRequest", "the namespace of the object does not match the URL"
                    )
                ns_key = ("v1", "namespaces", "", namespace)
                if ns_key not in self._objects:
                    raise not_found("Namespace", namespace)
                meta["namespace"] = namespace
            key = (resource.prefix, resource.plural, namespace, name)
            if key in self._objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.plural} "{name}" already exists',
                    {"name": name, "kind": resource.plural},
                )
            obj["apiVersion"], obj["kind"] = resource.prefix, resource.kind
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            meta.pop("resourceVersion", None)
            self._admit(resource.prefix, resource.kind, namespace, obj)
            if resource.kind == "Pod":
                _default_pod_status(obj)
                self._initial_readiness(namespace, obj)
            if resource.kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            self._bump(resource, namespace, "ADDED", obj)
            self._objects[key] = obj
            self._after_write(resource, namespace, obj)
            if resource.kind == "Job":  # the Job controller: one pod (backoffLimit 0)
                self._pod_from_template(namespace, "Job", obj)
            self._settle()
            return copy.deepcopy(obj)

    def replace(
        self, resource: Resource, namespace: str, name: str, body: Obj, *, status_only: bool
    ) -> Obj:
        with self._lock:
            key = (resource.prefix, resource.plural, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found(resource.kind, name)
            meta = body.get("metadata") or {}
            if meta.get("name") not in (None, name):
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv not in (None, "") and wanted_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.plural} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again",
                    {"name": name, "kind": resource.plural},
                )
            if not status_only:
                self._admit(resource.prefix, resource.kind, namespace, body)
            if status_only:
                self._starting.pop((namespace, name), None)  # its status is as written now
                new = copy.deepcopy(current)
                new["status"] = copy.deepcopy(body.get("status"))
            else:
                new = copy.deepcopy(body)
                new["apiVersion"], new["kind"] = resource.prefix, resource.kind
                if "status" in current and "status" not in new:
                    new["status"] = copy.deepcopy(current["status"])
                new_meta = new.setdefault("metadata", {})
                for kept in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                    if kept in current["metadata"]:
                        new_meta[kept] = current["metadata"][kept]
                if new.get("spec") != current.get("spec"):
                    new_meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
            self._bump(resource, namespace, "MODIFIED", new)
            self._objects[key] = new
            template = ("spec", "template")
            if resource.kind == "DaemonSet" and _dig(new, template) != _dig(current, template):
                self._roll(resource.kind, namespace, new)
            self._after_write(resource, namespace, new)
            self._settle()
            return copy.deepcopy(new)

    def delete(
        self, resource: Resource, namespace: str, name: str, propagation: str | None = None
    ) -> Obj:
        """Delete; with ``Background`` or ``Foreground`` the pods it owns go too.

        Without a policy, as the real API: a batch/v1 Job orphans its pods, the rest
        propagate in the background.
        """
        with self._lock:
            key = (resource.prefix, resource.plural, namespace, name)
            obj = self._objects.pop(key, None)
            if obj is None:
                raise not_found(resource.kind, name)
            self._bump(resource, namespace, "DELETED", obj)
            if propagation is None:
                propagation = "Orphan" if resource.kind == "Job" else "Background"
            if propagation in ("Background", "Foreground"):
                self._delete_dependents(namespace, obj)
                pods = self.resources[("v1", "pods")]
                uid = obj["metadata"].get("uid")
                for pod in self._owned_pods(namespace, resource.kind, name):
                    refs = pod["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs):
                        gone = self._objects.pop(("v1", "pods", namespace, pod["metadata"]["name"]))
                        self._bump(pods, namespace, "DELETED", gone)
            if resource.kind == "Namespace":
                for other in [k for k in self._objects if k[2] == name]:
                    gone = self._objects.pop(other)
                    self._bump(self.resources[other[:2]], name, "DELETED", gone)
            if resource.kind == "Pod":
                self._replace_owned_pod(namespace, obj)
            self._settle()
            return copy.deepcopy(obj)

    # -- the little controllers ----------------------------------------------------------

    def restart_container(self, namespace: str, pod: str, container: str) -> int:
        """What the kubelet does when a container dies: its restartCount rises."""
        with self._lock:
            pods = self.resources[("v1", "pods")]
            obj = self.get(pods, namespace, pod)
            status = obj.setdefault("status", {})
            for field in ("initContainerStatuses", "containerStatuses"):
                for entry in status.get(field) or []:
                    if entry.get("name") == container:
                        entry["restartCount"] = int(entry.get("restartCount", 0)) + 1
                        entry["lastState"] = {
                            "terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _now()}
                        }
                        entry["state"] = {"running": {"startedAt": _now()}}
                        self.replace(pods, namespace, pod, obj, status_only=True)
                        return int(entry["restartCount"])
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")


def _dig(obj: Obj, path: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in path:
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node


def selected(obj: Obj, labels: str | None, fields: str | None) -> bool:
    meta = obj.get("metadata") or {}
    if labels and not label_matches(labels, meta.get("labels") or {}):
        return False
    return not (fields and not field_matches(fields, obj))


def _default_pod_status(pod: Obj) -> None:
    """A pod without status is scheduled, running and ready (the fake's kubelet)."""
    if pod.get("status"):
        return
    spec = pod.get("spec") or {}

    def running(container: Obj) -> Obj:
        return {
            "name": container.get("name", ""),
            "ready": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": _now()}},
            "image": container.get("image", ""),
            "imageID": f"docker.io/{container.get('image', '')}@sha256:{'0' * 64}",
            "started": True,
        }

    status: Obj = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [running(c) for c in spec.get("containers") or []],
        "podIP": f"10.244.0.{secrets.randbelow(250) + 2}",
    }
    natives = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    if natives:
        status["initContainerStatuses"] = [running(c) for c in natives]
    pod["status"] = status


__all__ = ["BUILTIN", "DEFAULT_CUSTOM", "Change", "FakeCluster", "Resource", "selected"]
