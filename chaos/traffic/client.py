"""What every request of the built-in Locust users shares: the bearer token, write ids,
and building and sending one request.

Loaded only inside a Locust process (it imports gevent); the config comes from the
JSON file the runner names in ``CHAOS_TRAFFIC_CONFIG``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import secrets
import time
import urllib.request
from typing import Any

import gevent.lock

from chaos.traffic.config import Endpoint, load_current_config
from chaos.traffic.recorder import SENT_KEY, T0_KEY, WRITE_ID_KEY

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
_CUM_WEIGHTS = list(itertools.accumulate(e.weight for e in _ENDPOINTS))
_METHODS = {e.name: e.method.upper() for e in _ENDPOINTS}


def next_write_id() -> str:
    """An id unique across processes and machines: pid, a random token, a counter."""
    return f"{_WRITE_PREFIX}-{next(_write_counter)}"


def pick_endpoint() -> Endpoint:
    """An endpoint chosen by weight (the only one, without a draw, when there is one)."""
    if len(_ENDPOINTS) == 1:
        return _ENDPOINTS[0]
    return random.choices(_ENDPOINTS, cum_weights=_CUM_WEIGHTS)[0]


def send_request(client: Any, endpoint: Endpoint, due: float | None = None) -> None:
    """Send one request through a FastHttpUser's ``client``; ``due`` is its scheduled start.

    The recorder takes the latency from ``due`` (and the lag from ``due`` to the send),
    so a request that went out late carries its wait. None: due now (closed loop).
    """
    method = _METHODS[endpoint.name]
    token = TOKENS.current() if TOKENS is not None else None
    write_id = next_write_id() if method == "POST" else ""
    sent = time.monotonic()
    response = client.request(
        method,
        endpoint.path,
        name=endpoint.name,
        headers={"Authorization": f"Bearer {token}"} if token else None,
        json={"id": write_id} if write_id else None,
        context={T0_KEY: sent if due is None else due, SENT_KEY: sent, WRITE_ID_KEY: write_id},
    )
    if TOKENS is not None and response.status_code == 401:  # no property read without tokens
        TOKENS.rejected(token)
