"""Built-in Kubernetes objects of the demo workload: namespaces, accounts, Services, Deployments.

Every builder is pure and returns the object as the API takes it (camelCase
dicts). Every object carries the ownership label; objects a run creates also
carry its id (``run_id``) in the ``sidecar-chaos.dev/run`` annotation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import envoy
from chaos.platforms.shared.dataplane import DEFAULTS
from chaos.platforms.shared.envoy_common import Json

#: A Kubernetes object as the API takes it.
Manifest = dict[str, Any]

#: The namespace labels that put a setup's pods in its data plane.
SETUP_NAMESPACE_LABELS: dict[names.Setup, dict[str, str]] = {
    # Explicitly out of Istio: the plain sidecar is the only proxy there.
    names.Setup.SIDECAR: {"istio-injection": "disabled"},
    names.Setup.MESH: {"istio-injection": "enabled"},
    names.Setup.AMBIENT: {"istio.io/dataplane-mode": "ambient"},
    # No proxy at all: out of injection, and no dataplane-mode label (not in ambient).
    names.Setup.BASELINE: {"istio-injection": "disabled"},
}
#: The label that sends a Service's traffic through its waypoint (ambient).
USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
#: The ``envoy`` user of the Envoy image (its entrypoint drops to it): the init container
#: writes the private key 0600 as this user, so the proxy and nobody else can read it.
ENVOY_UID = 101
_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def metadata(
    name: str,
    namespace: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Manifest:
    """Name, namespace, the ownership label (plus ``labels``) and the run annotation."""
    meta: Manifest = {"name": name, "labels": {**(labels or {}), **names.managed_labels()}}
    if namespace is not None:
        meta["namespace"] = namespace
    if run_id is not None:
        meta["annotations"] = {names.ANNOTATION_RUN: run_id}
    return meta


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(name, labels=labels)}


def setup_namespace(setup: names.Setup) -> Manifest:
    """A setup's namespace with the labels that choose its data plane."""
    return namespace(names.namespace_of(setup), SETUP_NAMESPACE_LABELS[setup])


def traffic_namespace() -> Manifest:
    """Locust's namespace: no data-plane label; the workers opt in per setup by pod label.

    No ``istio-injection=disabled`` here: Istio lets a disabled namespace win over a
    pod's ``sidecar.istio.io/inject=true``, and the mesh setup's workers need it.
    """
    return namespace(names.TRAFFIC_NAMESPACE)


def service_account(service: str, ns: str) -> Manifest:
    """One account per service: its identity in the mesh (``spiffe://.../ns/<ns>/sa/<svc>``)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(service, ns, labels={names.LABEL_APP: service}),
    }


def service(service: str, setup: names.Setup) -> Manifest:
    """The Service of a demo service: port 8080 (plus the sidecar's mTLS inbound in sidecar)."""
    ports: list[Manifest] = [
        {"name": "http", "port": names.APP_PORT, "targetPort": names.APP_PORT, "protocol": "TCP"}
    ]
    if setup is names.Setup.SIDECAR:
        ports.append(
            {
                "name": "tls-inbound",
                "port": names.INBOUND_PORT,
                "targetPort": names.INBOUND_PORT,
                "protocol": "TCP",
            }
        )
    labels = {names.LABEL_APP: service}
    if setup is names.Setup.AMBIENT:
        labels[USE_WAYPOINT_LABEL] = names.waypoint_name(service)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service, names.namespace_of(setup), labels=labels),
        "spec": {"selector": {names.LABEL_APP: service}, "ports": ports},
    }


def config_map(
    name: str, ns: str, data: Mapping[str, str], *, run_id: str | None = None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, ns, run_id=run_id),
        "data": dict(data),
    }


def secret(name: str, ns: str, data: Mapping[str, bytes], *, run_id: str | None = None) -> Manifest:
    """An Opaque Secret; values are base64-encoded here, as the API wants them."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, ns, run_id=run_id),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    }


def certs_secret(
    service: str, replica: int, ns: str, *, cert_pem: bytes, key_pem: bytes, ca_pem: bytes
) -> Manifest:
    """A plain sidecar's identity: ``<service>-<replica>-certs`` with cert, key and CA."""
    cert_file, key_file, ca_file = envoy.CERT_FILES
    return secret(
        names.certs_secret_name(service, replica),
        ns,
        {cert_file: cert_pem, key_file: key_pem, ca_file: ca_pem},
    )


def jwks_config_map(ns: str, jwks_json: str, *, run_id: str | None = None) -> Manifest:
    """The key set the plain sidecars read once at start."""
    return config_map(names.JWKS_CONFIGMAP, ns, {envoy.JWKS_FILE: jwks_json}, run_id=run_id)


def envoy_config_map(service: str, ns: str, bootstrap: Json) -> Manifest:
    """A plain sidecar's bootstrap, ``<service>-envoy``."""
    return config_map(
        names.envoy_configmap_name(service), ns, {envoy.BOOTSTRAP_FILE: json.dumps(bootstrap)}
    )


# -- the demo app's Deployments -----------------------------------------------------------


