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
  caller matches nothing and is denied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from chaos.platforms.shared.envoy_common import Json, discovery_response

RBAC_FILTER: Final = "envoy.filters.http.rbac"
TYPE_RBAC: Final = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
_TYPE_EXTENSION_CONFIG: Final = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
Rule = Literal["deny-caller", "allow-other"]
RULES: Final = ("deny-caller", "allow-other")


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


def rbac_config(rule: str | None, caller: str, version: str) -> Json:
    """The ECDS file's content: no rules (``rule`` None), or the mismatched policy."""
    config: Json = {"@type": TYPE_RBAC}
    if rule == "deny-caller":
        principals: list[Json] = [{"authenticated": {"principal_name": {"exact": caller}}}]
        config["rules"] = {
            "action": "DENY",
            "policies": {"deny-caller": {"permissions": [{"any": True}], "principals": principals}},
        }
    elif rule == "allow-other":
        other = caller.rsplit("/", 1)[0] + "/not-" + caller.rsplit("/", 1)[-1]
        principals = [{"authenticated": {"principal_name": {"exact": other}}}]
        config["rules"] = {
            "action": "ALLOW",
            "policies": {"allow-other": {"permissions": [{"any": True}], "principals": principals}},
        }
    resource: Json = {"@type": _TYPE_EXTENSION_CONFIG, "name": RBAC_FILTER, "typed_config": config}
    return discovery_response([resource], version)


def rbac_file(proxy_dir: Path) -> tuple[Path, Json]:
    """The file a proxy starts with: no rules."""
    return rbac_path(proxy_dir), rbac_config(None, "", "0")
