"""Istio and Gateway API objects of the mesh and ambient setups, and the HTTP fault.

* ``PeerAuthentication`` ``default``: mTLS STRICT in the namespace (mesh, ambient).
* ``RequestAuthentication`` ``jwt`` (namespace-wide: every sidecar validates a token
  that is there, and removes it before the app, Istio's ``forwardOriginalToken``
  default) + ``AuthorizationPolicy`` ``require-jwt`` (frontend only: later hops never
  get the token) (mesh; in ambient they can target a waypoint, which is where
  policy-desync acts there).
* ``DestinationRule`` per service: the mesh defaults the local platform's mesh has
  (outlier detection, a bounded connection lifetime, Istio mTLS).
* ``VirtualService`` per service: the mesh retries, and the one place an HTTP
  fault is set (:func:`virtual_service` with a :class:`HttpFault`). Istio merges
  several VirtualServices of one host unpredictably, so a fault is set by
  replacing the ``http`` list of the service's own VirtualService, never by a
  second one. In ambient the service's waypoint serves it.
* ``Gateway`` ``<service>-waypoint`` (class ``istio-waypoint``): ambient's L7 proxy.

Every builder is pure. :data:`CUSTOM_RESOURCES` gives the (group, version, plural)
the custom-objects API needs for each kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests.core import Manifest, metadata
from chaos.platforms.shared.dataplane import (
    DEFAULTS,
    SetupDataPlane,
    istio_http_retries,
    istio_traffic_policy,
)
from chaos.platforms.shared.envoy_common import ProxyOptions, duration
from chaos.rundir.auth import JWT_PAYLOAD_HEADER

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_SECURITY = "security.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class CustomResource:
    """Where a custom kind lives in the API (``/apis/<group>/<version>/.../<plural>``)."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


CUSTOM_RESOURCES: dict[str, CustomResource] = {
    "PeerAuthentication": CustomResource(ISTIO_SECURITY, "v1", "peerauthentications"),
    "RequestAuthentication": CustomResource(ISTIO_SECURITY, "v1", "requestauthentications"),
    "AuthorizationPolicy": CustomResource(ISTIO_SECURITY, "v1", "authorizationpolicies"),
    "DestinationRule": CustomResource(ISTIO_NETWORKING, "v1", "destinationrules"),
    "VirtualService": CustomResource(ISTIO_NETWORKING, "v1", "virtualservices"),
    "Gateway": CustomResource(GATEWAY_API, "v1", "gateways"),
}


def _policy(setup: names.Setup, opts: ProxyOptions) -> SetupDataPlane:
    """``setup``'s data plane from ``opts`` (the local platform's table; Istio's by default)."""
    return opts.dataplane.get(setup, DEFAULTS[setup])


#: The HBONE port of ambient waypoints.
HBONE_PORT = 15008
#: The label that says what a waypoint serves.
WAYPOINT_FOR_LABEL = "istio.io/waypoint-for"
REQUEST_AUTHENTICATION_NAME = "jwt"
AUTHORIZATION_POLICY_NAME = "require-jwt"
#: The route name of a service's VirtualService (a fault targets it by name).
ROUTE_NAME = "default"


def _custom(kind: str, meta: Manifest, spec: Manifest) -> Manifest:
    return {
        "apiVersion": CUSTOM_RESOURCES[kind].api_version,
        "kind": kind,
        "metadata": meta,
        "spec": spec,
    }


def _percent(value: float) -> float:
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"a percentage must be within 0..100, got {value}")
    return float(value)


@dataclass(frozen=True)
class HttpFault:
    """An HTTP fault on a route: a fixed delay and/or an abort, each on a share of requests."""

    delay_percent: float = 0.0
    delay_ms: int = 1000
    abort_percent: float = 0.0
    abort_status: int = 503

    def __post_init__(self) -> None:
        _percent(self.delay_percent)
        _percent(self.abort_percent)
        if self.delay_ms <= 0:
            raise ValueError(f"delay_ms must be positive, got {self.delay_ms}")
        if not 200 <= self.abort_status <= 599:
            raise ValueError(f"abort_status must be an HTTP status, got {self.abort_status}")
        if self.delay_percent == 0 and self.abort_percent == 0:
            raise ValueError("an HTTP fault needs a delay or an abort percentage above 0")

    def to_istio(self) -> Manifest:
        """The VirtualService ``fault`` field."""
        fault: Manifest = {}
        if self.delay_percent > 0:
            fault["delay"] = {
                "fixedDelay": f"{self.delay_ms}ms",
                "percentage": {"value": self.delay_percent},
            }
        if self.abort_percent > 0:
            fault["abort"] = {
                "httpStatus": self.abort_status,
                "percentage": {"value": self.abort_percent},
            }
        return fault


# -- security -----------------------------------------------------------------------------


def peer_authentication(setup: names.Setup) -> Manifest:
    """Namespace-wide mTLS STRICT."""
    return _custom(
        "PeerAuthentication",
        metadata("default", names.namespace_of(setup)),
        {"mtls": {"mode": "STRICT"}},
    )


