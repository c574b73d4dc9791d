"""Pure builders of every Kubernetes object the tool deploys, as API-ready dicts.

* :mod:`.core`: namespaces, ServiceAccounts, Services, ConfigMaps, Secrets, the demo
  app's Deployments (one per replica) with the plain sidecar where the setup has one;
* :mod:`.envoy`: the plain sidecar's Envoy bootstrap (the local platform's builders);
* :mod:`.istio`: PeerAuthentication, RequestAuthentication, AuthorizationPolicy,
  DestinationRule, VirtualService (with an HTTP fault), the ambient waypoints;
* :mod:`.baseline`: the ``baseline`` namespace, the chain with no proxy (cost steps);
* :mod:`.locust`: in-cluster Locust (master Job, worker Deployment).

:func:`demo_objects` lists what ``cluster up`` applies for one setup, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import core, envoy, istio
from chaos.platforms.kubernetes.manifests.baseline import baseline_objects
from chaos.platforms.kubernetes.manifests.core import Manifest
from chaos.platforms.kubernetes.manifests.locust import CLIENT_SERVICE, LOCUST_CERTS_SECRET
from chaos.platforms.shared.envoy_common import ProxyOptions

__all__ = ["DemoIdentity", "Manifest", "PemPair", "demo_objects", "traffic_objects"]


@dataclass(frozen=True)
class PemPair:
    """A certificate and its private key, PEM-encoded."""

    cert: bytes
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class DemoIdentity:
    """The identities ``cluster up`` issues: the plain sidecars' certs and the token keys.

    ``certs`` is keyed by Secret name (``<service>-<replica>-certs``, ``locust-certs``).
    """

    issuer: str
    jwks_json: str
    ca_pem: bytes
    certs: Mapping[str, PemPair] = field(repr=False)


def _certs(identity: DemoIdentity, secret_name: str, ns: str) -> Manifest:
    pair = identity.certs[secret_name]
    cert_file, key_file, ca_file = envoy.CERT_FILES
    return core.secret(
        secret_name, ns, {cert_file: pair.cert, key_file: pair.key, ca_file: identity.ca_pem}
    )


def demo_objects(
    setup: names.Setup, identity: DemoIdentity, opts: ProxyOptions | None = None
) -> list[Manifest]:
    """Every object of the demo workload in one setup, in the order to create them."""
    if setup is names.Setup.BASELINE:
        return baseline_objects()  # no proxy: nothing of the identity or the options
    opts = opts or ProxyOptions()
    ns = names.namespace_of(setup)
    objects: list[Manifest] = [core.setup_namespace(setup)]
    objects += [core.service_account(s, ns) for s in names.SERVICES]
    if setup is names.Setup.SIDECAR:
        objects.append(core.jwks_config_map(ns, identity.jwks_json))
        for svc in names.SERVICES:
            calls = [c for c in (names.CALLS[svc],) if c is not None]
            bootstrap = envoy.sidecar_bootstrap(svc, calls, opts, issuer=identity.issuer)
            objects.append(core.envoy_config_map(svc, ns, bootstrap))
            objects += [
                _certs(identity, names.certs_secret_name(svc, r), ns) for r in range(names.REPLICAS)
            ]
    else:
        objects.append(istio.peer_authentication(setup))
        objects += [istio.destination_rule(s, setup, opts) for s in names.SERVICES]
        objects += [istio.virtual_service(s, setup, opts) for s in names.SERVICES]
    if setup is names.Setup.MESH:
        objects.append(
            istio.request_authentication(
                setup, issuer=identity.issuer, jwks_json=identity.jwks_json
            )
        )
        objects.append(istio.authorization_policy(setup))
    if setup is names.Setup.AMBIENT:
        objects += [istio.waypoint(s, setup) for s in names.SERVICES]
    objects += [core.service(s, setup) for s in names.SERVICES]
    objects += [core.deployment(s, r, setup) for s in names.SERVICES for r in range(names.REPLICAS)]
    return objects


def traffic_objects(identity: DemoIdentity, opts: ProxyOptions | None = None) -> list[Manifest]:
    """Locust's namespace and what its plain-sidecar client needs (the run adds Locust)."""
    opts = opts or ProxyOptions()
    ns = names.TRAFFIC_NAMESPACE
    bootstrap = envoy.sidecar_bootstrap(
        CLIENT_SERVICE, ["frontend"], opts, issuer=identity.issuer, inbound=False
    )
    return [
        core.traffic_namespace(),
        core.jwks_config_map(ns, identity.jwks_json),
        core.envoy_config_map(CLIENT_SERVICE, ns, bootstrap),
        _certs(identity, LOCUST_CERTS_SECRET, ns),
    ]
