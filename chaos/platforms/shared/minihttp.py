"""A small HTTP/1.1 server and keep-alive client on asyncio streams, for the demo app.

The demo app starts six times per topology, and its start-up is the critical path of a
topology's: aiohttp's import was about 0.2 s of CPU per app (``python -X importtime -m
chaos.platforms.shared.demo_service --help``), this module's about 0.03 s. It speaks what
the demo chain needs and nothing more: requests with a ``Content-Length`` or chunked body,
keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection: keep-alive``),
``Expect: 100-continue``; answers with a ``Content-Length``. Header names are kept in lower
case (RFC 9110 section 5.1: they are case-insensitive); a repeated field is joined with
``", "`` (section 5.3).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

_MAX_HEAD = 64 * 1024
_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ProtocolError(Exception):
    """A peer sent something that is not HTTP/1.1 this module can read."""


class UpstreamError(Exception):
    """An upstream call failed below HTTP: refused, reset, closed early, or malformed."""


@dataclass
class Request:
    """One request as the server read it (``headers``: lower-case names)."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    remote: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    """An answer: status, body, and header fields besides the framing ones."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json; charset=utf-8")


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the header fields of a message head (ending in CRLF CRLF)."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return lines[0], headers


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("message head too large") from exc


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes | None:
    """The body framed by ``headers``; None when neither length nor chunking is given."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise ProtocolError("bad chunk size") from exc
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields: not used
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is None:
        return None
    if not length.isdigit():
        raise ProtocolError(f"bad Content-Length {length!r}")
    return await reader.readexactly(int(length))


def _keeps_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _encode_response(response: Response, close: bool) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class Server:
    """Serves ``handler`` on ``host:port`` until :meth:`close`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        """Listen (``OSError`` when the address is taken)."""
        self._server = await asyncio.start_server(
            self._connection, host, port, backlog=backlog, reuse_address=True, limit=_MAX_HEAD
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            while await self._one(reader, writer, remote):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: str
    ) -> bool:
        """Serve one request; whether the connection stays open."""
        try:
            head = await _read_head(reader)
            start, headers = _parse_head(head)
            method, target, version = start.split(" ")
            if not version.startswith("HTTP/1."):
                raise ProtocolError(f"unsupported version {version!r}")
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await _read_body(reader, headers) or b""
        except asyncio.IncompleteReadError:
            return False  # the client closed between requests
        except (ProtocolError, ValueError) as exc:
            writer.write(_encode_response(text_response(f"bad request: {exc}", 400), True))
            await writer.drain()
            return False
        request = Request(method, target, version, headers, body, remote)
        try:
            response = await self._handler(request)
        except Exception as exc:  # an answer, not a dropped connection
            response = text_response(f"internal error: {exc!r}", 500)
        keep = _keeps_alive(version, headers)
        writer.write(_encode_response(response, not keep))
        await writer.drain()
        return keep


@dataclass
class Answer:
    """An upstream's answer (``headers``: lower-case names)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Idle:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    since: float


class Client:
    """Keep-alive HTTP/1.1 connections to upstreams, each call bounded by ``timeout_s``."""

    def __init__(self, timeout_s: float, keepalive_s: float = 30.0) -> None:
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, int], list[_Idle]] = {}

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        """Send one request to ``http://host:port/path``; ``TimeoutError`` after the
        timeout, :class:`UpstreamError` when it fails below HTTP."""
        host, port, target = _split_url(url)
        async with asyncio.timeout(self._timeout_s):
            conn, reused = self._take(host, port), True
            if conn is None:
                conn, reused = await self._open(host, port), False
            try:
                return await self._exchange(conn, host, port, method, target, headers, body)
            except UpstreamError:
                if not reused or method != "GET":
                    raise
            # a kept-alive connection the upstream had closed: once more on a fresh one
            conn = await self._open(host, port)
            return await self._exchange(conn, host, port, method, target, headers, body)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.writer.close()
        self._idle.clear()

    def _take(self, host: str, port: int) -> _Idle | None:
        conns = self._idle.get((host, port), [])
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            fresh = now - conn.since < self._keepalive_s
            if fresh and not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        return None

    async def _open(self, host: str, port: int) -> _Idle:
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEAD)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Idle(reader, writer, time.monotonic())

    async def _exchange(
        self,
        conn: _Idle,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> Answer:
        fields = {"Host": f"{host}:{port}", "User-Agent": "sidecar-chaos-demo", **headers}
        if body is not None:
            fields["Content-Length"] = str(len(body))
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        done = False
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            start, answer_headers = _parse_head(await _read_head(conn.reader))
            version, _, rest = start.partition(" ")
            status = rest.partition(" ")[0]
            if not version.startswith("HTTP/1.") or not status.isdigit():
                raise ProtocolError(f"bad status line {start[:80]!r}")
            framed = await _read_body(conn.reader, answer_headers)
            keep = framed is not None and _keeps_alive(version, answer_headers)
            payload = framed if framed is not None else await conn.reader.read()
            done = True
        except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
            raise UpstreamError(f"{host}:{port}: {exc!r}") from exc
        finally:
            if not done:
                conn.writer.close()  # also on a timeout: never reused half-read
        if keep:
            conn.since = time.monotonic()
            self._idle.setdefault((host, port), []).append(conn)
        else:
            conn.writer.close()
        return Answer(int(status), answer_headers, payload)


def _split_url(url: str) -> tuple[str, int, str]:
    """``http://host:port/path?q`` -> host, port, target."""
    if not url.startswith("http://"):
        raise UpstreamError(f"only http:// upstreams are supported, got {url!r}")
    rest = url[len("http://") :]
    authority, slash, path = rest.partition("/")
    host, sep, port = authority.rpartition(":")
    if not sep:
        host, port = authority, "80"
    if not port.isdigit():
        raise UpstreamError(f"bad port in {url!r}")
    return host.strip("[]"), int(port), "/" + path if slash else "/"


__all__ = [
    "Answer",
    "Client",
    "Handler",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "UpstreamError",
    "json_response",
    "text_response",
]
