"""Which local topologies are running: one small JSON file per topology.

Two kinds of owner publish here:

* ``sidecar-chaos up`` owns one topology per setup. It first takes an exclusive
  lock on ``<state dir>/<setup>.lock`` (:func:`claim`), held for as long as the
  topology lives: two runners of one setup started together cannot both get past
  it, and the kernel drops the lock when its holder dies, even by SIGKILL. Once
  ready, it writes ``<state dir>/<setup>.json`` (:func:`publish`); ``down``
  signals the owner's pid.
* A run (``run``, ``demo``) brings a topology up per window, each setup in its own
  slot, and several runs of one setup may go on at once (in other slots). It claims
  nothing; once a topology is ready it writes ``<state dir>/runs/<slot>-<pid>-<start
  ticks>.json`` (:func:`publish_run`), a name no other live process can write, and
  removes it before the topology is torn down (:func:`withdraw_run`).

Both rewrite their file when something changes (a pod becomes ready, a proxy
restarts). A record is trusted only while its owner is alive *and* still the same
process (pid and start time, so a reused pid does not count): a record whose owner
is gone is stale, never listed, and removed by the next reader.
The state directory is ``$SIDECAR_CHAOS_STATE_DIR``, or
``$XDG_RUNTIME_DIR/sidecar-chaos``, or ``~/.local/state/sidecar-chaos``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.errors import InputError
from chaos.proc import pid_alive, start_ticks

#: Where the records of runs' topologies go, under the state directory.
RUNS_DIR = "runs"
#: ``TopologyStatus.kind`` of a topology started by ``up`` and of one started by a run.
KIND_UP = "up"
KIND_RUN = "run"


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
    #: ``up`` or ``run``; records written before runs published are ``up``'s.
    kind: str = KIND_UP
    #: The owner's start time (clock ticks since boot): with the pid, its identity.
    owner_start_ticks: int | None = None
    #: Where a bearer token is minted (``GET``); empty in older records.
    token_url: str = ""
    #: A run's topology only: the run (its directory's name) and the window it serves.
    run_id: str = ""
    window: str = ""

    @property
    def label(self) -> str:
        """Which topology this is, in a few words (``sidecar (run R, slot 105)``)."""
        if self.kind == KIND_RUN:
            return f"{self.setup} (run {self.run_id}, slot {self.slot})"
        return f"{self.setup} (up, slot {self.slot})"

    @property
    def mint_url(self) -> str:
        """The identity provider's token endpoint."""
        return self.token_url or f"{self.idp_url}/token"

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
        data = json.loads(path.read_text())
        return TopologyStatus.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def owner_alive(status: TopologyStatus) -> bool:
    """Whether the owner of ``status`` still runs: same pid *and* same start time.

    A record without a start time (written before it was recorded) falls back to the
    pid alone; a run's record always has one, or it is not trusted.
    """
    if status.owner_pid <= 1 or not pid_alive(status.owner_pid):
        return False
    if status.owner_start_ticks is None:
        return status.kind == KIND_UP
    return start_ticks(status.owner_pid) == status.owner_start_ticks


def running(root: Path | None = None) -> list[TopologyStatus]:
    """Every topology ``up`` started whose owner is alive; stale records are removed."""
    directory = root or state_dir()
    if not directory.is_dir():
        return []
    found: list[TopologyStatus] = []
    for path in sorted(directory.glob("*.json")):
        status = _read(path)
        if status is None:
            continue
        if owner_alive(status):
            found.append(status)
        else:
            path.unlink(missing_ok=True)
    return found


# -- runs' topologies ----------------------------------------------------------------------


def _run_path(slot: int, pid: int, ticks: int, root: Path | None = None) -> Path:
    return (root or state_dir()) / RUNS_DIR / f"{slot}-{pid}-{ticks}.json"


def publish_run(status: TopologyStatus, root: Path | None = None) -> Path:
    """Write (or rewrite) the record of a run's topology atomically; its path.

    The name holds the slot and the owner's identity: two runs never write one file,
    and a stale file (its owner dead) is never rewritten, so readers may remove it.
    """
    if status.kind != KIND_RUN or status.owner_start_ticks is None:
        raise ValueError("a run's record needs kind 'run' and the owner's start time")
    path = _run_path(status.slot, status.owner_pid, status.owner_start_ticks, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status.to_json(), indent=2))
    os.replace(tmp, path)
    return path


def withdraw_run(status: TopologyStatus, root: Path | None = None) -> None:
    """Remove the record :func:`publish_run` wrote for ``status`` (idempotent)."""
    if status.owner_start_ticks is not None:
        path = _run_path(status.slot, status.owner_pid, status.owner_start_ticks, root)
        path.unlink(missing_ok=True)


def run_topologies(root: Path | None = None) -> list[TopologyStatus]:
    """Every topology a live run brought up, by run and slot; stale records are removed."""
    directory = (root or state_dir()) / RUNS_DIR
    if not directory.is_dir():
        return []
    found: list[TopologyStatus] = []
    for path in directory.glob("*.json"):
        status = _read(path)
        if status is not None and status.kind == KIND_RUN and owner_alive(status):
            found.append(status)
        elif _dead_owner(path):
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda s: (s.run_id, s.setup, s.slot))


def _dead_owner(path: Path) -> bool:
    """Whether the owner named by a run record's file name is gone (then no one rewrites it)."""
    try:
        _, pid, ticks = (int(part) for part in path.stem.split("-"))
    except ValueError:
        return False
    return not pid_alive(pid) or start_ticks(pid) != ticks


def every_topology(root: Path | None = None) -> list[TopologyStatus]:
    """``up``'s topologies, then every live run's."""
    return running(root) + run_topologies(root)


def select(
    found: list[TopologyStatus],
    *,
    setup: str | None = None,
    run: str | None = None,
    slot: int | None = None,
) -> TopologyStatus:
    """The one topology matching the filters, or :class:`InputError` (none, or several).

    ``run`` matches a run's id (its directory's name) or its directory.
    """
    if not found:
        raise InputError("no local topology is running (start one with `sidecar-chaos up`)")
    matching = [
        s
        for s in found
        if (setup is None or s.setup == setup)
        and (slot is None or s.slot == slot)
        and (run is None or (s.kind == KIND_RUN and run in (s.run_id, s.run_dir)))
    ]
    running_now = ", ".join(s.label for s in found)
    if not matching:
        wanted = " ".join(
            f"--{name} {value}"
            for name, value in (("setup", setup), ("run", run), ("slot", slot))
            if value is not None
        )
        raise InputError(f"no running topology matches {wanted} (running: {running_now})")
    if len(matching) > 1:
        names = ", ".join(s.label for s in matching)
        raise InputError(
            f"several topologies are running ({names}); pick one with --setup, --run or --slot"
        )
    return matching[0]


def age_s(status: TopologyStatus, now: dt.datetime | None = None) -> float | None:
    """Seconds since the topology started; None when the record has no readable time."""
    try:
        started = dt.datetime.fromisoformat(status.started_utc)
    except ValueError:
        return None
    if started.tzinfo is None:
        return None
    return max(0.0, ((now or dt.datetime.now(dt.UTC)) - started).total_seconds())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def headline(status: TopologyStatus, now: dt.datetime | None = None) -> str:
    """One line naming a running topology: whose, where, its ingress, how long it has run."""
    parts = [status.label, f"ingress {status.ingress}", f"up {_duration(age_s(status, now))}"]
    if status.kind == KIND_RUN:
        parts += [f"window {status.window}", f"run dir {status.run_dir}"]
    parts.append(f"runner pid {status.owner_pid}")
    return "  ".join(parts)


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
