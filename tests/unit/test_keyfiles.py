"""Private keys go through a new 0600 file and a rename: a planted symlink is never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from chaos.errors import PlatformError
from chaos.platforms.shared.idp import IdentityProvider
from chaos.platforms.shared.keyfiles import private_dir, write_private
from chaos.platforms.shared.pki import CertificateAuthority

SECRET = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the key directory that a planted symlink points at."""
    path = tmp_path / "victim.txt"
    path.write_text("precious\n", encoding="utf-8")
    path.chmod(0o644)
    return path


def test_a_planted_symlink_at_the_key_path_is_replaced_not_followed(
    tmp_path: Path, victim: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    key = keys / "key.pem"
    key.symlink_to(victim)
    write_private(key, SECRET)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert _mode(victim) == 0o644
    assert not key.is_symlink() and key.read_bytes() == SECRET
    assert _mode(key) == 0o600
    assert _mode(keys) == 0o700  # the directory of key material is tightened too
    assert sorted(p.name for p in keys.iterdir()) == ["key.pem"]  # no temporary left


def test_a_dangling_symlink_does_not_create_its_target(tmp_path: Path) -> None:
    keys = private_dir(tmp_path / "keys")
    target = tmp_path / "elsewhere.pem"
    (keys / "key.pem").symlink_to(target)
    write_private(keys / "key.pem", SECRET)
    assert not target.exists()
    assert (keys / "key.pem").read_bytes() == SECRET


def test_a_symlinked_key_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "keys").symlink_to(real)
    with pytest.raises(PlatformError, match="symlink"):
        write_private(tmp_path / "keys" / "key.pem", SECRET)
    assert list(real.iterdir()) == []


def test_the_ca_key_is_not_written_through_a_planted_symlink(tmp_path: Path, victim: Path) -> None:
    directory = tmp_path / "ca"
    directory.mkdir()
    (directory / "ca-key.pem").symlink_to(victim)
    CertificateAuthority.create().save(directory)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not (directory / "ca-key.pem").is_symlink()
    assert _mode(directory / "ca-key.pem") == 0o600 and _mode(directory) == 0o700


def test_the_idp_signing_key_directory_is_0700_and_keys_0600(tmp_path: Path) -> None:
    key_dir = tmp_path / "idp"
    key_dir.mkdir(mode=0o755)
    IdentityProvider("https://idp.test", "chaos", key_dir=key_dir)
    assert _mode(key_dir) == 0o700
    keys = list(key_dir.glob("*.key.pem"))
    assert keys and all(_mode(k) == 0o600 and not k.is_symlink() for k in keys)
