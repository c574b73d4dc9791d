"""Private key files: written so that nothing planted at their path can redirect them.

A key is written to a new file with a random name in its directory, opened with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 (so it is never readable by others,
and never an existing file or a symlink someone planted), then renamed over the key's
path: a rename replaces a symlink at the path instead of writing through it. The
directory holding key material is 0700 and must not itself be a symlink.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from chaos.errors import PlatformError

_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def private_dir(directory: Path) -> Path:
    """``directory`` created if missing and made 0700; a symlink there is refused."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PlatformError(
            f"{directory}: not a directory (a symlink?); refusing to put keys there"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    return directory


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file in a 0700 directory, through a new file."""
    directory = private_dir(path.parent)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, _CREATE_NEW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
