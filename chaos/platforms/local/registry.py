"""Which local topologies are running: one small JSON file per setup.

The runner that owns a topology (``sidecar-chaos up`` or a run) writes
``<state dir>/<setup>.json`` and rewrites it when something changes (a pod
becomes ready, a proxy restarts); ``status`` reads it, and ``down`` signals the
owner's pid. A file whose owner is gone is stale and ignored (and removed).
The state directory is ``$SIDECAR_CHAOS_STATE_DIR``, or
``$XDG_RUNTIME_DIR/sidecar-chaos``, or ``~/.local/state/sidecar-chaos``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.platforms.local.procutil import pid_alive


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
