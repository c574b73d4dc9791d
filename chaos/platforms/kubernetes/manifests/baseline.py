"""The ``baseline`` namespace ``sc-baseline``: the demo chain with no proxy at all.

The reference a cost step subtracts ("latency added over baseline"): the same chain
``frontend -> checkout -> payments``, the same replicas pinned to the same workers, the
same app and image, and nothing in the request path but the apps themselves:

* the namespace is labelled ``istio-injection: disabled`` (Istio's webhook injects no
  sidecar there, whatever a pod says) and carries no ``istio.io/dataplane-mode`` label
  (ztunnel does not capture its pods: they are not in ambient);
* no Envoy sidecar container, no certificates, no key set: each app calls the next
  one's Service in plaintext on port 8080 and checks no token (``DEFAULTS[baseline]``
  checks none);
* no Istio object at all (no PeerAuthentication, DestinationRule, VirtualService,
  RequestAuthentication, AuthorizationPolicy or waypoint): nothing there for Istio to
  program, and no fault can land on it (every fault targets a proxy; the experiment
  refuses baseline there at the fault's line).

The entry point: none. On a cluster no setup has an ingress proxy in front: in-cluster
Locust sends to frontend's Service through the setup's own client-side proxy (the plain
sidecar's outbound, the mesh sidecar, ztunnel), which is part of what that setup costs.
So baseline's Locust workers join no data plane and send plaintext straight to
``frontend.sc-baseline``'s Service (:func:`~.locust.target_host`). The local platform
keeps a plain ingress Envoy in front of its baseline because every local setup has that
same shared ingress in front (``shared.dataplane._BASELINE``); a cluster baseline with
an Envoy in front would subtract a proxy the other setups do not have. Between replicas
the Service balances as kube-proxy does (the local baseline's apps call the replicas in
turn).
"""

from __future__ import annotations

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import core
from chaos.platforms.kubernetes.manifests.core import Manifest

SETUP = names.Setup.BASELINE


def baseline_objects() -> list[Manifest]:
    """Every object of ``sc-baseline``, in the order to create them."""
    ns = names.namespace_of(SETUP)
    objects: list[Manifest] = [core.setup_namespace(SETUP)]
    objects += [core.service_account(s, ns) for s in names.SERVICES]
    objects += [core.service(s, SETUP) for s in names.SERVICES]
    objects += [core.deployment(s, r, SETUP) for s in names.SERVICES for r in range(names.REPLICAS)]
    return objects


__all__ = ["baseline_objects"]
