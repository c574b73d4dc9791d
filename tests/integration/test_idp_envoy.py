"""The identity provider's ES256 tokens against a real Envoy ``jwt_authn`` filter.

One Envoy validates with a static key file (the sidecar setup's ``local_jwks``)
on ``/local`` and fetches the key set over HTTP from :class:`IdpServer`
(``remote_jwks``) on ``/remote``. After a key rotation the static file is stale:
fresh tokens get 401 there (the policy-desync fault), and the revert heals it.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chaos.platforms.shared.idp import IdentityProvider, IdpServer
from chaos.platforms.shared.layout import JWT_AUDIENCE
from chaos.proc import spawn, stop_processes

ISSUER = "https://idp.sidecar.cluster.local"
HOST = "127.0.0.1"
API = "type.googleapis.com/envoy.extensions"
ENVOY = shutil.which("envoy") or str(Path(__file__).resolve().parents[2] / ".venv/bin/envoy")

pytestmark = pytest.mark.skipif(not Path(ENVOY).exists(), reason="no envoy binary")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def bootstrap(listen: int, admin: int, jwks_file: Path, idp_port: int) -> dict[str, object]:
    def provider(source: dict[str, object]) -> dict[str, object]:
        return {"issuer": ISSUER, "audiences": [JWT_AUDIENCE], **source}

    remote: dict[str, object] = {
        "remote_jwks": {
            "http_uri": {
                "uri": f"http://{HOST}:{idp_port}/.well-known/jwks.json",
                "cluster": "idp",
                "timeout": "2s",
            },
            "cache_duration": "1s",
        }
    }
    jwt_authn = {
        "@type": f"{API}.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {
            "local": provider({"local_jwks": {"filename": str(jwks_file)}}),
            "remote": provider(remote),
        },
        "rules": [
            {"match": {"prefix": "/local"}, "requires": {"provider_name": "local"}},
            {"match": {"prefix": "/remote"}, "requires": {"provider_name": "remote"}},
        ],
    }
    hcm = {
        "@type": f"{API}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "in",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {"name": "envoy.filters.http.jwt_authn", "typed_config": jwt_authn},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{API}.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "node": {"id": "idp-test", "cluster": "idp-test"},
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "in",
                "address": {"socket_address": {"address": HOST, "port_value": listen}},
                "filter_chains": [{"filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]}],
            }],
            "clusters": [{
                "name": "idp", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "idp", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": HOST, "port_value": idp_port}}}}
                ]}]},
            }],
        },
    }  # fmt: skip


@dataclass
class Proxy:
    url: str
    idp: IdentityProvider
    server: IdpServer


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    idp = IdentityProvider(ISSUER, JWT_AUDIENCE)
    jwks_file = tmp_path / "jwks.json"
    idp.write_jwks(jwks_file)  # the sidecar's init step: written once, never refreshed
    with IdpServer(idp, HOST, 0) as server:
        listen, admin = free_port(), free_port()
        config = tmp_path / "envoy.json"
        config.write_text(json.dumps(bootstrap(listen, admin, jwks_file, server.port)))
        proc = spawn(
            # One worker thread: Envoy caches a remote key set per worker, so with several
            # a request on another worker fetches it anew (the cache test reads the fetches).
            [
                ENVOY,
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "-l",
                "warning",
                "--concurrency",
                "1",
            ],
            log_path=tmp_path / "envoy.log",
            name="envoy",
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if httpx.get(f"http://{HOST}:{admin}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "envoy not ready in 10 s"
                time.sleep(0.05)
            yield Proxy(f"http://{HOST}:{listen}", idp, server)
        finally:
            stop_processes([proc])


def call(proxy: Proxy, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(proxy.url + path, headers=headers, timeout=5).status_code


def test_envoy_accepts_es256_tokens_and_rejects_others(proxy: Proxy) -> None:
    token = httpx.post(proxy.server.token_url).text.strip()
    assert call(proxy, "/local", token) == 200
    assert call(proxy, "/remote", token) == 200
    assert call(proxy, "/local", None) == 401
    foreign = IdentityProvider(ISSUER, JWT_AUDIENCE).token()  # right claims, wrong key
    assert call(proxy, "/local", foreign) == 401
    other_audience = IdentityProvider(ISSUER, "someone-else")
    other_audience._active = proxy.idp._active  # same key, wrong audience
    assert call(proxy, "/local", other_audience.token()) == 403


def test_rotation_desyncs_the_stale_key_file_until_revert(proxy: Proxy) -> None:
    old_token = proxy.idp.token()
    proxy.idp.rotate_key()
    fresh = httpx.post(proxy.server.token_url).text.strip()
    assert call(proxy, "/local", fresh) == 401  # the sidecar keeps its stale key set
    assert call(proxy, "/local", old_token) == 200  # tokens from before still pass
    proxy.idp.revert()
    healed = httpx.post(proxy.server.token_url).text.strip()
    assert call(proxy, "/local", healed) == 200


def test_remote_key_set_refreshes_after_its_cache_duration(proxy: Proxy) -> None:
    # A validator that fetches the key set (cache 1 s) catches up by itself, and only by
    # fetching it again: judged from the server's record of what it served when (no clock
    # race: a loaded machine may make the refresh later, never earlier than the cache).
    assert call(proxy, "/remote", proxy.idp.token()) == 200  # key set now cached
    served = proxy.server.jwks_served
    assert len(served) == 1, served
    new_kid = proxy.idp.rotate_key()
    fresh = proxy.idp.token()
    answers: list[tuple[int, float]] = []  # (status, monotonic time the answer came back)
    deadline = time.monotonic() + 30  # a limit on waiting only
    while time.monotonic() < deadline:
        answers.append((call(proxy, "/remote", fresh), time.monotonic()))
        if answers[-1][0] == 200:
            break
        time.sleep(0.05)
    assert answers[-1][0] == 200, f"remote key set never refreshed: {answers[-5:]}"
    assert {status for status, _ in answers[:-1]} <= {401}, answers
    refreshes = [s for s in served[1:] if new_kid in s.kids]
    assert refreshes, f"accepted without fetching the rotated key set: {served}"
    # The refresh was answered before the first acceptance, and not before the cache of
    # the first fetch expired.
    assert refreshes[0].t < answers[-1][1]
    assert all(t < refreshes[0].t for _, t in answers[:-1]), "refused with the new key set"
    assert refreshes[0].t - served[0].t >= 1.0
    assert call(proxy, "/local", fresh) == 401  # the static file still has not
