"""The built-in closed-loop Locust user (``traffic.mode: closed``).

Each user sends a request, waits for its response, then waits for its next slot on
its own grid at ``rate / users``. Loaded by Locust (``-f``) in its own process,
never imported by the main process. The open-loop user is :mod:`.openloop`.
"""

from __future__ import annotations

import math
import random
import time

import gevent
from locust import FastHttpUser, User, task

from chaos.traffic.client import CONFIG, TOKENS, pick_endpoint, send_request
from chaos.traffic.recorder import SampleRecorder, recorder_of

_DUE = "_chaos_due"
#: Shorter waits are not slept (see :func:`staggered_wait`).
MIN_WAIT_S = 0.001


def staggered_wait(user: User) -> float:
    """Pace a user at ``per_user_rate`` on its own grid of send times (a ``wait_time``).

    Locust's ``constant_throughput`` keeps each user's phase from its spawn time, so
    users spawned together (or every whole period apart) send in bursts: 20 users at
    10 rps each hit the ingress within a millisecond every 100 ms, and nothing in
    between, which blurs when a fault began or ended by up to a period. Here each
    user starts at a random phase (:meth:`ChaosUser.on_start`) and keeps it: a
    request that took longer than the period skips the slots it missed instead of
    sending at once, so users stuck on the same slow request do not fall in step.

    A wait shorter than :data:`MIN_WAIT_S` is not slept: gevent's loop does not wait
    that little (libev's epoll backend waits at least a millisecond; a 0.2 ms sleep
    took about 1.6 ms here), so the timer would only cost CPU and send late. The grid
    still keeps the rate: each slot is used once, at most that early.
    """
    period = 1.0 / CONFIG.per_user_rate
    now = time.monotonic()
    due: float = getattr(user, _DUE, now) + period
    if due < now:
        due += math.ceil((now - due) / period) * period
    setattr(user, _DUE, due)
    wait = due - now
    if wait < MIN_WAIT_S:
        return 0.0
    # gevent times a sleep from its loop's cached clock, which lags after a busy turn:
    # refreshed here, the user cannot wake (and send) before its slot
    gevent.get_hub().loop.update_now()
    return wait


class ChaosUser(FastHttpUser):
    """Sends one request per task to an endpoint chosen by weight."""

    host = CONFIG.host
    wait_time = staggered_wait
    network_timeout = CONFIG.request_timeout_s
    connection_timeout = CONFIG.request_timeout_s

    def on_start(self) -> None:
        """Fetch the first token, then wait for this user's random phase."""
        if TOKENS is not None:
            TOKENS.current()
        self.recorder: SampleRecorder = recorder_of(self.environment)
        due = time.monotonic() + random.uniform(0.0, 1.0 / CONFIG.per_user_rate)
        setattr(self, _DUE, due)
        gevent.sleep(max(0.0, due - time.monotonic()))

    @task
    def send(self) -> None:
        """One request, started now (closed loop: the send is its start)."""
        send_request(self.client, pick_endpoint(), self.recorder)
