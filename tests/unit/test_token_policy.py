"""Where the bearer token is validated, and whether the app behind still receives it.

Istio 1.28.0 (mesh, ambient) against the hand-written sidecar's stated choice, in the
data-plane table, the rendered Envoy configs and the Kubernetes objects.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.experiment import Setup
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import istio
from chaos.platforms.kubernetes.manifests.core import app_command
from chaos.platforms.local.envoy_config import ProxyConfig, mesh_resources, proxy_configs
from chaos.platforms.local.envoy_mesh import MeshState
from chaos.platforms.shared.dataplane import DEFAULTS, ISTIO_VERSION, SetupDataPlane
from chaos.platforms.shared.dataplane_rows import rows
from chaos.platforms.shared.envoy_common import JWT_FILTER, ProxyOptions
from chaos.platforms.shared.layout import build_layout

Get = Callable[[SetupDataPlane], object]

#: Istio's facts at tag 1.28.0 of istio/istio (and istio/api, istio/ztunnel): (what, value, source).
ISTIO: list[tuple[str, Setup, Get, object, str]] = [
    (
        "forwardOriginalToken defaults to false: the token is removed before the app",
        Setup.MESH,
        lambda d: d.token.forward,
        False,
        "istio/api security/v1/request_authentication.proto JWTRule.forward_original_token "
        "(default false); istio/istio pilot/pkg/security/authn/policy_applier.go "
        "convertToEnvoyJwtConfig: JwtProvider.Forward = jwtRule.ForwardOriginalToken",
    ),
    (
        "a RequestAuthentication alone lets a request without a token through",
        Setup.MESH,
        lambda d: (d.token.requires(first=False), d.token.validates),
        (False, True),
        "policy_applier.go convertToEnvoyJwtConfig: requires_any {provider, allow_missing}; "
        "a token is required only by an AuthorizationPolicy with requestPrincipals",
    ),
    (
        "ambient: ztunnel is L4; only a waypoint a RequestAuthentication targets validates",
        Setup.AMBIENT,
        lambda d: d.token.validates,
        False,
        "istio/ztunnel src/proxy/inbound.rs (no HTTP filters); pilot/pkg/networking/core/"
        "listener_waypoint.go (jwt_authn from a RequestAuthentication with targetRefs)",
    ),
]


@pytest.mark.parametrize(("what", "setup", "get", "expected", "source"), ISTIO)
def test_istio_token_defaults(
    what: str, setup: Setup, get: Get, expected: object, source: str
) -> None:
    assert get(DEFAULTS[setup]) == expected, f"{what}: Istio {ISTIO_VERSION} {source}"


def test_the_sidecar_choice_is_stated_and_reported() -> None:
    sidecar = DEFAULTS[Setup.SIDECAR].token
    # every sidecar requires the token, so each app must receive it to pass it on
    assert (sidecar.check, sidecar.forward) == ("every hop", True)
    for setup in (Setup.SIDECAR, Setup.MESH, Setup.AMBIENT):
        row = {r.name: r for r in rows(DEFAULTS[setup])}["token"]
        assert row.source and not row.deviation
    mesh = {r.name: r for r in rows(DEFAULTS[Setup.MESH])}["token"]
    assert "removed before the app" in mesh.value and "policy_applier.go" in mesh.source
    side = {r.name: r for r in rows(DEFAULTS[Setup.SIDECAR])}["token"]
    assert "passed on to the app" in side.value and "our choice" in side.source


def _jwt(filters: list[Any]) -> dict[str, Any]:
    found = [f for f in filters if isinstance(f, dict) and f.get("name") == JWT_FILTER]
    assert len(found) == 1
    config: dict[str, Any] = found[0]["typed_config"]
    return config


def _inbound_jwt(config: ProxyConfig) -> dict[str, Any]:
    listeners = config.bootstrap["static_resources"]["listeners"]  # type: ignore[index]
    inbound = next(x for x in listeners if x["name"] == "inbound")
    return _jwt(inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"])


def _required(jwt: dict[str, Any]) -> bool:
    return bool(jwt["rules"][0]["requires"] == {"provider_name": "idp"})


def _standing_rbac(config: ProxyConfig) -> dict[str, Any]:
    (content,) = [c for path, c in config.files if path.name == "rbac.json"]
    typed: dict[str, Any] = content["resources"][0]["typed_config"]  # type: ignore[index]
    return typed


def test_mesh_proxies_strip_the_token_and_only_frontend_requires_one() -> None:
    layout = build_layout(Setup.MESH, Path("/run"), slot=50, ingress_port=18050)
    configs = {c.name: c for c in proxy_configs(layout, ProxyOptions())}
    for pod in layout.pods:
        jwt = mesh_resources(layout, pod, ProxyOptions(), MeshState()).jwt["typed_config"]
        assert jwt["providers"]["idp"]["forward"] is False, pod.name
        # Istio's RequestAuthentication on every sidecar: a token must be valid if present
        assert not _required(jwt)
        assert {"allow_missing": {}} in jwt["rules"][0]["requires"]["requires_any"]["requirements"]
        # the AuthorizationPolicy requires a request principal at frontend only
        rbac = _standing_rbac(configs[pod.proxy_name or pod.name])
        if pod.service == "frontend":
            assert rbac["rules"]["action"] == "ALLOW"
            assert list(rbac["rules"]["policies"]) == ["require-jwt"]
        else:
            assert "rules" not in rbac, pod.name


def test_sidecar_proxies_require_and_pass_on_the_token() -> None:
    layout = build_layout(Setup.SIDECAR, Path("/run"), slot=50, ingress_port=18050)
    configs = {c.name: c for c in proxy_configs(layout, ProxyOptions())}
    for pod in layout.pods:
        jwt = _inbound_jwt(configs[pod.proxy_name or pod.name])
        assert jwt["providers"]["idp"]["forward"] is True
        assert _required(jwt)


def test_kubernetes_mesh_objects_follow_the_same_policy() -> None:
    ra = istio.request_authentication(names.Setup.MESH, issuer="https://idp", jwks_json="{}")
    assert "forwardOriginalToken" not in ra["spec"]["jwtRules"][0]  # Istio's default: false
    ap = istio.authorization_policy(names.Setup.MESH)
    # the token is required where it still is: at frontend; later hops never get one
    assert ap["spec"]["selector"] == {"matchLabels": {"app": "frontend"}}
    expects = {
        (setup, svc): "--expects-token" in app_command(svc, 0, setup)
        for setup in (names.Setup.SIDECAR, names.Setup.MESH, names.Setup.AMBIENT)
        for svc in names.SERVICES
    }
    assert {k for k, v in expects.items() if v} == {
        *((names.Setup.SIDECAR, s) for s in names.SERVICES),
        (names.Setup.MESH, "frontend"),
    }
