"""The authorization policy of a proxy's inbound: Envoy's RBAC HTTP filter, delivered by ECDS.

Every inbound HCM that terminates mTLS (the sidecar and mesh pod proxies, the ambient
waypoints) carries ``envoy.filters.http.rbac`` after ``jwt_authn`` (authentication
before authorization, as Istio orders them), its config read from a watched file
``<proxy dir>/xds/ecds-rbac/rbac.json``. At start that file holds an RBAC config
without rules: no enforcement. A policy rollout replaces the file (write, rename: the
next request sees it, no listener drains): what Istio does when an AuthorizationPolicy
is pushed. Denials count in ``http.<prefix>.rbac.denied`` and answer 403.

Policies (what a mismatched rollout looks like, ``policy-mismatch``):

* ``deny-caller``: a DENY rule naming the legitimate caller's principal (its SPIFFE ID);
* ``allow-other``: an ALLOW rule naming another principal only, so the legitimate
  caller matches nothing and is denied;
* ``allow-any`` (fail open): an ALLOW rule matching every request, rolled out beside
  the proxy's own ALLOW policy. Istio ORs ALLOW policies, so where the token is
  required by an authorization policy (``require_token``: Istio's ``requestPrincipals``
  on the first service, as the mesh setup has it) a request without one is let through.
  The intended policy stays as the shadow rules: ``rbac.shadow_denied`` counts each
  request it would have denied and the rollout let through (the proof).

``require_token``: the proxy's standing policy is ALLOW ``require-jwt``, a request
principal present: jwt_authn's validated payload in the dynamic metadata (Istio matches
``request.auth.principal`` of its own ``istio_authn`` filter, which upstream Envoy lacks).
A mismatched rollout keeps it: ``deny-caller`` then allows what has a token and is not
the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from chaos.platforms.shared.envoy_common import (
    JWT_FILTER,
    JWT_PAYLOAD_METADATA,
    Json,
    discovery_response,
)

RBAC_FILTER: Final = "envoy.filters.http.rbac"
TYPE_RBAC: Final = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
_TYPE_EXTENSION_CONFIG: Final = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
Rule = Literal["deny-caller", "allow-other", "allow-any"]
RULES: Final = ("deny-caller", "allow-other", "allow-any")
_ANY: Final[list[Json]] = [{"any": True}]


def rbac_path(proxy_dir: Path) -> Path:
    """The ECDS file of one proxy's RBAC filter (alone in its watched directory)."""
    return proxy_dir / "xds" / "ecds-rbac" / "rbac.json"


def rbac_filter(proxy_dir: Path) -> Json:
    """The HTTP filter entry: its config from :func:`rbac_path`, no rules until one is pushed."""
    path = rbac_path(proxy_dir)
    return {
        "name": RBAC_FILTER,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": str(path),
                    "watched_directory": {"path": str(path.parent)},
                },
                "resource_api_version": "V3",
            },
            "default_config": {"@type": TYPE_RBAC},
            "apply_default_config_without_warming": True,
            "type_urls": [TYPE_RBAC],
        },
    }


def _principal(name: str) -> Json:
    return {"authenticated": {"principal_name": {"exact": name}}}


#: A request principal is present: jwt_authn validated a token (its payload is in the metadata).
REQUEST_PRINCIPAL: Final[Json] = {
    "metadata": {
        "filter": JWT_FILTER,
        "path": [{"key": JWT_PAYLOAD_METADATA}],
        "value": {"present_match": True},
    }
}


def _allow(policies: Json) -> Json:
    return {"action": "ALLOW", "policies": policies}


def rbac_config(
    rule: str | None, caller: str, version: str, *, require_token: bool = False
) -> Json:
    """The ECDS file's content: the standing policy (``rule`` None), or the mismatched one."""
    config: Json = {"@type": TYPE_RBAC}
    standing: Json = (
        {"require-jwt": {"permissions": _ANY, "principals": [REQUEST_PRINCIPAL]}}
        if require_token
        else {}
    )
    if rule == "deny-caller":
        if require_token:
            both: Json = {"and_ids": {"ids": [REQUEST_PRINCIPAL, {"not_id": _principal(caller)}]}}
            config["rules"] = _allow(
                {"require-jwt-deny-caller": {"permissions": _ANY, "principals": [both]}}
            )
        else:
            config["rules"] = {
                "action": "DENY",
                "policies": {
                    "deny-caller": {"permissions": _ANY, "principals": [_principal(caller)]}
                },
            }
    elif rule == "allow-other":
        other = caller.rsplit("/", 1)[0] + "/not-" + caller.rsplit("/", 1)[-1]
        config["rules"] = _allow(
            {**standing, "allow-other": {"permissions": _ANY, "principals": [_principal(other)]}}
        )
    elif rule == "allow-any":
        config["rules"] = _allow(
            {**standing, "allow-any": {"permissions": _ANY, "principals": _ANY}}
        )
        if standing:
            config["shadow_rules"] = _allow(standing)
    elif standing:
        config["rules"] = _allow(standing)
    resource: Json = {"@type": _TYPE_EXTENSION_CONFIG, "name": RBAC_FILTER, "typed_config": config}
    return discovery_response([resource], version)


def rbac_file(proxy_dir: Path, *, require_token: bool = False) -> tuple[Path, Json]:
    """The file a proxy starts with: its standing policy (no rules, or ``require-jwt``)."""
    return rbac_path(proxy_dir), rbac_config(None, "", "0", require_token=require_token)
