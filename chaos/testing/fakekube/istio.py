"""Requests through the fake's Istio data plane: VirtualService faults and JWT validation.

:func:`send` plays ``requests`` HTTP requests from a client pod to a service of the demo
and counts, in the proxies' stats (:class:`~.podexec.FakePodExec` ``counters``), what
Istio's proxies would (Istio 1.24 behaviour, named per rule):

* the VirtualService fault of the first ``http`` route that matches the client: applied
  by the client's sidecar (mesh: ``http.outbound_0.0.0.0_8080.fault.*``, Istio's outbound
  HTTP listener stat prefix), or by the service's waypoint (ambient), which ignores routes
  matched on ``sourceLabels`` (istio/istio#51565, ``listener_waypoint.go``): such a route
  is dropped, so its fault never applies;
* a token whose key is not in the namespace's RequestAuthentication ``jwks``: refused by
  ``jwt_authn`` at the server's proxy with 401 (``http.inbound_0.0.0.0_8080.jwt_authn.denied``).
  Istio builds the filter with allow-missing (a missing token passes to authorization), so
  a bad token never reaches ``rbac``; ``rbac.denied`` does not rise;
* the AuthorizationPolicies of the namespace (:mod:`.authz`): ``rbac.denied`` or
  ``rbac.allowed`` at the server's proxies (the waypoint in ambient);
* a caller outside the mesh (no ``istio-proxy`` container, not enrolled in ambient: the
  ``baseline`` and plain-sidecar pods, Locust's master) sends plaintext: to a namespace
  whose PeerAuthentication is ``STRICT`` it is *refused* before any HTTP filter, so no
  fault, ``jwt_authn`` or ``rbac`` counter rises (Istio 1.28.0: the server's sidecar
  inbound, or ztunnel, accepts only mTLS; the PeerAuthentication reference,
  https://istio.io/latest/docs/reference/config/security/peer_authentication/: "STRICT
  mode is useful to ensure that connections that bypass the mesh are not possible").
  To an in-mesh service without STRICT Istio would accept it past the client-side proxy
  (and, in ambient, the waypoint): not modelled, so an error rather than counted as an
  in-mesh caller's. Ambient enrollment is the label ``istio.io/dataplane-mode: ambient``
  on the pod, else on its namespace ("You can apply this label to a namespace or to an
  individual pod": https://istio.io/latest/docs/ambient/usage/add-workloads/).

Shares of requests are exact (``percent * requests // 100``), not random.
"""

from __future__ import annotations

import json
from typing import Any

from chaos.platforms.kubernetes import names
from chaos.testing.fakekube import authz
from chaos.testing.fakekube.bypassexec import strict
from chaos.testing.fakekube.podexec import WAYPOINT_LABEL, FakePodExec
from chaos.testing.fakekube.rules import ApiError

OUTBOUND = "http.outbound_0.0.0.0_8080"
INBOUND = "http.inbound_0.0.0.0_8080"
WAYPOINT = "http.inbound-vip_8080"


def _list(pods: FakePodExec, prefix: str, plural: str, namespace: str) -> list[dict[str, Any]]:
    cluster = pods.cluster
    return cluster.select(cluster.resource(prefix, plural), namespace)


def _matches(route: dict[str, Any], labels: dict[str, str], waypoint: bool) -> bool:
    matches = route.get("match") or []
    if not matches:
        return True
    for match in matches:
        wanted = match.get("sourceLabels")
        if wanted is None:
            return True
        if waypoint:
            continue  # waypoints drop sourceLabels matches
        if all(labels.get(k) == v for k, v in wanted.items()):
            return True
    return False


def _add(pods: FakePodExec, key: tuple[str, str], name: str, rise: int) -> None:
    counters = pods.counters.setdefault(key, {})
    counters[name] = counters.get(name, 0) + rise


AMBIENT_LABEL = "istio.io/dataplane-mode"


