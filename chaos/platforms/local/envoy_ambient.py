"""The ambient setup: one L4 node proxy per node (ztunnel's role) and one L7 waypoint per service.

Node proxy ``ztunnel-<node>`` (admin on its own address ``127.0.<slot>.10x:15000``)
listens on the address of each of its pods, as ztunnel does inside each pod's
network namespace:

* listener ``hbone_inbound-<pod>`` on ``<pod>:15008``: mTLS termination with the
  pod's identity (SDS secret ``<pod>``), client certificate required, then
  ``tcp_proxy`` (stat prefix ``hbone_inbound-<pod>``) to cluster ``app-<pod>``
  (``<pod>:8080``), bound to the node proxy's address so the app sees the node
  proxy as its peer. Plain mTLS-wrapped TCP, not HTTP CONNECT as real HBONE.
* listener ``outbound-<pod>`` on ``<pod>:15001`` (pods that call an upstream):
  plain TCP from the app, ``tcp_proxy`` (stat prefix ``outbound-<pod>``) to cluster
  ``outbound-<pod>``: mTLS with the pod's identity as client certificate to the
  upstream service's waypoint at ``<waypoint>:15008``.

Files: ``nodes/<node>/certs/<pod>/`` (one identity per pod, rotated by the cert
agent) and their SDS files ``nodes/<node>/certs/<pod>.sds.json``.

Waypoint ``waypoint-<svc>`` (admin ``<waypoint>:15000``): listener ``waypoint`` on
``<waypoint>:15008``, mTLS with its own identity (``waypoints/<svc>/certs/``, SDS),
HCM ``waypoint`` with the fault filter on the *inbound* runtime keys (a
waypoint is the inbound side of its service), router, route config ``waypoint``
-> cluster ``<svc>``: the service's replicas at ``<pod>:15008`` (through the
destination node's proxy), mTLS with the waypoint's identity. Routes and clusters
follow ambient's data plane (:mod:`chaos.platforms.shared.dataplane`): a waypoint
without an HTTP VirtualService retries only ``reset-before-request`` (2), no route
timeout, LEAST_REQUEST, no outlier detection. A connection lifetime set by the
experiment also recycles the waypoint's downstream connections: the node proxy in
front of it is L4 and cannot, so this is what makes apps reconnect in ambient.
"""

from __future__ import annotations

from pathlib import Path

from chaos.platforms.local.envoy_process import ProxyConfig
from chaos.platforms.shared.envoy_common import (
    TYPE_HCM,
    TYPE_TCP_PROXY,
    Json,
    ProxyOptions,
    admin,
    cluster,
    downstream_tls,
    duration,
    http_connection_manager,
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
from chaos.platforms.shared.layout import (
    CALLS,
    NodeProxy,
    Port,
    TopologyLayout,
    Waypoint,
)


def _tcp_proxy(stat_prefix: str, cluster_name: str) -> Json:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": TYPE_TCP_PROXY,
            "stat_prefix": stat_prefix,
            "cluster": cluster_name,
        },
    }


def node_proxy_config(layout: TopologyLayout, proxy: NodeProxy, opts: ProxyOptions) -> ProxyConfig:
    """The L4 proxy of one node: HBONE inbound and outbound capture for each of its pods."""
    listeners: list[Json] = []
    clusters: list[Json] = []
    files: list[tuple[Path, Json]] = []
    for pod_name in proxy.pods:
        pod = layout.pod(pod_name)
        certs = sds_certs(proxy.dir / "certs" / pod.name, pod.name, f"{pod.name}-ca")
        files += sds_files(certs)
        inbound = f"hbone_inbound-{pod.name}"
        listeners.append(
            listener(
                inbound,
                pod.address,
                int(Port.HBONE),
                [_tcp_proxy(inbound, f"app-{pod.name}")],
                downstream_tls(certs, layout.setup),
            )
        )
        clusters.append(
            cluster(
                f"app-{pod.name}",
                [(pod.address, pod.app_port)],
                opts,
                bind_address=proxy.address,
                http=False,
                setup=layout.setup,
            )
        )
        upstream = CALLS.get(pod.service)
        if upstream is None:
            continue
        outbound = f"outbound-{pod.name}"
        listeners.append(
            listener(outbound, pod.address, int(Port.OUTBOUND), [_tcp_proxy(outbound, outbound)])
        )
        waypoint = layout.waypoint(upstream)
        clusters.append(
            cluster(
                outbound,
                [(waypoint.address, int(Port.HBONE))],
                opts,
                tls=upstream_tls(certs, layout.setup),
                http=False,
                setup=layout.setup,
            )
        )
    bootstrap: Json = {
        "node": node(proxy.name, "ztunnel"),
        "admin": admin(proxy.address),
        "layered_runtime": layered_runtime(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    return ProxyConfig(proxy.name, proxy.name, proxy.dir, proxy.admin_url, bootstrap, tuple(files))


def waypoint_config(layout: TopologyLayout, waypoint: Waypoint, opts: ProxyOptions) -> ProxyConfig:
    """The L7 proxy of one service: mTLS in, faults, retries, mTLS to the pods' HBONE port."""
    certs = sds_certs(waypoint.dir / "certs")
    setup = layout.setup
    to_pods = route(
        waypoint.service, waypoint.name, opts, retries=True, setup=setup, hop="waypoint"
    )
    routes: Json = {
        "name": "waypoint",
        "virtual_hosts": [virtual_host("waypoint", ["*"], [to_pods])],
    }
    hcm = http_connection_manager(
        "waypoint",
        [rbac_filter(waypoint.dir), fault_filter("inbound")],
        route_config=routes,
        forward_client_cert=True,
    )
    lifetime = opts.policy(setup).upstream.max_connection_duration_s
    if lifetime is not None:
        # The node proxy in front is L4 and cannot recycle the app's connections: a
        # connection lifetime set by the experiment is applied here too.
        typed = hcm["typed_config"]
        assert isinstance(typed, dict) and typed.get("@type") == TYPE_HCM
        typed["common_http_protocol_options"] = {"max_connection_duration": duration(lifetime)}
    endpoints = [(p.address, int(Port.HBONE)) for p in layout.pods_of(waypoint.service)]
    bootstrap: Json = {
        "node": node(waypoint.name, f"{waypoint.service}-waypoint"),
        "admin": admin(waypoint.address),
        "layered_runtime": layered_runtime(),
        "static_resources": {
            "listeners": [
                listener(
                    "waypoint",
                    waypoint.address,
                    int(Port.HBONE),
                    [hcm],
                    downstream_tls(certs, layout.setup),
                )
            ],
            "clusters": [
                cluster(
                    waypoint.service,
                    endpoints,
                    opts,
                    tls=upstream_tls(certs, setup),
                    outlier=True,
                    setup=setup,
                )
            ],
        },
    }
    return ProxyConfig(
        waypoint.name,
        waypoint.name,
        waypoint.dir,
        waypoint.admin_url,
        bootstrap,
        (*sds_files(certs), rbac_file(waypoint.dir)),
    )


def ambient_configs(layout: TopologyLayout, opts: ProxyOptions) -> list[ProxyConfig]:
    """Every node proxy and waypoint of an ambient topology (the ingress comes apart)."""
    return [
        *(node_proxy_config(layout, p, opts) for p in layout.node_proxies),
        *(waypoint_config(layout, w, opts) for w in layout.waypoints),
    ]
