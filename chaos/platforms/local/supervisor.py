"""The kubelet of the local platform: starts processes, probes them, restarts them.

A :class:`Supervisor` owns a set of :class:`ProcessSpec`. One watcher thread polls
every process (every ``poll_interval_s``): it sees exits (event ``crashed``, or
``exited`` for a clean exit 0), restarts processes whose spec says so after the
CrashLoopBackOff delay of a :class:`BackoffPolicy` (events ``backoff`` then
``restarted``), and runs readiness probes on a small thread pool (events
``ready`` / ``unready``). All times are on ``time.monotonic()``.

Nothing is left behind: children start in their own session and with a
parent-death signal (see :mod:`chaos.proc`). Because that signal fires when the
*thread* that forked a child ends, **every spawn, first starts included, runs on
the watcher thread**, which lives until :meth:`Supervisor.close`; :meth:`start`
hands the spawn to it and waits for the result. The watcher is a daemon thread:
if the runner dies without closing, the children die with it.

The processes as data (:class:`ProcessSpec`, :class:`ProcessState`,
:class:`ProcessStatus`) and the words for one that is not ready are in
:mod:`chaos.platforms.local.processes`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from chaos.errors import ProcessError, StartupError
from chaos.platforms.base import Event, EventKind, utc_now
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.events import EventLog
from chaos.platforms.local.probes import Probe
from chaos.platforms.local.processes import (
    ProcessSpec,
    ProcessState,
    ProcessStatus,
    _exit_detail,
    _Proc,
    _startup_message,
    _why_not_ready,
)
from chaos.proc import RUN_MARKER_ENV, kill_group, spawn, start_ticks, stop_processes

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SpawnRequest:
    name: str
    reason: str  # "start" or "requested" (a deliberate restart)
    done: Future[int]


class Supervisor:
    """Runs local processes like a kubelet runs containers; a context manager.

    ``poll_interval_s`` is how often exits are looked for; probes run every
    ``startup_probe_interval_s`` until a process is ready, then every
    ``probe_interval_s``; ``failure_threshold`` consecutive failed probes make a
    ready process unready. ``stop_grace_s`` is the SIGTERM-to-SIGKILL grace.
    """

    def __init__(
        self,
        policy: BackoffPolicy | None = None,
        events: EventLog | None = None,
        *,
        poll_interval_s: float = 0.02,
        probe_interval_s: float = 0.5,
        startup_probe_interval_s: float = 0.05,
        failure_threshold: int = 2,
        stop_grace_s: float = 2.0,
        start_timeout_s: float = 10.0,
        marker: str = "",
        ledger: Path | None = None,
    ) -> None:
        self.policy = policy if policy is not None else BackoffPolicy()
        self.events = events if events is not None else EventLog()
        self._poll_s = poll_interval_s
        self._probe_s = probe_interval_s
        self._startup_probe_s = startup_probe_interval_s
        self._failure_threshold = failure_threshold
        self._grace_s = stop_grace_s
        self._start_timeout_s = start_timeout_s
        self._procs: dict[str, _Proc] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: queue.SimpleQueue[_SpawnRequest | None] = queue.SimpleQueue()
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self._watcher: threading.Thread | None = None
        self._closed = False
        #: Put into every child's environment (RUN_MARKER_ENV); ``clean`` proves identity by it.
        self._marker = marker
        #: Every spawn is appended here (name, pid, start ticks, marker) for ``clean``.
        self._ledger = ledger

    # -- the public interface -------------------------------------------------------------

    def add(self, spec: ProcessSpec) -> None:
        """Register a process (not started yet); names are unique."""
        with self._lock:
            if spec.name in self._procs:
                raise ValueError(f"a process named {spec.name!r} is already supervised")
            self._procs[spec.name] = _Proc(spec)

    def start(self, name: str) -> int:
        """Start a registered process and return its pid (a running one is left alone)."""
        return self._submit([_SpawnRequest(name, "start", Future())])[0]

    def start_all(self) -> dict[str, int]:
        """Start every process never started yet, in the order added; their pids."""
        with self._lock:
            names = [n for n, p in self._procs.items() if p.state is ProcessState.PENDING]
        pids = self._submit([_SpawnRequest(n, "start", Future()) for n in names])
        return dict(zip(names, pids, strict=True))

    def stop(self, name: str) -> None:
        """Stop a process on purpose (SIGTERM, then SIGKILL after the grace); no restart."""
        self._stop([name], detail="reason=requested")

    def restart(self, name: str) -> int:
        """Stop and start a process on purpose (e.g. after an init step was re-run); new pid."""
        self._stop([name], detail="reason=restart")
        return self._submit([_SpawnRequest(name, "requested", Future())])[0]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the process's group, as a fault would; returns the pid signalled.

        The supervisor then sees the exit and restarts it per the policy.
        """
        with self._lock:
            proc = self._get(name)
            popen = proc.popen
            # returncode None means not reaped yet (reaping happens under this lock),
            # so the pid cannot have been reused by another process.
            if (
                proc.state is not ProcessState.RUNNING
                or popen is None
                or popen.returncode is not None
            ):
                raise ProcessError(f"cannot kill {name}: it is not running ({proc.state})")
            kill_group(popen.pid, sig)
            return popen.pid

    def wait_ready(self, names: Iterable[str] | None = None, timeout_s: float = 10.0) -> None:
        """Wait until the processes are ready (default: every one started and not stopped).

        A process with restart policy Never that exited with 0 counts as done. Raises
        :class:`StartupError` naming what is not ready, with the tail of its log, at
        the timeout, or at once when a process can no longer become ready.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            wanted = (
                list(names)
                if names is not None
                else [
                    n
                    for n, p in self._procs.items()
                    if p.state not in (ProcessState.PENDING, ProcessState.STOPPED)
                ]
            )
            for name in wanted:
                self._get(name)
            while True:
                waiting, hopeless = self._not_ready(wanted)
                remaining = deadline - time.monotonic()
                if not waiting and not hopeless:
                    return
                if hopeless or remaining <= 0:
                    failed = hopeless + waiting
                    reasons = [(n, _why_not_ready(self._procs[n])) for n in failed]
                    break
                self._changed.wait(min(remaining, 0.1))
        raise StartupError(_startup_message(reasons, timeout_s))

    def is_ready(self, name: str) -> bool:
        """Whether the process is running and its readiness probe passes."""
        with self._lock:
            return self._get(name).ready

    def pid(self, name: str) -> int | None:
        """The pid of the running process, or None."""
        with self._lock:
            popen = self._get(name).popen
            return popen.pid if popen is not None else None

    def pids(self) -> dict[str, int]:
        """The pid of every running process, by name."""
        with self._lock:
            return {n: p.popen.pid for n, p in self._procs.items() if p.popen is not None}

    def restarts(self, name: str) -> int:
        """How many times the process was started again (after crashes or on request)."""
        with self._lock:
            return self._get(name).restarts

    def names(self, group: str | None = None) -> list[str]:
        """The supervised names, in the order added, optionally of one group only."""
        with self._lock:
            return [n for n, p in self._procs.items() if group is None or p.spec.group == group]

    def status(self, name: str) -> ProcessStatus:
        """A snapshot of one process."""
        with self._lock:
            p = self._get(name)
            pid = p.popen.pid if p.popen is not None else None
            return ProcessStatus(name, p.spec.group, p.state, pid, p.ready, p.restarts, p.last_exit)

    def close(self) -> None:
        """Stop every process (SIGTERM to each group, SIGKILL after the grace) and the watcher."""
        with self._lock:
            self._closed = True
            names = list(self._procs)
        self._stop(names, detail="reason=close")
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            self._requests.put(None)
            watcher.join()
        self._probes.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- mechanism ------------------------------------------------------------------------

    def _get(self, name: str) -> _Proc:
        try:
            return self._procs[name]
        except KeyError:
            raise ProcessError(f"no supervised process named {name!r}") from None

    def _submit(self, requests: list[_SpawnRequest]) -> list[int]:
        """Hand spawns to the watcher thread (see the module docstring) and wait for them."""
        with self._lock:
            if self._closed:
                raise ProcessError("the supervisor is closed")
            for request in requests:
                self._get(request.name)
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="supervisor-watcher", daemon=True
                )
                self._watcher.start()
        for request in requests:
            if threading.current_thread() is self._watcher:
                self._serve(request)
            else:
                self._requests.put(request)
        try:
            return [r.done.result(timeout=self._start_timeout_s) for r in requests]
        except TimeoutError as exc:
            raise ProcessError("the supervisor did not start the process in time") from exc

    def _watch(self) -> None:
        while True:
            try:
                request = self._requests.get(timeout=self._poll_s)
                while request is not None:
                    self._serve(request)
                    request = self._requests.get_nowait()
                return  # None: asked to end by close()
            except queue.Empty:
                pass
            try:
                self._tick()
            except Exception:  # the watcher must live on: its death kills every child
                _log.exception("supervisor watcher failed; continuing")

    def _serve(self, request: _SpawnRequest) -> None:
        events: list[Event] = []
        try:
            with self._lock:
                proc = self._procs[request.name]
                if self._closed:
                    raise ProcessError("the supervisor is closed")
                if proc.state is ProcessState.RUNNING and proc.popen is not None:
                    pid = proc.popen.pid
                elif request.reason == "requested":
                    pid = self._spawn(proc, EventKind.RESTARTED, "reason=requested", events)
                    proc.restarts += 1
                else:
                    pid = self._spawn(proc, EventKind.STARTED, "", events)
                proc.crashes = 0
        except ProcessError as exc:
            request.done.set_exception(exc)
        except Exception as exc:  # never let a bad request end the watcher thread
            request.done.set_exception(ProcessError(f"cannot start {request.name}: {exc}"))
        else:
            # Events first, so that the log already shows the start when start() returns.
            self._emit(events)
            request.done.set_result(pid)

    def _record_spawn(self, name: str, pid: int) -> None:
        if self._ledger is None:
            return
        line = {"name": name, "pid": pid, "start_ticks": start_ticks(pid), "marker": self._marker}
        with self._ledger.open("a", encoding="utf-8") as ledger:
            ledger.write(json.dumps(line) + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())

    def _spawn(self, proc: _Proc, kind: EventKind, detail: str, events: list[Event]) -> int:
        """Start the process (lock held, on the watcher thread); raises ProcessError."""
        spec = proc.spec
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            with spec.log_path.open("a", encoding="utf-8") as log:
                log.write(f"=== {utc_now()} {kind.value} {spec.name} ===\n")
        env = {**os.environ, **(spec.env or {})}
        if self._marker:
            env[RUN_MARKER_ENV] = self._marker
        popen = spawn(spec.argv, env=env, cwd=spec.cwd, log_path=spec.log_path, name=spec.name)
        self._record_spawn(spec.name, popen.pid)
        now = time.monotonic()
        proc.popen, proc.state, proc.started_at = popen, ProcessState.RUNNING, now
        proc.ready, proc.probing, proc.probe_failures, proc.next_probe_at = False, None, 0, now
        events.append(Event.now(kind, spec.name, f"pid={popen.pid} {detail}".strip()))
        if spec.probe is None:
            proc.ready = True
            events.append(Event.now(EventKind.READY, spec.name, "probe=none"))
        self._changed.notify_all()
        return popen.pid

    def _tick(self) -> None:
        events: list[Event] = []
        with self._lock:
            now = time.monotonic()
            for proc in self._procs.values():
                if proc.state is ProcessState.RUNNING and proc.popen is not None:
                    returncode = proc.popen.poll()
                    if returncode is not None:
                        self._on_exit(proc, returncode, now, events)
                if proc.state is ProcessState.BACKOFF and now >= proc.restart_at:
                    gate = proc.spec.restart_gate
                    held = gate() if gate is not None else None
                    if held is None:
                        proc.held = False
                        self._restart_after_backoff(proc, now, events)
                    elif not proc.held:
                        proc.held = True
                        events.append(Event.now(EventKind.BACKOFF, proc.spec.name, f"held={held}"))
                if proc.state is ProcessState.RUNNING and proc.spec.probe is not None:
                    self._probe_step(proc, proc.spec.probe, now, events)
        self._emit(events)

    def _on_exit(self, proc: _Proc, returncode: int, now: float, events: list[Event]) -> None:
        name, ran_for = proc.spec.name, now - proc.started_at
        proc.popen, proc.probing = None, None
        proc.last_exit = _exit_detail(returncode)
        kind = EventKind.EXITED if returncode == 0 else EventKind.CRASHED
        # stamped with the instant the exit was seen, as the back-off that follows it
        events.append(Event(kind, name, now, utc_now(), f"{proc.last_exit} ran_s={ran_for:.3f}"))
        if proc.ready:
            proc.ready = False
            events.append(Event.now(EventKind.UNREADY, name, "reason=exited"))
        if proc.spec.restart and not self._closed:
            self._schedule_restart(proc, ran_for, now, events)
        else:
            proc.state = ProcessState.EXITED
        self._changed.notify_all()

    def _schedule_restart(
        self, proc: _Proc, ran_for: float, now: float, events: list[Event]
    ) -> None:
        proc.crashes = self.policy.crashes_after(proc.crashes, ran_for)
        delay = self.policy.delay_s(proc.crashes)
        proc.state, proc.restart_at = ProcessState.BACKOFF, now + delay
        detail = f"delay_s={delay:.3f} crashes={proc.crashes}"
        # stamped with the instant the delay runs from: the restart is never before t + delay
        events.append(Event(EventKind.BACKOFF, proc.spec.name, now, utc_now(), detail))

    def _restart_after_backoff(self, proc: _Proc, now: float, events: list[Event]) -> None:
        if self._closed:
            return
        try:
            self._spawn(proc, EventKind.RESTARTED, f"reason=crash crashes={proc.crashes}", events)
            proc.restarts += 1
        except ProcessError as exc:
            # A program that vanished since its first start crash-loops like any other.
            proc.last_exit = f"spawn_failed={exc}"
            events.append(Event.now(EventKind.CRASHED, proc.spec.name, proc.last_exit))
            self._schedule_restart(proc, 0.0, now, events)

    def _probe_step(self, proc: _Proc, probe: Probe, now: float, events: list[Event]) -> None:
        if proc.probing is None:
            if now >= proc.next_probe_at:
                proc.probing = self._probes.submit(probe.check)
            return
        if not proc.probing.done():
            return
        try:
            failure = proc.probing.result()
        except Exception as exc:  # a probe bug must not stop the watcher
            failure = f"probe error: {exc!r}"
        proc.probing = None
        name = proc.spec.name
        if failure is None:
            proc.probe_failures = 0
            if not proc.ready:
                proc.ready = True
                detail = f"after_s={now - proc.started_at:.3f}"
                events.append(Event.now(EventKind.READY, name, detail))
                self._changed.notify_all()
        else:
            proc.last_probe_error = failure
            proc.probe_failures += 1
            if proc.ready and proc.probe_failures >= self._failure_threshold:
                proc.ready = False
                events.append(Event.now(EventKind.UNREADY, name, f"reason={failure}"))
                self._changed.notify_all()
        proc.next_probe_at = now + (self._probe_s if proc.ready else self._startup_probe_s)

    def _stop(self, names: list[str], detail: str) -> None:
        events: list[Event] = []
        stopping: list[_Proc] = []
        with self._lock:
            for name in names:
                proc = self._get(name)
                if proc.state is ProcessState.RUNNING:
                    proc.state = ProcessState.STOPPING
                    stopping.append(proc)
                elif proc.state is ProcessState.BACKOFF:
                    proc.state = ProcessState.STOPPED
                    events.append(Event.now(EventKind.STOPPED, name, detail))
        stop_processes([p.popen for p in stopping if p.popen is not None], self._grace_s)
        with self._lock:
            for proc in stopping:
                returncode = proc.popen.returncode if proc.popen is not None else None
                exit_detail = _exit_detail(returncode) if returncode is not None else "unknown"
                proc.popen, proc.probing, proc.ready = None, None, False
                proc.state, proc.crashes, proc.last_exit = ProcessState.STOPPED, 0, exit_detail
                events.append(
                    Event.now(EventKind.STOPPED, proc.spec.name, f"{detail} {exit_detail}")
                )
            self._changed.notify_all()
        self._emit(events)

    def _emit(self, events: list[Event]) -> None:
        # Outside the lock: subscribers may call back into the supervisor.
        for event in events:
            self.events.record(event)

    def _not_ready(self, names: list[str]) -> tuple[list[str], list[str]]:
        waiting: list[str] = []
        hopeless: list[str] = []
        for name in names:
            proc = self._procs[name]
            if proc.ready or (
                proc.state is ProcessState.EXITED and proc.last_exit == "exit_code=0"
            ):
                continue
            if proc.state in (ProcessState.RUNNING, ProcessState.BACKOFF):
                waiting.append(name)
            else:
                hopeless.append(name)
        return waiting, hopeless
