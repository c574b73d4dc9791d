"""``policy-mismatch`` on the plain Envoy sidecar: the sidecar's own config, rolled out.

The plain sidecar has no Istio behind it: its authorization is whatever its Envoy
bootstrap says (ConfigMap ``<service>-envoy``, mounted at ``/etc/envoy`` and read once,
at start, by ``envoy -c``). A team changing its RBAC rules does it the way Kubernetes
rolls out config to such a proxy, and so does this fault:

* a copy of the service's bootstrap ConfigMap, ``chaos-mismatch-<service>-envoy``, with
  Envoy's RBAC HTTP filter after ``jwt_authn`` on the inbound listener (the rules of
  :func:`chaos.platforms.shared.envoy_rbac.rbac_config`: ``deny-caller`` a DENY of the
  caller's principal, ``allow-other`` an ALLOW of another principal only), created
  through the ledger (``create``);
* each of the service's Deployments switched to that ConfigMap
  (``spec.template.spec.volumes``, a ``field`` change): a pod-template change, so the
  Deployment controller rolls new pods, which read the new bootstrap at start. The
  fault waits for each rollout (``rollout_timeout_s``), as ``kubectl rollout status``;
* revert: the Deployments' volumes back as read (a rollout back to the team's own
  ConfigMap, waited for), then the copy deleted. ``clean`` undoes newest first, which
  is the same order: no pod is left on the mismatched config.

Why a copy and a rollout, not an edit in place: the kubelet does refresh a mounted
ConfigMap (after its sync period plus its cache's TTL), but Envoy reads a static
bootstrap only at start, so an edit in place takes effect at no bounded time (the next
crash); and an edit in place then ``rollout restart`` could not be undone newest first
(the restart's undo would roll pods while the edit is still there). A renamed copy is
the ``configMapGenerator`` pattern (a name per content), whose undo is exact.

Proof: ``http.inbound.rbac.denied`` of the service's sidecars (Envoy's RBAC filter
counts under its HCM's stat prefix, ``inbound``). The caller's principal is the URI SAN
of the certificate in the caller's certs Secret (what its sidecar presents in mTLS).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from chaos.errors import FaultError
from chaos.platforms.authz import AuthzSite
from chaos.platforms.base import Pod
from chaos.platforms.kubernetes import names, rollout
from chaos.platforms.kubernetes.changes import Change
from chaos.platforms.kubernetes.kinds import CONFIGMAP, DEPLOYMENT, SECRET
from chaos.platforms.kubernetes.manifests import envoy
from chaos.platforms.kubernetes.manifests.core import Manifest, config_map
from chaos.platforms.kubernetes.opsbase import OpsBase
from chaos.platforms.shared.envoy_common import JWT_FILTER, Json
from chaos.platforms.shared.envoy_rbac import RBAC_FILTER, rbac_config
from chaos.platforms.shared.layout import spiffe_id
from chaos.platforms.shared.pki import CERT_FILE

RULES = ("deny-caller", "allow-other")
#: The RBAC filter's counters on the sidecar's inbound HCM (stat prefix ``inbound``).
DENIED_STAT = "http.inbound.rbac.denied"
VOLUMES = ("spec", "template", "spec", "volumes")


def mismatch_name(service: str) -> str:
    """The copy of ``<service>-envoy`` that carries the mismatched rules."""
    return f"chaos-mismatch-{names.envoy_configmap_name(service)}"


def with_rbac(bootstrap: Json, rule: str, caller: str) -> Json:
    """The bootstrap with an RBAC filter for ``rule`` after ``jwt_authn`` inbound (pure)."""
    if rule not in RULES:
        raise FaultError(f"rule {rule!r} on the plain sidecar: one of {', '.join(RULES)}")
    response: Any = rbac_config(rule, caller, "1")
    typed = response["resources"][0]["typed_config"]
    out: Any = copy.deepcopy(bootstrap)
    placed = 0
    for lst in (out.get("static_resources") or {}).get("listeners") or []:
        if lst.get("name") != "inbound":
            continue
        for chain in lst.get("filter_chains") or []:
            for net in chain.get("filters") or []:
                filters = (net.get("typed_config") or {}).get("http_filters")
                if filters is None:
                    continue
                if any(f.get("name") == RBAC_FILTER for f in filters):
                    raise FaultError("the sidecar's bootstrap already has an RBAC filter")
                at = next((i + 1 for i, f in enumerate(filters) if f.get("name") == JWT_FILTER), 0)
                filters.insert(at, {"name": RBAC_FILTER, "typed_config": typed})
                placed += 1
    if not placed:
        raise FaultError("the sidecar's bootstrap has no inbound HTTP listener to authorize at")
    return dict(out)


def cert_principal(secret: dict[str, Any]) -> str | None:
    """The URI SAN of the certificate in a certs Secret (None: no URI SAN)."""
    pem = base64.b64decode((secret.get("data") or {}).get(CERT_FILE, ""))
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _switch(service: str, volumes: Any) -> list[Any]:
    wanted = names.envoy_configmap_name(service)
    out = copy.deepcopy(list(volumes or []))
    hits = [v for v in out if (v.get("configMap") or {}).get("name") == wanted]
    if not hits:
        raise FaultError(f"the Deployment mounts no ConfigMap {wanted}")
    for volume in hits:
        volume["configMap"]["name"] = mismatch_name(service)
    return out


class SidecarAuthzOps(OpsBase):
    """The plain sidecar's half of :class:`~.authzops.KubeAuthzOps` (module docstring)."""

    _sidecar_changes: dict[str, list[Change]]

    def _sidecar_state(self) -> dict[str, list[Change]]:
        if not hasattr(self, "_sidecar_changes"):
            self._sidecar_changes = {}
        return self._sidecar_changes

    def _deployments(self, service: str) -> list[str]:
        return [names.deployment_name(service, r) for r in range(names.REPLICAS)]

    def _sidecar_caller(self, service: str) -> str:
        callers = [s for s, upstream in names.CALLS.items() if upstream == service]
        if not callers:
            raise FaultError(
                f"{service}'s caller is the load generator: target checkout or payments"
            )
        if self.planning:  # nothing read in a dry run: the identity cluster up issues
            return spiffe_id(names.Setup.SIDECAR, callers[0])
        secret_name = names.certs_secret_name(callers[0], 0)
        secret = self.writer.api.get(SECRET, self.namespace, secret_name)
        if secret is None:
            raise FaultError(f"Secret {self.namespace}/{secret_name} does not exist")
        found = cert_principal(secret)
        if found is None:
            raise FaultError(f"Secret {self.namespace}/{secret_name}: its cert has no URI SAN")
        return found

    def sidecar_authz_sites(self, pods: Sequence[Pod]) -> list[AuthzSite]:
        sites = []
        for service in dict.fromkeys(p.service for p in pods):
            deployments = ", ".join(self._deployments(service))
            sites.append(
                AuthzSite(
                    f"{self.namespace}/ConfigMap {names.envoy_configmap_name(service)}",
                    tuple(p.name for p in self._workload.pods if p.service == service),
                    self._sidecar_caller(service),
                    f"ConfigMap {mismatch_name(service)} created with RBAC rules, Deployments "
                    f"{deployments} switched to it and rolled out (ledger first)",
                    f"Deployments {deployments} switched back and rolled out, "
                    f"{mismatch_name(service)} deleted",
                )
            )
        return sites

    @staticmethod
    def _sidecar_service(site: AuthzSite) -> str:
        return site.proxy.rsplit(" ", 1)[-1].removesuffix("-envoy")

    def _mismatch_config_map(self, service: str, rule: str, caller: str) -> Manifest:
        if self.planning:
            return config_map(mismatch_name(service), self.namespace, {})
        source = names.envoy_configmap_name(service)
        current = self.writer.api.get(CONFIGMAP, self.namespace, source)
        raw = ((current or {}).get("data") or {}).get(envoy.BOOTSTRAP_FILE)
        if raw is None:
            raise FaultError(f"ConfigMap {self.namespace}/{source} has no {envoy.BOOTSTRAP_FILE}")
        bootstrap = with_rbac(json.loads(raw), rule, caller)
        return config_map(
            mismatch_name(service), self.namespace, {envoy.BOOTSTRAP_FILE: json.dumps(bootstrap)}
        )

    def sidecar_set_rule(self, site: AuthzSite, rule: str) -> None:
        service = self._sidecar_service(site)
        changes = self._sidecar_state().setdefault(site.proxy, [])
        manifest = self._mismatch_config_map(service, rule, site.caller)
        self._track(
            changes, self.writer.create(manifest, detail=f"policy-mismatch {rule} at {service}")
        )
        for deployment in self._deployments(service):
            change = self.writer.set_field(
                DEPLOYMENT,
                self.namespace,
                deployment,
                VOLUMES,
                lambda volumes: _switch(service, volumes),
                detail=f"bootstrap from {mismatch_name(service)}",
            )
            self._track(changes, change)
        self._wait_rollouts(service)

    def sidecar_clear_rule(self, site: AuthzSite) -> None:
        changes = self._sidecar_state().pop(site.proxy, [])
        for change in reversed(changes):  # Deployments back first, then the copy deleted
            self.writer.undo(change)
            if change.action == "field" and not self.planning:
                rollout.wait_deployment(
                    self.writer.api.get, self.namespace, change.name, self.rollout_timeout_s
                )

    def _wait_rollouts(self, service: str) -> None:
        if self.planning:
            return
        for deployment in self._deployments(service):
            rollout.wait_deployment(
                self.writer.api.get, self.namespace, deployment, self.rollout_timeout_s
            )

    def sidecar_denials(self, site: AuthzSite) -> int:
        service = self._sidecar_service(site)
        pods = [p for p in self._namespace_pods() if p.labels.get(names.LABEL_APP) == service]
        return sum(self._counts(pods, (".rbac.denied",)).values())


__all__ = [
    "DENIED_STAT",
    "RULES",
    "SidecarAuthzOps",
    "cert_principal",
    "mismatch_name",
    "with_rbac",
]
