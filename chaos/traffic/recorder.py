"""The per-request sample recorder, attached inside a Locust process.

Importing this module (from a locustfile) registers an ``init`` hook that attaches a
:class:`SampleRecorder` to Locust's environment. Each request becomes one sample in
this process's own file under ``<out_dir>/samples/``: the built-in users push theirs
(:func:`chaos.traffic.client.send_request`), a user's own locustfile is recorded
through Locust's ``request`` event. The file is created at the first chunk, so a
master (which sends no requests) writes none.

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

from chaos.rundir.auth import AUTH_HEADER, encode
from chaos.rundir.chunks import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_ROWS,
    SUFFIX,
    SampleRow,
    SampleWriter,
)
from chaos.rundir.samples import DROPPED, OK, samples_dir
from chaos.traffic.config import RECORDER_EXIT_BASE, SENT_FILE, load_current_config
from chaos.traffic.errorkind import classify

WRITE_ID_KEY = "chaos_write_id"
"""Request context key a user's own locustfile may set: the write id a POST sent."""
_UPPER = {m: m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}


class SampleRecorder:
    """Turns requests into samples in one file per process.

    The built-in users hand each request over as a ready :data:`SampleRow` through
    :meth:`push` (see :func:`chaos.traffic.client.send_request`): one list append, no
    event listener, no per-request function call into Locust's event hook. A user's
    own locustfile is recorded through Locust's ``request`` event (:meth:`on_request`).
    Rows wait in a list of at most ``max_rows`` and go to disk as one chunk when it is
    full or, through a timer, once the oldest is ``max_age_s`` old.

    When the file cannot be written (a full disk), samples are not silently dropped:
    the recorder calls ``on_failure`` with the error (the process then ends with
    :data:`~chaos.traffic.config.RECORDER_EXIT_BASE` + errno and the runner says why).
    """

    def __init__(
        self,
        directory: Path,
        on_failure: Callable[[OSError], None] | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        self.directory = directory
        self.path = directory / f"samples-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self.on_failure = on_failure
        self.failed: OSError | None = None
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._rows: list[SampleRow] = []
        #: Whether rows were buffered at the timer's last tick (see _flush_loop).
        self._marked = False
        self._writer: SampleWriter | None = None
        self._timer: gevent.Greenlet | None = None
        self._closed = False

    def push(self, row: SampleRow) -> None:
        """Record one sample (per request: kept to an append and a length check)."""
        rows = self._rows
        rows.append(row)
        if len(rows) >= self.max_rows:
            self.flush()

    def start_timer(self) -> None:
        """Start the timer that writes buffered rows once the oldest is ``max_age_s`` old."""
        if self._timer is None and not self._closed:
            self._timer = gevent.spawn(self._flush_loop)

    def _flush_loop(self) -> None:
        # A chunk must reach the disk even when requests stall (an outage of timeouts).
        # The timer ticks every half max_age and writes the rows that were already
        # buffered at its previous tick, so no row waits longer than about max_age; the
        # timer, not each request, tells the time.
        while self.failed is None and not self._closed:
            gevent.sleep(self.max_age_s / 2)
            if self._rows and self._marked:
                self.flush()
            else:
                self._marked = bool(self._rows)

    def _fail(self, exc: OSError) -> None:
        """Stop recording after the first I/O error and report it once."""
        self.failed = exc
        self._rows.clear()
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.discard()
        if self.on_failure is not None:
            self.on_failure(exc)

    def flush(self, **_kwargs: Any) -> None:
        """Write buffered samples now (also the ``test_stop`` and ``quitting`` listener).

        The file is created at the first write, so a process that sends nothing (a
        master) leaves none. After a write error nothing more is recorded.
        """
        rows = self._rows
        if not rows:
            return
        self._rows = []
        self._marked = False
        if self.failed is not None or self._closed:
            return
        try:
            if self._writer is None:
                self._writer = SampleWriter(self.path)
            self._writer.write_rows(rows)
        except OSError as exc:
            self._fail(exc)

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
        """Locust ``request`` listener, for a user's own locustfile: the sample starts at
        the request's start, ``response_time`` before the event."""
        latency_ms = float(response_time or 0.0)
        status = getattr(response, "status_code", 0)
        if not isinstance(status, int):
            status = 0
        kind = OK if exception is None and status < 400 else classify(exception, status)
        method = _UPPER.get(request_type) or str(request_type).upper()
        write_id = str(context.get(WRITE_ID_KEY, "")) if context else ""
        t = time.monotonic() - latency_ms / 1000.0
        headers = getattr(response, "headers", None)
        value = headers.get(AUTH_HEADER) if headers is not None else None
        auth = encode(value) if isinstance(value, str) else 0
        self.push((t, latency_ms, 0.0, status, str(name), method, kind, write_id, auth))

    def discard_rows(self) -> None:
        """Keep nothing from now on: :meth:`push` only drops its row (recording off)."""
        self.push = self._discard  # type: ignore[method-assign]

    def _discard(self, row: SampleRow) -> None:
        pass

    def dropped(self, due: float, endpoint: str, method: str) -> None:
        """Record a request that was due at ``due`` but not sent (the in-flight cap was full)."""
        self.push((due, 0.0, 0.0, 0, endpoint, method, DROPPED, "", 0))

    def close(self, **_kwargs: Any) -> None:
        """Write what is left and close the file (Locust ``quit`` listener, users stopped)."""
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                if self.failed is None:
                    self._fail(exc)


def _close_at_exit(recorder: SampleRecorder) -> None:
    """At exit: write what is left; a full disk was reported already (the exit code)."""
    recorder.on_failure = None
    recorder.close()


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
    if not config.record:
        recorder.discard_rows()
    setattr(environment, _RECORDER_ATTR, recorder)
    atexit.register(_close_at_exit, recorder)
    recorder.start_timer()
    if not isinstance(environment.runner, WorkerRunner):

        def on_test_start(**_kw: Any) -> None:
            gevent.spawn(_end_after, config.duration_s)

        _listen(environment.events.test_start, on_test_start)
    if config.locustfile is not None:
        # a user's own locustfile: its requests reach the recorder through Locust's
        # event; the built-in users push their samples themselves (send_request)
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
