"""A fake Kubernetes API server on loopback, for tests and dry runs without a cluster.

It speaks the real HTTP API (the unmodified official client talks to it through a
kubeconfig this module writes) for what the platform uses:

* namespaces, pods (with status), secrets, configmaps, services, deployments
  (and their ``/scale``), daemonsets, jobs, and custom objects of registered
  groups (Istio's VirtualService, RequestAuthentication, ... by default);
* get, list with ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``,
  exists, ``!``) and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``,
  ``spec.nodeName``, ``status.phase``), watch (chunked JSON lines, from a
  ``resourceVersion`` or with the current objects first, ended after
  ``timeoutSeconds``), create, replace, delete, merge patch (RFC 7386; a
  strategic merge patch is treated as one), JSON patch (RFC 6902), ``/status``;
* a ``resourceVersion`` per write, 409 ``Conflict`` on a stale one (in a PUT body
  or a patch's ``metadata``), 409 ``AlreadyExists``, 404 ``NotFound`` and 401 in
  the real ``Status`` format;
* just enough controllers to make faults visible: a Deployment keeps
  ``spec.replicas`` pods (pods name their owner in ``ownerReferences``, kind
  ``Deployment`` directly: no ReplicaSets), a deleted pod of a Deployment or a
  DaemonSet comes back under a new name, and :meth:`FakeCluster.restart_container`
  plays the kubelet restarting a container (its ``restartCount`` rises).

Not modelled: admission, defaulting beyond a pod's status, strategic-merge list
semantics, field managers (server-side apply), exec and port-forward (the
platform reaches those through ``PodExec``; see ``fakeexec``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

Obj = dict[str, Any]

TOKEN = "sidecar-chaos-fake-token"

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


class ApiError(Exception):
    """An error answer in the Kubernetes ``Status`` format."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _not_found(kind: str, name: str) -> ApiError:
    plural = kind.lower() + "s"
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- selectors ---------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def label_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector string; a bad selector raises 400."""
    for term in _split_selector(selector):
        match = _SET_RE.match(term)
        if match:
            key, op, values = match.groups()
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            inside = labels.get(key) in wanted
            if (op == "in") != inside:
                return False
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "==" in term or "=" in term:
            key, value = (s.strip() for s in re.split("==|=", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif re.fullmatch(r"[\w./-]+", term):
            if term not in labels:
                return False
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return True


_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "status.phase": ("status", "phase"),
}


def field_matches(selector: str, obj: Obj) -> bool:
    for term in _split_selector(selector):
        negate = "!=" in term
        key, value = (s.strip() for s in re.split("!=|==|=", term, maxsplit=1))
        if key not in _FIELDS:
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        section, name = _FIELDS[key]
        actual = str((obj.get(section) or {}).get(name, ""))
        if (actual == value) == negate:
            return False
    return True


# -- patches -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(doc: Any, ops: list[Obj]) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test; a failed op is 422."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(str(op.get("path", "")))
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ApiError(422, "Invalid", f"test failed at {op.get('path')}")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _pointer(str(op.get("from", "")))))
                if kind == "move":
                    doc = _remove(doc, _pointer(str(op.get("from", ""))))
                doc = _add(doc, parts, value)
            elif kind == "add":
                doc = _add(doc, parts, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                doc = _remove(doc, parts)
            elif kind == "replace":
                _walk(doc, parts)  # must exist
                doc = _add(_remove(doc, parts), parts, copy.deepcopy(op.get("value")))
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"JSON patch {kind} {op.get('path')}: {exc}") from exc
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise KeyError(last)
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        parent.pop(int(last))
    else:
        del parent[last]
    return doc


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


class FakeCluster:
    """The fake's state: objects, a resourceVersion counter, the change log, the calls."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
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
                raise _not_found(resource.kind, name)
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
        return [o for o in found if _selected(o, labels, fields)]

    def changes_since(self, rv: int) -> list[Change]:
        with self._lock:
            return [c for c in self._changes if c.rv > rv]

    def dump(self) -> dict[str, Obj]:
        """Every object by ``prefix/plural/namespace/name`` (for "left as found" checks)."""
        with self._lock:
            return {"/".join(k): copy.deepcopy(v) for k, v in sorted(self._objects.items())}

    # -- writes --------------------------------------------------------------------------

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
                    raise _not_found("Namespace", namespace)
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
            if resource.kind == "Pod":
                _default_pod_status(obj)
            if resource.kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            self._bump(resource, namespace, "ADDED", obj)
            self._objects[key] = obj
            self._after_write(resource, namespace, obj)
            return copy.deepcopy(obj)

    def replace(
        self, resource: Resource, namespace: str, name: str, body: Obj, *, status_only: bool
    ) -> Obj:
        with self._lock:
            key = (resource.prefix, resource.plural, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise _not_found(resource.kind, name)
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
            if status_only:
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
            if resource.kind in ("Deployment", "DaemonSet") and _dig(new, template) != _dig(
                current, template
            ):
                self._roll(resource.kind, namespace, new)
            self._after_write(resource, namespace, new)
            return copy.deepcopy(new)

    def delete(self, resource: Resource, namespace: str, name: str) -> Obj:
        with self._lock:
            key = (resource.prefix, resource.plural, namespace, name)
            obj = self._objects.pop(key, None)
            if obj is None:
                raise _not_found(resource.kind, name)
            self._bump(resource, namespace, "DELETED", obj)
            if resource.kind == "Namespace":
                for other in [k for k in self._objects if k[2] == name]:
                    gone = self._objects.pop(other)
                    self._bump(self.resources[other[:2]], name, "DELETED", gone)
            if resource.kind == "Pod":
                self._replace_owned_pod(namespace, obj)
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

    def _after_write(self, resource: Resource, namespace: str, obj: Obj) -> None:
        if resource.kind == "Deployment":
            self._reconcile_deployment(namespace, obj)

    def _reconcile_deployment(self, namespace: str, deployment: Obj) -> None:
        name = deployment["metadata"]["name"]
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        pods = [p for p in self._owned_pods(namespace, "Deployment", name)]
        pod_resource = self.resources[("v1", "pods")]
        for extra in pods[wanted:]:
            key = ("v1", "pods", namespace, extra["metadata"]["name"])
            gone = self._objects.pop(key)
            self._bump(pod_resource, namespace, "DELETED", gone)
        for _ in range(wanted - len(pods)):
            self._pod_from_template(namespace, "Deployment", deployment)
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": wanted,
            "readyReplicas": wanted,
            "availableReplicas": wanted,
            "updatedReplicas": wanted,
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
        """A changed pod template: every pod of the owner is replaced by a new one."""
        pod_resource = self.resources[("v1", "pods")]
        for pod in self._owned_pods(namespace, kind, owner["metadata"]["name"]):
            gone = self._objects.pop(("v1", "pods", namespace, pod["metadata"]["name"]))
            self._bump(pod_resource, namespace, "DELETED", gone)
            if kind == "DaemonSet":
                node = (gone.get("spec") or {}).get("nodeName")
                self._pod_from_template(namespace, kind, owner, node_name=node)

    def _owned_pods(self, namespace: str, kind: str, name: str) -> list[Obj]:
        return [
            obj
            for (prefix, plural, ns, _), obj in sorted(self._objects.items())
            if (prefix, plural, ns) == ("v1", "pods", namespace)
            and any(
                o.get("kind") == kind and o.get("name") == name
                for o in obj["metadata"].get("ownerReferences") or []
            )
        ]

    def _pod_from_template(
        self, namespace: str, kind: str, owner: Obj, node_name: str | None = None
    ) -> None:
        template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        if node_name is None:
            selector = spec.get("nodeSelector") or {}
            node_name = selector.get("kubernetes.io/hostname", "fake-node")
        spec["nodeName"] = node_name
        owner_name = owner["metadata"]["name"]
        pod = {
            "metadata": {
                "name": f"{owner_name}-{secrets.token_hex(3)[:5]}",
                "labels": meta.get("labels") or {},
                "annotations": meta.get("annotations") or {},
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
        self.create(self.resources[("v1", "pods")], namespace, pod)

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
                self._pod_from_template(
                    namespace, "DaemonSet", owner, node_name=pod["spec"].get("nodeName")
                )


def _dig(obj: Obj, path: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in path:
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node


def _selected(obj: Obj, labels: str | None, fields: str | None) -> bool:
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


# -- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str | None  # None: all namespaces (a list) or cluster-scoped
    name: str | None
    sub: str | None


def _at(parts: list[str], index: int) -> str | None:
    return parts[index] if index < len(parts) else None


def _route(cluster: FakeCluster, path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        prefix, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        prefix, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and (prefix, rest[2]) in cluster.resources
        and cluster.resources[(prefix, rest[2])].namespaced
    ):
        resource = cluster.resource(prefix, rest[2])
        tail = rest[3:]
        return Route(resource, rest[1], _at(tail, 0), _at(tail, 1))
    resource = cluster.resource(prefix, rest[0])
    name, sub = _at(rest, 1), _at(rest, 2)
    if resource.namespaced and name is not None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Route(resource, None, name, sub)


def _scale_of(deployment: Obj) -> Obj:
    meta = deployment["metadata"]
    selector = (deployment.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": int((deployment.get("spec") or {}).get("replicas", 1))},
        "status": {
            "replicas": int((deployment.get("status") or {}).get("replicas", 0)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


class FakeApiServer:
    """The fake on ``127.0.0.1`` and an ephemeral port, in a thread of its own.

    A context manager: ``with FakeApiServer() as server: server.write_kubeconfig(path)``.
    """

    def __init__(self, cluster: FakeCluster | None = None, *, version: str = "v1.34.0") -> None:
        self.cluster = cluster or FakeCluster()
        self.version = version
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-kube-api", daemon=True)
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the fake API server is not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, context: str = "kind-sidecar-chaos") -> Path:
        """A kubeconfig whose ``context`` points at this server (bearer token auth)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._loop = asyncio.new_event_loop()
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("the fake API server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10.0)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None  # set by start()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        assert self._sock is not None
        await web.SockSite(self._runner, self._sock).start()
        self._started.set()
        await self._stopping.wait()
        await self._runner.cleanup()

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.cluster.calls.append(
            (request.method, request.path_qs, request.headers.get("Content-Type", ""))
        )
        try:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            return await self._dispatch(request)
        except ApiError as err:
            return web.json_response(err.status(), status=err.code)
        except (ValueError, KeyError, TypeError) as exc:
            bad = ApiError(400, "BadRequest", f"bad request: {exc}")
            return web.json_response(bad.status(), status=400)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/version":
            major, minor = self.version.lstrip("v").split(".")[:2]
            return web.json_response(
                {"major": major, "minor": minor, "gitVersion": self.version, "platform": "fake"}
            )
        route = _route(self.cluster, path)
        query = request.query
        method = request.method
        cluster = self.cluster
        namespace = route.namespace or ""
        if route.name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    return await self._watch(request, route)
                items = cluster.select(
                    route.resource,
                    route.namespace,
                    query.get("labelSelector"),
                    query.get("fieldSelector"),
                )
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                return web.json_response(
                    {
                        "apiVersion": route.resource.prefix,
                        "kind": f"{route.resource.kind}List",
                        "metadata": {"resourceVersion": str(cluster.resource_version)},
                        "items": items,
                    }
                )
            if method == "POST":
                body = await request.json()
                return web.json_response(
                    cluster.create(route.resource, namespace, body), status=201
                )
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        name = route.name
        if route.sub == "scale":
            if route.resource.kind != "Deployment":
                raise ApiError(404, "NotFound", "no scale subresource")
            return await self._scale(request, route)
        if route.sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"no subresource {route.sub}")
        status_only = route.sub == "status"
        if method == "GET":
            return web.json_response(cluster.get(route.resource, namespace, name))
        if method == "PUT":
            body = await request.json()
            return web.json_response(
                cluster.replace(route.resource, namespace, name, body, status_only=status_only)
            )
        if method == "PATCH":
            patched = self._patched(
                cluster.get(route.resource, namespace, name),
                await request.json(),
                request.headers.get("Content-Type", ""),
            )
            return web.json_response(
                cluster.replace(route.resource, namespace, name, patched, status_only=status_only)
            )
        if method == "DELETE":
            return web.json_response(cluster.delete(route.resource, namespace, name))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    @staticmethod
    def _patched(current: Obj, patch: Any, content_type: str) -> Obj:
        """``current`` with ``patch`` applied; a ``resourceVersion`` in a merge patch is checked."""
        media = content_type.split(";")[0].strip()
        if media == "application/json-patch+json":
            if not isinstance(patch, list):
                raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
            result = json_patch(current, patch)
            result.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            return dict(result)
        if media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch is an object")
            # A resourceVersion in the patch is a precondition (kept by the merge);
            # without one the write is unconditional (the current version is used).
            result = merge_patch(current, patch)
            if not (patch.get("metadata") or {}).get("resourceVersion"):
                result["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return dict(result)
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown "
            f"format - accepted media types include: application/json-patch+json, "
            f"application/merge-patch+json ({media!r})",
        )

    async def _scale(self, request: web.Request, route: Route) -> web.StreamResponse:
        cluster = self.cluster
        namespace, name = route.namespace or "", route.name or ""
        deployment = cluster.get(route.resource, namespace, name)
        if request.method == "GET":
            return web.json_response(_scale_of(deployment))
        if request.method == "PUT":
            scale = await request.json()
        elif request.method == "PATCH":
            scale = self._patched(
                _scale_of(deployment),
                await request.json(),
                request.headers.get("Content-Type", ""),
            )
        else:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
        deployment.setdefault("spec", {})["replicas"] = replicas
        deployment["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get(
            "resourceVersion"
        ) or deployment["metadata"]["resourceVersion"]
        stored = cluster.replace(route.resource, namespace, name, deployment, status_only=False)
        return web.json_response(_scale_of(stored))

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        cluster = self.cluster
        query = request.query
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        timeout = min(float(query.get("timeoutSeconds", "1800")), 1800.0)
        since = query.get("resourceVersion", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(type_: str, obj: Obj) -> None:
            line = json.dumps({"type": type_, "object": obj}) + "\n"
            await response.write(line.encode())

        if since in ("", "0"):
            rv = cluster.resource_version
            for obj in cluster.select(route.resource, route.namespace, labels, fields):
                await send("ADDED", obj)
        else:
            rv = int(since)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stopping = self._stopping
        try:
            while loop.time() < deadline and not (stopping and stopping.is_set()):
                for change in cluster.changes_since(rv):
                    rv = change.rv
                    if change.resource != route.resource:
                        continue
                    if route.namespace is not None and change.namespace != route.namespace:
                        continue
                    if _selected(change.obj, labels, fields):
                        await send(change.type, change.obj)
                await asyncio.sleep(0.05)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: the watch is over
        return response


def iter_objects(cluster: FakeCluster, prefix: str, plural: str) -> Iterator[Obj]:
    """Every object of one resource, all namespaces."""
    yield from cluster.select(cluster.resource(prefix, plural), None)


__all__ = [
    "TOKEN",
    "ApiError",
    "FakeApiServer",
    "FakeCluster",
    "field_matches",
    "iter_objects",
    "json_patch",
    "label_matches",
    "merge_patch",
]
