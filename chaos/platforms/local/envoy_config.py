"""Envoy configurations of the local platform: the public face of the ``envoy_*`` modules.

Use::

    for proxy in proxy_configs(layout, ProxyOptions()):
        proxy.write()                     # SDS side files, then <dir>/envoy.json
        argv = proxy.argv(envoy_binary()) # run it; ready when GET proxy.ready_url is 200

In the mesh setup, :class:`~chaos.platforms.local.controlplane.MeshControlPlane`
must have written the xDS files before the pod proxies start.

Names other modules read (stable):

=============  ===========================================================================
proxy          listeners / HCM stat prefixes / clusters / route configs
=============  ===========================================================================
sidecar, mesh  listeners ``inbound`` (<pod>:15006, mTLS+JWT) and ``outbound`` (<pod>:15001);
pod proxy      HCM prefixes ``inbound``/``outbound``; clusters ``local_app`` and
               ``checkout``/``payments``; route configs ``inbound``/``outbound``
ambient node   listeners and tcp_proxy prefixes ``hbone_inbound-<pod>`` (<pod>:15008),
``ztunnel-N``  ``outbound-<pod>`` (<pod>:15001); clusters ``app-<pod>``, ``outbound-<pod>``
waypoint       listener and HCM prefix ``waypoint`` (<waypoint>:15008); cluster ``<svc>``
ingress        listener and HCM prefix ``ingress`` (mesh: fault filter, outbound keys);
               cluster ``frontend``
=============  ===========================================================================

Stats (``GET <admin>/stats?format=json``):

* faults: ``http.<inbound|outbound|waypoint|ingress>.fault.delays_injected`` /
  ``.aborts_injected``; requests per HCM: ``http.<prefix>.downstream_rq_total``
* JWT: ``http.inbound.jwt_authn.allowed`` / ``.denied``
* TLS, client side: ``cluster.<cluster>.ssl.fail_verify_error``, ``.ssl.handshake``,
  ``cluster.<cluster>.upstream_cx_connect_fail``; server side:
  ``listener.<listener>.ssl.fail_verify_no_cert``, ``.ssl.fail_verify_error``,
  ``.ssl.connection_error``, ``.ssl.handshake``
* resilience: ``cluster.<cluster>.upstream_rq_retry``, ``.upstream_rq_retry_success``,
  ``.outlier_detection.ejections_enforced_total``, ``.upstream_cx_max_duration_reached``
* config (mesh): ``GET <admin>/config_dump`` -> the route configs' ``version_info``

Fault runtime keys (``POST <admin>/runtime_modify?key=value``): :data:`INBOUND_FAULT_KEYS`
(``fault.inbound.delay.percent``, ``fault.inbound.delay.duration_ms``,
``fault.inbound.abort.percent``, ``fault.inbound.abort.http_status``) on the pods'
inbound side and on every waypoint, :data:`OUTBOUND_FAULT_KEYS` (``fault.outbound.*``)
on the pods' outbound side; :func:`fault_runtime_values` gives the pairs to post.

Retries, timeouts, load balancing, circuit breakers, outlier detection and the
connection lifetime come from each setup's data plane
(:mod:`chaos.platforms.shared.dataplane`, carried by ``ProxyOptions``): Istio's
defaults in mesh and ambient, where a connection lives until it is idle for 1 h (no
``max_connection_duration``). An expired certificate only fails *new* handshakes, so a
cert-expiry shows only as connections are renewed: an experiment sets a
``connection_lifetime`` (the fault's or ``dataplane:``), and it is reported.
"""

from __future__ import annotations

from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.local.envoy_ambient import ambient_configs, node_proxy_config, waypoint_config
from chaos.platforms.local.envoy_mesh import (
    MeshResources,
    MeshState,
    mesh_proxy_config,
    mesh_resources,
    mesh_xds_paths,
)
from chaos.platforms.local.envoy_process import (
    BOOTSTRAP_FILE,
    ProxyConfig,
    envoy_argv,
    envoy_binary,
)
from chaos.platforms.local.envoy_sidecar import (
    ingress_config,
    sidecar_config,
    sidecar_jwks_path,
)
from chaos.platforms.shared.envoy_common import (
    LOCAL_APP_CLUSTER,
    VIA_HEADER,
    Direction,
    Json,
    ProxyOptions,
    sds_files_for,
)
from chaos.platforms.shared.envoy_faults import (
    DEFAULT_DELAY_MS,
    FAULT_KEYS,
    INBOUND_FAULT_KEYS,
    OUTBOUND_FAULT_KEYS,
    FaultConfig,
    FaultRuntimeKeys,
    fault_runtime_values,
)
from chaos.platforms.shared.layout import TopologyLayout


def proxy_configs(
    layout: TopologyLayout, opts: ProxyOptions, *, jwks_path: Path | None = None
) -> list[ProxyConfig]:
    """Every Envoy of a topology, the ingress last.

    ``jwks_path`` is the key set file the sidecar-setup proxies read once at start
    (default: ``<pod>/jwks.json``, see :func:`sidecar_jwks_path`).
    """
    configs: list[ProxyConfig] = []
    if layout.setup is Setup.SIDECAR:
        configs += [sidecar_config(layout, p, opts, jwks_path=jwks_path) for p in layout.pods]
    elif layout.setup is Setup.MESH:
        configs += [mesh_proxy_config(layout, p, opts) for p in layout.pods]
    elif layout.setup is Setup.AMBIENT:
        configs += ambient_configs(layout, opts)
    configs.append(ingress_config(layout, opts))
    return configs


def proxy_argv(envoy: Path, config_path: Path, *, log_path: Path, node_id: str) -> list[str]:
    """:func:`envoy_argv` with the node id as cluster too (for callers that have no cluster)."""
    return envoy_argv(config_path, log_path=log_path, node_id=node_id, cluster=node_id, envoy=envoy)


__all__ = [
    "BOOTSTRAP_FILE",
    "DEFAULT_DELAY_MS",
    "FAULT_KEYS",
    "INBOUND_FAULT_KEYS",
    "LOCAL_APP_CLUSTER",
    "OUTBOUND_FAULT_KEYS",
    "VIA_HEADER",
    "Direction",
    "FaultConfig",
    "FaultRuntimeKeys",
    "Json",
    "MeshResources",
    "MeshState",
    "ProxyConfig",
    "ProxyOptions",
    "ambient_configs",
    "envoy_argv",
    "envoy_binary",
    "fault_runtime_values",
    "ingress_config",
    "mesh_proxy_config",
    "mesh_resources",
    "mesh_xds_paths",
    "node_proxy_config",
    "proxy_argv",
    "proxy_configs",
    "sds_files_for",
    "sidecar_config",
    "sidecar_jwks_path",
    "waypoint_config",
]
