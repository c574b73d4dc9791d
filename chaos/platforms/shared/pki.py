"""The local CA (istiod's role): SPIFFE identities as short-lived X.509 certificates.

Identities are written the way Kubernetes projects secrets into a pod: the real
files live in a timestamped directory, ``..data`` is a symlink to it, and the
stable names (``cert.pem``, ``key.pem``, ``ca.pem``) point through ``..data``.
A rotation writes a new timestamped directory and renames a new ``..data`` link
over the old one: one atomic move that Envoy's ``watched_directory`` sees, so
it never loads a certificate with the wrong key.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chaos.platforms.shared.keyfiles import private_dir, write_private

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CA_FILE = "ca.pem"
_DATA_LINK = "..data"
#: Issued certificates start this far in the past, so a clock a little behind still accepts them.
_BACKDATE = dt.timedelta(seconds=30)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM."""

    spiffe_id: str
    cert_pem: bytes
    key_pem: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int

    @property
    def lifetime_s(self) -> float:
        return (self.not_after - self.not_before).total_seconds()


class CertificateAuthority:
    """A self-signed root that issues workload certificates with SPIFFE URI SANs."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert

    @classmethod
    def create(
        cls, name: str = "sidecar-chaos local CA", ttl_days: int = 30
    ) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=ttl_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def ca_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        spiffe_id: str,
        ttl: dt.timedelta,
        *,
        dns_names: tuple[str, ...] = (),
        not_before: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a client+server certificate for ``spiffe_id`` valid for ``ttl``."""
        if ttl.total_seconds() <= 0:
            raise ValueError("certificate TTL must be positive")
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _utcnow()
        # Backdating only the start keeps the end exactly ``ttl`` after issuance.
        valid_from = start - _BACKDATE
        valid_to = start + ttl
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(name) for name in dns_names]
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id.rsplit("/", 1)[-1])])
            )
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return IssuedCertificate(
            spiffe_id=spiffe_id,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key_pem,
            not_before=valid_from,
            not_after=valid_to,
            serial=serial,
        )

    def save(self, directory: Path) -> None:
        """Write the CA's certificate (0644) and key (0600) to ``directory``."""
        private_dir(directory)
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(directory / "ca-key.pem", key_pem)
        (directory / CA_FILE).write_bytes(self.ca_pem)


def write_identity(directory: Path, issued: IssuedCertificate, ca_pem: bytes) -> None:
    """Install ``issued`` into ``directory`` atomically (see the module docstring)."""
    private_dir(directory)
    stamp = f"..{_utcnow().strftime('%Y%m%dT%H%M%S%f')}_{secrets.token_hex(3)}"
    version = directory / stamp
    version.mkdir(mode=0o700)
    (version / CERT_FILE).write_bytes(issued.cert_pem)
    write_private(version / KEY_FILE, issued.key_pem)
    (version / CA_FILE).write_bytes(ca_pem)
    tmp_link = directory / f"{_DATA_LINK}_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(stamp)
    previous = (
        os.readlink(directory / _DATA_LINK) if (directory / _DATA_LINK).is_symlink() else None
    )
    os.replace(tmp_link, directory / _DATA_LINK)
    for name in (CERT_FILE, KEY_FILE, CA_FILE):
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"{_DATA_LINK}/{name}")
    if previous and previous != stamp:
        shutil.rmtree(directory / previous, ignore_errors=True)


def read_certificate(directory: Path) -> x509.Certificate:
    """The certificate currently installed in ``directory``."""
    return x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
