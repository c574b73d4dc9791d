"""What an identity or control-plane fault on a cluster reaches beyond its target pods.

The blast radius a run journals before it applies a fault (``fault_planned``):

* istiod at 0 (cert-expiry in mesh and ambient, control-plane-outage) stops certificates
  and config for every namespace it serves, not only the target's: each is listed;
* ambient cert-expiry sets ``SECRET_TTL`` on the ztunnel DaemonSet, whose rollout
  (maxSurge 1, maxUnavailable 0) restarts the ztunnel of every node: each ztunnel pod
  and its node is listed, with every pod of the demo (all are on a node);
* the Locust workers are ambient-enrolled and scheduled anywhere (nothing pins them away
  from a faulted node): those on an affected node are listed by name. On a dry run (no
  cluster to read) the listing names the nodes instead of the pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.manifests.locust import WORKER_ROLE
from chaos.platforms.kubernetes.opsbase import ZTUNNEL

ISTIOD_AT_ZERO = "istiod at 0: no certificate issued, no config pushed"


def istiod_reach(namespaces: Sequence[str]) -> list[str]:
    """One entry per namespace istiod serves (empty: a team's mesh, named as a whole)."""
    if not namespaces:
        return [f"every namespace of the mesh ({ISTIOD_AT_ZERO})"]
    return [f"{ns}: every pod ({ISTIOD_AT_ZERO})" for ns in namespaces]


def ztunnel_restarts(api: KubeApi | None, istio_namespace: str) -> list[str]:
    """The ztunnel pods the DaemonSet rollout restarts, each with its node."""
    if api is None:
        return [
            f"{ZTUNNEL} on {host}: restarted by the DaemonSet rollout"
            for host in sorted(names.NODE_HOSTNAMES.values())
        ]
    pods = sorted(api.list_pods(istio_namespace, {"app": ZTUNNEL}), key=lambda p: p.node_name)
    return [
        f"{istio_namespace}/{p.name} on {p.node_name}: restarted by the DaemonSet rollout"
        for p in pods
        if not p.deleting
    ]


def locust_workers_on(api: KubeApi | None, hostnames: Iterable[str]) -> list[str]:
    """The Locust workers on these nodes (they share the node's ztunnel)."""
    found: list[str] = []
    for host in hostnames:
        if api is None:
            found.append(f"{names.TRAFFIC_NAMESPACE}: Locust workers on {host}")
            continue
        workers = api.pods_on_node(
            names.TRAFFIC_NAMESPACE, host, {names.LABEL_TRAFFIC_ROLE: WORKER_ROLE}
        )
        found += [
            f"{names.TRAFFIC_NAMESPACE}/{p.name} (Locust worker) on {host}"
            for p in sorted(workers, key=lambda p: p.name)
            if not p.deleting
        ]
    return found


__all__ = ["ISTIOD_AT_ZERO", "istiod_reach", "locust_workers_on", "ztunnel_restarts"]
