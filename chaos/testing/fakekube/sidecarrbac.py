"""The fake's plain Envoy sidecars: their bootstrap read at start, its RBAC filter applied.

What our ``policy-mismatch`` on the plain sidecar depends on (:mod:`chaos.platforms.
kubernetes.sidecarauthz`), modelled as Envoy and the kubelet behave:

* a sidecar reads its bootstrap (the ConfigMap the pod mounts at volume
  ``envoy-bootstrap``, key ``envoy.json``) once, when its container starts (``envoy -c``
  reads a static bootstrap at start only): :class:`FakeSidecars` keeps the bootstrap a pod
  had at its first request, keyed by the pod's uid and the container's restart count, so a
  ConfigMap changed under a running pod changes nothing until a new pod (a rollout) or a
  restart. Deviation (named): the read is at the pod's first request, not at its start;
  the fault never edits a ConfigMap in place, so the two are the same for it;
* the RBAC HTTP filter of the inbound listener (``envoy.extensions.filters.http.rbac.v3.
  RBAC``, Envoy's ``rbac`` filter docs): ``ALLOW`` lets through a request a policy
  matches, ``DENY`` refuses one; a policy matches when a permission and a principal do.
  Principals: ``any``, ``authenticated.principal_name.exact`` (the peer certificate's URI
  SAN), ``and_ids``, ``or_ids``, ``not_id``, ``metadata`` (jwt_authn's payload: present,
  the caller's token being valid). Anything else is refused (``ValueError``): the fake does
  not guess. Permissions: ``any`` only. It counts ``http.inbound.rbac.allowed`` /
  ``.denied`` in the pod's stats (``FakePodExec.counters``); no filter, no counter, as
  Envoy creates the stats with the filter;
* the caller's principal is the URI SAN of its certs Secret (``<service>-<replica>-certs``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509

from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import envoy
from chaos.platforms.shared.pki import CERT_FILE
from chaos.testing.fakekube.podexec import FakePodExec
from chaos.testing.fakekube.rules import ApiError

BOOTSTRAP_VOLUME = "envoy-bootstrap"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
PREFIX = "http.inbound"


def _principal_matches(principal: dict[str, Any], caller: str) -> bool:
    if principal.get("any"):
        return True
    if "authenticated" in principal:
        exact = ((principal["authenticated"] or {}).get("principal_name") or {}).get("exact")
        return exact == caller
    if "and_ids" in principal:
        return all(_principal_matches(p, caller) for p in principal["and_ids"]["ids"])
    if "or_ids" in principal:
        return any(_principal_matches(p, caller) for p in principal["or_ids"]["ids"])
    if "not_id" in principal:
        return not _principal_matches(principal["not_id"], caller)
    if "metadata" in principal:
        return True  # a valid token: jwt_authn put its payload in the metadata
    raise ValueError(f"fake sidecar: principal {sorted(principal)} not modelled")


def _policy_matches(policy: dict[str, Any], caller: str) -> bool:
    for permission in policy.get("permissions") or []:
        if not permission.get("any"):
            raise ValueError(f"fake sidecar: permission {sorted(permission)} not modelled")
    return bool(policy.get("permissions")) and any(
        _principal_matches(p, caller) for p in policy.get("principals") or []
    )


def decide(rbac: dict[str, Any], caller: str) -> bool:
    """Envoy's RBAC decision for one request from ``caller`` (True: allowed)."""
    rules = rbac.get("rules")
    if rules is None:
        return True  # no rules: the filter enforces nothing
    matched = any(_policy_matches(p, caller) for p in (rules.get("policies") or {}).values())
    return not matched if rules.get("action", "ALLOW") == "DENY" else matched


def rbac_of(bootstrap: dict[str, Any]) -> dict[str, Any] | None:
    """The inbound listener's RBAC filter config (None: the sidecar has none)."""
    for lst in (bootstrap.get("static_resources") or {}).get("listeners") or []:
        if lst.get("name") != "inbound":
            continue
        for chain in lst.get("filter_chains") or []:
            for net in chain.get("filters") or []:
                for f in (net.get("typed_config") or {}).get("http_filters") or []:
                    typed = f.get("typed_config") or {}
                    if typed.get("@type") == RBAC_TYPE:
                        return dict(typed)
    return None


class FakeSidecars:
    """The plain sidecars of a fake cluster's pods (see the module docstring)."""

    def __init__(self, pods: FakePodExec) -> None:
        self.pods = pods
        self._started: dict[tuple[str, int], dict[str, Any]] = {}

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        cluster = self.pods.cluster
        try:
            return cluster.get(cluster.resource("v1", plural), namespace, name)
        except ApiError:
            return None

    def bootstrap(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        """The bootstrap the pod's sidecar read when it started ({} without one)."""
        restarts = sum(
            int(s.get("restartCount", 0))
            for s in (pod.get("status") or {}).get("containerStatuses") or []
            if s.get("name") == names.SIDECAR_CONTAINER
        )
        key = (str(pod["metadata"].get("uid")), restarts)
        if key not in self._started:
            volumes = (pod.get("spec") or {}).get("volumes") or []
            source = next(
                (v.get("configMap") or {} for v in volumes if v.get("name") == BOOTSTRAP_VOLUME),
                {},
            )
            found = self._get("configmaps", namespace, str(source.get("name", "")))
            raw = ((found or {}).get("data") or {}).get(envoy.BOOTSTRAP_FILE)
            self._started[key] = json.loads(raw) if raw else {}
        return self._started[key]

    def principal(self, namespace: str, client_pod: dict[str, Any]) -> str:
        """The URI SAN of the client's certificate (its certs Secret)."""
        labels = client_pod["metadata"].get("labels") or {}
        secret_name = names.certs_secret_name(
            labels[names.LABEL_APP], int(labels[names.LABEL_REPLICA])
        )
        secret = self._get("secrets", namespace, secret_name) or {}
        pem = base64.b64decode((secret.get("data") or {}).get(CERT_FILE, ""))
        sans = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        return str(sans.value.get_values_for_type(x509.UniformResourceIdentifier)[0])

    def send(self, client: tuple[str, str], service: str, requests: int) -> int:
        """``requests`` requests from pod ``client`` to each of ``service``'s sidecars.

        Returns how many were denied (403) over all the service's pods.
        """
        namespace = client[0]
        cluster = self.pods.cluster
        client_pod = cluster.get(cluster.resource("v1", "pods"), *client)
        caller = self.principal(namespace, client_pod)
        denied = 0
        for pod in cluster.select(cluster.resource("v1", "pods"), namespace):
            if (pod["metadata"].get("labels") or {}).get(names.LABEL_APP) != service:
                continue
            rbac = rbac_of(self.bootstrap(namespace, pod))
            if rbac is None:
                continue
            counter = "rbac.allowed" if decide(rbac, caller) else "rbac.denied"
            denied += requests if counter == "rbac.denied" else 0
            key = (namespace, str(pod["metadata"]["name"]))
            with self.pods.lock:
                counters = self.pods.counters.setdefault(key, {})
                counters[f"{PREFIX}.{counter}"] = counters.get(f"{PREFIX}.{counter}", 0) + requests
        return denied


__all__ = ["BOOTSTRAP_VOLUME", "FakeSidecars", "decide", "rbac_of"]
