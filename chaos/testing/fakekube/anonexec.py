"""The anonymous stream's exec in the fake (:mod:`chaos.platforms.kubernetes.anonymous`).

The command (``python -c ANONYMOUS_SCRIPT targets rate max duration``, run in a Locust
worker) is answered as the real script would print it, one JSON line per attempt, with
what the setup's data plane does with a request from that worker, with its network
identity and without a token, to the front door (:func:`~chaos.platforms.kubernetes.
anonymous.front_door`; any other host or a pod that is not a worker: *refused*):

* plain sidecar: frontend's sidecar runs ``jwt_authn`` with the token required
  (``requires: provider``): 401 from the proxy, *denied*;
* mesh, ambient: Istio's authorization for frontend (:func:`.authz.allowed`, the caller
  the worker's service account, no request principal): a matching ALLOW-only
  ``require-jwt`` denies it (403, *denied*); without an ALLOW policy that applies (no
  ``require-jwt`` in the namespace), or with one that allows any caller, the app
  *serves* it (200, its ``x-chaos-auth``): a fail open. Where a dry-run policy applies
  (``istio.io/dry-run``, the proof of ``allow-any``) its shadow decision counts
  ``rbac.istio_dry_run_allow_shadow_allowed`` / ``_denied`` at frontend's proxies (its
  sidecars, or its waypoint), one per request. Nothing is slept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.anonymous import ANONYMOUS_SCRIPT, front_door
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL
from chaos.testing.fakekube import authz
from chaos.testing.fakekube.rules import ApiError
from chaos.testing.fakekube.store import FakeCluster

#: Adds 1 to counter ``name`` of pod ``(namespace, pod)`` (the fake proxies' stats).
Count = Callable[[str, str, str], None]
INBOUND = "http.inbound_0.0.0.0_8080"
WAYPOINT = "http.inbound-vip_8080"
WAYPOINT_LABEL = "gateway.networking.k8s.io/gateway-name"


def _outcome(
    cluster: FakeCluster,
    worker: dict[str, Any],
    host: str,
    port: int,
    count: Count | None = None,
) -> tuple[str, int]:
    labels = (worker.get("metadata") or {}).get("labels") or {}
    if labels.get(names.LABEL_TRAFFIC_ROLE) != "worker" or SETUP_LABEL not in labels:
        return "refused", 0
    setup = names.Setup(labels[SETUP_LABEL])
    if (host, port) != front_door(setup, None):
        return "refused", 0
    if setup is names.Setup.SIDECAR:
        return "denied", 401
    namespace = names.namespace_of(setup)
    try:
        policies = cluster.select(
            cluster.resource("security.istio.io/v1", "authorizationpolicies"), namespace
        )
    except ApiError:
        policies = []
    ambient = setup is names.Setup.AMBIENT
    caller, caller_ns = authz.principal(names.TRAFFIC_NAMESPACE, worker), names.TRAFFIC_NAMESPACE
    ok = authz.allowed(
        policies, "frontend", waypoint=ambient, caller=caller, caller_ns=caller_ns, token=False
    )
    shadow = authz.shadow_allowed(
        policies, "frontend", waypoint=ambient, caller=caller, caller_ns=caller_ns, token=False
    )
    if shadow is not None:
        _count_shadow(count, cluster, namespace, ambient, shadow)
    return ("served", 200) if ok else ("denied", 403)


def _count_shadow(
    count: Count | None, cluster: FakeCluster, namespace: str, ambient: bool, ok: bool
) -> None:
    """``rbac.istio_dry_run_allow_shadow_*`` at frontend's enforcing proxies."""
    if count is None:
        return
    wanted = (
        (WAYPOINT_LABEL, names.waypoint_name("frontend"))
        if ambient
        else (
            names.LABEL_APP,
            "frontend",
        )
    )
    prefix = WAYPOINT if ambient else INBOUND
    counter = f"{prefix}.rbac.istio_dry_run_allow_shadow_{'allowed' if ok else 'denied'}"
    for pod in cluster.select(cluster.resource("v1", "pods"), namespace):
        if ((pod["metadata"].get("labels") or {}).get(wanted[0])) != wanted[1]:
            continue
        count(namespace, str(pod["metadata"]["name"]), counter)


def answer(
    cluster: FakeCluster,
    namespace: str,
    pod: str,
    command: Sequence[str],
    add: Count | None = None,
) -> str | None:
    """The stream's output, or None: not the anonymous stream's command."""
    if len(command) != 7 or list(command[:3]) != ["python", "-c", ANONYMOUS_SCRIPT]:
        return None
    try:
        worker = cluster.get(cluster.resource("v1", "pods"), namespace, pod)
    except ApiError:
        worker = {}
    targets = json.loads(command[3])
    rate, count, duration = float(command[4]), int(command[5]), float(command[6])
    lines = []
    for i in range(min(count, math.ceil(duration * rate))):
        _ns, name, host, port = targets[i % len(targets)]
        outcome, status = _outcome(cluster, worker, str(host), int(port), add)
        record = {"dt": i / rate, "pod": name, "outcome": outcome, "status": status}
        lines.append(json.dumps(record) + "\n")
    return "".join(lines)


__all__ = ["answer"]
