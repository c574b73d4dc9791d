"""Places the user points output at: checked before any work, written atomically.

``check_output_file`` and ``check_run_dir`` look without touching anything (so
``--dry-run`` can use them); ``create_run_dir`` makes the run directory;
``write_atomically`` checks the same way, then writes a file through a unique
temporary name next to it and renames it into place (``replace_file``, which the
run's own files use too), removing the temporary on any failure, so an interrupted
or refused write leaves neither a partial file nor a ``.tmp`` behind. A place that
cannot take the file is an ``InputError`` (exit 2) naming the option and the path;
a write that fails there (a full disk) is an ``OutputError`` (exit 5) naming the
file, and whatever was at the path before is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from chaos.errors import InputError, OutputError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself, or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path("/")


def _check_creatable(path: Path, option: str) -> None:
    """Whatever of ``path``'s parents is missing could be created by us."""
    parent = path.parent
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise InputError(f"{option}: cannot create {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot create {path}: {existing} is not writable")
    if _on_pseudo_filesystem(existing):
        raise InputError(f"{option}: cannot create {path}: {existing} is not a place for files")


def _on_pseudo_filesystem(path: Path) -> bool:
    """Kernel views (``/proc``, ``/sys``, ``/dev``) hold no user files, whatever access() says."""
    resolved = path.resolve()
    return any(resolved == Path(root) or Path(root) in resolved.parents for root in _PSEUDO)


_PSEUDO = ("/proc", "/sys", "/dev")


def check_output_file(path: Path, option: str) -> None:
    """``path`` can be written as a file: not a directory, its parents creatable."""
    if path.is_dir():
        raise InputError(f"{option}: {path} is a directory; give a file name")
    if os.path.lexists(path) and not path.is_file():
        raise InputError(f"{option}: {path} exists and is not a regular file")
    if path.is_file() and not os.access(path, os.W_OK):
        raise InputError(f"{option}: {path} is not writable")
    _check_creatable(path, option)


def check_run_dir(path: Path, option: str = "--out") -> None:
    """``path`` can become a new run directory: absent, or an empty directory, creatable."""
    if os.path.lexists(path):
        if not path.is_dir():
            raise InputError(f"{option}: {path} exists and is not a directory")
        if any(path.iterdir()):
            raise InputError(f"{option}: {path} is not empty; pick a new run directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{option}: {path} is not writable")
        if _on_pseudo_filesystem(path):
            raise InputError(f"{option}: {path} is not a place for files")
        return
    _check_creatable(path, option)


def create_run_dir(path: Path, option: str = "--out") -> Path:
    """Check ``path`` (see ``check_run_dir``) and create it; ``InputError`` if that fails."""
    check_run_dir(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option}: cannot create {path}: {exc.strerror or exc}") from exc
    return path


def write_atomically(path: Path, text: str, option: str) -> Path:
    """Write ``text`` to ``path`` through a unique temporary file; nothing is left on failure.

    ``InputError`` when ``path`` is no place for the file (checked first);
    ``OutputError`` when the write itself fails (a full disk).
    """
    check_output_file(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option}: cannot write {path}: {exc.strerror or exc}") from exc
    return replace_file(path, lambda p: p.write_text(text, encoding="utf-8"))


def replace_file(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a new temporary file next to ``path`` and rename it to ``path``.

    Any ``OSError`` (no space left, a file-size limit, a read-only directory) removes
    the temporary file and becomes an ``OutputError`` naming ``path``; a reader never
    sees a half-written ``path``.
    """
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path