def waypoint_target_ref(service: str) -> Manifest:
    """A policy's reference to a service's waypoint (ambient)."""
    return {"group": GATEWAY_API, "kind": "Gateway", "name": names.waypoint_name(service)}


def request_authentication(
    setup: names.Setup,
    *,
    issuer: str,
    jwks_json: str,
    waypoints: tuple[str, ...] = (),
    run_id: str | None = None,
) -> Manifest:
    """Tokens of ``issuer`` validated with the inline key set ``jwks_json``.

    Namespace-wide, or for the given services' waypoints (ambient). Swapping
    ``jwks`` to a key set without the signing key is the mesh's policy-desync.
    """
    rule: Manifest = {
        "issuer": issuer,
        "audiences": [names.JWT_AUDIENCE],
        "jwks": jwks_json,
        # the validated payload reaches the app (what it received: rundir/auth)
        "outputPayloadToHeader": JWT_PAYLOAD_HEADER,
    }
    if DEFAULTS[setup].token.forward:
        rule["forwardOriginalToken"] = True  # else Istio's default: removed before the app
    spec: Manifest = {"jwtRules": [rule]}
    if waypoints:
        spec["targetRefs"] = [waypoint_target_ref(s) for s in waypoints]
    return _custom(
        "RequestAuthentication",
        metadata(REQUEST_AUTHENTICATION_NAME, names.namespace_of(setup), run_id=run_id),
        spec,
    )


def authorization_policy(
    setup: names.Setup, *, waypoints: tuple[str, ...] = (), run_id: str | None = None
) -> Manifest:
    """Allow only requests that carry a valid token (a request principal).

    Where the setup requires the token at the first hop only (Istio's default removes it
    before the app, so later hops never get one), the policy selects the first service.
    """
    spec: Manifest = {
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}],
    }
    if DEFAULTS[setup].token.check == "first hop" and not waypoints:
        spec["selector"] = {"matchLabels": {names.LABEL_APP: names.SERVICES[0]}}
    if waypoints:
        spec["targetRefs"] = [waypoint_target_ref(s) for s in waypoints]
    return _custom(
        "AuthorizationPolicy",
        metadata(AUTHORIZATION_POLICY_NAME, names.namespace_of(setup), run_id=run_id),
        spec,
    )


# -- traffic ------------------------------------------------------------------------------


def destination_rule(service: str, setup: names.Setup, opts: ProxyOptions) -> Manifest:
    """The traffic policy towards a service: Istio mTLS plus the setup's data-plane deviations
    (:func:`~chaos.platforms.shared.dataplane.istio_traffic_policy`)."""
    spec: Manifest = {
        "host": names.service_host(service, setup),
        "trafficPolicy": istio_traffic_policy(_policy(setup, opts)),
    }
    return _custom("DestinationRule", metadata(service, names.namespace_of(setup)), spec)


def http_route(
    service: str, setup: names.Setup, opts: ProxyOptions, fault: HttpFault | None = None
) -> Manifest:
    """The one route of a service's VirtualService: the setup's retries, and ``fault``.

    Ambient's VirtualService is served by the waypoint, which without one retries only
    ``reset-before-request``: its retries say so, so the VirtualService changes nothing.
    """
    policy = _policy(setup, opts)
    host = names.service_host(service, setup)
    route: Manifest = {
        "name": ROUTE_NAME,
        "route": [{"destination": {"host": host, "port": {"number": names.APP_PORT}}}],
    }
    timeout = policy.route("waypoint" if setup is names.Setup.AMBIENT else "outbound").timeout_s
    if timeout is not None:
        route["timeout"] = duration(timeout)
    retries = istio_http_retries(policy, "waypoint" if setup is names.Setup.AMBIENT else "outbound")
    if retries is not None:
        route["retries"] = retries
    if fault is not None:
        route["fault"] = fault.to_istio()
    return route


def virtual_service(
    service: str,
    setup: names.Setup,
    opts: ProxyOptions,
    fault: HttpFault | None = None,
    *,
    run_id: str | None = None,
) -> Manifest:
    """A service's VirtualService: retries, plus ``fault`` on its route when given.

    Applied by client-side sidecars in mesh and by the service's waypoint in ambient.
    """
    spec: Manifest = {
        "hosts": [names.service_host(service, setup)],
        "http": [http_route(service, setup, opts, fault)],
    }
    return _custom(
        "VirtualService", metadata(service, names.namespace_of(setup), run_id=run_id), spec
    )


def waypoint(service: str, setup: names.Setup = names.Setup.AMBIENT) -> Manifest:
    """A service's waypoint: a Gateway of class ``istio-waypoint`` serving its Service."""
    meta = metadata(
        names.waypoint_name(service),
        names.namespace_of(setup),
        labels={WAYPOINT_FOR_LABEL: "service"},
    )
    spec: Manifest = {
        "gatewayClassName": names.WAYPOINT_CLASS,
        "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}],
    }
    return _custom("Gateway", meta, spec)
