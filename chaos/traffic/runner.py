"""Run Locust headless in its own processes, from the main process.

This module never imports locust (``import locust`` monkey-patches the interpreter
with gevent); it starts ``python -m locust`` and reads what the recorder writes.

Process hygiene comes from :mod:`chaos.proc`: every Locust
process gets its own session (a terminal's Ctrl-C reaches the runner, which stops
Locust in order) and ``PR_SET_PDEATHSIG=SIGKILL``, so a runner killed outright
leaves no Locust behind. The death signal follows the *thread* that started the
process: call :meth:`TrafficRun.start` from a thread that outlives the run. A timer
kills everything at ``startup_timeout_s + run time + request timeout + 10 s`` even
if Locust hangs.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from chaos.errors import ProcessError, StartupError, TrafficError
from chaos.proc import kill_group, spawn, stop_processes
from chaos.rundir.samples import load_samples, samples_dir
from chaos.traffic.config import CONFIG_ENV, RECORDER_EXIT_BASE, TrafficConfig
from chaos.traffic.live import LiveStats, LiveTail

if TYPE_CHECKING:
    import pandas as pd

BUILTIN_LOCUSTFILE = Path(__file__).with_name("locustfile.py")
OPEN_LOOP_LOCUSTFILE = Path(__file__).with_name("openloop.py")
ATTACH_LOCUSTFILE = Path(__file__).with_name("attach.py")
_DEADLINE_GRACE_S = 10.0  # past the run time, on top of Locust's stop timeout


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _LocustProcess:
    """One ``python -m locust`` child with its output file."""

    def __init__(self, role: str, argv: list[str], env: dict[str, str], out_dir: Path) -> None:
        self.role = role
        self.log_path = out_dir / f"locust-{role}.log"
        self.out_path = out_dir / f"locust-{role}.out"
        self.popen = spawn(
            [*argv, "--logfile", str(self.log_path)],
            env=env,
            log_path=self.out_path,
            name=f"Locust {role}",
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def death(self) -> str | None:
        """Why this process has ended, in one line; None while it runs."""
        code = self.popen.poll()
        if code is None:
            return None
        what = f"Locust {self.role} (pid {self.pid})"
        if RECORDER_EXIT_BASE < code < 256:
            errno_ = code - RECORDER_EXIT_BASE
            return f"{what} could not write its samples: {os.strerror(errno_)} (errno {errno_})"
        if code < 0:
            return f"{what} was killed by signal {-code}"
        if code == 0:
            return f"{what} ended before the window did (its run time was over)"
        last = self.tail(1).strip()
        return f"{what} exited with code {code}" + (f": {last}" if last else "")

    def tail(self, lines: int = 15) -> str:
        """The last lines of this process's output and log, for error messages."""
        text = ""
        for path in (self.out_path, self.log_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])


