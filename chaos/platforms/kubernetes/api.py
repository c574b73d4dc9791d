"""The one module that imports ``kubernetes``: a small adapter over the official client.

:class:`KubeApi` speaks Kubernetes JSON (objects as dicts, exactly as the API
server sends them) for the few kinds the platform touches, through the official
client's ``ApiClient`` (its configuration, auth, TLS, serialisation and
``Watch``). Foreign errors stop here: an ``ApiException`` becomes a
:class:`~chaos.errors.PlatformError` naming the call (``NotFound`` is ``None`` or
``False`` where "already gone" is a fine answer, a stale ``resourceVersion`` is
:class:`ConflictError` and is retried where the caller re-reads), a kubeconfig
that cannot be read is an :class:`~chaos.errors.InputError` naming the file.

Safety at the boundary: nothing is ever written in ``kube-system``, and
:meth:`KubeApi.apply` refuses to replace an object that does not carry the
tool's ownership label.

Exec and port-forward sit behind :class:`PodExec` (the real one is
:class:`KubePodExec`; tests use a fake), because no fake API server speaks the
websocket sub-protocols.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import tenacity
import urllib3
import yaml
from kubernetes import config as kube_config
from kubernetes import stream as kube_stream
from kubernetes import watch as kube_watch
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from websocket import WebSocketConnectionClosedException, WebSocketException

from chaos.errors import InputError, PlatformError

#: A Kubernetes object as JSON (``apiVersion``, ``kind``, ``metadata``, ...).
KubeObject = dict[str, Any]

#: Namespaces the tool never writes to.
FORBIDDEN_NAMESPACES = frozenset({"kube-system"})

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "sidecar-chaos"

_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_PROPAGATE = {"propagationPolicy": "Background"}


class ConflictError(PlatformError):
    """A write used a stale ``resourceVersion`` (HTTP 409): re-read and try again."""


class NotFoundError(PlatformError):
    """The object (or its kind) does not exist (HTTP 404)."""


class ExecInterrupted(PlatformError):
    """The exec session closed before the command ended (a kill takes its own exec along)."""


@dataclass(frozen=True)
class ResourceKind:
    """Where a kind lives in the API: group, version, plural, namespaced or not."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        """The REST path of the collection, an object, or an object's subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if sub is not None:
                base += f"/{sub}"
        return base


NAMESPACE = ResourceKind("", "v1", "namespaces", "Namespace", namespaced=False)
POD = ResourceKind("", "v1", "pods", "Pod")
SECRET = ResourceKind("", "v1", "secrets", "Secret")
CONFIGMAP = ResourceKind("", "v1", "configmaps", "ConfigMap")
SERVICE = ResourceKind("", "v1", "services", "Service")
SERVICE_ACCOUNT = ResourceKind("", "v1", "serviceaccounts", "ServiceAccount")
DEPLOYMENT = ResourceKind("apps", "v1", "deployments", "Deployment")
DAEMONSET = ResourceKind("apps", "v1", "daemonsets", "DaemonSet")
JOB = ResourceKind("batch", "v1", "jobs", "Job")
VIRTUAL_SERVICE = ResourceKind("networking.istio.io", "v1", "virtualservices", "VirtualService")
DESTINATION_RULE = ResourceKind("networking.istio.io", "v1", "destinationrules", "DestinationRule")
REQUEST_AUTHENTICATION = ResourceKind(
    "security.istio.io", "v1", "requestauthentications", "RequestAuthentication"
)
AUTHORIZATION_POLICY = ResourceKind(
    "security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"
)
PEER_AUTHENTICATION = ResourceKind(
    "security.istio.io", "v1", "peerauthentications", "PeerAuthentication"
)
GATEWAY = ResourceKind("gateway.networking.k8s.io", "v1", "gateways", "Gateway")

#: Every kind the platform and ``cluster up`` use, by (apiVersion, kind).
KINDS: dict[tuple[str, str], ResourceKind] = {
    (k.api_version, k.kind): k
    for k in (
        NAMESPACE,
        POD,
        SECRET,
        CONFIGMAP,
        SERVICE,
        SERVICE_ACCOUNT,
        DEPLOYMENT,
        DAEMONSET,
        JOB,
        VIRTUAL_SERVICE,
        DESTINATION_RULE,
        REQUEST_AUTHENTICATION,
        AUTHORIZATION_POLICY,
        PEER_AUTHENTICATION,
        GATEWAY,
    )
}

