"""Classify a failed request into the error kinds of a sample.

Pure: works on any exception, so it is tested without importing Locust or gevent.
Clients wrap the real cause (geventhttpclient's ``RetriesExceeded(original=...)``,
requests' ``ConnectionError`` around urllib3's ``MaxRetryError(reason=...)``), so the
whole chain is searched; foreign classes are matched by name, because importing
them would drag gevent into the caller.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

from chaos.rundir.samples import ERROR_KINDS, OK

# The kinds are the run directory's contract (chaos.rundir.samples); named here for classify.
CONNECT, RESET, TLS, TIMEOUT, HTTP = ERROR_KINDS

_CONNECT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EADDRNOTAVAIL,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    }
)
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_TIMEOUT_NAMES = frozenset({"Timeout", "ConnectTimeout", "ReadTimeout", "TimeoutError"})
_RESET_NAMES = frozenset(
    {"HTTPConnectionClosed", "EmptyResponse", "RemoteDisconnected", "IncompleteRead"}
)
_CONNECT_NAMES = frozenset({"NewConnectionError", "NameResolutionError"})
_TLS_NAMES = frozenset({"SSLError"})
_WRAPPER_ATTRS = ("original", "reason", "__cause__", "__context__")
_MAX_CHAIN = 16


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the causes it wraps, breadth first, each once."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(seen) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in _WRAPPER_ATTRS:
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                queue.append(inner)
        queue.extend(arg for arg in current.args if isinstance(arg, BaseException))


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _kind_of(exc: BaseException) -> str | None:
    names = _names(exc)
    if isinstance(exc, TimeoutError) or names & _TIMEOUT_NAMES:
        return TIMEOUT
    if isinstance(exc, ssl.SSLError) or names & _TLS_NAMES:
        # gevent's ssl reports a read timeout as an SSLError
        return TIMEOUT if "timed out" in str(exc) else TLS
    if isinstance(exc, ConnectionRefusedError | socket.gaierror) or names & _CONNECT_NAMES:
        return CONNECT
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return RESET
    if names & _RESET_NAMES:
        return RESET
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _CONNECT_ERRNOS:
            return CONNECT
        if exc.errno in _RESET_ERRNOS:
            return RESET
    return None


def classify(exception: BaseException | None, status: int) -> str:
    """The error kind of one request.

    A response with status >= 400 is ``"http"`` whatever the client said; otherwise
    the exception chain decides. An unrecognised failure with a response (e.g. a
    locustfile's ``response.failure()`` on a 200) is ``"http"``; without one (e.g. a
    malformed response) it is ``"reset"``: the exchange broke before a response.
    """
    if status >= 400:
        return HTTP
    if exception is None:
        return OK
    for exc in _chain(exception):
        kind = _kind_of(exc)
        if kind is not None:
            return kind
    return HTTP if status > 0 else RESET
