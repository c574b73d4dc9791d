"""The per-request sample recorder, attached inside a Locust process.

Importing this module (from a locustfile) registers an ``init`` hook that adds a
``request`` listener to Locust's environment. Each request becomes one sample in
this process's own file under ``<out_dir>/samples/``. The file is created at the
first request, so a master (which sends no requests) writes none.

Only Locust processes import this module: it imports locust and gevent.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from chaos.rundir.chunks import DEFAULT_MAX_AGE_S, SUFFIX, SampleWriter
from chaos.rundir.samples import DROPPED, OK, samples_dir
from chaos.traffic.config import RECORDER_EXIT_BASE, SENT_FILE, load_current_config
from chaos.traffic.errorkind import classify

T0_KEY = "chaos_t0"
"""Request context key: ``time.monotonic()`` the request was due (its scheduled start)."""
SENT_KEY = "chaos_sent"
"""Request context key: ``time.monotonic()`` just before the request was sent."""
WRITE_ID_KEY = "chaos_write_id"
"""Request context key: the write id a POST sent."""
_UPPER = {m: m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}


class SampleRecorder:
    """Turns Locust ``request`` events into samples in one file per process.

    When the file cannot be written (a full disk), samples are not silently dropped:
    the recorder calls ``on_failure`` with the error (the process then ends with
    :data:`~chaos.traffic.config.RECORDER_EXIT_BASE` + errno and the runner says why).
    """

    def __init__(
        self, directory: Path, on_failure: Callable[[OSError], None] | None = None
    ) -> None:
        self.directory = directory
        self.path = directory / f"samples-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self.on_failure = on_failure
        self.failed: OSError | None = None
        #: Requests Locust reported to this recorder (the soak compares it with rows loaded).
        self.requests_seen = 0
        self._writer: SampleWriter | None = None
        self._timer: gevent.Greenlet | None = None

    def _open(self) -> None:
        writer = SampleWriter(self.path)
        self._writer = writer
        # a chunk must reach the disk even when requests stall (an outage of timeouts)
        self._timer = gevent.spawn(self._flush_loop, writer)
        atexit.register(_close_quietly, writer)

    def _flush_loop(self, writer: SampleWriter) -> None:
        while self.failed is None:
            gevent.sleep(DEFAULT_MAX_AGE_S / 2)
            self._guard(writer.flush_if_due)

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a write; the first I/O error stops recording and is reported once."""
        if self.failed is not None:
            return
        try:
            action()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """Stop recording after the first I/O error and report it once."""
        self.failed = exc
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.discard()
        if self.on_failure is not None:
            self.on_failure(exc)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response: Any = None,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        **_kwargs: Any,
    ) -> None:
        """Locust ``request`` listener (runs once per request: kept lean).

        With the built-in users' context (:data:`T0_KEY`, :data:`SENT_KEY`) the sample
        starts at the scheduled time and its latency runs from there; without it (a
        user's own locustfile) it starts at the send.
        """
        self.requests_seen += 1
        latency_ms = float(response_time or 0.0)
        lag_ms = 0.0
        write_id = ""
        due = sent = None
        if context:
            due = context.get(T0_KEY)
            sent = context.get(SENT_KEY)
            write_id = str(context.get(WRITE_ID_KEY, ""))
        if isinstance(due, float):
            t = due
            if isinstance(sent, float) and sent > due:
                lag_ms = (sent - due) * 1000.0
                latency_ms += lag_ms
        else:
            t = time.monotonic() - latency_ms / 1000.0
        status = getattr(response, "status_code", 0)
        if not isinstance(status, int):
            status = 0
        kind = OK if exception is None and status < 400 else classify(exception, status)
        method = _UPPER.get(request_type) or str(request_type).upper()
        self._append(t, latency_ms, lag_ms, status, str(name), method, kind, write_id)

    def dropped(self, due: float, endpoint: str, method: str) -> None:
        """Record a request that was due at ``due`` but not sent (the in-flight cap was full).

        Not a request Locust saw, so not in :attr:`requests_seen`.
        """
        self._append(due, 0.0, 0.0, 0, endpoint, method, DROPPED, "")

    def _append(
        self,
        t: float,
        latency_ms: float,
        send_lag_ms: float,
        status: int,
        endpoint: str,
        method: str,
        error_kind: str,
        write_id: str,
    ) -> None:
        """Buffer one sample; after a write error nothing more is recorded."""
        writer = self._writer
        if writer is None:
            if self.failed is not None:
                return
            self._guard(self._open)
            writer = self._writer
            if writer is None:
                return
        elif self.failed is not None:
            return
        try:
            writer.append(
                t, latency_ms, send_lag_ms, status, endpoint, method, error_kind, write_id
            )
        except OSError as exc:
            self._fail(exc)

    def close(self, **_kwargs: Any) -> None:
        """Flush and close the file (Locust ``quit`` listener, after the users stopped)."""
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        if self._writer is not None:
            self._guard(self._writer.close)

    def flush(self, **_kwargs: Any) -> None:
        """Write buffered samples now (``test_stop`` and ``quitting`` listener)."""
        if self._writer is not None:
            self._guard(self._writer.flush)


