"""Shared pieces of every Envoy config: options, names, JWT, routes, clusters, xDS.

Both platforms compose these: the local one in its setups' builders (``envoy_sidecar``,
``envoy_mesh``, ``envoy_ambient``, public face ``chaos.platforms.local.envoy_config``), the
Kubernetes one in its manifests. The fault filter and its runtime keys are in
:mod:`.envoy_faults`; the Envoy process (binary, command line, files) is the local
platform's ``envoy_process``; TLS (certificates, SDS files) is :mod:`.envoy_tls`, whose
names this module re-exports. Everything here is pure:
it returns the Envoy JSON as ``dict[str, object]`` and touches no file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from chaos.experiment import Setup
from chaos.platforms.shared.dataplane import (
    DEFAULTS,
    CircuitBreakers,
    Hop,
    OutlierDetection,
    RetryPolicy,
    SetupDataPlane,
)
from chaos.platforms.shared.envoy_tls import TYPE_DOWNSTREAM_TLS as TYPE_DOWNSTREAM_TLS
from chaos.platforms.shared.envoy_tls import TYPE_SECRET as TYPE_SECRET
from chaos.platforms.shared.envoy_tls import TYPE_UPSTREAM_TLS as TYPE_UPSTREAM_TLS
from chaos.platforms.shared.envoy_tls import Certs as Certs
from chaos.platforms.shared.envoy_tls import Json as Json
from chaos.platforms.shared.envoy_tls import SdsCerts as SdsCerts
from chaos.platforms.shared.envoy_tls import StaticCerts as StaticCerts
from chaos.platforms.shared.envoy_tls import discovery_response as discovery_response
from chaos.platforms.shared.envoy_tls import downstream_tls as downstream_tls
from chaos.platforms.shared.envoy_tls import san_prefix as san_prefix
from chaos.platforms.shared.envoy_tls import sds_certs as sds_certs
from chaos.platforms.shared.envoy_tls import sds_files as sds_files
from chaos.platforms.shared.envoy_tls import sds_files_for as sds_files_for
from chaos.platforms.shared.envoy_tls import sds_secrets as sds_secrets
from chaos.platforms.shared.envoy_tls import upstream_tls as upstream_tls
from chaos.platforms.shared.layout import Port
from chaos.rundir.auth import JWT_PAYLOAD_HEADER

Direction = Literal["inbound", "outbound"]

#: Cluster of a pod's proxy that reaches its own app.
LOCAL_APP_CLUSTER = "local_app"
#: Request header to which every proxy appends its name (the demo app echoes it).
VIA_HEADER = "x-chaos-via"

_T = "type.googleapis.com/"
TYPE_HCM = _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TYPE_TCP_PROXY = _T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TYPE_FAULT = _T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
TYPE_JWT = _T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
TYPE_ROUTER = _T + "envoy.extensions.filters.http.router.v3.Router"
TYPE_LISTENER = _T + "envoy.config.listener.v3.Listener"
TYPE_CLUSTER = _T + "envoy.config.cluster.v3.Cluster"
TYPE_ROUTE_CONFIG = _T + "envoy.config.route.v3.RouteConfiguration"
TYPE_EXTENSION_CONFIG = _T + "envoy.config.core.v3.TypedExtensionConfig"
TYPE_HTTP_OPTIONS = _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
FAULT_FILTER = "envoy.filters.http.fault"
JWT_FILTER = "envoy.filters.http.jwt_authn"
#: The jwt_authn provider name (stats: ``http.<prefix>.jwt_authn.allowed|denied``).
JWT_PROVIDER = "idp"
#: Where jwt_authn puts a validated token's payload (``payload_in_metadata``).
JWT_PAYLOAD_METADATA = "jwt_payload"


def _default_table() -> dict[Setup, SetupDataPlane]:
    return dict(DEFAULTS)


@dataclass(frozen=True)
class ProxyOptions:
    """What the proxies of a topology follow: each setup's data plane (they decide results).

    The table's defaults are :data:`~chaos.platforms.shared.dataplane.DEFAULTS`; an
    experiment's deviations come in through :func:`~chaos.platforms.shared.dataplane.resolve`.
    """

    dataplane: Mapping[Setup, SetupDataPlane] = field(default_factory=_default_table)
    log_level: str = "warning"

    def policy(self, setup: Setup) -> SetupDataPlane:
        """``setup``'s data plane."""
        return self.dataplane[setup]

    def with_policy(self, policy: SetupDataPlane) -> ProxyOptions:
        """These options with ``policy`` for its setup."""
        return replace(self, dataplane={**self.dataplane, policy.setup: policy})


