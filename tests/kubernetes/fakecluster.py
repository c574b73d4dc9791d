"""Fixtures of the Kubernetes platform tests: the fake API server with the demo workload.

``fake_server`` runs :class:`~chaos.testing.fakekube.api.FakeApiServer` on
loopback; ``kubeconfig`` points the unmodified official client at it (context
``kind-sidecar-chaos``); ``seeded`` fills it with what ``cluster up`` leaves: the demo
Deployments of every setup (one pod each, pinned to a node), Istio's istiod and one
ztunnel per node, the mesh's VirtualServices and RequestAuthentication, the plain
sidecars' certificates, CA and key set. Import the fixtures into a test module.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.experiment import ALL_SETUPS
from chaos.platforms.kubernetes import names, statsmatcher
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.faultops import CA_KEY_FILE, CA_SECRET
from chaos.platforms.kubernetes.manifests.core import SETUP_NAMESPACE_LABELS
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority
from chaos.testing.fakekube.api import FakeApiServer, FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec

MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
JWKS = json.dumps({"keys": [{"kty": "RSA", "kid": "demo", "n": "AQAB", "e": "AQAB"}]})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def demo_deployment(service: str, replica: int, setup: names.Setup) -> dict[str, Any]:
    labels = names.pod_labels(service, replica)
    spec: dict[str, Any] = {
        "serviceAccountName": service,  # as the demo's manifests: Istio's source principal
        "nodeSelector": {
            "kubernetes.io/hostname": names.NODE_HOSTNAMES[names.node_of_replica(replica)]
        },
        "containers": [{"name": names.APP_CONTAINER, "image": names.APP_IMAGE}],
    }
    if setup is names.Setup.SIDECAR:
        spec["containers"].append({"name": names.SIDECAR_CONTAINER, "image": names.ENVOY_IMAGE})
    if setup is names.Setup.MESH:
        spec["initContainers"] = [
            {
                "name": names.ISTIO_PROXY_CONTAINER,
                "image": "istio/proxyv2",
                "restartPolicy": "Always",
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(names.deployment_name(service, replica), names.namespace_of(setup)),
        "spec": {
            "replicas": 1,
            "selector": {
                "matchLabels": {names.LABEL_APP: service, names.LABEL_REPLICA: str(replica)}
            },
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def virtual_service(service: str, setup: names.Setup) -> dict[str, Any]:
    host = names.service_host(service, setup)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(service, names.namespace_of(setup)),
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "name": "default",
                    "route": [{"destination": {"host": host, "port": {"number": 8080}}}],
                    "retries": {"attempts": 2, "retryOn": "connect-failure"},
                }
            ],
        },
    }


def mesh_configmap(proxy_stats_matcher: dict[str, Any] | None) -> dict[str, Any]:
    """ConfigMap ``istio-system/istio``: the mesh config ``istioctl install`` writes.

    With ``cluster up``'s stats matcher (what seeding uses), or None: Istio's defaults only
    (a team's own Istio).
    """
    default: dict[str, Any] = {"discoveryAddress": "istiod.istio-system.svc:15012"}
    if proxy_stats_matcher is not None:
        default["proxyStatsMatcher"] = proxy_stats_matcher
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": names.ISTIO_NAMESPACE},
        "data": {"mesh": yaml.safe_dump({"defaultConfig": default})},
    }


def seed(api: KubeApi, ca_dir: Path) -> None:
    """What ``cluster up`` leaves in a cluster, written through the API."""
    ca = CertificateAuthority.create()
    ca.save(ca_dir)
    for setup, ns in names.NAMESPACES.items():
        labels = SETUP_NAMESPACE_LABELS[setup]  # as cluster up labels them
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, **labels)})
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(names.ISTIO_NAMESPACE)})
    istio = names.ISTIO_NAMESPACE
    # Istio's own objects are not the tool's: no ownership label.
    api.create(mesh_configmap(statsmatcher.proxy_stats_matcher()))
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": istio, "labels": {"app": "istiod"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "istiod"}},
                "template": {
                    "metadata": {"labels": {"app": "istiod"}},
                    "spec": {"containers": [{"name": "discovery", "image": "istio/pilot:1.28.0"}]},
                },
            },
        }
    )
    ztunnel = api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "ztunnel", "namespace": istio, "labels": {"app": "ztunnel"}},
            "spec": {
                "selector": {"matchLabels": {"app": "ztunnel"}},
                "template": {
                    "metadata": {"labels": {"app": "ztunnel"}},
                    "spec": {"containers": [{"name": "istio-proxy", "image": "istio/ztunnel"}]},
                },
            },
        }
    )
    for node, hostname in sorted(names.NODE_HOSTNAMES.items()):
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"ztunnel-{node}",
                    "namespace": istio,
                    "labels": {"app": "ztunnel"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "DaemonSet",
                            "name": "ztunnel",
                            "uid": ztunnel["metadata"]["uid"],
                        }
                    ],
                },
                "spec": {
                    "nodeName": hostname,
                    "containers": [{"name": "istio-proxy", "image": "istio/ztunnel"}],
                },
            }
        )
    for setup in ALL_SETUPS:
        ns = names.namespace_of(setup)
        if setup is names.Setup.SIDECAR:
            api.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": _meta(names.JWKS_CONFIGMAP, ns),
                    "data": {"jwks.json": JWKS},
                }
            )
            ca_files = {
                CA_FILE: _b64(ca.ca_pem),
                CA_KEY_FILE: _b64((ca_dir / "ca-key.pem").read_bytes()),
            }
            api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(CA_SECRET, ns),
                    "data": ca_files,
                }
            )
            for service in names.SERVICES:
                for replica in range(names.REPLICAS):
                    issued = ca.issue(
                        f"spiffe://cluster.local/ns/{ns}/sa/{service}", timedelta(hours=24)
                    )
                    data = {
                        CERT_FILE: _b64(issued.cert_pem),
                        KEY_FILE: _b64(issued.key_pem),
                        CA_FILE: _b64(ca.ca_pem),
                    }
                    api.create(
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": _meta(names.certs_secret_name(service, replica), ns),
                            "data": data,
                        }
                    )
        else:
            for service in names.SERVICES:
                api.create(virtual_service(service, setup))
        if setup is names.Setup.MESH:
            api.create(
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "RequestAuthentication",
                    "metadata": _meta("jwt", ns),
                    "spec": {"jwtRules": [{"issuer": "https://idp.sidecar-chaos", "jwks": JWKS}]},
                }
            )
        if setup is names.Setup.AMBIENT:
            for service in names.SERVICES:
                gateway = names.waypoint_name(service)
                api.create(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": _meta(gateway, ns),
                        "spec": {
                            "replicas": 1,
                            "selector": {
                                "matchLabels": {"gateway.networking.k8s.io/gateway-name": gateway}
                            },
                            "template": {
                                "metadata": {
                                    "labels": {"gateway.networking.k8s.io/gateway-name": gateway}
                                },
                                "spec": {
                                    "containers": [
                                        {"name": "istio-proxy", "image": "istio/proxyv2"}
                                    ]
                                },
                            },
                        },
                    }
                )
        for service in names.SERVICES:
            for replica in range(names.REPLICAS):
                api.create(demo_deployment(service, replica, setup))


def comparable(cluster: FakeCluster) -> dict[str, Any]:
    """The cluster's objects without what every write changes (versions, generations).

    Pods are compared by owner and count: a fault may legitimately replace a pod
    (a crash, a re-created pod), which is the cluster healing, not a leftover.
    """
    out: dict[str, Any] = {}
    pods: dict[str, int] = {}
    for key, obj in cluster.dump().items():
        if key.startswith("v1/pods/"):
            owner = (obj["metadata"].get("ownerReferences") or [{}])[0].get("name", key)
            pods[owner] = pods.get(owner, 0) + 1
            continue
        meta = dict(obj["metadata"])
        for volatile in ("resourceVersion", "generation"):
            meta.pop(volatile, None)
        status = dict(obj.get("status") or {})
        status.pop("observedGeneration", None)
        out[key] = {**obj, "metadata": meta, "status": status}
    out["pods by owner"] = pods
    return out


#: Watches end this soon (the client watches again): a platform closing its pod watch
#: (every test's topology does) would otherwise wait for the 1 s ``timeoutSeconds`` to end.
MAX_WATCH_S = 0.2


@pytest.fixture
def fake_server() -> Iterator[FakeApiServer]:
    with FakeApiServer(max_watch_s=MAX_WATCH_S) as server:
        yield server


@pytest.fixture
def kubeconfig(fake_server: FakeApiServer, tmp_path: Path) -> Path:
    return fake_server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[KubeApi]:
    client = KubeApi.from_kubeconfig(kubeconfig)
    yield client
    client.close()


@pytest.fixture
def seeded(api: KubeApi, fake_server: FakeApiServer, tmp_path: Path) -> FakeCluster:
    seed(api, tmp_path / "ca")
    return fake_server.cluster


@pytest.fixture
def pod_exec(fake_server: FakeApiServer) -> FakePodExec:
    """The pods' processes and ports: what the fake server's exec and port-forward reach."""
    assert isinstance(fake_server.pods, FakePodExec)
    return fake_server.pods
