"""Which local topologies are running: one small JSON file per setup.

The runner that owns a topology (``sidecar-chaos up`` or a run) first takes
an exclusive lock on ``<state dir>/<setup>.lock`` (:func:`claim`), held for as
long as the topology lives: two runners of one setup started together cannot
both get past it, and the kernel drops the lock when its holder dies, even by
SIGKILL. Once ready, the runner writes ``<state dir>/<setup>.json`` and
rewrites it when something changes (a pod becomes ready, a proxy restarts);
``status`` reads it, and ``down`` signals the owner's pid. A file whose owner
is gone is stale and ignored (and removed).
The state directory is ``$SIDECAR_CHAOS_STATE_DIR``, or
``$XDG_RUNTIME_DIR/sidecar-chaos``, or ``~/.local/state/sidecar-chaos``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.errors import InputError
from chaos.proc import pid_alive


def state_dir() -> Path:
    explicit = os.environ.get("SIDECAR_CHAOS_STATE_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "sidecar-chaos"
    return Path.home() / ".local" / "state" / "sidecar-chaos"


@dataclass
class PodStatus:
    """What ``status --json`` shows of one pod (or node proxy, waypoint, ingress)."""

    name: str
    service: str
    node: str
    address: str
    ports: dict[str, int]
    ready: bool
    restarts: int
    pids: dict[str, int | None]


@dataclass
class TopologyStatus:
    """A running topology as the registry records it."""

    setup: str
    slot: int
    ingress: str
    owner_pid: int
    run_dir: str
    idp_url: str
    started_utc: str
    pods: list[PodStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TopologyStatus:
        raw_pods = data.get("pods", [])
        pods = [PodStatus(**p) for p in raw_pods] if isinstance(raw_pods, list) else []
        fields = {k: v for k, v in data.items() if k != "pods"}
        return cls(pods=pods, **fields)  # type: ignore[arg-type]


def _path(setup: str, root: Path | None = None) -> Path:
    return (root or state_dir()) / f"{setup}.json"


class SetupClaim:
    """The lock that makes one runner the owner of a setup; :meth:`release` gives it up."""

    def __init__(self, setup: str, fd: int) -> None:
        self.setup = setup
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the setup up (idempotent); closing the descriptor drops the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim(setup: str, root: Path | None = None) -> SetupClaim:
    """Become the one runner of ``setup``, or raise :class:`InputError` if another is."""
    path = (root or state_dir()) / f"{setup}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not inherited by children (Python's default): only this process holds the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise InputError(
            f"a {setup} topology is already running or starting (runner pid {holder}); "
            f"stop it with `sidecar-chaos down --setup {setup}`"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise InputError(f"cannot lock {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return SetupClaim(setup, fd)


def publish(status: TopologyStatus, root: Path | None = None) -> None:
    """Write (or rewrite) the record of a running topology atomically."""
    path = _path(status.setup, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    tmp.write_text(json.dumps(status.to_json(), indent=2))
    os.replace(tmp, path)


def withdraw(setup: str, owner_pid: int, root: Path | None = None) -> None:
    """Remove the record of ``setup`` if ``owner_pid`` still owns it."""
    path = _path(setup, root)
    current = _read(path)
    if current is not None and current.owner_pid == owner_pid:
        path.unlink(missing_ok=True)


def _read(path: Path) -> TopologyStatus | None:
    try:
        return TopologyStatus.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running(root: Path | None = None) -> list[TopologyStatus]:
    """Every topology whose owner is alive; stale records are removed."""
    directory = root or state_dir()
    if not directory.is_dir():
        return []
    found: list[TopologyStatus] = []
    for path in sorted(directory.glob("*.json")):
        status = _read(path)
        if status is None:
            continue
        if pid_alive(status.owner_pid):
            found.append(status)
        else:
            path.unlink(missing_ok=True)
    return found


def claimed(setup: str, root: Path | None = None) -> TopologyStatus | None:
    """The running topology of ``setup``, if any."""
    for status in running(root):
        if status.setup == setup:
            return status
    return None


def signal_owner(status: TopologyStatus, sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the owner of a topology to tear it down."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(status.owner_pid, sig)
