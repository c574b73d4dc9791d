"""Where everything of a local topology lives: addresses, ports, directories.

A topology owns one *slot* ``s`` (1..254): every pod gets its own loopback
address ``127.0.s.y`` with the same fixed ports per role, as in a real pod.
The layout is pure data, computed from the setup, the slot and the run
directory; every other module of the local platform reads it and none
invents an address or a path of its own.

Addresses inside slot ``s``::

    127.0.s.1        ingress admin (the ingress listener itself is on 127.0.0.1)
    127.0.s.2        identity provider (JWKS and token endpoint)
    127.0.s.11/12    frontend-0 / frontend-1
    127.0.s.21/22    checkout-0 / checkout-1
    127.0.s.31/32    payments-0 / payments-1
    127.0.s.41..43   ambient: the waypoint of frontend / checkout / payments
    127.0.s.101/102  ambient: the node proxy (ztunnel) of node-1 / node-2

Replica 0 of every service runs on node-1, replica 1 on node-2.

``baseline`` has the same pods and addresses with no proxy: each app calls the apps
of its upstream service directly (round robin, plain HTTP), and the ingress (the
entry point every setup shares, an L7 load balancer) forwards plain HTTP to the
frontend apps without a token check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.base import Pod as WorkloadPod
from chaos.platforms.base import Workload

TRUST_DOMAIN = "cluster.local"
SERVICES: tuple[str, ...] = ("frontend", "checkout", "payments")
#: Which service each service calls (the demo chain).
CALLS: dict[str, str | None] = {"frontend": "checkout", "checkout": "payments", "payments": None}
NODES: tuple[str, ...] = ("node-1", "node-2")
REPLICAS = 2
INGRESS_HOST = "127.0.0.1"
JWT_AUDIENCE = "sidecar-chaos-demo"
#: Every process a topology spawns, one JSON line each, in its directory (``clean`` reads it).
PROCESS_LEDGER = "processes.jsonl"


#: Setups whose proxies capture a pod's inbound traffic (Istio's redirection): there a
#: request straight to the app port never reaches the app. A plain sidecar captures nothing.
CAPTURING_SETUPS: tuple[Setup, ...] = (Setup.MESH, Setup.AMBIENT)

#: Default slot (third octet) per setup, so that the three can run at once.
DEFAULT_SLOT: dict[Setup, int] = {
    Setup.SIDECAR: 11,
    Setup.MESH: 12,
    Setup.AMBIENT: 13,
    Setup.BASELINE: 14,
}


def default_ingress_port(slot: int) -> int:
    """The ingress port a topology uses unless told otherwise (18000 + slot)."""
    return 18000 + slot


class Port(enum.IntEnum):
    """Fixed ports per role inside a pod (Istio's numbers where Istio has one)."""

    APP = 8080  # the demo service, plain HTTP
    #: mesh/ambient: where the app really listens. Istio's capture redirects every inbound
    #: connection to the proxy, so the app port never reaches the app from outside the pod;
    #: locally nothing listens on APP there and the app sits on this port, which only the
    #: pod's proxy is configured to reach (it stands for the pod's own loopback).
    APP_BEHIND_PROXY = 18080
    ADMIN = 15000  # Envoy admin API of the pod's proxy (or of a node proxy / waypoint)
    OUTBOUND = 15001  # the app's egress: plain HTTP into the proxy, Host names the service
    INBOUND = 15006  # sidecar/mesh: mTLS inbound of the pod's proxy
    HBONE = 15008  # ambient: mTLS inbound held by the node proxy on the pod's address
    IDP = 9000  # identity provider


def spiffe_id(setup: Setup | str, service: str) -> str:
    """The SPIFFE identity of a service account: ``spiffe://cluster.local/ns/<setup>/sa/<svc>``."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{Setup(setup).value}/sa/{service}"


@dataclass(frozen=True)
class Pod:
    """One replica of a demo service, with its own address and directory."""

    name: str
    namespace: str
    service: str
    replica: int
    node: str
    address: str
    dir: Path
    #: Where the app sends requests for its upstream service (None for payments).
    upstream_url: str | None
    #: The Host header the app puts on upstream requests.
    upstream_host: str | None
    has_proxy: bool
    #: Where the app listens: ``APP``, or ``APP_BEHIND_PROXY`` where the proxy captures.
    app_port: int = int(Port.APP)
    #: Baseline (no proxy): the app addresses of every upstream replica, called in turn.
    upstream_apps: tuple[str, ...] = ()

    @property
    def in_mesh(self) -> bool:
        """Whether traffic to this pod crosses a proxy (every setup but ``baseline``)."""
        return self.namespace != Setup.BASELINE.value

    @property
    def identity(self) -> str:
        return spiffe_id(self.namespace, self.service)

    @property
    def certs_dir(self) -> Path:
        return self.dir / "certs"

    @property
    def app_url(self) -> str:
        return f"http://{self.address}:{self.app_port}"

    @property
    def admin_url(self) -> str | None:
        return f"http://{self.address}:{int(Port.ADMIN)}" if self.has_proxy else None

    @property
    def proxy_name(self) -> str | None:
        return f"{self.name}.proxy" if self.has_proxy else None

    @property
    def ports(self) -> dict[str, int]:
        ports = {"app": self.app_port}
        if self.has_proxy:
            ports |= {
                "admin": int(Port.ADMIN),
                "outbound": int(Port.OUTBOUND),
                "inbound": int(Port.INBOUND),
            }
        elif self.in_mesh:
            ports |= {"outbound": int(Port.OUTBOUND), "hbone": int(Port.HBONE)}
        return ports


@dataclass(frozen=True)
class NodeProxy:
    """Ambient: the shared L4 proxy of a node (ztunnel's role)."""

    name: str
    node: str
    address: str
    dir: Path
    pods: tuple[str, ...]

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{int(Port.ADMIN)}"


@dataclass(frozen=True)
class Waypoint:
    """Ambient: the L7 proxy of one service (carries L7 policy and faults)."""

    name: str
    namespace: str
    service: str
    address: str
    dir: Path

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{int(Port.ADMIN)}"

    @property
    def identity(self) -> str:
        return spiffe_id(self.namespace, f"{self.service}-waypoint")


@dataclass(frozen=True)
class Ingress:
    """The entry point of traffic: an Envoy on 127.0.0.1 that forwards to frontend."""

    host: str
    port: int
    admin_address: str
    dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_address}:{int(Port.ADMIN)}"


@dataclass(frozen=True)
class TopologyLayout:
    """Every address, port and directory of one local topology."""

    setup: Setup
    slot: int
    dir: Path
    ingress: Ingress
    pods: tuple[Pod, ...]
    node_proxies: tuple[NodeProxy, ...] = field(default=())
    waypoints: tuple[Waypoint, ...] = field(default=())

    @property
    def namespace(self) -> str:
        return self.setup.value

    @property
    def idp_address(self) -> str:
        return self.address(2)

    @property
    def idp_url(self) -> str:
        return f"http://{self.idp_address}:{int(Port.IDP)}"

    @property
    def jwt_issuer(self) -> str:
        return f"https://idp.{self.namespace}.{TRUST_DOMAIN}"

    @property
    def ca_dir(self) -> Path:
        return self.dir / "ca"

    def address(self, host: int) -> str:
        return f"127.0.{self.slot}.{host}"

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(name)

    def pods_of(self, service: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.service == service)

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)

    def node_proxy(self, node: str) -> NodeProxy:
        for proxy in self.node_proxies:
            if proxy.node == node:
                return proxy
        raise KeyError(node)

    def waypoint(self, service: str) -> Waypoint:
        for waypoint in self.waypoints:
            if waypoint.service == service:
                return waypoint
        raise KeyError(service)

    def proxy_admins(self) -> list[tuple[str, str]]:
        """Every Envoy of the topology as (process name, admin URL), the ingress last."""
        found = [(p.proxy_name, p.admin_url) for p in self.pods if p.proxy_name and p.admin_url]
        found += [(n.name, n.admin_url) for n in self.node_proxies]
        found += [(w.name, w.admin_url) for w in self.waypoints]
        found.append(("ingress", self.ingress.admin_url))
        return found

    def bound_addresses(self) -> list[tuple[str, int]]:
        """Every (address, port) a process of this topology listens on."""
        bound: list[tuple[str, int]] = [
            (self.ingress.host, self.ingress.port),
            (self.ingress.admin_address, int(Port.ADMIN)),
            (self.idp_address, int(Port.IDP)),
        ]
        for pod in self.pods:
            bound += [(pod.address, port) for port in pod.ports.values()]
        for proxy in self.node_proxies:
            bound.append((proxy.address, int(Port.ADMIN)))
        for waypoint in self.waypoints:
            bound += [(waypoint.address, int(Port.ADMIN)), (waypoint.address, int(Port.HBONE))]
        return bound


