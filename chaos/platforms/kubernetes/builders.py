"""Pure builders of what a fault writes into the cluster, each paired with its undo.

Nothing here talks to a cluster: every function takes what was read and returns
what to write. The undo of each is "write back what was read", which the change
ledger records before the write (see :mod:`.changes`).

* :func:`http_with_fault`: a VirtualService's whole ``http`` list with a fault on
  it (a merge patch replaces lists whole, so the list is always written whole,
  built from the list as read);
* :func:`istio_fault`: the ``fault`` field of an Istio HTTP route;
* :func:`jwks_without_signing_key`: a key set that cannot verify the current
  tokens (policy-desync);
* :func:`proxy_config_with_secret_ttl`: the ``proxy.istio.io/config`` annotation
  with a short workload certificate lifetime (cert-expiry in mesh).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

#: The name of the route a fault adds for one source (an outbound fault).
FAULT_ROUTE_NAME = "sidecar-chaos-fault"
#: The annotation Istio reads a pod's proxy config from.
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


def istio_fault(
    percent: float, *, delay_ms: int | None = None, abort_status: int | None = None
) -> dict[str, Any]:
    """An Istio ``HTTPFaultInjection``: a fixed delay or an abort on ``percent`` of requests."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be within (0, 100], got {percent}")
    fault: dict[str, Any] = {}
    if delay_ms is not None:
        fault["delay"] = {"fixedDelay": f"{delay_ms}ms", "percentage": {"value": float(percent)}}
    if abort_status is not None:
        fault["abort"] = {"httpStatus": abort_status, "percentage": {"value": float(percent)}}
    if not fault:
        raise ValueError("an HTTP fault needs a delay or an abort")
    return fault


def default_route(host: str, port: int) -> dict[str, Any]:
    """A plain route to ``host`` (for a VirtualService the tool creates itself)."""
    return {"route": [{"destination": {"host": host, "port": {"number": port}}}]}


def http_with_fault(
    http: Sequence[Mapping[str, Any]],
    fault: Mapping[str, Any],
    *,
    source_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ``http`` list of a VirtualService with ``fault`` applied, from the list as read.

    Without ``source_labels`` (an inbound fault: every caller is hit) every route gets
    the fault. With them (an outbound fault: only one client's requests) a copy of the
    first route, matched on those source labels, goes first and carries the fault;
    the other routes are untouched. ``http`` itself is never changed.
    """
    routes = [copy.deepcopy(dict(r)) for r in http]
    if not routes:
        raise ValueError("a VirtualService without http routes has nothing to carry a fault")
    if source_labels is None:
        for route in routes:
            route["fault"] = copy.deepcopy(dict(fault))
        return routes
    first = copy.deepcopy(routes[0])
    first.pop("match", None)
    first["name"] = FAULT_ROUTE_NAME
    first["match"] = [{"sourceLabels": dict(source_labels)}]
    first["fault"] = copy.deepcopy(dict(fault))
    rest = [r for r in routes if r.get("name") != FAULT_ROUTE_NAME]
    return [first, *rest]


def has_fault(http: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any route of an ``http`` list carries a fault."""
    return any("fault" in r for r in http)


def jwks_without_signing_key() -> str:
    """A JWKS with one fresh RSA key, unrelated to the key the tokens are signed with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "sidecar-chaos-desync", "use": "sig", "alg": "RS256"})
    return json.dumps({"keys": [jwk]})


def jwt_rules_with_jwks(rules: Sequence[Mapping[str, Any]], jwks: str) -> list[dict[str, Any]]:
    """A RequestAuthentication's ``jwtRules`` with every rule's key set replaced by ``jwks``."""
    out = []
    for rule in rules:
        new = copy.deepcopy(dict(rule))
        new.pop("jwksUri", None)
        new["jwks"] = jwks
        out.append(new)
    return out


def proxy_config_with_secret_ttl(current: str | None, ttl_s: float) -> str:
    """``proxy.istio.io/config`` (JSON is valid YAML) with ``SECRET_TTL`` set to ``ttl_s``.

    Keeps whatever else the annotation said; a value that is not a JSON object is
    replaced (the tool only ever reads back what it wrote, or the recorded original).
    """
    config: dict[str, Any] = {}
    if current:
        try:
            parsed = json.loads(current)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            config = parsed
    metadata = dict(config.get("proxyMetadata") or {})
    metadata["SECRET_TTL"] = f"{max(1, round(ttl_s))}s"
    config["proxyMetadata"] = metadata
    return json.dumps(config, sort_keys=True)


__all__ = [
    "FAULT_ROUTE_NAME",
    "PROXY_CONFIG_ANNOTATION",
    "default_route",
    "has_fault",
    "http_with_fault",
    "istio_fault",
    "jwks_without_signing_key",
    "jwt_rules_with_jwks",
    "proxy_config_with_secret_ttl",
]
