"""Readiness probes of local processes: an HTTP GET or a TCP connect, as a kubelet runs them."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpProbe:
    """Ready when ``GET url`` answers ``expect_status``."""

    url: str
    expect_status: int = 200
    timeout_s: float = 0.5

    def check(self) -> str | None:
        """None when the probe passes, else why it failed."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, self.timeout_s)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path)
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        return None if status == self.expect_status else f"status {status}"


@dataclass(frozen=True)
class TcpProbe:
    """Ready when a TCP connection to ``host:port`` opens."""

    host: str
    port: int
    timeout_s: float = 0.5

    def check(self) -> str | None:
        """None when the probe passes, else why it failed."""
        try:
            socket.create_connection((self.host, self.port), self.timeout_s).close()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


Probe = HttpProbe | TcpProbe
