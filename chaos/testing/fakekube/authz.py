"""AuthorizationPolicy in the fake: the CRD's schema on every write, Istio's decision per request.

* Writes: an ``AuthorizationPolicy`` is checked against the schema the repository
  keeps of Istio's CRD (:mod:`chaos.platforms.kubernetes.schemas`, reduced from the v1
  ``openAPIV3Schema`` of ``manifests/charts/base/files/crd-all.gen.yaml``) and refused
  as the API server refuses an object its CRD's schema rejects: 422 ``Invalid``. The
  reduced schema also rejects unknown fields, where the real server would drop them
  (pruning): stricter, so a typo in what we write cannot pass silently.
* Requests (:func:`allowed`, asked by :func:`.istio.send`): Istio's evaluation order
  (istio/istio ``pilot/pkg/security/authz/builder``; the docs' "Authorization Policy"
  page): a matching DENY policy denies; otherwise, if any ALLOW policy applies to the
  workload, the request must match one; otherwise it is allowed. A policy applies in
  mesh by its ``selector`` (or to the whole namespace without one and without
  ``targetRefs``), in ambient by ``targetRefs`` naming the service's waypoint. A
  source matches on ``principals`` (``cluster.local/ns/<ns>/sa/<service account>``
  of the client pod, ``*`` for any), ``requestPrincipals`` (a validated token) and
  ``namespaces``. The server's proxy counts ``rbac.denied`` or ``rbac.allowed`` (the
  waypoint's in ambient), for every request that reached authorization. A policy annotated
  ``istio.io/dry-run: "true"`` is not enforced: :func:`shadow_allowed` evaluates those
  (Istio's dry run, https://istio.io/latest/docs/tasks/security/authorization/authz-dry-run/).
"""

from __future__ import annotations

from typing import Any

from chaos.platforms.kubernetes import names
from chaos.testing.fakekube.crdschema import check_spec
from chaos.testing.fakekube.rules import Obj

KIND = "AuthorizationPolicy"


def validate_policy(kind: str, obj: Obj) -> None:
    """Refuse an AuthorizationPolicy its CRD's schema rejects (422 ``Invalid``)."""
    if kind != KIND:
        return
    check_spec(KIND, "security.istio.io", obj)


def principal(namespace: str, pod: Obj) -> str:
    """Istio's source principal of a pod: its service account's identity, sans ``spiffe://``."""
    account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    return f"cluster.local/ns/{namespace}/sa/{account}"


def _applies(policy: Obj, service: str, waypoint: bool) -> bool:
    spec = policy.get("spec") or {}
    refs = spec.get("targetRefs") or []
    if waypoint:
        return any(
            r.get("kind") == "Gateway" and r.get("name") == names.waypoint_name(service)
            for r in refs
        )
    if refs:
        return False
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    return all({names.LABEL_APP: service}.get(k) == v for k, v in wanted.items())


def _source_matches(source: dict[str, Any], caller: str, caller_ns: str, token: bool) -> bool:
    principals = source.get("principals")
    if principals is not None and not any(p in ("*", caller) for p in principals):
        return False
    if source.get("requestPrincipals") is not None and not token:
        return False
    spaces = source.get("namespaces")
    return spaces is None or caller_ns in spaces or "*" in spaces


def _matches(policy: Obj, caller: str, caller_ns: str, token: bool) -> bool:
    for rule in (policy.get("spec") or {}).get("rules") or []:
        froms = rule.get("from")
        if not froms:
            return True  # a rule without sources matches every request
        if any(_source_matches(f.get("source") or {}, caller, caller_ns, token) for f in froms):
            return True
    return False


def allowed(
    policies: list[Obj], service: str, *, waypoint: bool, caller: str, caller_ns: str, token: bool
) -> bool:
    """Istio's decision for one request to ``service`` from ``caller``."""
    mine = [p for p in policies if _applies(p, service, waypoint) and not dry_run(p)]
    return _decide(mine, caller, caller_ns, token)


def dry_run(policy: Obj) -> bool:
    """Istio's ``istio.io/dry-run: "true"``: the policy is shadow rules, not enforced."""
    annotations = (policy.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get("istio.io/dry-run", "")).lower() == "true"


def shadow_allowed(
    policies: list[Obj], service: str, *, waypoint: bool, caller: str, caller_ns: str, token: bool
) -> bool | None:
    """The dry-run policies' decision (the shadow rules), or None: no dry-run policy applies.

    Istio builds the RBAC filter's ``shadow_rules`` from the dry-run policies alone
    (``shadow_rules_stat_prefix`` ``istio_dry_run_allow_`` for ALLOW ones), evaluated in
    the same order; they count ``rbac.istio_dry_run_allow_shadow_allowed`` / ``_denied``.
    """
    mine = [p for p in policies if _applies(p, service, waypoint) and dry_run(p)]
    return _decide(mine, caller, caller_ns, token) if mine else None


def _decide(mine: list[Obj], caller: str, caller_ns: str, token: bool) -> bool:

    def action(p: Obj) -> str:
        return str((p.get("spec") or {}).get("action") or "ALLOW")

    if any(_matches(p, caller, caller_ns, token) for p in mine if action(p) == "DENY"):
        return False
    allows = [p for p in mine if action(p) == "ALLOW"]
    return not allows or any(_matches(p, caller, caller_ns, token) for p in allows)


__all__ = ["KIND", "allowed", "dry_run", "principal", "shadow_allowed", "validate_policy"]
