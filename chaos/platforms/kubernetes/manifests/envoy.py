"""The plain-sidecar setup's Envoy bootstrap, for a pod on Kubernetes.

The same proxy as the local platform's sidecar (:mod:`chaos.platforms.local.envoy_sidecar`),
built from the same pieces of :mod:`chaos.platforms.shared.envoy_common`, with the
pod's addresses instead of loopback slots:

* listener ``inbound`` on ``0.0.0.0:15006``: mTLS (certificates read once at start
  from :data:`CERTS_DIR`, written there by the pod's init container), ``jwt_authn``
  with the key set read once from :data:`JWKS_PATH`, the fault filter at 0 %
  (runtime keys :data:`~chaos.platforms.shared.envoy_faults.INBOUND_FAULT_KEYS`),
  router -> ``local_app`` (``127.0.0.1:8080``).
* listener ``outbound`` on ``127.0.0.1:15001``: plain HTTP from the app, the fault
  filter (outbound keys), one virtual host per called service -> a ``STRICT_DNS``
  cluster on ``<service>.<namespace>.svc.cluster.local:15006`` with mTLS, no
  retries, no outlier detection.
* admin on ``127.0.0.1:15000`` (reached by port-forward, never from the network),
  with the admin runtime layer that switches the fault filter.

One bootstrap per service (ConfigMap ``<service>-envoy``): the pod's name reaches
the via header through ``%HOSTNAME%`` (a pod's hostname is its name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from chaos.platforms.kubernetes import names
from chaos.platforms.shared.envoy_common import (
    LOCAL_APP_CLUSTER,
    Json,
    ProxyOptions,
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
    upstream_tls,
    virtual_host,
)
from chaos.platforms.shared.envoy_faults import fault_filter
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE

#: Where the init container writes the pod's certificate, key and CA (an emptyDir).
CERTS_DIR = PurePosixPath("/etc/sidecar-chaos/certs")
#: Where the init container copies the key set the sidecar reads once at start.
JWKS_DIR = PurePosixPath("/etc/sidecar-chaos/jwks")
JWKS_FILE = "jwks.json"
JWKS_PATH = JWKS_DIR / JWKS_FILE
#: The bootstrap's file name in its ConfigMap and the mount path.
BOOTSTRAP_DIR = PurePosixPath("/etc/envoy")
BOOTSTRAP_FILE = "envoy.json"
#: The files of a certs Secret (the same names as the local platform's identity dirs).
CERT_FILES = (CERT_FILE, KEY_FILE, CA_FILE)
#: The proxy's name in the via header: the pod's name (Envoy expands ``%HOSTNAME%``).
PROXY_NAME = "%HOSTNAME%.proxy"
_ANY = "0.0.0.0"
_LOCALHOST = "127.0.0.1"


def _dns_cluster(service: str, setup: names.Setup, opts: ProxyOptions, tls: Json) -> Json:
    """An mTLS cluster on a Service's DNS name: the local cluster builder, resolved by DNS."""
    host = names.service_host(service, setup)
    built = cluster(service, [(host, names.INBOUND_PORT)], opts, tls=tls)
    return {**built, "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY"}


def sidecar_bootstrap(
    service: str,
    calls: Sequence[str],
    opts: ProxyOptions,
    *,
    issuer: str,
    inbound: bool = True,
    setup: names.Setup = names.Setup.SIDECAR,
) -> Json:
    """The static bootstrap of a plain sidecar that serves ``service`` and calls ``calls``.

    ``inbound=False`` builds a client-only proxy (Locust's workers): no inbound
    listener, no local app, only the outbound side with its own mTLS identity.
    """
    certs = StaticCerts(Path(CERTS_DIR))  # a path inside the pod
    outbound_routes: Json = {
        "name": "outbound",
        "virtual_hosts": [
            virtual_host(
                svc,
                _domains(svc, setup, client_only=len(calls) == 1 and not inbound),
                [_route(svc, opts)],
            )
            for svc in calls
        ],
    }
    listeners = [
        listener(
            "outbound",
            _LOCALHOST,
            names.OUTBOUND_PORT,
            [
                http_connection_manager(
                    "outbound", [fault_filter("outbound")], route_config=outbound_routes
                )
            ],
        )
    ]
    clusters = [_dns_cluster(svc, setup, opts, upstream_tls(certs, setup)) for svc in calls]
    if inbound:
        jwt = jwt_filter(issuer, names.JWT_AUDIENCE, {"filename": str(JWKS_PATH)})
        inbound_routes: Json = {
            "name": "inbound",
            "virtual_hosts": [virtual_host("inbound", ["*"], [_route(LOCAL_APP_CLUSTER, opts)])],
        }
        hcm = http_connection_manager(
            "inbound",
            [jwt, fault_filter("inbound")],
            route_config=inbound_routes,
            forward_client_cert=True,
        )
        listeners.insert(
            0, listener("inbound", _ANY, names.INBOUND_PORT, [hcm], downstream_tls(certs, setup))
        )
        clusters.insert(0, cluster(LOCAL_APP_CLUSTER, [(_LOCALHOST, names.APP_PORT)], opts))
    return {
        "node": node(service, service),
        "admin": admin(_LOCALHOST),
        "layered_runtime": layered_runtime(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def _domains(service: str, setup: names.Setup, *, client_only: bool) -> list[str]:
    # A client-only proxy with one upstream (Locust's) takes any Host: Locust sends
    # "127.0.0.1:15001" as its Host.
    return ["*"] if client_only else [service, names.service_host(service, setup)]


def _route(cluster_name: str, opts: ProxyOptions) -> Json:
    # The plain sidecar never retries (the setup's defining weakness, as on the local platform).
    return route(cluster_name, PROXY_NAME, opts, retries=False)


def sidecar_args() -> list[str]:
    """The Envoy container's arguments (the image's entrypoint is ``envoy``)."""
    return [
        "-c",
        str(BOOTSTRAP_DIR / BOOTSTRAP_FILE),
        "--service-node",
        "$(POD_NAME)",
        "--log-level",
        "warning",
    ]


def init_copy_command() -> list[str]:
    """The init container's command: copy certs and key set once into the pod's emptyDir.

    Copied, not mounted: a Secret or ConfigMap volume changes under a running pod,
    while the plain sidecar's identity is written once, as on the local platform.
    """
    script = (
        f"set -eu; umask 077; "
        f"cp /src/certs/{CERT_FILE} /src/certs/{KEY_FILE} /src/certs/{CA_FILE} {CERTS_DIR}/; "
        f"cp /src/jwks/{JWKS_FILE} {JWKS_DIR}/"
    )
    return ["sh", "-c", script]
