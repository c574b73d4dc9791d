"""The per-request sample recorder, attached inside a Locust process.

Importing this module (from a locustfile) registers an ``init`` hook that adds a
``request`` listener to Locust's environment. Each request becomes one sample in
this process's own file under ``<out_dir>/samples/``. The file is created at the
first request, so a master (which sends no requests) writes none.

Only Locust processes import this module: it imports locust and gevent.
"""

from __future__ import annotations

import atexit
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
from chaos.rundir.samples import DROPPED, samples_dir
from chaos.traffic.config import load_current_config
from chaos.traffic.errorkind import classify

T0_KEY = "chaos_t0"
"""Request context key: ``time.monotonic()`` the request was due (its scheduled start)."""
SENT_KEY = "chaos_sent"
"""Request context key: ``time.monotonic()`` just before the request was sent."""
WRITE_ID_KEY = "chaos_write_id"
"""Request context key: the write id a POST sent."""


class SampleRecorder:
    """Turns Locust ``request`` events into samples in one file per process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"samples-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self._writer: SampleWriter | None = None
        self._timer: gevent.Greenlet | None = None

    def _open(self) -> SampleWriter:
        writer = SampleWriter(self.path)
        self._writer = writer
        # a chunk must reach the disk even when requests stall (an outage of timeouts)
        self._timer = gevent.spawn(self._flush_loop, writer)
        atexit.register(writer.close)
        return writer

    @staticmethod
    def _flush_loop(writer: SampleWriter) -> None:
        while True:
            gevent.sleep(DEFAULT_MAX_AGE_S / 2)
            writer.flush_if_due()

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
        """Locust ``request`` listener.

        With the built-in users' context (:data:`T0_KEY`, :data:`SENT_KEY`) the sample
        starts at the scheduled time and its latency runs from there; without it (a
        user's own locustfile) it starts at the send.
        """
        now = time.monotonic()
        latency_ms = float(response_time or 0.0)
        context = context or {}
        due = context.get(T0_KEY)
        sent = context.get(SENT_KEY)
        lag_ms = 0.0
        if isinstance(due, float):
            t = due
            if isinstance(sent, float) and sent > due:
                lag_ms = (sent - due) * 1000.0
                latency_ms += lag_ms
        else:
            t = now - latency_ms / 1000.0
        status = getattr(response, "status_code", 0)
        status = status if isinstance(status, int) else 0
        writer = self._writer or self._open()
        writer.add(
            t=t,
            endpoint=str(name),
            method=str(request_type).upper(),
            latency_ms=latency_ms,
            status=status,
            error_kind=classify(exception, status),
            write_id=str(context.get(WRITE_ID_KEY, "")),
            send_lag_ms=lag_ms,
        )

    def dropped(self, due: float, endpoint: str, method: str) -> None:
        """Record a request that was due at ``due`` but not sent (the in-flight cap was full)."""
        writer = self._writer or self._open()
        writer.add(
            t=due,
            endpoint=endpoint,
            method=method,
            latency_ms=0.0,
            status=0,
            error_kind=DROPPED,
            write_id="",
        )

    def close(self, **_kwargs: Any) -> None:
        """Flush and close the file (Locust ``quit`` listener, after the users stopped)."""
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        if self._writer is not None:
            self._writer.close()

    def flush(self, **_kwargs: Any) -> None:
        """Write buffered samples now (``test_stop`` and ``quitting`` listener)."""
        if self._writer is not None:
            self._writer.flush()


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
        gevent.sleep(min(left, 0.05))
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
    recorder = SampleRecorder(samples_dir(config.out_dir))
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


_listen(events.init, _attach)
