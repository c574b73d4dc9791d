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
from typing import Any, NamedTuple

import gevent.lock
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastHttpSession

from chaos.rundir.auth import AUTH_HEADER, encode
from chaos.rundir.samples import OK
from chaos.traffic.config import Endpoint, load_current_config
from chaos.traffic.errorkind import classify
from chaos.traffic.recorder import SampleRecorder

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
#: What Locust's FastHttpSession sends by default; the built-in users send it too.
_ACCEPT_ENCODING = "gzip, deflate, br"


class _Prepared(NamedTuple):
    """What is fixed about an endpoint's requests, worked out once."""

    method: str
    url: str
    name: str
    writes: bool


def _prepare(endpoint: Endpoint) -> _Prepared:
    path = endpoint.path
    url = path if path.startswith(("http://", "https://")) else CONFIG.host.rstrip("/") + path
    method = endpoint.method.upper()
    return _Prepared(method, url, endpoint.name, method == "POST")


_PREPARED = {e.name: _prepare(e) for e in _ENDPOINTS}
#: ``x-chaos-auth`` values seen, with their bits: a dict lookup per request, not a parse.
_AUTH_BITS: dict[str, int] = {}
_AUTH_VALUES_MAX = 64


def _auth_bits(value: str) -> int:
    """The ``auth`` bits of a header value not seen before (kept while few)."""
    bits = encode(value)
    if len(_AUTH_BITS) < _AUTH_VALUES_MAX:
        _AUTH_BITS[value] = bits
    return bits


def next_write_id() -> str:
    """An id unique across processes and machines: pid, a random token, a counter."""
    return f"{_WRITE_PREFIX}-{next(_write_counter)}"


def pick_endpoint() -> Endpoint:
    """An endpoint chosen by weight (the only one, without a draw, when there is one)."""
    if len(_ENDPOINTS) == 1:
        return _ENDPOINTS[0]
    return random.choices(_ENDPOINTS, cum_weights=_CUM_WEIGHTS)[0]


def send_request(
    session: FastHttpSession,
    endpoint: Endpoint,
    recorder: SampleRecorder,
    due: float | None = None,
) -> None:
    """Send one request through a FastHttpUser's ``session`` and record its sample.

    ``due`` is the request's scheduled start (None: due now, the closed loop). The
    sample starts at ``due`` and its latency runs from there to the end of the
    response body, so a request that went out late carries its wait (``send_lag_ms``).

    This is Locust's own ``FastHttpSession.request`` cut down to what the built-in users
    send: the same user agent (connection pool, timeouts, cookies, redirects) and the
    same ``request`` event, so Locust's statistics and any listener see every request
    as before; but the sample is pushed to the recorder directly instead of through a
    second listener, and nothing the built-in users never use (the user's context,
    renamed requests, basic auth, ``catch_response``) is worked out per request.
    Failures are what ``FastHttpSession`` reports: a transport error, a status Locust
    counts as failed, or an error while reading the body.
    """
    prepared = _PREPARED[endpoint.name]
    method = prepared.method
    headers = {"Accept-Encoding": _ACCEPT_ENCODING}
    token = TOKENS.current() if TOKENS is not None else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload: str | None = None
    write_id = ""
    if prepared.writes:
        write_id = next_write_id()
        payload = json.dumps({"id": write_id})
        headers["Content-Type"] = headers["Accept"] = "application/json"
    start_time = time.time()
    sent = time.monotonic()
    error: BaseException | None = None
    length = 0
    response: Any = None
    try:
        response = session.client.urlopen(
            prepared.url, method=method, headers=headers, payload=payload
        )
    except FAILURE_EXCEPTIONS as exc:
        error = exc
        response = getattr(exc, "response", None)  # a failed status still has a response
    if response is not None:
        try:
            content = response.content
            length = len(content) if content else 0
        except FAILURE_EXCEPTIONS as exc:
            error = exc
    done = time.monotonic()
    status = response.status_code if response is not None else 0
    auth = 0
    if response is not None:
        value = response.headers.get(AUTH_HEADER)
        if isinstance(value, str):  # absent: None; repeated lines: a list (not an app's)
            auth = _AUTH_BITS.get(value, -1)
            if auth < 0:
                auth = _auth_bits(value)
    session.request_event.fire(
        request_type=method,
        name=prepared.name,
        context={},
        response=response,
        exception=error,
        start_time=start_time,
        url=prepared.url,
        response_length=length,
        response_time=(done - sent) * 1000.0,
    )
    start = sent if due is None or due > sent else due
    kind = OK if error is None and status < 400 else classify(error, status)
    recorder.push(
        (start, (done - start) * 1000.0, (sent - start) * 1000.0, status,
         prepared.name, method, kind, write_id, auth)
    )  # fmt: skip
    if TOKENS is not None and status == 401:
        TOKENS.rejected(token)
