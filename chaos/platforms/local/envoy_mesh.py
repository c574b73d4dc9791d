"""The mesh setup's per-pod Envoy: a bootstrap that reads everything else from watched files.

The bootstrap holds only the node, the admin API (``<pod>:15000``), the runtime
layers and ``dynamic_resources``: LDS and CDS from files that the local control
plane (:mod:`chaos.platforms.local.controlplane`) replaces atomically. Files
under the pod's directory::

    xds/lds/lds.json                 listeners ``inbound`` (:15006) and ``outbound`` (:15001)
    xds/cds/cds.json                 clusters ``local_app``, ``checkout`` / ``payments``
    xds/rds-inbound/routes.json      route config ``inbound`` (faults of direction inbound)
    xds/rds-outbound/routes.json     route config ``outbound`` (faults of direction outbound)
    xds/ecds-jwt/jwt.json            the ``jwt_authn`` filter config (ECDS), key set inline
    certs.sds.json                   SDS secrets ``default`` and ``ROOTCA`` naming certs/

Each xDS file sits alone in a watched directory, so replacing one reloads only
that resource type. Neither a fault push (a route config, by RDS) nor a key-set
push (the ``jwt_authn`` filter config, by ECDS, with the set inline as
``local_jwks``) touches the listeners: nothing drains, the next request sees it.

Names and stat prefixes are those of the sidecar setup (listeners and HCMs
``inbound``/``outbound``, clusters ``local_app``/``checkout``/``payments``); routes
and clusters follow the mesh's data plane (:mod:`chaos.platforms.shared.dataplane`:
Istio's retries on the outbound routes, stat ``cluster.<svc>.upstream_rq_retry`` and
``upstream_rq_retry_overflow``; ``reset-before-request`` on the inbound route; outlier
detection only when the experiment turns it on).
Certificates come by SDS from ``certs/`` (the ``..data`` swap of the cert agent
reloads them without a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chaos.platforms.local.envoy_process import ProxyConfig
from chaos.platforms.local.envoy_sidecar import (
    inbound_listener,
    inbound_routes,
    outbound_listener,
    outbound_routes,
    pod_clusters,
)
from chaos.platforms.shared.envoy_common import (
    JWT_FILTER,
    TYPE_CLUSTER,
    TYPE_EXTENSION_CONFIG,
    TYPE_JWT,
    TYPE_LISTENER,
    TYPE_ROUTE_CONFIG,
    Direction,
    Json,
    ProxyOptions,
    admin,
    jwt_filter,
    layered_runtime,
    node,
    sds_certs,
    sds_files,
)
from chaos.platforms.shared.envoy_faults import FaultConfig, fault_config
from chaos.platforms.shared.envoy_rbac import rbac_file
from chaos.platforms.shared.layout import JWT_AUDIENCE, SERVICES, Pod, TopologyLayout

#: The route config name of each direction (also the RDS resource name).
ROUTE_NAMES: dict[Direction, str] = {"inbound": "inbound", "outbound": "outbound"}
#: A key set that accepts no token: what a proxy has before the first push.
EMPTY_JWKS = '{"keys": []}'


@dataclass(frozen=True)
class MeshXdsPaths:
    """Where one mesh proxy's xDS files live."""

    lds: Path
    cds: Path
    rds: dict[Direction, Path]
    jwt: Path


def mesh_xds_paths(pod: Pod) -> MeshXdsPaths:
    xds = pod.dir / "xds"
    return MeshXdsPaths(
        lds=xds / "lds" / "lds.json",
        cds=xds / "cds" / "cds.json",
        rds={d: xds / f"rds-{d}" / "routes.json" for d in ("inbound", "outbound")},
        jwt=xds / "ecds-jwt" / "jwt.json",
    )


def _path_source(path: Path) -> Json:
    return {
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
        "resource_api_version": "V3",
    }


def mesh_proxy_config(layout: TopologyLayout, pod: Pod, opts: ProxyOptions) -> ProxyConfig:
    """The bootstrap of a mesh pod's proxy (the xDS files come from the control plane)."""
    paths = mesh_xds_paths(pod)
    name = pod.proxy_name or pod.name
    bootstrap: Json = {
        "node": node(name, pod.service),
        "admin": admin(pod.address),
        "layered_runtime": layered_runtime(),
        "dynamic_resources": {
            "lds_config": _path_source(paths.lds),
            "cds_config": _path_source(paths.cds),
        },
    }
    token = opts.policy(layout.setup).token
    rbac = rbac_file(pod.dir, require_token=token.rbac_requires(first=pod.service == SERVICES[0]))
    files = (*sds_files(sds_certs(pod.certs_dir)), rbac)
    return ProxyConfig(name, pod.name, pod.dir, pod.admin_url or "", bootstrap, files)


@dataclass(frozen=True)
class MeshState:
    """What the control plane wants one proxy to run: the key set and the faults."""

    jwks_json: str = EMPTY_JWKS
    faults: dict[Direction, FaultConfig | None] = field(
        default_factory=lambda: {"inbound": None, "outbound": None}
    )
    #: Pods taken out of the endpoints (their proxy is not ready).
    unready: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MeshResources:
    """One proxy's xDS resources, ready to be wrapped in a discovery response."""

    listeners: list[Json]
    clusters: list[Json]
    routes: dict[Direction, Json]
    #: The ``jwt_authn`` filter config as an ECDS resource.
    jwt: Json


def _fault_override(direction: Direction, fault: FaultConfig | None) -> Json | None:
    return fault_config(direction, fault) if fault is not None else None


def mesh_resources(
    layout: TopologyLayout, pod: Pod, opts: ProxyOptions, state: MeshState
) -> MeshResources:
    """Render the listeners, clusters and route configs of a mesh pod's proxy."""
    certs = sds_certs(pod.certs_dir)
    token = opts.policy(layout.setup).token
    jwt = jwt_filter(
        layout.jwt_issuer,
        JWT_AUDIENCE,
        {"inline_string": state.jwks_json},
        forward=token.forward,
        required=token.jwt_requires(first=pod.service == SERVICES[0]),
    )
    jwt_discovery: Json = {
        "name": JWT_FILTER,
        "config_discovery": {
            "config_source": _path_source(mesh_xds_paths(pod).jwt),
            "type_urls": [TYPE_JWT],
        },
    }

    def rds(direction: Direction) -> Json:
        return {
            "route_config_name": ROUTE_NAMES[direction],
            "config_source": _path_source(mesh_xds_paths(pod).rds[direction]),
        }

    listeners = [
        inbound_listener(layout, pod, certs, opts, jwt_discovery, rds=rds("inbound")),
        outbound_listener(pod, rds=rds("outbound")),
    ]
    routes: dict[Direction, Json] = {
        "inbound": inbound_routes(
            pod, opts, _fault_override("inbound", state.faults.get("inbound")), setup=layout.setup
        ),
        "outbound": outbound_routes(
            pod,
            opts,
            setup=layout.setup,
            fault=_fault_override("outbound", state.faults.get("outbound")),
        ),
    }
    return MeshResources(
        listeners=[{"@type": TYPE_LISTENER, **lst} for lst in listeners],
        clusters=[
            {"@type": TYPE_CLUSTER, **c}
            for c in pod_clusters(layout, pod, certs, opts, state.unready)
        ],
        routes={d: {"@type": TYPE_ROUTE_CONFIG, **r} for d, r in routes.items()},
        jwt={"@type": TYPE_EXTENSION_CONFIG, **jwt},
    )
