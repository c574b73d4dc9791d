"""Istio's admission webhooks in the fake: they fail closed while istiod has no ready pod.

Modelled once an ``istiod`` Deployment exists in ``istio-system`` (a cluster without Istio
has no webhooks), as Istio 1.24 installs them:

* the sidecar injector (MutatingWebhookConfiguration ``istio-sidecar-injector``, webhooks
  ``namespace.sidecar-injector.istio.io``, for namespaces labelled
  ``istio-injection=enabled``, and ``object.sidecar-injector.istio.io``, for pods labelled
  ``sidecar.istio.io/inject=true``; ``failurePolicy: Fail``): creating such a pod is refused;
* the config validator (ValidatingWebhookConfiguration ``istio-validator-istio-system``,
  CREATE and UPDATE of ``networking.istio.io`` and ``security.istio.io`` objects; istiod sets
  its ``failurePolicy`` to ``Fail`` once it has been ready): such a write is refused. A
  DELETE is not validated.

The refusal is the API server's: 500 ``InternalError``, ``failed calling webhook ...: no
endpoints available for service "istiod"``. A Deployment or DaemonSet whose pod is refused
keeps trying (its controller retries): the fake creates the pod once istiod is ready.
"""

from __future__ import annotations

from collections.abc import Callable

from chaos.testing.fakekube import authz
from chaos.testing.fakekube.crdschema import validate_networking
from chaos.testing.fakekube.rules import ApiError, Obj

ISTIO_NAMESPACE = "istio-system"
ISTIOD = "istiod"
VALIDATED_GROUPS = ("networking.istio.io/", "security.istio.io/")

#: (prefix, plural, namespace, name) -> the object, or None.
Lookup = Callable[[str, str, str, str], Obj | None]
#: (prefix, plural, namespace) -> the objects.
Listing = Callable[[str, str, str], list[Obj]]


def istio_installed(lookup: Lookup) -> bool:
    return lookup("apps/v1", "deployments", ISTIO_NAMESPACE, ISTIOD) is not None


def istiod_ready(listing: Listing) -> bool:
    """Whether any istiod pod is Ready (what the webhooks' Service endpoints need)."""
    for pod in listing("v1", "pods", ISTIO_NAMESPACE):
        labels = (pod.get("metadata") or {}).get("labels") or {}
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if labels.get("app") == ISTIOD and ready and not pod["metadata"].get("deletionTimestamp"):
            return True
    return False


def _refused(webhook: str, path: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f'Internal error occurred: failed calling webhook "{webhook}": failed to call webhook: '
        f'Post "https://istiod.istio-system.svc:443/{path}?timeout=10s": '
        'no endpoints available for service "istiod"',
    )


def needs_injection(pod: Obj, namespace: Obj | None) -> str | None:
    """The injector webhook that handles this pod's creation, or None."""
    ns_labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if ns_labels.get("istio-injection") == "disabled":
        return None
    if labels.get("sidecar.istio.io/inject") == "false":
        return None
    if ns_labels.get("istio-injection") == "enabled":
        return "namespace.sidecar-injector.istio.io"
    if labels.get("sidecar.istio.io/inject") == "true":
        return "object.sidecar-injector.istio.io"
    return None


def admit(
    prefix: str, kind: str, namespace: str, obj: Obj, lookup: Lookup, listing: Listing
) -> None:
    """Raise the API server's refusal if a failing-closed Istio webhook handles this write,
    or if the CRD's schema rejects the object (:mod:`.authz`)."""
    authz.validate_policy(kind, obj)
    validate_networking(kind, obj)
    if not istio_installed(lookup):
        return
    if kind == "Pod":
        webhook = needs_injection(obj, lookup("v1", "namespaces", "", namespace))
        if webhook is not None and not istiod_ready(listing):
            raise _refused(webhook, "inject")
    elif prefix.startswith(VALIDATED_GROUPS) and not istiod_ready(listing):
        raise _refused("validation.istio.io", "validate")


__all__ = ["ISTIOD", "ISTIO_NAMESPACE", "admit", "istio_installed", "istiod_ready"]
