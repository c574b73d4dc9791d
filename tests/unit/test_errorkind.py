"""Error kinds from the exceptions clients raise."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

from chaos.traffic.errorkind import classify


class RetriesExceeded(Exception):
    """Shaped like geventhttpclient's: the cause in ``original``."""

    def __init__(self, original: BaseException) -> None:
        super().__init__("retries exceeded")
        self.original = original


class HTTPConnectionClosed(Exception):
    """Named like geventhttpclient's connection-closed parse error."""


class Timeout(BaseException):
    """Named like gevent.Timeout, which is a BaseException."""


class MaxRetryError(Exception):
    """Shaped like urllib3's: the cause in ``reason``."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__("max retries")
        self.reason = reason


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("exception", "status", "kind"),
    [
        (None, 200, ""),
        (None, 503, "http"),
        (None, 404, "http"),
        (RuntimeError("bad status"), 503, "http"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), 0, "connect"),
        (OSError(errno.EHOSTUNREACH, "no route"), 0, "connect"),
        (socket.gaierror(-2, "no name"), 0, "connect"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), 0, "reset"),
        (BrokenPipeError(errno.EPIPE, "pipe"), 0, "reset"),
        (OSError(errno.ECONNRESET, "reset"), 0, "reset"),
        (HTTPConnectionClosed("closed"), 0, "reset"),
        (TimeoutError("timed out"), 0, "timeout"),
        (RetriesExceeded(Timeout()), 0, "timeout"),
        (RetriesExceeded(ConnectionResetError()), 0, "reset"),
        (ssl.SSLError(1, "certificate verify failed"), 0, "tls"),
        (ssl.SSLCertVerificationError(1, "expired"), 0, "tls"),
        (ssl.SSLError("The read operation timed out"), 0, "timeout"),
        (MaxRetryError(ConnectionRefusedError()), 0, "connect"),
        (_chained(RuntimeError("wrapper"), ConnectionRefusedError()), 0, "connect"),
        (RuntimeError("failure() on a 200"), 200, "http"),
        (RuntimeError("something else"), 0, "reset"),
    ],
)
def test_classify(exception: BaseException | None, status: int, kind: str) -> None:
    assert classify(exception, status) == kind


def test_cyclic_causes_terminate() -> None:
    a = RuntimeError("a")
    b = RuntimeError("b")
    a.__context__ = b
    b.__context__ = a
    assert classify(a, 0) == "reset"
