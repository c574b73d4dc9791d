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

``allow-any`` (fail open, mesh and ambient, at frontend: where the standing
``require-jwt`` policy applies): ``action: ALLOW`` with ``rules: [{}]`` (every request),
which Istio ORs with ``require-jwt``, so a token-less caller (``security.anonymous``) is let
through. Proof: a copy of the standing policy, ``chaos-dryrun-<service>``, annotated
``istio.io/dry-run: "true"`` (Istio's dry run: the policy becomes the RBAC filter's shadow
rules, not enforced), created before the rule; its ``rbac.istio_dry_run_allow_shadow_denied``
(kept by Istio's default stats matcher: the ``shadow_denied`` suffix) counts each request
the standing policy would have denied. Revert deletes the rule, then the copy.

The plain Envoy sidecar has no Istio: its rules go into its own bootstrap ConfigMap and
reach the pods by a rollout (:mod:`.sidecarauthz`).
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

RULES = ("deny-caller", "allow-other", "allow-any")
_RBAC_DENIED = tuple(s for s in DENIED_SUFFIXES if "rbac" in s)
#: Istio's dry-run annotation, and the shadow counter of an ALLOW dry-run policy.
DRY_RUN_ANNOTATION = "istio.io/dry-run"
SHADOW_DENIED = (".rbac.istio_dry_run_allow_shadow_denied",)


def policy_name(service: str) -> str:
    return f"chaos-mismatch-{service}"


def dry_run_name(service: str) -> str:
    return f"chaos-dryrun-{service}"


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
    if rule == "allow-any":
        spec: Manifest = {"action": "ALLOW", "rules": [{}]}  # a rule without sources: any
    else:
        if not caller:
            raise FaultError(f"{rule} needs the caller's principal: target checkout or payments")
        if rule == "deny-caller":
            action, principal = "DENY", caller
        else:
            last = caller.rsplit("/", 1)
            action, principal = "ALLOW", last[0] + "/not-" + last[1]
        spec = {"action": action, "rules": [{"from": [{"source": {"principals": [principal]}}]}]}
    _bind(spec, setup, service)
    return {
        "apiVersion": AUTHORIZATION_POLICY.api_version,
        "kind": AUTHORIZATION_POLICY.kind,
        "metadata": metadata(policy_name(service), namespace),
        "spec": spec,
    }


def standing_dry_run(setup: names.Setup, namespace: str, service: str) -> Manifest:
    """The standing ``require-jwt`` at ``service``, in Istio's dry-run mode (pure)."""
    spec: Manifest = {
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}],
    }
    _bind(spec, setup, service)
    meta = metadata(dry_run_name(service), namespace)
    meta["annotations"] = {**(meta.get("annotations") or {}), DRY_RUN_ANNOTATION: "true"}
    return {
        "apiVersion": AUTHORIZATION_POLICY.api_version,
        "kind": AUTHORIZATION_POLICY.kind,
        "metadata": meta,
        "spec": spec,
    }


def _bind(spec: Manifest, setup: names.Setup, service: str) -> None:
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


def _caller_or_none(namespace: str, service: str) -> str:
    # frontend's caller is the load generator: no principal (only allow-any goes there)
    return "" if service == names.SERVICES[0] else caller_principal(namespace, service)


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
                    _caller_or_none(self.namespace, service),
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
        if rule == "allow-any":  # the proof first: the standing policy, as a dry run
            shadow = self.writer.create(
                standing_dry_run(self._setup, self.namespace, service),
                detail=f"the standing require-jwt at {service}, dry run (the proof)",
            )
            if shadow is not None:
                self._authz_state()[site.proxy + " dry-run"] = shadow
        change = self.writer.create(manifest, detail=f"policy-mismatch {rule} at {service}")
        if change is not None:
            self._authz_state()[site.proxy] = change

    def clear_authz_rule(self, site: AuthzSite) -> None:
        if self._setup == SIDECAR:
            return self.sidecar_clear_rule(site)
        for key in (site.proxy, site.proxy + " dry-run"):  # the rule, then its proof
            change = self._authz_state().pop(key, None)
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
        if self._setup == SIDECAR:
            return 0  # allow-any is refused on the plain sidecar (jwt_authn comes first)
        wanted = set(self._enforcers(site))
        pods = [p for p in self._namespace_pods() if p.name in wanted]
        return sum(self._counts(pods, SHADOW_DENIED).values())


__all__ = [
    "DRY_RUN_ANNOTATION",
    "KubeAuthzOps",
    "caller_principal",
    "dry_run_name",
    "mismatch_policy",
    "policy_name",
    "standing_dry_run",
]