class TrafficRun:
    """Locust traffic for one run: a context manager around its processes.

    ``start()`` launches Locust (one process, or a master and ``workers`` workers on
    loopback), ``wait_started()`` waits for the first sample, ``wait()`` for the
    natural end, ``stop()`` ends it early. Samples land in ``out_dir/samples/``.
    """

    def __init__(self, config: TrafficConfig) -> None:
        self.config = config
        self._procs: list[_LocustProcess] = []
        self._deadline: threading.Timer | None = None
        self._live = LiveTail(samples_dir(config.out_dir))
        self._stopping = False
        self.config_path = config.out_dir / "traffic-config.json"

    def __enter__(self) -> TrafficRun:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- starting -------------------------------------------------------------------------

    def _locustfiles(self) -> str:
        if self.config.locustfile is None:
            return str(OPEN_LOOP_LOCUSTFILE if self.config.open_loop else BUILTIN_LOCUSTFILE)
        return f"{ATTACH_LOCUSTFILE},{self.config.locustfile.resolve()}"

    def _env(self) -> dict[str, str]:
        # Locust reads LOCUST_* variables as options; an inherited one must not change the run
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        env.update(dict(self.config.extra_env))
        env[CONFIG_ENV] = str(self.config_path)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> None:
        """Launch Locust; returns at once (see :meth:`wait_started`)."""
        if self._procs:
            raise ProcessError("this traffic run was already started")
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        samples_dir(cfg.out_dir).mkdir(exist_ok=True)
        self.config_path.write_text(cfg.to_json())
        base = [sys.executable, "-m", "locust", "-f", self._locustfiles(), "--host", cfg.host]
        lead = [
            "--headless",
            "--users", str(cfg.locust_users),
            "--spawn-rate", str(cfg.spawn_rate),
            "--run-time", f"{cfg.run_time_s}s",
            "--only-summary",
            "--exit-code-on-error", "0",
            # requests under way at the end finish and are recorded: a write the server
            # stored but no sample shows would look like a duplicate in the analysis
            "--stop-timeout", str(math.ceil(cfg.request_timeout_s) + 1),
        ]  # fmt: skip
        env = self._env()
        try:
            if cfg.workers == 0:
                self._procs.append(_LocustProcess("main", base + lead, env, cfg.out_dir))
            else:
                port = _free_loopback_port()
                master = [
                    "--master",
                    "--master-bind-host", "127.0.0.1",
                    "--master-bind-port", str(port),
                    "--expect-workers", str(cfg.workers),
                    "--expect-workers-max-wait", str(int(cfg.startup_timeout_s)),
                ]  # fmt: skip
                self._procs.append(_LocustProcess("master", base + lead + master, env, cfg.out_dir))
                worker = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
                for i in range(cfg.workers):
                    self._procs.append(
                        _LocustProcess(f"worker-{i}", base + worker, env, cfg.out_dir)
                    )
        except ProcessError:
            self.stop()
            raise
        self._deadline = threading.Timer(
            cfg.startup_timeout_s + cfg.run_time_s + cfg.request_timeout_s + _DEADLINE_GRACE_S,
            self._kill_all,
        )
        self._deadline.daemon = True
        self._deadline.start()

    def wait_started(self, timeout: float | None = None) -> None:
        """Block until the first sample is on disk; raise if Locust died or it took too long."""
        limit = self.config.startup_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        directory = samples_dir(self.config.out_dir)
        while time.monotonic() < deadline:
            if any(p.stat().st_size > 0 for p in directory.glob("*.chs")):
                return
            for proc in self._procs:
                if proc.popen.poll() is not None:
                    raise ProcessError(
                        f"Locust {proc.role} exited with {proc.popen.returncode} before any "
                        f"request was recorded:\n{proc.tail()}"
                    )
            time.sleep(0.05)
        raise StartupError(f"no Locust request recorded within {limit:.1f} s")

    # -- running and stopping -------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """Process ids of every Locust process of this run (master first)."""
        return [p.pid for p in self._procs]

    @property
    def running(self) -> bool:
        """Whether any Locust process of this run is still alive."""
        return any(p.popen.poll() is None for p in self._procs)

    @property
    def returncodes(self) -> dict[str, int | None]:
        """Exit code per role (``main``, ``master``, ``worker-N``); None while running."""
        return {p.role: p.popen.poll() for p in self._procs}

    def check(self) -> None:
        """Raise :class:`TrafficError` if a Locust process ended before it was asked to.

        Locust runs for the whole window and a little longer: any exit before
        :meth:`stop` means the load (or its record) broke off, whatever the exit code.
        """
        if self._stopping:
            return
        for proc in self._procs:
            reason = proc.death()
            if reason is not None:
                raise TrafficError(f"traffic stopped during the window: {reason}")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for Locust to end by itself (its run time); True if every process ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for proc in self._procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                proc.popen.wait(left)
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every Locust process, SIGKILL what is left after ``grace_s``, reap all.

        The default grace lets requests under way finish (the request timeout plus 3 s).
        """
        self._stopping = True
        if grace_s is None:
            grace_s = self.config.request_timeout_s + 3.0
        if self._deadline is not None:
            self._deadline.cancel()
        stop_processes([p.popen for p in self._procs], grace_s)

    def _kill_all(self) -> None:
        # runs on the deadline timer's thread: signal only, never reap (see chaos.proc)
        for proc in self._procs:
            if proc.popen.returncode is None:
                kill_group(proc.pid)

    # -- results ---------------------------------------------------------------------------

    @property
    def samples_path(self) -> Path:
        """The directory holding this run's sample files."""
        return samples_dir(self.config.out_dir)

    def samples(self) -> pd.DataFrame:
        """Every sample recorded so far (see :func:`chaos.rundir.samples.load_samples`)."""
        return load_samples(self.samples_path)

    def live_stats(self) -> LiveStats:
        """The last second of completed requests; at most ~0.25 s old (see :mod:`.live`)."""
        return self._live.stats()
