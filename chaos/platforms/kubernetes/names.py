"""Names every part of the Kubernetes platform agrees on: cluster, namespaces, labels, ports.

Pure constants and small pure functions; nothing here talks to a cluster. The
manifest builders (:mod:`chaos.platforms.kubernetes.manifests`), ``cluster up``
and the platform's faults all read these, so an object built by one is found
by the others.

The demo chain ``frontend -> checkout -> payments`` runs once per setup, in the setup's
own namespace (``baseline``'s too: the same chain without any proxy). Every replica is
its own Deployment ``<service>-<replica>`` (``replicas: 1``) pinned to one kind worker,
so an experiment target ``{service, replica, node}`` is exactly one pod. Replica 0 runs
on ``node-1`` (the first worker), replica 1 on ``node-2``, as on the local platform.
"""

from __future__ import annotations

from typing import Final

from chaos.experiment import Setup
from chaos.platforms.shared.layout import CALLS, JWT_AUDIENCE, NODES, REPLICAS, SERVICES

__all__ = [
    "ADMIN_PORT",
    "ANNOTATION_RUN",
    "APP_CONTAINER",
    "APP_IMAGE",
    "APP_PORT",
    "CALLS",
    "CERTS_INIT_CONTAINER",
    "CLUSTER_NAME",
    "DEPLOYED_SETUPS",
    "ENVOY_IMAGE",
    "INBOUND_PORT",
    "ISTIO_NAMESPACE",
    "ISTIO_PROXY_CONTAINER",
    "JWKS_CONFIGMAP",
    "JWT_AUDIENCE",
    "KIND_CONTEXT",
    "LABEL_APP",
    "LABEL_MANAGED_BY",
    "LABEL_NODE",
    "LABEL_REPLICA",
    "LABEL_TRAFFIC_ROLE",
    "LOCUST_MASTER_PORT",
    "LOCUST_WEB_PORT",
    "MANAGED_BY",
    "NAMESPACES",
    "NODES",
    "NODE_HOSTNAMES",
    "OUTBOUND_PORT",
    "REPLICAS",
    "SERVICES",
    "SIDECAR_CONTAINER",
    "TRAFFIC_NAMESPACE",
    "WAYPOINT_CLASS",
    "WRITER_SERVICE",
    "WRITES_DIR",
    "WRITES_FILE",
    "Setup",
    "certs_secret_name",
    "deployment_name",
    "envoy_configmap_name",
    "managed_labels",
    "namespace_of",
    "node_of_replica",
    "pod_labels",
    "service_host",
    "waypoint_name",
]

#: The kind cluster ``cluster up`` creates, and the kube context kind names after it.
CLUSTER_NAME: Final = "sidecar-chaos"
KIND_CONTEXT: Final = f"kind-{CLUSTER_NAME}"

#: The experiment's node names -> kind's worker node names (``kubernetes.io/hostname``).
NODE_HOSTNAMES: Final[dict[str, str]] = {
    "node-1": f"{CLUSTER_NAME}-worker",
    "node-2": f"{CLUSTER_NAME}-worker2",
}

#: One namespace per setup, ``baseline`` (the chain without proxies) included; Locust
#: runs in its own.
NAMESPACES: Final[dict[Setup, str]] = {
    Setup.SIDECAR: "sc-sidecar",
    Setup.MESH: "sc-mesh",
    Setup.AMBIENT: "sc-ambient",
    Setup.BASELINE: "sc-baseline",
}
#: Every setup ``cluster up`` deploys the demo chain for (the three proxy setups, then
#: ``baseline``, which is measured only in a cost step).
DEPLOYED_SETUPS: Final[tuple[Setup, ...]] = tuple(NAMESPACES)
TRAFFIC_NAMESPACE: Final = "sc-traffic"
#: Istio's own namespace (the tool touches in it only what a fault names).
ISTIO_NAMESPACE: Final = "istio-system"

# -- labels and annotations ---------------------------------------------------------------

LABEL_APP: Final = "app"
LABEL_REPLICA: Final = "sidecar-chaos.dev/replica"
LABEL_NODE: Final = "sidecar-chaos.dev/node"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "sidecar-chaos"
#: On every object a run creates or changes: the run id.
ANNOTATION_RUN: Final = "sidecar-chaos.dev/run"
#: On the Locust pods: master or worker.
LABEL_TRAFFIC_ROLE: Final = "sidecar-chaos.dev/traffic-role"

# -- images and containers ----------------------------------------------------------------

#: The demo app and traffic driver image, built from ``deploy/kind/Dockerfile``.
APP_IMAGE: Final = "sidecar-chaos/demo:dev"
ENVOY_IMAGE: Final = "envoyproxy/envoy:v1.40-latest"
APP_CONTAINER: Final = "app"
#: The service that records the writes it accepts (lost and duplicated writes).
WRITER_SERVICE: Final = "payments"
#: Its writes file, on an emptyDir so a restarted app container still reports them.
WRITES_DIR: Final = "/var/lib/sidecar-chaos/writes"
WRITES_FILE: Final = f"{WRITES_DIR}/writes.jsonl"
#: The plain-sidecar setup's proxy container (Istio's is ``istio-proxy``).
SIDECAR_CONTAINER: Final = "envoy-sidecar"
ISTIO_PROXY_CONTAINER: Final = "istio-proxy"
#: The init container that copies the pod's certificates from its Secret.
CERTS_INIT_CONTAINER: Final = "certs-init"

# -- ports (Istio's numbers, as on the local platform) ------------------------------------

APP_PORT: Final = 8080
ADMIN_PORT: Final = 15000
OUTBOUND_PORT: Final = 15001
INBOUND_PORT: Final = 15006
LOCUST_MASTER_PORT: Final = 5557
LOCUST_WEB_PORT: Final = 8089

# -- config objects -----------------------------------------------------------------------

#: The JWKS the plain sidecars read once at start (one per namespace).
JWKS_CONFIGMAP: Final = "jwks"
#: The waypoint Gateway class of Istio ambient.
WAYPOINT_CLASS: Final = "istio-waypoint"


def namespace_of(setup: Setup) -> str:
    return NAMESPACES[setup]


def deployment_name(service: str, replica: int) -> str:
    """One Deployment (and so one pod) per replica: ``checkout-0``."""
    return f"{service}-{replica}"


def node_of_replica(replica: int) -> str:
    """The experiment's node of a replica: replica 0 on node-1, replica 1 on node-2."""
    return NODES[replica % len(NODES)]


def envoy_configmap_name(service: str) -> str:
    """The plain sidecar's bootstrap, one per service."""
    return f"{service}-envoy"


def certs_secret_name(service: str, replica: int) -> str:
    """The plain sidecar's certificate, key and CA, one Secret per replica."""
    return f"{service}-{replica}-certs"


def waypoint_name(service: str) -> str:
    """The ambient waypoint Gateway of a service."""
    return f"{service}-waypoint"


def service_host(service: str, setup: Setup) -> str:
    """The cluster DNS name of a demo service in a setup's namespace."""
    return f"{service}.{namespace_of(setup)}.svc.cluster.local"


def managed_labels() -> dict[str, str]:
    """The ownership label every object the tool creates carries."""
    return {LABEL_MANAGED_BY: MANAGED_BY}


def pod_labels(service: str, replica: int) -> dict[str, str]:
    """The labels of one replica's pod (and its Deployment's selector)."""
    return {
        LABEL_APP: service,
        LABEL_REPLICA: str(replica),
        LABEL_NODE: node_of_replica(replica),
        **managed_labels(),
    }
