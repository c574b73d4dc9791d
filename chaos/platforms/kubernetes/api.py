"""A small adapter over the official ``kubernetes`` client: :class:`KubeApi`.

With :mod:`~chaos.platforms.kubernetes.podexec` (exec and port-forward), the only
modules that import ``kubernetes``. :class:`KubeApi` speaks Kubernetes JSON (objects as
dicts, exactly as the API server sends them) for the few kinds the platform touches
(:mod:`~chaos.platforms.kubernetes.kinds`), through the official client's ``ApiClient``
(its configuration, auth, TLS, serialisation and ``Watch``). Foreign errors stop here: an
``ApiException`` becomes a :class:`~chaos.errors.PlatformError` naming the call
(``NotFound`` is ``None`` or ``False`` where "already gone" is a fine answer, a stale
``resourceVersion`` is :class:`ConflictError` and is retried where the caller re-reads), a
kubeconfig that cannot be read is an :class:`~chaos.errors.InputError` naming the file.

Safety at the boundary: nothing is ever written in ``kube-system``, and
:meth:`KubeApi.apply` refuses to replace an object that does not carry the
tool's ownership label.

Exec and port-forward sit behind :class:`PodExec` (the real one is
:class:`KubePodExec`, on streams of their own: never this adapter's ``ApiClient``, whose
``call_api`` a stream swaps while it runs).

This module is the platform's one face of the API: the kinds
(:mod:`~chaos.platforms.kubernetes.kinds`), the pod state
(:mod:`~chaos.platforms.kubernetes.podstate`) and the exec port
(:mod:`~chaos.platforms.kubernetes.podexec`) are defined in their own modules and
re-exported here, so callers import them all from ``api``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import tenacity
import urllib3
import yaml
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaos.errors import InputError, PlatformError
from chaos.platforms.kubernetes.kinds import (
    DEPLOYMENT,
    FORBIDDEN_NAMESPACES,
    MANAGED_BY_LABEL,
    POD,
    KubeObject,
    ResourceKind,
    is_owned,
    kind_of,
    label_selector,
)
from chaos.platforms.kubernetes.names import MANAGED_BY
from chaos.platforms.kubernetes.podstate import PodState

_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_PROPAGATE = {"propagationPolicy": "Background"}


class ConflictError(PlatformError):
    """A write used a stale ``resourceVersion`` (HTTP 409): re-read and try again."""


class NotFoundError(PlatformError):
    """The object (or its kind) does not exist (HTTP 404)."""


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
        raw = self._call(method, path, query, body, content_type, "application/json")
        if not raw:
            return {}
        decoded = json.loads(raw)
        if not isinstance(decoded, dict):
            raise PlatformError(f"{method} {path}: the API answered {type(decoded).__name__}")
        return cast(KubeObject, decoded)

    def get_text(self, path: str) -> str:
        """``GET`` of a text answer (a node's kubelet metrics through the API server's proxy)."""
        return self._call("GET", path, None, None, "", "text/plain").decode("utf-8", "replace")

    def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        body: object,
        content_type: str,
        accept: str,
    ) -> bytes:
        headers = {"Accept": accept}
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
        return raw

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


__all__ = [
    "ConflictError",
    "KubeApi",
    "NotFoundError",
    "WatchEvent",
]