def _close_quietly(writer: SampleWriter) -> None:
    """At exit: flush what is left; a full disk was reported already (the exit code)."""
    with contextlib.suppress(OSError):
        writer.close()


def _quit_for(environment: Environment) -> Callable[[OSError], None]:
    """Ends this Locust process with RECORDER_EXIT_BASE + errno, through Locust's own exit."""

    def quit_(exc: OSError) -> None:
        logging.getLogger("chaos.traffic").error("cannot write samples: %s", exc)
        environment.process_exit_code = RECORDER_EXIT_BASE + (exc.errno or 5)
        os.kill(os.getpid(), signal.SIGTERM)

    return quit_


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    """Add a listener to a Locust event hook (untyped in Locust)."""
    hook.add_listener(handler)


def _end_after(duration_s: float) -> None:
    """Quit the run ``duration_s`` after it started, on the monotonic clock.

    Locust's own ``--run-time`` timer runs on gevent's loop clock, which is cached
    from before the locustfile was imported and fires up to a few hundred ms early;
    it stays as a backstop one second later.
    """
    end = time.monotonic() + duration_s
    while (left := end - time.monotonic()) > 0:
        gevent.sleep(left)  # may wake early (the loop's clock lags): then sleeps the rest
    logging.getLogger("chaos.traffic").info("duration of %.3f s reached, quitting", duration_s)
    # Locust's SIGTERM handler is its one clean exit path for a local runner and a
    # master alike: it stops the users (and workers), prints the summary, exits.
    os.kill(os.getpid(), signal.SIGTERM)


_RECORDER_ATTR = "chaos_recorder"


def recorder_of(environment: Environment) -> SampleRecorder:
    """The recorder attached to a Locust environment (for users that record drops)."""
    recorder = getattr(environment, _RECORDER_ATTR, None)
    if not isinstance(recorder, SampleRecorder):
        raise RuntimeError("chaos.traffic.recorder is not attached to this environment")
    return recorder


def _attach(environment: Environment, **_kwargs: Any) -> None:
    # gevent's loop clock is cached from its last turn, before Locust imported the
    # locustfile; on a busy machine that import takes seconds, and Locust's
    # ``--run-time`` timer (started right after this hook) would fire that much early,
    # ending the run before ``duration_s``.
    gevent.get_hub().loop.update_now()
    config = load_current_config()
    recorder = SampleRecorder(samples_dir(config.out_dir), _quit_for(environment))
    setattr(environment, _RECORDER_ATTR, recorder)
    if not isinstance(environment.runner, WorkerRunner):

        def on_test_start(**_kw: Any) -> None:
            gevent.spawn(_end_after, config.duration_s)

        _listen(environment.events.test_start, on_test_start)
    _listen(environment.events.request, recorder.on_request)
    _listen(environment.events.test_stop, recorder.flush)
    # ``quitting`` fires before Locust stops the users; requests still finishing
    # after it are recorded, and the file is closed at ``quit`` (or at exit).
    _listen(environment.events.quitting, recorder.flush)
    _listen(environment.events.quit, recorder.close)
    if not isinstance(environment.runner, WorkerRunner):

        def write_sent(**_kw: Any) -> None:
            runner = environment.runner
            if runner is None:
                return
            sent = {"requests": runner.stats.total.num_requests}
            with contextlib.suppress(OSError):  # a full disk: the exit code says so already
                (config.out_dir / SENT_FILE).write_text(json.dumps(sent))

        _listen(environment.events.quit, write_sent)


_listen(events.init, _attach)
