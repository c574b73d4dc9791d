"""``policy-mismatch`` on a cluster: an Istio AuthorizationPolicy, recorded before it is made.

:class:`KubeAuthzOps` (mixed into :class:`~.faultops.KubeFaultOps`) is the platform's
:class:`~chaos.platforms.authz.AuthzOps` for the mesh and ambient setups:

* a site is one service: mesh, an AuthorizationPolicy ``chaos-mismatch-<service>``
  with ``selector: {app: <service>}`` (the service's sidecars enforce it, every replica
  is hit); ambient, the same with ``targetRefs`` naming the service's waypoint (a
  selector would bind ztunnel, which enforces L4 only);
* ``deny-caller``: ``action: DENY`` for the caller's principal
  (``cluster.local/ns/<namespace>/sa/<caller service>``); ``allow-other``:
  ``action: ALLOW`` for another principal only, so the caller matches no ALLOW policy;
* it goes through :class:`~.changes.ClusterWriter` ``create`` (the ledger records the
  intent before the POST; revert deletes exactly that object, a second revert finds
  nothing to do); a dry run plans it;
* proof: ``rbac.denied`` of the proxies that enforce it (the service's ``istio-proxy``
  containers, or its waypoint), one of Istio's own stats-matcher suffixes.

``allow-any`` (fail open) needs illegitimate callers, which only the local platform
sends: the experiment refuses it at its line. The plain Envoy sidecar has no Istio: its
rules go into its own bootstrap ConfigMap and reach the pods by a rollout
(:mod:`.sidecarauthz`).
"""

from __future__ import annotations

from collections.abc import Sequence

from chaos.errors import FaultError
from chaos.platforms.authz import AuthzSite
from chaos.platforms.base import Pod
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.changes import Change
from chaos.platforms.kubernetes.kinds import AUTHORIZATION_POLICY
from chaos.platforms.kubernetes.manifests.core import Manifest, metadata
from chaos.platforms.kubernetes.opsbase import AMBIENT, GATEWAY_NAME_LABEL, SIDECAR
from chaos.platforms.kubernetes.sidecarauthz import SidecarAuthzOps
from chaos.platforms.kubernetes.statsmatcher import DENIED_SUFFIXES

RULES = ("deny-caller", "allow-other")
_RBAC_DENIED = tuple(s for s in DENIED_SUFFIXES if "rbac" in s)


def policy_name(service: str) -> str:
    return f"chaos-mismatch-{service}"


def caller_principal(namespace: str, service: str) -> str:
    """The principal Istio gives the service that calls ``service`` (its service account)."""
    callers = [s for s, upstream in names.CALLS.items() if upstream == service]
    if not callers:
        raise FaultError(
            f"{service}'s caller is the load generator, outside the mesh's identities: "
            "target checkout or payments"
        )
    return f"cluster.local/ns/{namespace}/sa/{callers[0]}"


def mismatch_policy(
    setup: names.Setup, namespace: str, service: str, rule: str, caller: str
) -> Manifest:
    """The AuthorizationPolicy of one rollout (pure)."""
    if rule not in RULES:
        raise FaultError(f"rule {rule!r} on a cluster: one of {', '.join(RULES)}")
    if rule == "deny-caller":
        action, principal = "DENY", caller
    else:
        action, principal = "ALLOW", caller.rsplit("/", 1)[0] + "/not-" + caller.rsplit("/", 1)[1]
    spec: Manifest = {
        "action": action,
        "rules": [{"from": [{"source": {"principals": [principal]}}]}],
    }
    if setup == AMBIENT:
        spec["targetRefs"] = [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": names.waypoint_name(service),
            }
        ]
    else:
        spec["selector"] = {"matchLabels": {names.LABEL_APP: service}}
    return {
        "apiVersion": AUTHORIZATION_POLICY.api_version,
        "kind": AUTHORIZATION_POLICY.kind,
        "metadata": metadata(policy_name(service), namespace),
        "spec": spec,
    }


class KubeAuthzOps(SidecarAuthzOps):
    """Authorization rollouts through AuthorizationPolicy (see the module docstring)."""

    _authz_changes: dict[str, Change]

    def _authz_state(self) -> dict[str, Change]:
        if not hasattr(self, "_authz_changes"):
            self._authz_changes = {}
        return self._authz_changes

    def authz_sites(self, pods: Sequence[Pod]) -> list[AuthzSite]:
        if self._setup == SIDECAR:
            return self.sidecar_authz_sites(pods)
        sites = []
        for service in dict.fromkeys(p.service for p in pods):
            where = "targetRefs its waypoint" if self._setup == AMBIENT else "selector app"
            sites.append(
                AuthzSite(
                    f"{self.namespace}/AuthorizationPolicy {policy_name(service)}",
                    tuple(p.name for p in self._workload.pods if p.service == service),
                    caller_principal(self.namespace, service),
                    f"AuthorizationPolicy created ({where}={service}; ledger first)",
                    "AuthorizationPolicy deleted (if it still carries this run's mark)",
                )
            )
        return sites

    @staticmethod
    def _service(site: AuthzSite) -> str:
        return site.proxy.rsplit(" ", 1)[-1].removeprefix("chaos-mismatch-")

    def set_authz_rule(self, site: AuthzSite, rule: str) -> None:
        if self._setup == SIDECAR:
            return self.sidecar_set_rule(site, rule)
        service = self._service(site)
        manifest = mismatch_policy(self._setup, self.namespace, service, rule, site.caller)
        change = self.writer.create(manifest, detail=f"policy-mismatch {rule} at {service}")
        if change is not None:
            self._authz_state()[site.proxy] = change

    def clear_authz_rule(self, site: AuthzSite) -> None:
        if self._setup == SIDECAR:
            return self.sidecar_clear_rule(site)
        change = self._authz_state().pop(site.proxy, None)
        if change is not None:
            self.writer.undo(change)

    def _enforcers(self, site: AuthzSite) -> list[str]:
        service = self._service(site)
        pods = self._namespace_pods()
        if self._setup == AMBIENT:
            gateway = names.waypoint_name(service)
            return [p.name for p in pods if p.labels.get(GATEWAY_NAME_LABEL) == gateway]
        return [p.name for p in pods if p.labels.get(names.LABEL_APP) == service]

    def authz_denials(self, site: AuthzSite) -> int:
        if self._setup == SIDECAR:
            return self.sidecar_denials(site)
        wanted = set(self._enforcers(site))
        pods = [p for p in self._namespace_pods() if p.name in wanted]
        return sum(self._counts(pods, _RBAC_DENIED).values())

    def authz_let_through(self, site: AuthzSite) -> int:
        # allow-any is refused on a cluster (no illegitimate callers): nothing is let through
        return 0


__all__ = ["KubeAuthzOps", "caller_principal", "mismatch_policy", "policy_name"]
