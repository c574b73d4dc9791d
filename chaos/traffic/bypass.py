"""The bypass probe: a small stream sent the way legacy code would, around the proxy.

For the length of a window, ``rate`` requests a second (at most ``max_requests``) go
straight to the pods' application ports in turn: plaintext ``GET /``, no token, no
client certificate. Each ends one of three ways (:mod:`chaos.analysis.security`):

* ``refused``: no HTTP answer (connection refused, reset, closed, timed out);
* ``denied``: an HTTP answer that is not the app's (no ``x-chaos-auth``: a proxy said no);
* ``served``: the app answered (its ``x-chaos-auth`` came back), whatever the status.

Each attempt is one JSON line ``{"t", "pod", "outcome", "status", "kind"}`` (``t`` on
the monotonic clock, like the samples) appended to the window's file under ``bypass/``.
``kind`` ``anonymous``: the same stream sent to the ingress instead (an illegitimate
caller at the front door, ``security.anonymous``); ``served`` then means the app
answered a request that carried no token.
Only loopback addresses are probed; a non-loopback address is refused before any
request. The stream runs on one thread in the runner, bounded in count and time.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from chaos.errors import InputError
from chaos.rundir.auth import AUTH_HEADER


class _StreamSpec(Protocol):
    """A stream's rate (requests/s) and count bound (``security.anonymous``)."""

    @property
    def rate(self) -> float: ...

    @property
    def max_requests(self) -> int: ...


@dataclass(frozen=True)
class AppPort:
    """The application port of one pod, as a caller outside the pod knows it."""

    pod: str
    host: str
    port: int


#: Seconds one attempt may take before it counts as refused (no answer).
ATTEMPT_TIMEOUT_S = 1.0


def attempt(port: AppPort, timeout_s: float = ATTEMPT_TIMEOUT_S) -> tuple[str, int]:
    """One plaintext, token-less ``GET /`` to ``port``: its outcome and HTTP status (0: none)."""
    conn = http.client.HTTPConnection(port.host, port.port, timeout=timeout_s)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        served = response.getheader(AUTH_HEADER) is not None
        return ("served" if served else "denied"), response.status
    except (OSError, http.client.HTTPException):
        return "refused", 0
    finally:
        conn.close()


class BypassProbe:
    """The window's bypass stream, on its own thread while the context is entered."""

    def __init__(
        self,
        ports: Sequence[AppPort],
        rate: float,
        max_requests: int,
        out: Path,
        kind: str = "bypass",
    ) -> None:
        for p in ports:
            if not ipaddress.ip_address(p.host).is_loopback:
                raise InputError(f"{kind} probe: {p.pod} is at {p.host}, not on loopback")
        if rate <= 0 or max_requests < 1:
            raise InputError(f"{kind} probe: rate and max_requests must be positive")
        self.ports = list(ports)
        self.rate = rate
        self.max_requests = max_requests
        self.out = out
        self.kind = kind
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BypassProbe:
        if self.ports:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(
                target=self._run, name=f"{self.kind}-probe", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=ATTEMPT_TIMEOUT_S + 1.0)

    def _run(self) -> None:
        start = time.monotonic()
        with self.out.open("a", encoding="utf-8") as f:
            for i in range(self.max_requests):
                due = start + i / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                port = self.ports[i % len(self.ports)]
                t = time.monotonic()
                outcome, status = attempt(port)
                record = {
                    "t": t,
                    "pod": port.pod,
                    "outcome": outcome,
                    "status": status,
                    "kind": self.kind,
                }
                f.write(json.dumps(record) + "\n")
                f.flush()
                self.sent += 1


def anonymous_stream(ingress_url: str, spec: _StreamSpec, out: Path) -> BypassProbe:
    """The ``anonymous`` stream: ``spec``'s rate and count of token-less requests to the ingress."""
    url = urllib.parse.urlsplit(ingress_url)
    if url.hostname is None:
        raise InputError(f"anonymous probe: the ingress URL {ingress_url!r} has no host")
    port = AppPort("ingress", url.hostname, url.port or 80)
    return BypassProbe([port], spec.rate, spec.max_requests, out, kind="anonymous")
