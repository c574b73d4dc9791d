"""Bearer tokens for in-cluster Locust, signed with the key ``cluster up`` keeps.

``cluster up`` issues the demo's JWT signing key into its state directory
(``<state>/idp``: ``jwks.json`` and ``<kid>.key.pem``, mode 0600) and gives the
validators (the plain sidecars' ``jwks`` ConfigMap, the mesh's RequestAuthentication)
its public key set. A run mints one token for its window from that key, valid for as
long as the window can last, and hands it to the workers through a Secret it owns
(:func:`~.manifests.locust.token_secret`, written ahead to the change ledger, deleted
at stop or by ``clean``). There is no identity provider in the cluster: the token is
not renewed, and nothing rotates the key; policy-desync on Kubernetes takes the key
out of the validators' key set instead (see :mod:`.identityops`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt

from chaos.errors import InputError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.cluster import default_state_dir
from chaos.platforms.kubernetes.clusteridentity import JWT_ISSUER
from chaos.platforms.shared.idp import ALGORITHM, JWKS_FILE


def default_idp_dir() -> Path:
    """Where ``cluster up`` keeps the signing key (``<state>/idp``)."""
    return default_state_dir() / "idp"


def mint_token(idp_dir: Path, ttl_s: float, subject: str = "locust") -> str:
    """A JWT for the demo's audience from ``idp_dir``'s active key, valid ``ttl_s`` seconds."""
    jwks_path = idp_dir / JWKS_FILE
    try:
        kid = str(json.loads(jwks_path.read_text())["keys"][0]["kid"])
        key = (idp_dir / f"{kid}.key.pem").read_bytes()
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{jwks_path}: cannot read cluster up's signing key: {exc}") from exc
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER,
        "aud": names.JWT_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + max(1, int(ttl_s)),
    }
    try:
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise InputError(f"{idp_dir}: the signing key {kid} is not usable: {exc}") from exc


__all__ = ["default_idp_dir", "mint_token"]
