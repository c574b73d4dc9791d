"""The local CA: SPIFFE SANs, TTLs, private key modes and the atomic ``..data`` swap."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from chaos.experiment import Setup
from chaos.platforms.shared.layout import spiffe_id
from chaos.platforms.shared.pki import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    CertificateAuthority,
    read_certificate,
    write_identity,
)

SPIFFE = spiffe_id(Setup.MESH, "payments")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


def _version_dirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.is_symlink())


def test_san_is_exactly_the_spiffe_uri(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue(SPIFFE, dt.timedelta(minutes=5)).cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(SPIFFE)]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_chain_verifies_against_the_ca_and_not_another(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue(SPIFFE, dt.timedelta(minutes=5)).cert_pem)
    root = x509.load_pem_x509_certificate(ca.ca_pem)
    cert.verify_directly_issued_by(root)
    # Another CA with the very same name: only the signature tells them apart.
    impostor = x509.load_pem_x509_certificate(CertificateAuthority.create().ca_pem)
    assert impostor.subject == root.subject
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(impostor)


def test_ttl_is_respected(ca: CertificateAuthority) -> None:
    before = dt.datetime.now(dt.UTC)
    issued = ca.issue(SPIFFE, dt.timedelta(seconds=90))
    after = dt.datetime.now(dt.UTC)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.not_valid_after_utc == issued.not_after.replace(microsecond=0)
    # not_after is the issue time plus the TTL (to the second, X.509's resolution).
    assert before + dt.timedelta(seconds=89) <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc <= after + dt.timedelta(seconds=90)
    # not_before is backdated for clock skew, but never into the future.
    assert cert.not_valid_before_utc <= before
    assert cert.serial_number == issued.serial


def test_non_positive_ttl_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="positive"):
        ca.issue(SPIFFE, dt.timedelta(0))


def test_key_matches_certificate(ca: CertificateAuthority) -> None:
    issued = ca.issue(SPIFFE, dt.timedelta(minutes=5))
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.public_key() == key.public_key()


def test_write_identity_layout_and_modes(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "pod" / "certs"
    issued = ca.issue(SPIFFE, dt.timedelta(minutes=5))
    write_identity(directory, issued, ca.ca_pem)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    data = directory / "..data"
    assert data.is_symlink()
    for name in (CERT_FILE, KEY_FILE, CA_FILE):
        assert (directory / name).is_symlink()
        assert os.readlink(directory / name) == f"..data/{name}"
    key_mode = stat.S_IMODE(os.stat(directory / KEY_FILE).st_mode)
    assert key_mode == 0o600, oct(key_mode)
    assert (directory / CERT_FILE).read_bytes() == issued.cert_pem
    assert (directory / KEY_FILE).read_bytes() == issued.key_pem
    assert (directory / CA_FILE).read_bytes() == ca.ca_pem
    assert read_certificate(directory).serial_number == issued.serial


def test_second_write_swaps_data_link_and_removes_old_version(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "certs"
    first = ca.issue(SPIFFE, dt.timedelta(minutes=5))
    write_identity(directory, first, ca.ca_pem)
    (old_version,) = _version_dirs(directory)
    assert os.readlink(directory / "..data") == old_version
    stable_inode = os.lstat(directory / CERT_FILE).st_ino

    second = ca.issue(SPIFFE, dt.timedelta(minutes=5))
    write_identity(directory, second, ca.ca_pem)
    (new_version,) = _version_dirs(directory)
    assert new_version != old_version
    assert os.readlink(directory / "..data") == new_version
    assert not (directory / old_version).exists()
    # The stable names are left alone; only ..data moved (one rename, atomic).
    assert os.lstat(directory / CERT_FILE).st_ino == stable_inode
    assert not (directory / "..data_tmp").exists()
    assert read_certificate(directory).serial_number == second.serial
    assert (directory / KEY_FILE).read_bytes() == second.key_pem
    assert stat.S_IMODE(os.stat(directory / KEY_FILE).st_mode) == 0o600


def test_ca_save_modes(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca")
    assert stat.S_IMODE(os.stat(tmp_path / "ca" / "ca-key.pem").st_mode) == 0o600
    assert (tmp_path / "ca" / CA_FILE).read_bytes() == ca.ca_pem