def in_mesh(pods: FakePodExec, pod: dict[str, Any]) -> bool:
    """Whether Istio's data plane carries ``pod``'s traffic: an injected sidecar, or ambient
    (the pod's own ``istio.io/dataplane-mode``, else its namespace's)."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    if any(c.get("name") == names.ISTIO_PROXY_CONTAINER for c in containers):
        return True
    meta = pod.get("metadata") or {}
    mode = (meta.get("labels") or {}).get(AMBIENT_LABEL)
    if mode is None:
        cluster = pods.cluster
        try:
            ns = cluster.get(cluster.resource("v1", "namespaces"), "", meta.get("namespace", ""))
        except ApiError:
            ns = {}
        mode = ((ns.get("metadata") or {}).get("labels") or {}).get(AMBIENT_LABEL)
    return mode == "ambient"


def send(
    pods: FakePodExec,
    client: tuple[str, str],
    service: str,
    namespace: str,
    requests: int,
    *,
    token_kid: str = "demo",
) -> str:
    """``requests`` requests from pod ``client`` (namespace, name) to ``service``:
    ``refused`` (plaintext from outside the mesh to a STRICT namespace: nothing counted)
    or ``sent`` (counted where Istio's proxies count them)."""
    cluster = pods.cluster
    client_pod = cluster.get(cluster.resource("v1", "pods"), *client)
    labels = (client_pod.get("metadata") or {}).get("labels") or {}
    if not in_mesh(pods, client_pod):
        servers = [
            p
            for p in _list(pods, "v1", "pods", namespace)
            if (p["metadata"].get("labels") or {}).get(names.LABEL_APP) == service
        ]
        if strict(cluster, namespace):
            return "refused"  # no mTLS from a caller outside the mesh
        if any(in_mesh(pods, p) for p in servers):
            raise ValueError(
                f"{client[0]}/{client[1]} is outside the mesh and {namespace} is not STRICT: "
                "Istio would take its plaintext past the client-side proxy; not modelled"
            )
        return "sent"  # no Istio proxy on either side (baseline to baseline): none counts it
    host = f"{service}.{namespace}.svc.cluster.local"
    waypoints = [
        p
        for p in _list(pods, "v1", "pods", namespace)
        if ((p["metadata"].get("labels") or {}).get(WAYPOINT_LABEL) == names.waypoint_name(service))
    ]
    at = (namespace, waypoints[0]["metadata"]["name"]) if waypoints else client
    prefix = WAYPOINT if waypoints else OUTBOUND
    for vs in _list(pods, "networking.istio.io/v1", "virtualservices", namespace):
        if host not in ((vs.get("spec") or {}).get("hosts") or []):
            continue
        routes = (vs.get("spec") or {}).get("http") or []
        route = next((r for r in routes if _matches(r, labels, bool(waypoints))), None)
        fault = (route or {}).get("fault") or {}
        for kind, counter in (("delay", "delays_injected"), ("abort", "aborts_injected")):
            percent = float(((fault.get(kind) or {}).get("percentage") or {}).get("value", 0))
            with pods.lock:
                _add(pods, at, f"{prefix}.fault.{counter}", int(percent * requests) // 100)
        break
    try:
        rules = _list(pods, "security.istio.io/v1", "requestauthentications", namespace)
    except ApiError:
        rules = []
    servers = [
        p
        for p in _list(pods, "v1", "pods", namespace)
        if (p["metadata"].get("labels") or {}).get(names.LABEL_APP) == service
    ]
    for rule in (r for ra in rules for r in (ra.get("spec") or {}).get("jwtRules") or []):
        try:
            keys = json.loads(str(rule.get("jwks", ""))).get("keys") or []
        except ValueError:
            keys = []
        denied = token_kid not in {k.get("kid") for k in keys}
        for server in servers:
            with pods.lock:
                _add(
                    pods,
                    (namespace, server["metadata"]["name"]),
                    f"{INBOUND}.jwt_authn.denied",
                    requests if denied else 0,
                )
        if denied:
            return "sent"  # refused by jwt_authn: never reaches authorization
        break
    _authorize(pods, client, client_pod, service, namespace, requests, bool(rules), waypoints)
    return "sent"


def _authorize(
    pods: FakePodExec,
    client: tuple[str, str],
    client_pod: dict[str, Any],
    service: str,
    namespace: str,
    requests: int,
    token: bool,
    waypoints: list[dict[str, Any]],
) -> None:
    """The AuthorizationPolicies' decision (:mod:`.authz`), counted where Istio counts it."""
    try:
        policies = _list(pods, "security.istio.io/v1", "authorizationpolicies", namespace)
    except ApiError:
        return
    caller = authz.principal(client[0], client_pod)
    ok = authz.allowed(
        policies, service, waypoint=bool(waypoints), caller=caller, caller_ns=client[0], token=token
    )
    counter = "rbac.allowed" if ok else "rbac.denied"

    if waypoints:
        at = [(namespace, waypoints[0]["metadata"]["name"], WAYPOINT)]
    else:
        at = [
            (namespace, p["metadata"]["name"], INBOUND)
            for p in _list(pods, "v1", "pods", namespace)
            if (p["metadata"].get("labels") or {}).get(names.LABEL_APP) == service
        ]
    for ns, pod, prefix in at:
        with pods.lock:
            _add(pods, (ns, pod), f"{prefix}.{counter}", requests)


__all__ = ["AMBIENT_LABEL", "INBOUND", "OUTBOUND", "WAYPOINT", "in_mesh", "send"]
