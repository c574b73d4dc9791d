"""A supervised process as data: how to run it (:class:`ProcessSpec`), where it is in its
life (:class:`ProcessState`), a snapshot of it (:class:`ProcessStatus`), and the
supervisor's own record of it; and how its exit and its not being ready read in words
(the :class:`~chaos.errors.StartupError` message, with the tail of its log).

:class:`~chaos.platforms.local.supervisor.Supervisor` runs them.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from chaos.platforms.local.probes import Probe


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one local process ("container").

    ``env`` adds to (or overrides) the supervisor's own environment; None inherits
    it unchanged. stdout and stderr are appended to ``log_path``. ``restart`` is the
    restart policy: True is Always (any exit restarts after the backoff), False is Never.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    log_path: Path | None = None
    probe: Probe | None = None
    group: str | None = None
    restart: bool = True
    #: Asked before a restart after a crash: None lets it start, a reason holds it
    #: (a mesh proxy cannot serve without fetching its certificate and config).
    restart_gate: Callable[[], str | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))


class ProcessState(enum.StrEnum):
    """Where a supervised process is in its life."""

    PENDING = "pending"  # added, never started
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed, waiting for its restart
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request
    EXITED = "exited"  # ended on its own, restart policy Never


@dataclass(frozen=True)
class ProcessStatus:
    """A snapshot of one supervised process."""

    name: str
    group: str | None
    state: ProcessState
    pid: int | None
    ready: bool
    restarts: int
    last_exit: str | None


@dataclass
class _Proc:
    spec: ProcessSpec
    state: ProcessState = ProcessState.PENDING
    popen: Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0
    restarts: int = 0
    restart_at: float = 0.0
    ready: bool = False
    probe_failures: int = 0
    next_probe_at: float = 0.0
    probing: Future[str | None] | None = None
    last_probe_error: str | None = None
    last_exit: str | None = None
    #: The restart is held by the gate (journaled once per hold).
    held: bool = False


def _exit_detail(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal={signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal={-returncode}"
    return f"exit_code={returncode}"


def _log_tail(path: Path | None, lines: int = 8) -> str:
    if path is None or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 4096))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _why_not_ready(proc: _Proc) -> tuple[str, Path | None]:
    state = proc.state
    probe = proc.last_probe_error or "no answer yet"
    if state is ProcessState.RUNNING and proc.restarts and proc.last_exit:
        # Restarted after a crash and not ready yet: still a crash loop.
        why = (
            f"crash-looping, last {proc.last_exit}, {proc.restarts} restarts, "
            f"running again, probe: {probe}"
        )
    elif state is ProcessState.RUNNING:
        why = f"running, probe: {probe}"
    elif state is ProcessState.BACKOFF:
        why = f"crash-looping, last {proc.last_exit}, {proc.restarts} restarts"
    elif state is ProcessState.EXITED:
        why = f"exited, {proc.last_exit}"
    else:
        why = {ProcessState.PENDING: "never started"}.get(state, str(state))
    return why, proc.spec.log_path


def _startup_message(reasons: list[tuple[str, tuple[str, Path | None]]], timeout_s: float) -> str:
    summary = "; ".join(f"{name} ({why})" for name, (why, _) in reasons)
    lines = [f"not ready within {timeout_s:g} s: {summary}"]
    for name, (_, log_path) in reasons:
        tail = _log_tail(log_path)
        if tail:
            lines.append(f"--- {name}: last lines of {log_path} ---\n{tail}")
    return "\n".join(lines)
