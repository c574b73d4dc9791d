"""The TLS pieces of every Envoy config: certificates from files or SDS, mTLS both ways.

Split from :mod:`.envoy_common`, which re-exports every name here (callers keep importing
them from there). Pure: it returns the Envoy JSON and touches no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.shared.layout import TRUST_DOMAIN
from chaos.platforms.shared.pki import CA_FILE, CERT_FILE, KEY_FILE

Json = dict[str, object]

_TLS_SOCKET = "envoy.transport_sockets.tls"
_T = "type.googleapis.com/"
TYPE_DOWNSTREAM_TLS = _T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
TYPE_UPSTREAM_TLS = _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TYPE_SECRET = _T + "envoy.extensions.transport_sockets.tls.v3.Secret"


def san_prefix(setup: Setup) -> str:
    """Peers are accepted when their SPIFFE ID lies in the setup's namespace."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{setup.value}/"


def _san_matchers(setup: Setup) -> list[Json]:
    return [{"san_type": "URI", "matcher": {"prefix": san_prefix(setup)}}]


# -- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticCerts:
    """Certificates read once from files at start (the sidecar setup: no rotation)."""

    dir: Path


@dataclass(frozen=True)
class SdsCerts:
    """Certificates delivered by SDS from files that name the watched ``..data`` directory.

    Envoy wants one secret per SDS file: ``identity_path`` holds the secret
    ``identity_secret`` (certificate and key), ``ca_path`` the secret ``ca_secret``.
    """

    identity_path: Path
    ca_path: Path
    identity_secret: str
    ca_secret: str
    watch_dir: Path


Certs = StaticCerts | SdsCerts


def _sds_config(path: Path, watch_dir: Path) -> Json:
    return {
        "path_config_source": {
            "path": str(path),
            "watched_directory": {"path": str(watch_dir)},
        },
        "resource_api_version": "V3",
    }


def _common_tls(certs: Certs, setup: Setup) -> Json:
    if isinstance(certs, StaticCerts):
        return {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(certs.dir / CERT_FILE)},
                    "private_key": {"filename": str(certs.dir / KEY_FILE)},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": str(certs.dir / CA_FILE)},
                "match_typed_subject_alt_names": _san_matchers(setup),
            },
        }
    return {
        "tls_certificate_sds_secret_configs": [
            {
                "name": certs.identity_secret,
                "sds_config": _sds_config(certs.identity_path, certs.watch_dir),
            }
        ],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": _san_matchers(setup)},
            "validation_context_sds_secret_config": {
                "name": certs.ca_secret,
                "sds_config": _sds_config(certs.ca_path, certs.watch_dir),
            },
        },
    }


def downstream_tls(certs: Certs, setup: Setup) -> Json:
    """mTLS termination: a client certificate from the CA in the setup's namespace required."""
    return {
        "name": _TLS_SOCKET,
        "typed_config": {
            "@type": TYPE_DOWNSTREAM_TLS,
            "require_client_certificate": True,
            "common_tls_context": _common_tls(certs, setup),
        },
    }


def upstream_tls(certs: Certs, setup: Setup) -> Json:
    """mTLS origination: our identity as client certificate, the server's SAN checked."""
    return {
        "name": _TLS_SOCKET,
        "typed_config": {
            "@type": TYPE_UPSTREAM_TLS,
            "common_tls_context": _common_tls(certs, setup),
        },
    }


def sds_secrets(identity_secret: str, ca_secret: str, cert_dir: Path) -> list[Json]:
    """The two SDS secrets of one identity directory, re-read when ``..data`` is swapped."""
    watch = {"path": str(cert_dir)}
    return [
        {
            "@type": TYPE_SECRET,
            "name": identity_secret,
            "tls_certificate": {
                "certificate_chain": {"filename": str(cert_dir / CERT_FILE)},
                "private_key": {"filename": str(cert_dir / KEY_FILE)},
                "watched_directory": watch,
            },
        },
        {
            "@type": TYPE_SECRET,
            "name": ca_secret,
            "validation_context": {
                "trusted_ca": {"filename": str(cert_dir / CA_FILE)},
                "watched_directory": watch,
            },
        },
    ]


def discovery_response(resources: list[Json], version: str) -> Json:
    """The file form of an xDS answer (what ``path_config_source`` reads)."""
    return {"version_info": version, "resources": resources}


# -- a proxy's files ----------------------------------------------------------------------


def sds_files_for(cert_dir: Path) -> tuple[Path, Path]:
    """The SDS resource files (identity, CA) of an identity directory: next to it."""
    return (
        cert_dir.parent / f"{cert_dir.name}.sds.json",
        cert_dir.parent / f"{cert_dir.name}.ca.sds.json",
    )


def sds_certs(
    cert_dir: Path, identity_secret: str = "default", ca_secret: str = "ROOTCA"
) -> SdsCerts:
    identity_path, ca_path = sds_files_for(cert_dir)
    return SdsCerts(identity_path, ca_path, identity_secret, ca_secret, cert_dir)


def sds_files(certs: SdsCerts) -> tuple[tuple[Path, Json], tuple[Path, Json]]:
    """The two SDS resource files of ``certs``: (path, content) each."""
    identity, ca = sds_secrets(certs.identity_secret, certs.ca_secret, certs.watch_dir)
    return (
        (certs.identity_path, discovery_response([identity], "1")),
        (certs.ca_path, discovery_response([ca], "1")),
    )
