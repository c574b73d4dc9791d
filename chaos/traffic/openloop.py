"""The built-in open-loop Locust user (``traffic.mode: open``, the default).

One user per Locust process keeps that process's arrival schedule: a request is due
every ``1 / process_rate`` seconds from a random phase, whatever the responses do.
Each due request starts in its own greenlet from a pool of ``process_in_flight``; if
the pool is full at its time the request is recorded as dropped, never silently
skipped. A request the scheduler reaches late (the process was busy) is still sent,
and its lag is recorded: the sample's latency runs from the scheduled start.

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
        self.due = time.monotonic() + random.uniform(0.0, PERIOD_S)
        self.sent = 0
        self.dropped = 0

    def wait_time(self) -> float:
        """Until the next request is due (Locust sleeps it; a stop then ends the user)."""
        return max(0.0, self.due - time.monotonic())

    @task
    def start_due(self) -> None:
        """Start every request due by now; the pool's cap decides sent or dropped."""
        now = time.monotonic()
        pool = self.in_flight
        while self.due <= now:
            endpoint = pick_endpoint()
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
