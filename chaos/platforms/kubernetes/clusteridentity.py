"""The identities ``cluster up`` issues and keeps: a CA, the plain sidecars' and Locust's
certificates, and the token signing key (the demo's issuer, :data:`JWT_ISSUER`).

Issued once and kept in the state directory (:data:`IDENTITY_FILE`, keys 0600), so a
second ``up`` keeps what running pods already trust. The ``baseline`` namespace needs
none of it (no proxy, no token check).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from chaos.errors import InputError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.manifests import DemoIdentity, PemPair
from chaos.platforms.kubernetes.manifests.locust import CLIENT_SERVICE, LOCUST_CERTS_SECRET
from chaos.platforms.shared.idp import IdentityProvider
from chaos.platforms.shared.layout import spiffe_id
from chaos.platforms.shared.pki import CertificateAuthority

JWT_ISSUER = f"https://idp.{names.CLUSTER_NAME}.cluster.local"
CERT_TTL = dt.timedelta(days=30)


def issue_identity(state_dir: Path | None) -> DemoIdentity:
    """A CA, the plain sidecars' (and Locust's) certificates, and the token signing key.

    The CA and the signing key stay in ``state_dir`` (keys 0600; None: in memory only,
    for a dry run), so the platform can mint tokens for Locust; certificates carry the
    local platform's SPIFFE IDs, so the sidecar bootstrap's SAN check is the local one.
    """
    ca = CertificateAuthority.create("sidecar-chaos kind CA")
    if state_dir is not None:
        ca.save(state_dir / "ca")
    key_dir = state_dir / "idp" if state_dir is not None else None
    idp = IdentityProvider(JWT_ISSUER, names.JWT_AUDIENCE, key_dir=key_dir)
    certs: dict[str, PemPair] = {}
    for svc in names.SERVICES:
        for replica in range(names.REPLICAS):
            issued = ca.issue(spiffe_id(names.Setup.SIDECAR, svc), CERT_TTL)
            certs[names.certs_secret_name(svc, replica)] = PemPair(issued.cert_pem, issued.key_pem)
    client = ca.issue(spiffe_id(names.Setup.SIDECAR, CLIENT_SERVICE), CERT_TTL)
    certs[LOCUST_CERTS_SECRET] = PemPair(client.cert_pem, client.key_pem)
    return DemoIdentity(JWT_ISSUER, idp.jwks_json(), ca.ca_pem, certs)


IDENTITY_FILE = "identity.json"


def save_identity(identity: DemoIdentity, path: Path) -> None:
    """Write ``identity`` (private keys included) to ``path``, readable by the owner only."""
    data = {
        "issuer": identity.issuer,
        "jwks_json": identity.jwks_json,
        "ca_pem": identity.ca_pem.decode("ascii"),
        "certs": {
            name: {"cert": pair.cert.decode("ascii"), "key": pair.key.decode("ascii")}
            for name, pair in identity.certs.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)


def load_identity(path: Path) -> DemoIdentity:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DemoIdentity(
            issuer=str(data["issuer"]),
            jwks_json=str(data["jwks_json"]),
            ca_pem=str(data["ca_pem"]).encode("ascii"),
            certs={
                name: PemPair(str(pair["cert"]).encode("ascii"), str(pair["key"]).encode("ascii"))
                for name, pair in data["certs"].items()
            },
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a sidecar-chaos identity file ({exc})") from exc


def load_or_issue_identity(state_dir: Path) -> DemoIdentity:
    """The identity of an earlier ``up`` (running pods keep trusting each other), or a new one."""
    path = state_dir / IDENTITY_FILE
    if path.is_file():
        return load_identity(path)
    identity = issue_identity(state_dir)
    save_identity(identity, path)
    return identity


__all__ = [
    "CERT_TTL",
    "IDENTITY_FILE",
    "JWT_ISSUER",
    "issue_identity",
    "load_identity",
    "load_or_issue_identity",
    "save_identity",
]
