"""The identity provider's HTTP server, over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import jwt
import pytest

from chaos.errors import AddressInUseError, InputError
from chaos.platforms.shared.idp import IdentityProvider, IdpServer, check_token
from chaos.platforms.shared.layout import JWT_AUDIENCE

ISSUER = "https://idp.mesh.cluster.local"
HOST = "127.0.0.1"


@pytest.fixture
def idp() -> IdentityProvider:
    return IdentityProvider(ISSUER, JWT_AUDIENCE)


@pytest.fixture
def server(idp: IdentityProvider) -> Iterator[IdpServer]:
    with IdpServer(idp, HOST, 0) as running:
        yield running


def valid(token: str, jwks_json: str) -> bool:
    return check_token(token, jwks_json, issuer=ISSUER, audience=JWT_AUDIENCE).valid


def test_binds_port_zero_and_reports_the_port(server: IdpServer) -> None:
    assert server.port > 0
    assert server.url == f"http://{HOST}:{server.port}"
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200 and response.text.strip() == "ok"


def test_jwks_endpoint(server: IdpServer, idp: IdentityProvider) -> None:
    response = httpx.get(server.jwks_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == idp.jwks()


def test_token_as_text_and_as_json(server: IdpServer) -> None:
    jwks = httpx.get(server.jwks_url).text
    as_text = httpx.get(server.token_url)
    assert as_text.status_code == 200
    assert as_text.headers["content-type"] == "text/plain"
    assert valid(as_text.text.strip(), jwks)

    posted = httpx.post(server.token_url, headers={"Accept": "application/json"})
    assert posted.headers["content-type"] == "application/json"
    body = posted.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert valid(body["access_token"], jwks)


def test_token_parameters(server: IdpServer) -> None:
    token = httpx.post(server.token_url, data={"sub": "bob", "ttl": "30"}).text.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "bob" and claims["exp"] - claims["iat"] == 30
    token = httpx.get(server.token_url, params={"sub": "carol"}).text.strip()
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "carol"
    for bad in ("0", "-5", "abc", "999999999"):
        assert httpx.get(server.token_url, params={"ttl": bad}).status_code == 400


def test_unknown_path_and_method(server: IdpServer) -> None:
    assert httpx.get(f"{server.url}/nope").status_code == 404
    assert httpx.post(server.jwks_url).status_code == 405


def test_rotation_is_seen_over_http(server: IdpServer, idp: IdentityProvider) -> None:
    stale = httpx.get(server.jwks_url).text
    idp.rotate_key()
    fresh_token = httpx.post(server.token_url).text.strip()
    assert not valid(fresh_token, stale)
    assert valid(fresh_token, httpx.get(server.jwks_url).text)
    idp.revert()
    assert json.loads(httpx.get(server.jwks_url).text) == json.loads(stale)
    assert valid(httpx.post(server.token_url).text.strip(), stale)


def test_concurrent_clients(server: IdpServer) -> None:
    jwks = httpx.get(server.jwks_url).text
    tokens: list[str] = []
    lock = threading.Lock()

    def fetch() -> None:
        with httpx.Client() as client:
            for _ in range(10):
                token = client.post(server.token_url).text.strip()
                with lock:
                    tokens.append(token)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(tokens) == 80
    assert all(valid(t, jwks) for t in tokens)


def test_close_stops_serving_and_frees_the_port(idp: IdentityProvider) -> None:
    server = IdpServer(idp, HOST, 0).start()
    port = server.port
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    server.close()
    server.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{HOST}:{port}/healthz")
    # The port is free again: a new server can take it at once.
    with IdpServer(idp, HOST, port) as again:
        assert httpx.get(f"{again.url}/healthz").status_code == 200
    assert not [t for t in threading.enumerate() if t.name == "idp"]


def test_address_in_use_is_one_clear_error(idp: IdentityProvider) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AddressInUseError) as info:
            IdpServer(idp, HOST, port).start()
    message = str(info.value)
    assert message == f"identity provider: {HOST}:{port} is already in use"
    assert "\n" not in message and info.value.exit_code == 2


def test_two_servers_on_one_port(idp: IdentityProvider, server: IdpServer) -> None:
    with pytest.raises(AddressInUseError):
        IdpServer(idp, HOST, server.port).start()
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_non_loopback_address_is_refused(idp: IdentityProvider) -> None:
    for host in ("0.0.0.0", "10.0.0.1", "localhost"):
        with pytest.raises(InputError, match="loopback"):
            IdpServer(idp, host, 0)


def test_pod_style_loopback_address(idp: IdentityProvider) -> None:
    with IdpServer(idp, "127.0.250.2", 0) as server:
        assert httpx.get(server.jwks_url).json() == idp.jwks()
