"""The sidecar setup's per-pod Envoy (a static bootstrap) and the ingress of every setup.

Sidecar pod proxy, admin on ``<pod>:15000``:

* listener ``inbound`` on ``<pod>:15006``: mTLS termination (client certificate
  from the CA with a SAN under ``spiffe://cluster.local/ns/sidecar/``), HCM
  ``inbound``: ``jwt_authn`` (key set read once from a file at start), the fault
  filter (:data:`~.envoy_common.INBOUND_FAULT_KEYS`), router, route config
  ``inbound`` -> cluster ``local_app`` (``<pod>:8080``).
* listener ``outbound`` on ``<pod>:15001``: plain HTTP from the app, HCM
  ``outbound``: the fault filter (:data:`~.envoy_common.OUTBOUND_FAULT_KEYS`),
  router, route config ``outbound`` with one virtual host per callable service
  (Host ``checkout`` / ``payments``) -> cluster ``checkout`` / ``payments``
  (the replicas' ``:15006``, mTLS with the pod's identity; retries, load balancing,
  timeouts and circuit breakers from the setup's data-plane table).

Certificates come from ``<pod>/certs/{cert,key,ca}.pem`` as static
``tls_certificates``: read once at start, never rotated.

Ingress (all setups), admin on ``127.0.<slot>.1:15000``: listener ``ingress`` on
``127.0.0.1:<port>`` (plain HTTP), HCM ``ingress`` (in mesh with the fault filter on
the outbound keys: it is the frontend's caller, where Istio applies a VirtualService
fault on the frontend; stat ``http.ingress.fault.*``), route config ``ingress`` ->
cluster ``frontend`` (mTLS as ``spiffe://cluster.local/ns/<setup>/sa/ingress``) to
the frontend replicas' ``:15006`` (sidecar, mesh) or the frontend waypoint's
``:15008`` (ambient). Its certificates are static in the sidecar setup (the
init step writes them once) and SDS-delivered in mesh and ambient (the cert
agent rotates them). Every route and cluster follows the setup's data plane
(:mod:`chaos.platforms.shared.dataplane`): in sidecar no retries and Envoy's
defaults; in mesh and ambient the ingress retries as an Istio gateway route does.
"""

from __future__ import annotations

from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.local.envoy_process import ProxyConfig
from chaos.platforms.shared.envoy_common import (
    LOCAL_APP_CLUSTER,
    Certs,
    Json,
    ProxyOptions,
    SdsCerts,
    StaticCerts,
    admin,
    cluster,
    downstream_tls,
    http_connection_manager,
    jwt_filter,
    layered_runtime,
    listener,
    node,
    route,
    sds_certs,
    sds_files,
    upstream_tls,
    virtual_host,
)
from chaos.platforms.shared.envoy_faults import fault_filter
from chaos.platforms.shared.envoy_rbac import rbac_file, rbac_filter
from chaos.platforms.shared.layout import CALLS, JWT_AUDIENCE, SERVICES, Pod, Port, TopologyLayout

#: The key set file a sidecar reads once at start (in the pod's directory).
SIDECAR_JWKS_FILE = "jwks.json"


def sidecar_jwks_path(pod: Pod) -> Path:
    """Where the init step puts the key set the pod's sidecar reads at start."""
    return pod.dir / SIDECAR_JWKS_FILE


def callable_services(pod: Pod) -> list[str]:
    """The services this pod's app may call (the demo chain: at most one)."""
    upstream = CALLS.get(pod.service)
    return [upstream] if upstream else []


def inbound_listener(
    layout: TopologyLayout,
    pod: Pod,
    certs: Certs,
    opts: ProxyOptions,
    jwt: Json,
    *,
    route_config: Json | None = None,
    rds: Json | None = None,
) -> Json:
    """The pod's inbound: mTLS, JWT, fault, router (inline routes or RDS)."""
    hcm = http_connection_manager(
        "inbound",
        [jwt, rbac_filter(pod.dir), fault_filter("inbound")],
        route_config=route_config,
        rds=rds,
        forward_client_cert=True,
    )
    return listener(
        "inbound", pod.address, int(Port.INBOUND), [hcm], downstream_tls(certs, layout.setup)
    )


