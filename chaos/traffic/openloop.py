"""The built-in open-loop Locust user (``traffic.mode: open``, the default).

One user per Locust process keeps that process's arrival schedule: a request is due
every ``1 / process_rate`` seconds from a random phase, whatever the responses do.
Each due request starts in its own greenlet from a pool of ``process_in_flight``. If
the pool is full at its time, the request waits for a free slot until it is
``max_lateness_s`` late (the schedule behind it waits too), and is recorded as dropped
past that, never silently skipped. A request sent late (the pool was full, or the
process was busy) carries its lag: the sample's latency runs from the scheduled start.
The short wait absorbs a burst after a stall of the process (the greenlets started for
it count against the cap before they have sent anything) without turning a cap that
is too small into a queue that grows without bound.

Loaded by Locust (``-f``) in its own process, never imported by the main process.
"""

from __future__ import annotations

import random
import time

import gevent.pool
from locust import FastHttpUser, task

from chaos.traffic.client import CONFIG, TOKENS, pick_endpoint, send_request
from chaos.traffic.recorder import SampleRecorder, recorder_of

PERIOD_S = 1.0 / CONFIG.process_rate
CAP = CONFIG.process_in_flight
MAX_LATENESS_S = CONFIG.max_lateness_s
_IDLE_S = 1.0


class OpenLoopUser(FastHttpUser):
    """The schedule of one process: starts each due request, or records it as dropped."""

    host = CONFIG.host
    concurrency = CAP
    network_timeout = CONFIG.request_timeout_s
    connection_timeout = CONFIG.request_timeout_s

    def on_start(self) -> None:
        """Fetch the first token and set this process's random phase."""
        if TOKENS is not None:
            TOKENS.current()
        self.in_flight = gevent.pool.Pool(CAP)
        self.recorder: SampleRecorder = recorder_of(self.environment)
        start = time.monotonic()
        self.due = start + random.uniform(0.0, PERIOD_S)
        # the schedule ends with the run (the recorder quits Locust then): a request due
        # while Locust shuts down would be late or dropped for the driver's own reasons
        self.end = start + CONFIG.duration_s
        self.sent = 0
        self.dropped = 0

    def wait_time(self) -> float:
        """Until the next request is due (Locust sleeps it; a stop then ends the user)."""
        if self.due >= self.end:
            return _IDLE_S  # the schedule is over: wait for Locust to stop the user
        return max(0.0, self.due - time.monotonic())

    @task
    def start_due(self) -> None:
        """Start every request due by now; a full pool makes it late, then dropped."""
        pool = self.in_flight
        while self.due <= time.monotonic() and self.due < self.end:
            endpoint = pick_endpoint()
            if pool.free_count() == 0:
                pool.wait_available(timeout=max(0.0, self.due + MAX_LATENESS_S - time.monotonic()))
            if pool.free_count() > 0:
                pool.spawn(send_request, self.client, endpoint, self.due)
                self.sent += 1
            else:
                self.recorder.dropped(self.due, endpoint.name, endpoint.method.upper())
                self.dropped += 1
            self.due += PERIOD_S

    def on_stop(self) -> None:
        """Let the requests under way finish, so each one sent is recorded."""
        self.in_flight.join(timeout=CONFIG.request_timeout_s + 1.0)
