"""The kinds the platform touches, as data: where each lives in the API (:class:`ResourceKind`),
the namespaces never written to, the tool's ownership label, and label selectors.

Pure: nothing here imports ``kubernetes``; :mod:`chaos.platforms.kubernetes.api` speaks
these kinds to the API server (and re-exports them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chaos.errors import InputError
from chaos.platforms.kubernetes.names import LABEL_MANAGED_BY, MANAGED_BY

#: A Kubernetes object as JSON (``apiVersion``, ``kind``, ``metadata``, ...).
KubeObject = dict[str, Any]

#: Namespaces the tool never writes to.
FORBIDDEN_NAMESPACES = frozenset({"kube-system"})

#: The tool's ownership label (the one :mod:`.names` defines), as the API module names it.
MANAGED_BY_LABEL = LABEL_MANAGED_BY


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
