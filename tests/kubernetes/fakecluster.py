"""Fixtures of the Kubernetes platform tests: the fake API server with the demo workload.

``fake_server`` runs :class:`~chaos.testing.fakekube.api.FakeApiServer` on loopback;
``kubeconfig`` points the unmodified official client at it (context ``kind-sidecar-
chaos``); ``seeded`` fills it with what ``cluster up`` leaves: the demo Deployments of
every setup, ``sc-baseline``'s (no proxy) included (one pod each, pinned to a node),
Istio's istiod and one ztunnel per node, the mesh's VirtualServices and
RequestAuthentication, the plain sidecars' certificates, CA and key set. Import the
fixtures into a test module.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.platforms.kubernetes import names, statsmatcher
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.faultops import CA_KEY_FILE, CA_SECRET
from chaos.platforms.kubernetes.kinds import DEPLOYMENT
from chaos.platforms.kubernetes.manifests.core import SETUP_NAMESPACE_LABELS
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority
from chaos.testing.fakekube.api import FakeApiServer, FakeCluster
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.testing.fakekube.podnames import REVISION

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


def wait_rolled_out(api: KubeApi, namespace: str, name: str, limit_s: float = 30.0) -> None:
    """Until a Deployment's status says its rollout is done (as kubectl rollout status reads)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = api.get(DEPLOYMENT, namespace, name) or {}
        status = found.get("status") or {}
        wanted = int(found.get("spec", {}).get("replicas", 1))
        if (
            status.get("observedGeneration", 0) >= found.get("metadata", {}).get("generation", 1)
            and status.get("updatedReplicas", 0) == wanted
            and status.get("availableReplicas", 0) == wanted
            and status.get("replicas", 0) == wanted
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"Deployment {namespace}/{name} not rolled out within {limit_s:g} s")


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
    wait_rolled_out(api, istio, "istiod")  # as istioctl install waits for it
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
    for setup in names.DEPLOYED_SETUPS:
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
        elif setup is not names.Setup.BASELINE:  # baseline: no Istio object at all
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
    for setup in names.DEPLOYED_SETUPS:  # cluster up waits for the demo to be ready
        ns = names.namespace_of(setup)
        for deployment in api.list_objects(DEPLOYMENT, ns, {}):
            wait_rolled_out(api, ns, deployment["metadata"]["name"])


def comparable(cluster: FakeCluster) -> dict[str, Any]:
    """The cluster's objects without what every write changes (versions, generations).

    Pods are compared by owner and count: a fault may legitimately replace a pod
    (a crash, a re-created pod), which is the cluster healing, not a leftover. A rollout
    and its revert leave the Deployment's revision counted up and the rolled-out
    ReplicaSet scaled to 0, as the real controller does: neither is compared.
    """
    out: dict[str, Any] = {}
    pods: dict[str, int] = {}
    for key, obj in cluster.dump().items():
        if key.startswith("v1/pods/"):
            owner = (obj["metadata"].get("ownerReferences") or [{}])[0].get("name", key)
            pods[owner] = pods.get(owner, 0) + 1
            continue
        if key.startswith("apps/v1/replicasets/") and not obj["spec"].get("replicas"):
            continue  # a rollout's history: kept scaled to 0 (revisionHistoryLimit), as for real
        meta = dict(obj["metadata"])
        for volatile in ("resourceVersion", "generation"):
            meta.pop(volatile, None)
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != REVISION}
        meta["annotations"] = annotations  # the revision counts rollouts, back and forth
        if key.startswith("apps/v1/"):  # what the controllers report: the pods are counted below
            out[key] = {**obj, "metadata": meta, "status": None}
            continue
        status = dict(obj.get("status") or {})
        status.pop("observedGeneration", None)
        out[key] = {**obj, "metadata": meta, "status": status}
    out["pods by owner"] = pods
    return out


#: Watches end this soon (the client watches again): a platform closing its pod watch
#: (every test's topology does) would otherwise wait for the 1 s ``timeoutSeconds`` to end.
MAX_WATCH_S = 0.2
#: A pod a controller creates reports Ready this long after (a real one takes seconds): what
#: rolls, rolls at the pace of readiness, so code that takes a rollout as instant is caught.
POD_START_S = 0.05


@pytest.fixture
def fake_server() -> Iterator[FakeApiServer]:
    with FakeApiServer(FakeCluster(pod_start_s=POD_START_S), max_watch_s=MAX_WATCH_S) as server:
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
