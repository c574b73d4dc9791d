"""Checks around a local topology's start: its addresses are free, and why Envoy did not start."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from chaos.errors import AddressInUseError, InputError, StartupError


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_addresses_free(pairs: list[tuple[str, int]]) -> None:
    """Raise :class:`AddressInUseError` for the first (address, port) that cannot be bound."""
    for host, port in pairs:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUseError(
                        f"{host}:{port} is already in use (another topology in the same slot, "
                        "or another program); choose another --slot or --ingress-port"
                    ) from exc
                raise InputError(f"cannot bind {host}:{port}: {exc.strerror}") from exc


_INOTIFY_FAILURE = "inotify_fd_ >= 0"


def _inotify_limit() -> str:
    try:
        return Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
    except OSError:
        return "?"


def explain_startup_failure(exc: StartupError, run_dir: Path) -> StartupError:
    """Name the cause when it is a known one; the supervisor only sees a crash loop.

    Mesh and ambient Envoys watch their xDS/SDS files with one inotify instance per
    subscription (about 9 per mesh proxy); the kernel's per-user limit (often 128)
    is then what runs out when several topologies run at once.
    """
    for log in sorted(run_dir.rglob("envoy.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        if _INOTIFY_FAILURE in text:
            return StartupError(
                f"Envoy could not watch its config files: the per-user inotify limit "
                f"(fs.inotify.max_user_instances={_inotify_limit()}) is used up, probably by "
                f"other topologies; stop some or raise the limit (see {log})\n{exc}"
            )
    return exc