def outbound_listener(
    pod: Pod, *, route_config: Json | None = None, rds: Json | None = None
) -> Json:
    """The pod's outbound: plain HTTP from the app, fault, router by Host."""
    hcm = http_connection_manager(
        "outbound", [fault_filter("outbound")], route_config=route_config, rds=rds
    )
    return listener("outbound", pod.address, int(Port.OUTBOUND), [hcm])


def inbound_routes(
    pod: Pod, opts: ProxyOptions, fault: Json | None = None, *, setup: Setup = Setup.SIDECAR
) -> Json:
    """The route to the pod's own app, with ``setup``'s inbound policy."""
    name = pod.proxy_name or pod.name
    to_app = route(
        LOCAL_APP_CLUSTER, name, opts, retries=True, fault=fault, setup=setup, hop="inbound"
    )
    return {"name": "inbound", "virtual_hosts": [virtual_host("inbound", ["*"], [to_app])]}


def outbound_routes(
    pod: Pod, opts: ProxyOptions, *, setup: Setup = Setup.SIDECAR, fault: Json | None = None
) -> Json:
    """One route per callable service, with ``setup``'s outbound policy."""
    name = pod.proxy_name or pod.name
    return {
        "name": "outbound",
        "virtual_hosts": [
            virtual_host(
                svc,
                [svc],
                [route(svc, name, opts, retries=True, fault=fault, setup=setup, hop="outbound")],
            )
            for svc in callable_services(pod)
        ],
    }


def pod_clusters(
    layout: TopologyLayout,
    pod: Pod,
    certs: Certs,
    opts: ProxyOptions,
    unready: frozenset[str] = frozenset(),
) -> list[Json]:
    """``local_app`` plus one mTLS cluster per callable service (its replicas' inbound,
    but those in ``unready``: the control plane took them out of the endpoints)."""
    setup = layout.setup
    # Bound to the pod address, so the app sees its own proxy as the peer (as in a pod).
    clusters = [
        cluster(
            LOCAL_APP_CLUSTER,
            [(pod.address, pod.app_port)],
            opts,
            bind_address=pod.address,
            setup=setup,
        )
    ]
    for svc in callable_services(pod):
        endpoints = [
            (p.address, int(Port.INBOUND)) for p in layout.pods_of(svc) if p.name not in unready
        ]
        tls = upstream_tls(certs, setup)
        clusters.append(cluster(svc, endpoints, opts, tls=tls, outlier=True, setup=setup))
    return clusters


def sidecar_config(
    layout: TopologyLayout, pod: Pod, opts: ProxyOptions, *, jwks_path: Path | None = None
) -> ProxyConfig:
    """The static bootstrap of a sidecar-setup pod's proxy.

    ``jwks_path`` (default :func:`sidecar_jwks_path`) is read once at start: after the
    identity provider rotates its key the proxy keeps the stale set (policy-desync).
    """
    certs = StaticCerts(pod.certs_dir)
    jwks: Json = {"filename": str(jwks_path or sidecar_jwks_path(pod))}
    token = opts.policy(layout.setup).token
    jwt = jwt_filter(
        layout.jwt_issuer,
        JWT_AUDIENCE,
        jwks,
        forward=token.forward,
        required=token.jwt_requires(first=pod.service == SERVICES[0]),
    )
    name = pod.proxy_name or pod.name
    bootstrap: Json = {
        "node": node(name, pod.service),
        "admin": admin(pod.address),
        "layered_runtime": layered_runtime(),
        "static_resources": {
            "listeners": [
                inbound_listener(
                    layout, pod, certs, opts, jwt, route_config=inbound_routes(pod, opts)
                ),
                outbound_listener(pod, route_config=outbound_routes(pod, opts)),
            ],
            "clusters": pod_clusters(layout, pod, certs, opts),
        },
    }
    files = (rbac_file(pod.dir),)
    return ProxyConfig(name, pod.name, pod.dir, pod.admin_url or "", bootstrap, files)


