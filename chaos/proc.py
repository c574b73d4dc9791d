"""Spawning and killing local child processes so that none outlives its runner.

Two guards, because each alone leaks in some case:

* every child starts in its own session (``start_new_session=True``), so it and
  anything it forks form one process group that :func:`kill_group` ends at once,
  and a Ctrl-C in the terminal reaches only the runner, which then tears down in order;
* every child asks the kernel for ``SIGKILL`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), which covers a runner that is SIGKILLed and so
  never gets to tear down.

Caveat of the second guard: "parent" is the *thread* that forked the child, not
the process. A child forked from a short-lived thread is killed when that thread
ends. Callers must spawn from a thread that lives as long as the children should
(the supervisor spawns everything on its watcher thread for that reason).
Linux only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

from chaos.errors import ProcessError

_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, loaded once in the parent (never after fork, where dlopen may deadlock)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [  # type: ignore[attr-defined]
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    prctl.restype = ctypes.c_int  # type: ignore[attr-defined]
    return prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when its forking thread dies."""
    prctl = _prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then the signal never comes.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    log_path: Path | None = None,
    name: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, dying with the calling thread.

    ``env`` replaces the environment when given (None inherits it). stdout and
    stderr are appended to ``log_path`` (or discarded); stdin is /dev/null.
    Raises :class:`ProcessError` with one line when the program cannot be started.
    """
    label = name or (argv[0] if argv else "<empty>")
    if not argv:
        raise ProcessError(f"cannot start {label}: empty command line")
    log = None
    try:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename is not None else argv[0]
        raise ProcessError(f"cannot start {label}: no such file or directory: {missing}") from exc
    except PermissionError as exc:
        raise ProcessError(f"cannot start {label}: permission denied: {argv[0]}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProcessError(f"cannot start {label}: {exc}") from exc
    finally:
        if log is not None:
            log.close()  # the child holds its own copy of the descriptor


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False if no such group exists.

    Only safe while ``pid`` is not yet reaped (its number cannot be reused before).
    """
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ") ".
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _has_exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it (so its pid stays reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 2.0) -> None:
    """SIGTERM each process group, SIGKILL the groups after ``grace_s``, reap every leader.

    The leaders are reaped only after the final group kill: an unreaped leader keeps
    its pid (the group id) from being reused, so the SIGKILL cannot hit a stranger,
    and it still reaches any grandchild left in the group. No other thread may
    reap these processes meanwhile.
    """
    live = [p for p in procs if p.returncode is None]
    for proc in live:
        kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(_has_exited(p.pid) for p in live):
        time.sleep(0.01)
    for proc in live:
        if proc.returncode is None:
            kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


# -- identity: is this pid still the process we started? --------------------------------------

#: The environment variable every child of a run carries, with the run's random marker.
RUN_MARKER_ENV = "SIDECAR_CHAOS_RUN"


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22).

    With the pid it names one process for as long as the machine runs: a pid that is
    reused later has another start time. None when there is no such process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may contain spaces and ")").
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall: the 20th after "pid (comm)"
    except (IndexError, ValueError):
        return None


def environ_value(pid: int, name: str) -> str | None:
    """The value of environment variable ``name`` that ``pid`` was started with, or None."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def is_same_process(pid: int, ticks: int, marker: str) -> bool:
    """Whether ``pid`` is alive and still the process that started at ``ticks`` with ``marker``.

    Both must match: the start time proves the pid was not reused, the marker (a random
    token a run puts into its children's environment) proves it is the run's child.
    """
    if pid <= 1 or not marker or not pid_alive(pid):
        return False
    return start_ticks(pid) == ticks and environ_value(pid, RUN_MARKER_ENV) == marker
