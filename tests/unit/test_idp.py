"""The identity provider: tokens, the key set, rotation (policy-desync) and restore."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from chaos.platforms.shared.idp import (
    ALGORITHM,
    JWKS_FILE,
    IdentityProvider,
    check_token,
)
from chaos.platforms.shared.layout import JWT_AUDIENCE

ISSUER = "https://idp.sidecar.cluster.local"


def verify(token: str, jwks_json: str) -> dict[str, object]:
    """Validate like a proxy, independently of the provider's own helper: kid -> PyJWK -> decode."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: jwt.PyJWK(k) for k in json.loads(jwks_json)["keys"]}
    if kid not in keys:
        raise jwt.InvalidKeyError(f"kid {kid} not in key set")
    claims: dict[str, object] = jwt.decode(
        token, keys[kid].key, algorithms=[ALGORITHM], issuer=ISSUER, audience=JWT_AUDIENCE
    )
    return claims


@pytest.fixture
def idp() -> IdentityProvider:
    return IdentityProvider(ISSUER, JWT_AUDIENCE)


def test_token_verifies_with_the_key_set(idp: IdentityProvider) -> None:
    before = int(time.time())
    token = idp.token("alice", ttl_s=120)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == idp.kid
    claims = verify(token, idp.jwks_json())
    assert claims["iss"] == ISSUER
    assert claims["aud"] == JWT_AUDIENCE
    assert claims["sub"] == "alice"
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert before <= claims["iat"] <= before + 2
    assert claims["exp"] - claims["iat"] == 120
    assert check_token(token, idp.jwks_json(), issuer=ISSUER, audience=JWT_AUDIENCE).valid


def test_key_set_shape(idp: IdentityProvider) -> None:
    keys = idp.jwks()["keys"]
    assert len(keys) == 1
    (key,) = keys
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert key["use"] == "sig" and key["kid"] == idp.kid
    assert "d" not in key  # the private part never leaves
    assert json.loads(idp.jwks_json()) == idp.jwks()


def test_wrong_audience_issuer_or_expiry_is_rejected(idp: IdentityProvider) -> None:
    other = IdentityProvider("https://elsewhere", "other-audience")
    token = other.token()
    assert not check_token(token, other.jwks_json(), issuer=ISSUER, audience=JWT_AUDIENCE).valid
    expired = jwt.encode(
        {"iss": ISSUER, "aud": JWT_AUDIENCE, "sub": "x", "iat": 1, "exp": 2},
        idp._active.key,
        algorithm=ALGORITHM,
        headers={"kid": idp.kid},
    )
    result = check_token(expired, idp.jwks_json(), issuer=ISSUER, audience=JWT_AUDIENCE)
    assert not result.valid and "expired" in result.reason
    with pytest.raises(ValueError):
        idp.token(ttl_s=0)


def test_token_after_rotation_fails_against_the_stale_key_set(idp: IdentityProvider) -> None:
    stale = idp.jwks_json()
    old_kid = idp.kid
    old_token = idp.token()
    new_kid = idp.rotate_key()
    assert new_kid != old_kid and idp.kid == new_kid
    fresh = idp.token()
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    with pytest.raises(jwt.PyJWTError):
        verify(fresh, stale)
    result = check_token(fresh, stale, issuer=ISSUER, audience=JWT_AUDIENCE)
    assert not result.valid and new_kid in result.reason
    # The new key set holds the new key only: the old one is dropped.
    assert [k["kid"] for k in idp.jwks()["keys"]] == [new_kid]
    verify(fresh, idp.jwks_json())
    with pytest.raises(jwt.PyJWTError):
        verify(old_token, idp.jwks_json())


def test_rotated_key_is_not_a_resigned_copy(idp: IdentityProvider) -> None:
    # Forge the new token's kid onto the old key set: the signature itself must fail.
    stale = json.loads(idp.jwks_json())
    idp.rotate_key()
    stale["keys"][0]["kid"] = idp.kid
    with pytest.raises(jwt.InvalidSignatureError):
        verify(idp.token(), json.dumps(stale))


def test_restore_and_revert(idp: IdentityProvider) -> None:
    original = idp.kid
    stale = idp.jwks_json()
    first = idp.rotate_key()
    assert not check_token(idp.token(), stale, issuer=ISSUER, audience=JWT_AUDIENCE).valid
    assert idp.revert() == original
    assert idp.kid == original
    verify(idp.token(), stale)
    assert idp.jwks_json() == stale
    # Idempotent: a second revert keeps the original key.
    assert idp.revert() == original and idp.kid == original
    # restore_key goes to any key of the history.
    second = idp.rotate_key()
    third = idp.rotate_key()
    assert idp.kids == [original, first, second, third]
    idp.restore_key(second)
    assert idp.kid == second
    with pytest.raises(ValueError, match="unknown"):
        idp.restore_key("nope")


def test_revert_without_rotation_keeps_the_key(idp: IdentityProvider) -> None:
    kid = idp.kid
    assert idp.revert() == kid


def test_listeners_get_each_new_key_set(idp: IdentityProvider) -> None:
    pushed: list[str] = []
    unsubscribe = idp.on_rotate(pushed.append)

    def broken(_: str) -> None:
        raise RuntimeError("push failed")

    idp.on_rotate(broken)  # a failing listener must not stop the rotation or the others
    new_kid = idp.rotate_key()
    assert len(pushed) == 1
    assert [k["kid"] for k in json.loads(pushed[0])["keys"]] == [new_kid]
    idp.revert()
    assert len(pushed) == 2 and json.loads(pushed[1]) == idp.jwks()
    idp.revert()  # already active: no change, no push
    assert len(pushed) == 2
    unsubscribe()
    idp.rotate_key()
    assert len(pushed) == 2


def test_key_dir_modes_and_jwks_file(tmp_path: Path) -> None:
    key_dir = tmp_path / "idp"
    idp = IdentityProvider(ISSUER, JWT_AUDIENCE, key_dir=key_dir)
    first = idp.kid
    idp.rotate_key()
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    for kid in (first, idp.kid):
        key_file = key_dir / f"{kid}.key.pem"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert b"PRIVATE KEY" in key_file.read_bytes()
    assert json.loads((key_dir / JWKS_FILE).read_text()) == idp.jwks()
    # Nothing that may reach a log line carries the private key.
    assert repr(idp._history[0]) == f"_SigningKey(kid={first!r})"
    assert "PRIVATE" not in repr(idp)


def test_rotation_logs_no_key_material(
    idp: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="chaos.platforms.shared.idp")
    kid = idp.rotate_key()
    assert kid in caplog.text
    assert "PRIVATE" not in caplog.text and idp.jwks()["keys"][0]["x"] not in caplog.text


def test_write_jwks_is_a_snapshot(idp: IdentityProvider, tmp_path: Path) -> None:
    # The sidecar's static key file: written once, it stays stale after a rotation.
    path = tmp_path / "pod" / "jwks.json"
    idp.write_jwks(path)
    before = path.read_text()
    idp.rotate_key()
    assert path.read_text() == before
    assert not check_token(idp.token(), before, issuer=ISSUER, audience=JWT_AUDIENCE).valid