def ingress_certs(layout: TopologyLayout) -> Certs:
    cert_dir = layout.ingress.dir / "certs"
    return StaticCerts(cert_dir) if layout.setup is Setup.SIDECAR else sds_certs(cert_dir)


def ingress_cds_path(layout: TopologyLayout) -> Path:
    """The mesh ingress's CDS file (the control plane writes it, as istiod feeds a gateway)."""
    return layout.ingress.dir / "xds" / "cds" / "cds.json"


def ingress_cluster(
    layout: TopologyLayout, opts: ProxyOptions, unready: frozenset[str] = frozenset()
) -> Json:
    """The ingress's ``frontend`` cluster (without the pods in ``unready``: mesh only)."""
    setup = layout.setup
    certs = None if setup is Setup.BASELINE else ingress_certs(layout)
    if setup is Setup.BASELINE:
        # No proxy in the pods: plain HTTP straight to the frontend apps.
        endpoints = [(p.address, int(Port.APP)) for p in layout.pods_of("frontend")]
    elif setup is Setup.AMBIENT:
        endpoints = [(layout.waypoint("frontend").address, int(Port.HBONE))]
    else:
        endpoints = [
            (p.address, int(Port.INBOUND))
            for p in layout.pods_of("frontend")
            if p.name not in unready
        ]
    return cluster(
        "frontend",
        endpoints,
        opts,
        tls=None if certs is None else upstream_tls(certs, setup),
        outlier=True,
        setup=setup,
    )


def ingress_config(layout: TopologyLayout, opts: ProxyOptions) -> ProxyConfig:
    """The ingress of any setup: plain HTTP in, mTLS to frontend (baseline: plain HTTP).

    In mesh its ``frontend`` cluster comes by CDS from :func:`ingress_cds_path` (the
    control plane takes a crashed frontend's endpoint out after the debounce, as istiod
    does for a gateway); elsewhere it is static.
    """
    ingress = layout.ingress
    setup = layout.setup
    certs = None if setup is Setup.BASELINE else ingress_certs(layout)
    to_frontend = route(
        "frontend", "ingress", opts, retries=True, first=True, setup=setup, hop="ingress"
    )
    # In mesh the ingress is the frontend's caller, where a VirtualService fault on the
    # frontend is applied (switched by the runtime keys of the outbound side).
    ingress_filters = [fault_filter("outbound")] if setup is Setup.MESH else []
    routes: Json = {
        "name": "ingress",
        "virtual_hosts": [virtual_host("ingress", ["*"], [to_frontend])],
    }
    listeners = [
        listener(
            "ingress",
            ingress.host,
            ingress.port,
            [http_connection_manager("ingress", ingress_filters, route_config=routes)],
        )
    ]
    bootstrap: Json = {
        "node": node("ingress", "ingress"),
        "admin": admin(ingress.admin_address),
        "layered_runtime": layered_runtime(),
    }
    if setup is Setup.MESH:
        # An inline route config checks its clusters at load; this one comes by CDS.
        routes["validate_clusters"] = False
        cds = ingress_cds_path(layout)
        bootstrap["static_resources"] = {"listeners": listeners}
        bootstrap["dynamic_resources"] = {
            "cds_config": {
                "path_config_source": {
                    "path": str(cds),
                    "watched_directory": {"path": str(cds.parent)},
                },
                "resource_api_version": "V3",
            }
        }
    else:
        bootstrap["static_resources"] = {
            "listeners": listeners,
            "clusters": [ingress_cluster(layout, opts)],
        }
    files = sds_files(certs) if isinstance(certs, SdsCerts) else ()
    return ProxyConfig("ingress", "ingress", ingress.dir, ingress.admin_url, bootstrap, files)