# -- generic pieces --------------------------------------------------------------------


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON form."""
    return f"{seconds:.3f}s"


def socket_address(address: str, port: int) -> Json:
    return {"socket_address": {"address": address, "port_value": port}}


def admin(address: str) -> Json:
    return {"address": socket_address(address, int(Port.ADMIN))}


def node(node_id: str, cluster: str) -> Json:
    return {"id": node_id, "cluster": cluster}


def layered_runtime() -> Json:
    """An admin layer for ``/runtime_modify``, and nothing else.

    No static values for the fault keys: a runtime value overrides the filter's
    config, so a static 0 would mask the faults the mesh control plane pushes.
    """
    return {"layers": [{"name": "admin", "admin_layer": {}}]}


# -- HTTP filters and routes -------------------------------------------------------------


def jwt_filter(
    issuer: str, audience: str, jwks: Json, *, forward: bool = True, required: bool = True
) -> Json:
    """jwt_authn checking tokens of the IdP; ``jwks`` is a ``local_jwks`` DataSource.

    ``required``: a request without a valid token is refused; otherwise only an invalid
    one is (``provider OR allow_missing``, Istio's RequestAuthentication). ``forward``:
    the Authorization header stays on the request (the next hop can check it too);
    otherwise the app never sees it (Istio's default). The validated payload goes to
    the app in ``x-jwt-payload`` (what it sees: rundir/auth).
    """
    provider: Json = {"provider_name": JWT_PROVIDER}
    requires: Json = (
        provider
        if required
        else {"requires_any": {"requirements": [provider, {"allow_missing": {}}]}}
    )
    return {
        "name": JWT_FILTER,
        "typed_config": {
            "@type": TYPE_JWT,
            "providers": {
                JWT_PROVIDER: {
                    "issuer": issuer,
                    "audiences": [audience],
                    "local_jwks": jwks,
                    "forward": forward,
                    "forward_payload_header": JWT_PAYLOAD_HEADER,
                    # what an authorization policy matches a request principal on
                    "payload_in_metadata": JWT_PAYLOAD_METADATA,
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": requires}],
        },
    }


def router_filter() -> Json:
    return {"name": "envoy.filters.http.router", "typed_config": {"@type": TYPE_ROUTER}}


def via_header(proxy_name: str, *, first: bool = False) -> list[Json]:
    """Route-level header action that appends this proxy's name to ``x-chaos-via``.

    One comma-joined header line, not one line per proxy (Envoy's append), because
    the app reads only the first line. A proxy with nothing before it yields a
    leading empty item (``,name``); ``first`` (the ingress) overwrites what a client sent.
    """
    value = proxy_name if first else f"%REQ({VIA_HEADER})%,{proxy_name}"
    return [
        {
            "header": {"key": VIA_HEADER, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]


PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
TYPE_PREVIOUS_HOSTS = _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"


def retry_policy(policy: RetryPolicy) -> Json:
    """An Envoy ``retry_policy``; the back-off is Envoy's (25 ms base), as in Istio."""
    out: Json = {"retry_on": ",".join(policy.retry_on), "num_retries": policy.attempts}
    if policy.retriable_status_codes:
        out["retriable_status_codes"] = list(policy.retriable_status_codes)
    if policy.previous_hosts:
        out["retry_host_predicate"] = [
            {"name": PREVIOUS_HOSTS, "typed_config": {"@type": TYPE_PREVIOUS_HOSTS}}
        ]
    if policy.host_selection_retry_max_attempts is not None:
        out["host_selection_retry_max_attempts"] = policy.host_selection_retry_max_attempts
    if policy.per_try_timeout_s is not None:
        out["per_try_timeout"] = duration(policy.per_try_timeout_s)
    return out


def route(
    cluster: str,
    proxy_name: str,
    opts: ProxyOptions,
    *,
    retries: bool,
    fault: Json | None = None,
    first: bool = False,
    setup: Setup = Setup.SIDECAR,
    hop: Hop = "outbound",
) -> Json:
    """A catch-all route to ``cluster`` that stamps the via header.

    Timeout and (with ``retries``) retry policy are ``setup``'s at ``hop``.
    """
    policy = opts.policy(setup).route(hop)
    # Envoy's route timeout defaults to 15 s: "disabled" has to be written as 0.
    action: Json = {"cluster": cluster, "timeout": duration(policy.timeout_s or 0)}
    if retries and policy.retries is not None:
        action["retry_policy"] = retry_policy(policy.retries)
    result: Json = {
        "match": {"prefix": "/"},
        "route": action,
        "request_headers_to_add": via_header(proxy_name, first=first),
    }
    if fault is not None:
        result["typed_per_filter_config"] = {FAULT_FILTER: fault}
    return result


def virtual_host(name: str, domains: list[str], routes: list[Json]) -> Json:
    return {"name": name, "domains": domains, "routes": routes}


def http_connection_manager(
    stat_prefix: str,
    http_filters: list[Json],
    *,
    route_config: Json | None = None,
    rds: Json | None = None,
    forward_client_cert: bool = False,
) -> Json:
    """An HCM with either an inline ``route_config`` or an ``rds`` source.

    ``forward_client_cert``: the verified peer goes to the app in
    ``x-forwarded-client-cert``, as Istio's sidecar inbound does (``APPEND_FORWARD``
    with subject, URI and DNS: ``buildSidecarInboundHTTPOpts`` in istio/istio
    ``pilot/pkg/networking/core``). Elsewhere Envoy's default ``SANITIZE`` drops it.
    """
    config: Json = {
        "@type": TYPE_HCM,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        # Hosts like "checkout:15001" match the virtual host "checkout".
        "strip_any_host_port": True,
        "http_filters": [*http_filters, router_filter()],
    }
    if forward_client_cert:
        config["forward_client_cert_details"] = "APPEND_FORWARD"
        config["set_current_client_cert_details"] = {"subject": True, "uri": True, "dns": True}
    if route_config is not None:
        config["route_config"] = route_config
    if rds is not None:
        config["rds"] = rds
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def listener(
    name: str, address: str, port: int, filters: list[Json], transport_socket: Json | None = None
) -> Json:
    chain: Json = {"filters": filters}
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return {
        "name": name,
        "stat_prefix": name,
        "address": socket_address(address, port),
        "filter_chains": [chain],
    }


# -- clusters ---------------------------------------------------------------------------


def _outlier_detection(od: OutlierDetection) -> Json:
    # As Istio writes a DestinationRule's (cluster_traffic_policy.go applyOutlierDetection):
    # success-rate ejection off, consecutive 5xx enforced.
    return {
        "consecutive_5xx": od.consecutive_5xx,
        "enforcing_consecutive_5xx": 100,
        "enforcing_success_rate": 0,
        "interval": duration(od.interval_s),
        "base_ejection_time": duration(od.base_ejection_s),
        "max_ejection_percent": od.max_ejection_percent,
    }


def circuit_breakers(cb: CircuitBreakers) -> Json:
    return {
        "thresholds": [
            {
                "max_connections": cb.max_connections,
                "max_pending_requests": cb.max_pending_requests,
                "max_requests": cb.max_requests,
                "max_retries": cb.max_retries,
                "track_remaining": cb.track_remaining,
            }
        ]
    }


def cluster(
    name: str,
    endpoints: list[tuple[str, int]],
    opts: ProxyOptions,
    *,
    tls: Json | None = None,
    outlier: bool = False,
    bind_address: str | None = None,
    http: bool = True,
    setup: Setup = Setup.SIDECAR,
) -> Json:
    """A static cluster with ``setup``'s upstream policy (LB, timeouts, breakers, lifetime).

    ``outlier``: a cluster towards a service, where the setup's outlier detection applies.
    """
    up = opts.policy(setup).upstream
    result: Json = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": duration(up.connect_timeout_s),
        "lb_policy": up.lb_policy,
        "circuit_breakers": circuit_breakers(up.circuit_breakers),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": socket_address(a, p)}} for a, p in endpoints
                    ]
                }
            ],
        },
    }
    if http:
        common: Json = {"idle_timeout": duration(up.idle_timeout_s)}
        if up.max_connection_duration_s is not None:
            common["max_connection_duration"] = duration(up.max_connection_duration_s)
        if up.max_requests_per_connection is not None:
            common["max_requests_per_connection"] = up.max_requests_per_connection
        result["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": TYPE_HTTP_OPTIONS,
                "common_http_protocol_options": common,
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }
    if tls is not None:
        result["transport_socket"] = tls
    if outlier and up.outlier_detection is not None:
        result["outlier_detection"] = _outlier_detection(up.outlier_detection)
        # Istio's minHealthPercent 0: no panic mode with few pods per service.
        result["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
    if bind_address is not None:
        result["upstream_bind_config"] = {
            "source_address": {"address": bind_address, "port_value": 0}
        }
    return result