#: The custom resources (group, version, plural) a fake API server must register.
CUSTOM_KINDS: tuple[ResourceKind, ...] = (
    VIRTUAL_SERVICE,
    DESTINATION_RULE,
    REQUEST_AUTHENTICATION,
    AUTHORIZATION_POLICY,
    PEER_AUTHENTICATION,
    GATEWAY,
)


def kind_of(manifest: Mapping[str, Any]) -> ResourceKind:
    """The :class:`ResourceKind` of a manifest; an unknown one is an input error."""
    key = (str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
    found = KINDS.get(key)
    if found is None:
        raise InputError(f"manifest: unknown kind {key[1]!r} of apiVersion {key[0]!r}")
    return found


def label_selector(labels: Mapping[str, str] | None) -> str | None:
    """``a=b,c=d`` for an equality selector; None selects everything."""
    if not labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def is_owned(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries the tool's ownership label."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


# -- pod status --------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerState:
    """One container of a pod as its status shows it."""

    name: str
    ready: bool
    restarts: int
    #: ``running``, ``waiting`` or ``terminated`` (or ``unknown``).
    state: str
    reason: str = ""
    #: A native sidecar (an init container with ``restartPolicy: Always``), as Istio 1.27+.
    native_sidecar: bool = False


@dataclass(frozen=True)
class PodState:
    """What the platform reads of a pod: where it runs, its readiness and restarts."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    node_name: str
    phase: str
    ready: bool
    deleting: bool
    containers: tuple[ContainerState, ...]
    resource_version: str = ""

    def container(self, name: str) -> ContainerState | None:
        return next((c for c in self.containers if c.name == name), None)

    def restarts(self, container: str | None = None) -> int:
        """Restarts of one container, or of all (native sidecars included)."""
        if container is not None:
            found = self.container(container)
            return found.restarts if found else 0
        return sum(c.restarts for c in self.containers)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodState:
        meta = pod.get("metadata", {})
        spec = pod.get("spec", {})
        status = pod.get("status", {}) or {}
        native = {
            c.get("name")
            for c in spec.get("initContainers", []) or []
            if c.get("restartPolicy") == "Always"
        }
        containers = [
            _container_state(s, native_sidecar=s.get("name") in native)
            for s in status.get("initContainerStatuses", []) or []
            if s.get("name") in native
        ]
        containers += [
            _container_state(s, native_sidecar=False)
            for s in status.get("containerStatuses", []) or []
        ]
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", []) or []
        )
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            labels=dict(meta.get("labels") or {}),
            node_name=str(spec.get("nodeName", "")),
            phase=str(status.get("phase", "Unknown")),
            ready=ready,
            deleting=bool(meta.get("deletionTimestamp")),
            containers=tuple(containers),
            resource_version=str(meta.get("resourceVersion", "")),
        )


def _container_state(status: Mapping[str, Any], *, native_sidecar: bool) -> ContainerState:
    state = status.get("state") or {}
    which = next((k for k in ("running", "waiting", "terminated") if k in state), "unknown")
    reason = (state.get(which) or {}).get("reason", "") if which != "unknown" else ""
    return ContainerState(
        name=str(status.get("name", "")),
        ready=bool(status.get("ready", False)),
        restarts=int(status.get("restartCount", 0)),
        state=which,
        reason=str(reason or ""),
        native_sidecar=native_sidecar,
    )


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch: ADDED, MODIFIED, DELETED (or BOOKMARK) and the object."""

    type: str
    object: KubeObject


# -- the adapter -------------------------------------------------------------------------


def _retry_on_conflict() -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(ConflictError),
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )


class KubeApi:
    """Kubernetes JSON in and out, through the official client; errors translated."""

    def __init__(self, api_client: ApiClient, context: str = "") -> None:
        self._client = api_client
        # The stubs describe an older ApiClient (no param_serialize/call_api/configuration).
        self._raw: Any = api_client
        self.context = context

    @classmethod
    def from_kubeconfig(cls, path: Path | None = None, context: str | None = None) -> KubeApi:
        """A client for ``context`` (default: the current one) of the kubeconfig at ``path``."""
        where = str(path or os.environ.get("KUBECONFIG") or "~/.kube/config")
        configuration = Configuration()
        try:
            contexts, current = kube_config.list_kube_config_contexts(str(path) if path else None)
            chosen = context or (current or {}).get("name", "")
            if chosen not in {c.get("name") for c in contexts or []}:
                raise InputError(f"{where}: no context {chosen!r} in this kubeconfig")
            kube_config.load_kube_config(
                config_file=str(path) if path else None,
                context=chosen,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
            raise InputError(f"{where}: cannot load the kubeconfig: {exc}") from exc
        return cls(ApiClient(configuration), context=chosen)

    @property
    def host(self) -> str:
        return str(self._raw.configuration.host)

    @property
    def api_client(self) -> ApiClient:
        """The official client's ``ApiClient`` (for :class:`KubePodExec`)."""
        return self._client

    def close(self) -> None:
        self._raw.close()

    # -- the wire ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> KubeObject:
        """One call; the JSON answer, or a translated error."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            serialized = self._raw.param_serialize(
                method=method,
                resource_path=path,
                query_params=[(k, _query_value(v)) for k, v in (query or {}).items()],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            answer = self._raw.call_api(*serialized, _request_timeout=(5.0, 30.0))
            answer.read()
            raw: bytes = answer.data or b""
            if not 200 <= answer.status <= 299:
                raise ApiException(status=answer.status, reason=answer.reason, http_resp=answer)
        except ApiException as exc:
            raise _translate(method, path, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PlatformError(f"{method} {self.host}{path}: cannot reach the API: {exc}") from exc
        if not raw:
            return {}
        decoded = json.loads(raw)
        if not isinstance(decoded, dict):
            raise PlatformError(f"{method} {path}: the API answered {type(decoded).__name__}")
        return cast(KubeObject, decoded)

    # -- generic object access -----------------------------------------------------------

    def get(self, kind: ResourceKind, namespace: str | None, name: str) -> KubeObject | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", kind.path(namespace, name))
        except NotFoundError:
            return None

    def list_objects(
        self,
        kind: ResourceKind,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
        *,
        field_selector: str | None = None,
    ) -> list[KubeObject]:
        query: dict[str, str | int | bool] = {}
        selector = label_selector(labels)
        if selector:
            query["labelSelector"] = selector
        if field_selector:
            query["fieldSelector"] = field_selector
        answer = self.request("GET", kind.path(namespace), query=query)
        items = answer.get("items") or []
        # List items carry no apiVersion/kind; put them back so objects are self-describing.
        return [{"apiVersion": kind.api_version, "kind": kind.kind, **item} for item in items]

    def create(self, manifest: KubeObject) -> KubeObject:
        kind = kind_of(manifest)
        namespace = _namespace(kind, manifest)
        _guard(namespace)
        return self.request("POST", kind.path(namespace), body=manifest)

    def replace(self, manifest: KubeObject) -> KubeObject:
        """PUT the whole object; its ``metadata.resourceVersion`` decides (409 when stale)."""
        kind = kind_of(manifest)
        namespace = _namespace(kind, manifest)
        _guard(namespace)
        name = manifest["metadata"]["name"]
        return self.request("PUT", kind.path(namespace, name), body=manifest)

    def patch(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        patch: KubeObject | list[KubeObject],
        *,
        subresource: str | None = None,
    ) -> KubeObject:
        """A JSON merge patch (a dict) or a JSON patch (a list of operations).

        A merge patch replaces lists whole; to change one entry of a list, read the
        object and patch the whole list (or use a JSON patch with a ``test`` op).
        """
        _guard(namespace)
        content_type = _JSON_PATCH if isinstance(patch, list) else _MERGE_PATCH
        return self.request(
            "PATCH",
            kind.path(namespace, name, subresource),
            body=patch,
            content_type=content_type,
        )

    def delete(self, kind: ResourceKind, namespace: str | None, name: str) -> bool:
        """Delete; False when it was already gone (which is fine for an undo).

        Dependents go too (``propagationPolicy=Background``): a Job deleted through the
        API without it leaves its pods behind (batch/v1 orphans by default).
        """
        _guard(namespace)
        try:
            self.request("DELETE", kind.path(namespace, name), query=_PROPAGATE)
        except NotFoundError:
            return False
        return True

    def update(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        change: Callable[[KubeObject], KubeObject | None],
    ) -> KubeObject | None:
        """Read, change, PUT with the read ``resourceVersion``; re-read and retry on 409.

        ``change`` gets a copy of the current object and returns the new one (or None:
        nothing to do). Returns the stored object, or None if it does not exist.
        """
        for attempt in _retry_on_conflict():
            with attempt:
                current = self.get(kind, namespace, name)
                if current is None:
                    return None
                wanted = change(copy.deepcopy(current))
                if wanted is None:
                    return current
                wanted.setdefault("metadata", {})["resourceVersion"] = current["metadata"].get(
                    "resourceVersion"
                )
                return self.replace(wanted)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def apply(self, manifest: KubeObject) -> KubeObject:
        """Create ``manifest``, or replace the object of that name if the tool owns it.

        An existing object without the ownership label is refused: the tool does not
        overwrite what it did not create. Applying twice leaves one object.
        """
        kind = kind_of(manifest)
        namespace = _namespace(kind, manifest)
        name = manifest["metadata"]["name"]
        for attempt in _retry_on_conflict():
            with attempt:
                current = self.get(kind, namespace, name)
                if current is None:
                    try:
                        return self.create(manifest)
                    except ConflictError:
                        raise  # created meanwhile: read it again
                if not is_owned(current):
                    where = f"{namespace}/" if namespace else ""
                    raise PlatformError(
                        f"{kind.kind} {where}{name} exists and is not managed by sidecar-chaos "
                        f"(no {MANAGED_BY_LABEL}={MANAGED_BY} label); not touching it"
                    )
                wanted = copy.deepcopy(manifest)
                wanted["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
                if "status" in current and "status" not in wanted:
                    wanted["status"] = current["status"]
                return self.replace(wanted)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # -- what the platform reads and changes ---------------------------------------------

    def list_pods(self, namespace: str, labels: Mapping[str, str] | None = None) -> list[PodState]:
        return [PodState.of(p) for p in self.list_objects(POD, namespace, labels)]

    def pods_on_node(
        self, namespace: str, node_name: str, labels: Mapping[str, str] | None = None
    ) -> list[PodState]:
        found = self.list_objects(
            POD, namespace, labels, field_selector=f"spec.nodeName={node_name}"
        )
        return [PodState.of(p) for p in found]

    def read_scale(self, namespace: str, deployment: str) -> int:
        answer = self.request("GET", DEPLOYMENT.path(namespace, deployment, "scale"))
        return int(answer.get("spec", {}).get("replicas", 0))

    def scale(self, namespace: str, deployment: str, replicas: int) -> int:
        """Set a Deployment's replicas through ``/scale``; returns the previous count."""
        _guard(namespace)
        for attempt in _retry_on_conflict():
            with attempt:
                current = self.request("GET", DEPLOYMENT.path(namespace, deployment, "scale"))
                previous = int(current.get("spec", {}).get("replicas", 0))
                if previous != replicas:
                    body = {
                        "apiVersion": "autoscaling/v1",
                        "kind": "Scale",
                        "metadata": {
                            "name": deployment,
                            "namespace": namespace,
                            "resourceVersion": current["metadata"].get("resourceVersion"),
                        },
                        "spec": {"replicas": replicas},
                    }
                    self.request("PUT", DEPLOYMENT.path(namespace, deployment, "scale"), body=body)
                return previous
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def watch(
        self,
        kind: ResourceKind,
        namespace: str,
        labels: Mapping[str, str] | None = None,
        *,
        resource_version: str | None = None,
        timeout_s: int = 60,
    ) -> Iterator[WatchEvent]:
        """Events from ``resource_version`` on, for at most ``timeout_s`` (the server ends it)."""
        if kind != POD:
            raise PlatformError(f"watching {kind.kind} is not supported (only pods)")
        core = CoreV1Api(self._client)
        watcher: Any = kube_watch.Watch()
        kwargs: dict[str, Any] = {"timeout_seconds": timeout_s, "deserialize": False}
        selector = label_selector(labels)
        if selector:
            kwargs["label_selector"] = selector
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for raw in watcher.stream(core.list_namespaced_pod, namespace, **kwargs):
                event = cast(dict[str, Any], raw)
                yield WatchEvent(str(event.get("type", "")), cast(KubeObject, event["object"]))
        except ApiException as exc:
            raise _translate("WATCH", POD.path(namespace), exc) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError) as exc:
            raise PlatformError(f"watch {POD.path(namespace)}: {exc}") from exc
        finally:
            watcher.stop()

    def server_version(self) -> str:
        answer = self.request("GET", "/version")
        return str(answer.get("gitVersion", "unknown"))


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _namespace(kind: ResourceKind, manifest: Mapping[str, Any]) -> str | None:
    if not kind.namespaced:
        return None
    namespace = manifest.get("metadata", {}).get("namespace")
    if not namespace:
        raise InputError(f"{kind.kind} {manifest.get('metadata', {}).get('name')}: no namespace")
    return str(namespace)


def _guard(namespace: str | None) -> None:
    if namespace in FORBIDDEN_NAMESPACES:
        raise PlatformError(f"refusing to change anything in namespace {namespace}")


def _translate(method: str, path: str, exc: ApiException) -> PlatformError:
    message = str(exc.reason or "")
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if body:
        try:
            status = json.loads(body)
            if isinstance(status, dict):
                message = str(status.get("message") or message)
        except ValueError:
            message = f"{message}: {body[:200]}"
    text = f"{method} {path}: {exc.status} {message}"
    if exc.status == 404:
        return NotFoundError(text)
    if exc.status == 409:
        return ConflictError(text)
    return PlatformError(text)


# -- exec and port-forward ---------------------------------------------------------------


class PodExec(Protocol):
    """Commands in a container and HTTP to a pod's port: what the websocket APIs give."""

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        """Run ``command`` in the container; its output. A failure is a PlatformError."""
        ...

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        """One HTTP request to ``port`` of the pod (a port-forward); the response body."""
        ...


class KubePodExec:
    """:class:`PodExec` through the API server's exec and port-forward (websockets).

    Proven only against a real cluster (``make e2e-kind``): no fake API server here
    speaks the websocket sub-protocols.
    """

    def __init__(self, api: KubeApi) -> None:
        self._core = CoreV1Api(api.api_client)

    def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout_s: float
    ) -> str:
        try:
            output = kube_stream.stream(
                self._core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=list(command),
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _request_timeout=timeout_s,
            )
        except WebSocketConnectionClosedException as exc:
            raise ExecInterrupted(f"exec in {namespace}/{pod}/{container}: {exc}") from exc
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"exec in {namespace}/{pod}/{container} failed: {exc}") from exc
        return str(output)

    def http(
        self, namespace: str, pod: str, port: int, method: str, path: str, timeout_s: float
    ) -> bytes:
        try:
            forward: Any = kube_stream.portforward(
                self._core.connect_get_namespaced_pod_portforward,
                pod,
                namespace,
                ports=str(port),
            )
            sock = cast(socket.socket, forward.socket(port))
            sock.settimeout(timeout_s)
            request = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode())
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            sock.close()
        except (ApiException, OSError, ValueError, WebSocketException) as exc:
            raise PlatformError(f"port-forward to {namespace}/{pod}:{port} failed: {exc}") from exc
        return _http_body(b"".join(chunks), f"{namespace}/{pod}:{port}{path}")


def _http_body(raw: bytes, where: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise PlatformError(f"{where}: not an HTTP answer: {status_line[:80]!r}")
    if not 200 <= int(parts[1]) <= 299:
        raise PlatformError(f"{where}: {status_line}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


__all__ = [
    "CONFIGMAP",
    "CUSTOM_KINDS",
    "DAEMONSET",
    "DEPLOYMENT",
    "GATEWAY",
    "KINDS",
    "NAMESPACE",
    "POD",
    "REQUEST_AUTHENTICATION",
    "SECRET",
    "VIRTUAL_SERVICE",
    "ConflictError",
    "ContainerState",
    "ExecInterrupted",
    "KubeApi",
    "KubeObject",
    "KubePodExec",
    "NotFoundError",
    "PodExec",
    "PodState",
    "ResourceKind",
    "WatchEvent",
    "is_owned",
    "kind_of",
]
