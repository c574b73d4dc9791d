"""The built-in Locust user: weighted endpoints at a constant total rate, bearer JWTs.

Loaded by Locust (``-f``) in its own process, never imported by the main process.
The config comes from the JSON file the runner names in ``CHAOS_TRAFFIC_CONFIG``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import secrets
import time
import urllib.request

import gevent
import gevent.lock
from locust import FastHttpUser, User, task

import chaos.traffic.recorder  # noqa: F401  (registers the sample recorder)
from chaos.traffic.config import Endpoint, load_current_config
from chaos.traffic.recorder import T0_KEY, WRITE_ID_KEY

CONFIG = load_current_config()
_log = logging.getLogger("chaos.traffic")
_REFRESH_MIN_INTERVAL_S = 1.0


class BearerToken:
    """This process's bearer JWT: fetched once, re-fetched after a 401 at most once a second.

    Shared by every user of the process, so a key rotation costs one fetch, not one
    per user. A failed fetch keeps the old token; the next 401 tries again.
    """

    def __init__(self, url: str, timeout_s: float, refresh_s: float | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self.fetches = 0
        self._token: str | None = None
        self._fetched_at = -float("inf")
        self._lock = gevent.lock.Semaphore()

    def current(self) -> str | None:
        """The token to send, fetching the first one if needed."""
        if self._token is None:
            self._refresh(None)
        elif self.refresh_s is not None and time.monotonic() - self._fetched_at >= self.refresh_s:
            self._refresh(self._token)  # renew as a client renews a short-lived token
        return self._token

    def rejected(self, token: str | None) -> None:
        """A request with ``token`` got a 401: fetch a new one unless just done."""
        self._refresh(token)

    def _refresh(self, stale: str | None) -> None:
        with self._lock:
            if self._token != stale:
                return  # another user already replaced it
            if time.monotonic() - self._fetched_at < _REFRESH_MIN_INTERVAL_S:
                return
            self._fetched_at = time.monotonic()
            self.fetches += 1
            try:
                self._token = self._fetch()
            except (OSError, ValueError) as exc:
                _log.warning("token fetch from %s failed: %s", self.url, exc)

    def _fetch(self) -> str:
        request = urllib.request.Request(self.url, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = bytes(response.read()).decode().strip()
        if body.startswith("{"):
            data: dict[str, object] = json.loads(body)
            token = data.get("access_token") or data.get("token")
            if not isinstance(token, str):
                raise ValueError("token response has no access_token")
            return token
        return body


TOKENS = (
    BearerToken(CONFIG.token_url, CONFIG.request_timeout_s, CONFIG.token_refresh_s)
    if CONFIG.token_url
    else None
)
_WRITE_PREFIX = f"{os.getpid():x}-{secrets.token_hex(3)}"
_write_counter = itertools.count(1)
_ENDPOINTS: tuple[Endpoint, ...] = CONFIG.endpoints
_WEIGHTS = [e.weight for e in _ENDPOINTS]


def next_write_id() -> str:
    """An id unique across processes and machines: pid, a random token, a counter."""
    return f"{_WRITE_PREFIX}-{next(_write_counter)}"


_DUE = "_chaos_due"


def staggered_wait(user: User) -> float:
    """Pace a user at ``per_user_rate`` on its own grid of send times (a ``wait_time``).

    Locust's ``constant_throughput`` keeps each user's phase from its spawn time, so
    users spawned together (or every whole period apart) send in bursts: 20 users at
    10 rps each hit the ingress within a millisecond every 100 ms, and nothing in
    between, which blurs when a fault began or ended by up to a period. Here each
    user starts at a random phase (:meth:`ChaosUser.on_start`) and keeps it: a
    request that took longer than the period skips the slots it missed instead of
    sending at once, so users stuck on the same slow request do not fall in step.
    """
    period = 1.0 / CONFIG.per_user_rate
    now = time.monotonic()
    due: float = getattr(user, _DUE, now) + period
    if due < now:
        due += math.ceil((now - due) / period) * period
    setattr(user, _DUE, due)
    return due - now


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
        due = time.monotonic() + random.uniform(0.0, 1.0 / CONFIG.per_user_rate)
        setattr(self, _DUE, due)
        gevent.sleep(max(0.0, due - time.monotonic()))

    @task
    def send(self) -> None:
        """One request."""
        endpoint = random.choices(_ENDPOINTS, _WEIGHTS)[0]
        method = endpoint.method.upper()
        token = TOKENS.current() if TOKENS is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        write_id = next_write_id() if method == "POST" else ""
        response = self.client.request(
            method,
            endpoint.path,
            name=endpoint.name,
            headers=headers,
            json={"id": write_id} if write_id else None,
            context={T0_KEY: time.monotonic(), WRITE_ID_KEY: write_id},
        )
        if response.status_code == 401 and TOKENS is not None:
            TOKENS.rejected(token)
