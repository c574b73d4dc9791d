"""The built-in open-loop Locust user (``traffic.mode: open``, the default).

One user per Locust process keeps that process's arrival schedule: a request is due
every ``1 / process_rate`` seconds from a random phase, whatever the responses do.
At most ``process_in_flight`` requests are under way at once. If every one of them is
still under way at a request's time, that request waits for one to end until it is
``max_lateness_s`` late (the schedule behind it waits too), and is recorded as dropped
past that, never silently skipped. A request sent late (the cap was reached, or the
process was busy) carries its lag: the sample's latency runs from the scheduled start.
The short wait absorbs a burst after a stall of the process without turning a cap
that is too small into a queue that grows without bound.

How, cheaply: the schedule is one shared "next slot" (:attr:`OpenLoopUser.due`).
Senders are long-lived greenlets, at most the cap of them; each one takes the next
slot, sleeps until it and sends, then takes the following one, so no greenlet is
spawned and nothing is handed over per request. A sender about to send while no other
one waits for a slot starts one more (under the cap), so the next slot always has a
sender waiting for it. A slot more than ``max_lateness_s`` late while every sender is
busy at the cap is dropped: by the sender that frees up first, or by the Locust user,
which wakes every so often to drop such slots, so drops are on record as they happen.

Loaded by Locust (``-f``) in its own process, never imported by the main process.
"""

from __future__ import annotations

import random
import time

import gevent
import gevent.pool
from locust import FastHttpUser, task

from chaos.traffic.client import CONFIG, TOKENS, pick_endpoint, send_request
from chaos.traffic.recorder import SampleRecorder, recorder_of

PERIOD_S = 1.0 / CONFIG.process_rate
CAP = CONFIG.process_in_flight
MAX_LATENESS_S = CONFIG.max_lateness_s
_IDLE_S = 1.0
#: The Locust user wakes at most this often to drop slots no busy sender could take.
_TEND_MIN_S = 0.05


class OpenLoopUser(FastHttpUser):
    """The schedule of one process: its senders take each due request, or it is dropped."""

    host = CONFIG.host
    concurrency = CAP
    network_timeout = CONFIG.request_timeout_s
    connection_timeout = CONFIG.request_timeout_s

    def on_start(self) -> None:
        """Fetch the first token and set this process's random phase."""
        if TOKENS is not None:
            TOKENS.current()
        self.senders = gevent.pool.Group()
        #: Senders asleep until the slot they took (the rest are sending).
        self.waiting: set[gevent.Greenlet] = set()
        self.recorder: SampleRecorder = recorder_of(self.environment)
        start = time.monotonic()
        #: The next slot no sender has taken yet.
        self.due = start + random.uniform(0.0, PERIOD_S)
        # the schedule ends with the run (the recorder quits Locust then): a request due
        # while Locust shuts down would be late or dropped for the driver's own reasons
        self.end = start + CONFIG.duration_s
        self.sent = 0
        self.dropped = 0
        self.senders.spawn(self._send_from, self._take())

    def _take(self) -> float | None:
        """The next slot, now this caller's (None: the schedule is over)."""
        due = self.due
        if due >= self.end:
            return None
        self.due = due + PERIOD_S
        return due

    def _drop(self, due: float) -> None:
        endpoint = pick_endpoint()
        self.recorder.dropped(due, endpoint.name, endpoint.method.upper())
        self.dropped += 1

    def _send_from(self, due: float | None) -> None:
        """One sender: send the slot it was started for, then take the next ones."""
        client = self.client
        recorder = self.recorder
        waiting = self.waiting
        senders = self.senders
        me = gevent.getcurrent()
        update_now = gevent.get_hub().loop.update_now
        while due is not None:
            wait = due - time.monotonic()
            if wait > 0.0:
                waiting.add(me)
                try:
                    # gevent times a sleep from its loop's cached clock, which lags after
                    # a busy turn: refreshed first, the sender cannot wake before its slot
                    update_now()
                    gevent.sleep(wait)
                finally:
                    waiting.discard(me)
            elif -wait > MAX_LATENESS_S and len(senders) >= CAP and not waiting:
                self._drop(due)  # it waited too long for a sender: all of them were busy
                due = self._take()
                continue
            if not waiting and len(senders) < CAP and self.due < self.end:
                senders.spawn(self._send_from, self._take())  # keep one waiting ahead
            self.sent += 1
            send_request(client, pick_endpoint(), recorder, due)
            due = self._take()

    def wait_time(self) -> float:
        """Until the next untaken slot may need tending (Locust sleeps it; a stop ends it)."""
        if self.due >= self.end:
            return _IDLE_S  # the schedule is over: wait for Locust to stop the user
        return max(_TEND_MIN_S, self.due + MAX_LATENESS_S - time.monotonic())

    @task
    def tend(self) -> None:
        """Slots too late that no sender took: dropped if every sender is busy at the cap."""
        now = time.monotonic()
        while self.due + MAX_LATENESS_S < now and self.due < self.end:
            if self.waiting:
                break  # the process was busy, not the senders: they send it late
            due = self.due
            self.due = due + PERIOD_S
            if len(self.senders) < CAP:
                self.senders.spawn(self._send_from, due)
            else:
                self._drop(due)

    def on_stop(self) -> None:
        """Let the requests under way finish, so each one sent is recorded."""
        self.end = -float("inf")  # no sender takes another slot
        for sender in list(self.waiting):
            sender.kill(block=False)  # asleep until a slot: nothing under way to wait for
        self.senders.join(timeout=CONFIG.request_timeout_s + 1.0)