def build_layout(setup: Setup, run_dir: Path, *, slot: int, ingress_port: int) -> TopologyLayout:
    """Compute the layout of a topology of ``setup`` in ``slot`` under ``run_dir``."""
    if not 1 <= slot <= 254:
        raise ValueError(f"slot must be within 1..254, got {slot}")
    root = run_dir / setup.value
    pods: list[Pod] = []
    baseline = setup is Setup.BASELINE
    for s_index, service in enumerate(SERVICES):
        upstream = CALLS[service]
        upstream_apps: tuple[str, ...] = ()
        if baseline and upstream is not None:
            u_index = SERVICES.index(upstream)
            upstream_apps = tuple(
                f"http://127.0.{slot}.{10 * (u_index + 1) + r + 1}:{int(Port.APP)}"
                for r in range(REPLICAS)
            )
        for replica in range(REPLICAS):
            address = f"127.0.{slot}.{10 * (s_index + 1) + replica + 1}"
            upstream_url = f"http://{address}:{int(Port.OUTBOUND)}" if upstream else None
            if upstream_apps:
                upstream_url = upstream_apps[replica % len(upstream_apps)]
            pods.append(
                Pod(
                    name=f"{service}-{replica}",
                    namespace=setup.value,
                    service=service,
                    replica=replica,
                    node=NODES[replica % len(NODES)],
                    address=address,
                    dir=root / "pods" / f"{service}-{replica}",
                    upstream_url=upstream_url,
                    upstream_host=upstream,
                    has_proxy=setup not in (Setup.AMBIENT, Setup.BASELINE),
                    app_port=int(Port.APP_BEHIND_PROXY if setup in CAPTURING_SETUPS else Port.APP),
                    upstream_apps=upstream_apps,
                )
            )
    node_proxies: tuple[NodeProxy, ...] = ()
    waypoints: tuple[Waypoint, ...] = ()
    if setup is Setup.AMBIENT:
        node_proxies = tuple(
            NodeProxy(
                name=f"ztunnel-{node}",
                node=node,
                address=f"127.0.{slot}.{101 + n_index}",
                dir=root / "nodes" / node,
                pods=tuple(p.name for p in pods if p.node == node),
            )
            for n_index, node in enumerate(NODES)
        )
        waypoints = tuple(
            Waypoint(
                name=f"waypoint-{service}",
                namespace=setup.value,
                service=service,
                address=f"127.0.{slot}.{41 + s_index}",
                dir=root / "waypoints" / service,
            )
            for s_index, service in enumerate(SERVICES)
        )
    ingress = Ingress(
        host=INGRESS_HOST,
        port=ingress_port,
        admin_address=f"127.0.{slot}.1",
        dir=root / "ingress",
    )
    return TopologyLayout(
        setup=setup,
        slot=slot,
        dir=root,
        ingress=ingress,
        pods=tuple(pods),
        node_proxies=node_proxies,
        waypoints=waypoints,
    )


def workload_of(layout: TopologyLayout) -> Workload:
    """The neutral view of a local layout's pods (what fault targets are checked against)."""
    pods = tuple(WorkloadPod(p.name, p.service, p.node, p.replica) for p in layout.pods)
    return Workload(layout.setup, pods)