def _pod_name_env() -> Manifest:
    return {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def app_command(service: str, replica: int, setup: names.Setup) -> list[str]:
    """The demo service's command line in a pod (the local platform's service, unchanged)."""
    argv = [
        "python",
        "-m",
        "chaos.platforms.shared.demo_service",
        "--service",
        service,
        "--replica",
        str(replica),
        "--pod",
        "$(POD_NAME)",
        "--node",
        names.node_of_replica(replica),
        "--listen",
        f"0.0.0.0:{names.APP_PORT}",
    ]
    if service == names.WRITER_SERVICE:
        argv += ["--writes-file", names.WRITES_FILE]
    if DEFAULTS[setup].token.requires(first=service == names.SERVICES[0]):
        argv.append("--expects-token")  # its proxy refuses a request without a token
    upstream = names.CALLS[service]
    if upstream is None:
        return argv
    if setup is names.Setup.SIDECAR:
        # The app calls its own proxy's outbound; the Host header names the service.
        url = f"http://127.0.0.1:{names.OUTBOUND_PORT}"
    else:
        # Istio's data plane intercepts the plain call to the Service.
        url = f"http://{names.service_host(upstream, setup)}:{names.APP_PORT}"
    return [*argv, "--upstream-url", url, "--upstream-host", upstream]


def app_container(service: str, replica: int, setup: names.Setup) -> Manifest:
    return {
        "name": names.APP_CONTAINER,
        "image": names.APP_IMAGE,
        # Loaded into the nodes by ``kind load docker-image``: never pulled.
        "imagePullPolicy": "IfNotPresent",
        "command": app_command(service, replica, setup),
        "env": [_pod_name_env()],
        "ports": [{"name": "http", "containerPort": names.APP_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": names.APP_PORT},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "resources": _RESOURCES,
        **(
            {"volumeMounts": [{"name": _WRITES_VOLUME, "mountPath": names.WRITES_DIR}]}
            if service == names.WRITER_SERVICE
            else {}
        ),
    }


_WRITES_VOLUME = "writes"
_CERTS_VOLUME = "certs"
_JWKS_VOLUME = "jwks"
_CERTS_SRC_VOLUME = "certs-src"
_JWKS_SRC_VOLUME = "jwks-src"
_BOOTSTRAP_VOLUME = "envoy-bootstrap"


def sidecar_init_container() -> Manifest:
    """Writes the pod's certs and key set once, from its Secret and the ``jwks`` ConfigMap."""
    return {
        "name": names.CERTS_INIT_CONTAINER,
        "image": names.APP_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": envoy.init_copy_command(),
        "securityContext": {"runAsUser": ENVOY_UID, "runAsGroup": ENVOY_UID},
        "volumeMounts": [
            {"name": _CERTS_SRC_VOLUME, "mountPath": "/src/certs", "readOnly": True},
            {"name": _JWKS_SRC_VOLUME, "mountPath": "/src/jwks", "readOnly": True},
            {"name": _CERTS_VOLUME, "mountPath": str(envoy.CERTS_DIR)},
            {"name": _JWKS_VOLUME, "mountPath": str(envoy.JWKS_DIR)},
        ],
        "resources": _RESOURCES,
    }


def sidecar_container(*, inbound: bool = True) -> Manifest:
    """The plain Envoy security sidecar, ``envoy-sidecar``."""
    ports: list[Manifest] = [
        {"name": "admin", "containerPort": names.ADMIN_PORT, "protocol": "TCP"},
        {"name": "outbound", "containerPort": names.OUTBOUND_PORT, "protocol": "TCP"},
    ]
    container: Manifest = {
        "name": names.SIDECAR_CONTAINER,
        "image": names.ENVOY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": envoy.sidecar_args(),
        "env": [_pod_name_env()],
        "ports": ports,
        "volumeMounts": [
            {"name": _BOOTSTRAP_VOLUME, "mountPath": str(envoy.BOOTSTRAP_DIR), "readOnly": True},
            {"name": _CERTS_VOLUME, "mountPath": str(envoy.CERTS_DIR), "readOnly": True},
            {"name": _JWKS_VOLUME, "mountPath": str(envoy.JWKS_DIR), "readOnly": True},
        ],
        "resources": _RESOURCES,
    }
    if inbound:
        ports.insert(
            0, {"name": "tls-inbound", "containerPort": names.INBOUND_PORT, "protocol": "TCP"}
        )
        container["readinessProbe"] = {
            "tcpSocket": {"port": names.INBOUND_PORT},
            "periodSeconds": 2,
        }
    return container


def sidecar_volumes(bootstrap_config_map: str, certs_secret_name: str) -> list[Manifest]:
    return [
        {"name": _BOOTSTRAP_VOLUME, "configMap": {"name": bootstrap_config_map}},
        {"name": _CERTS_SRC_VOLUME, "secret": {"secretName": certs_secret_name}},
        {"name": _JWKS_SRC_VOLUME, "configMap": {"name": names.JWKS_CONFIGMAP}},
        {"name": _CERTS_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": _JWKS_VOLUME, "emptyDir": {}},
    ]


def _selector(service: str, replica: int) -> dict[str, str]:
    return {names.LABEL_APP: service, names.LABEL_REPLICA: str(replica)}


def deployment(service: str, replica: int, setup: names.Setup) -> Manifest:
    """One replica of a demo service: a Deployment of one pod, pinned to its worker node."""
    ns = names.namespace_of(setup)
    labels = names.pod_labels(service, replica)
    pod_spec: Manifest = {
        "serviceAccountName": service,
        "nodeSelector": {
            "kubernetes.io/hostname": names.NODE_HOSTNAMES[names.node_of_replica(replica)]
        },
        "containers": [app_container(service, replica, setup)],
        "terminationGracePeriodSeconds": 5,
    }
    if setup is names.Setup.SIDECAR:
        pod_spec["initContainers"] = [sidecar_init_container()]
        pod_spec["containers"].append(sidecar_container())
        pod_spec["volumes"] = sidecar_volumes(
            names.envoy_configmap_name(service), names.certs_secret_name(service, replica)
        )
    if service == names.WRITER_SERVICE:
        pod_spec.setdefault("volumes", []).append({"name": _WRITES_VOLUME, "emptyDir": {}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(names.deployment_name(service, replica), ns, labels=labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(service, replica)},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
