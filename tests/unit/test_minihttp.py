"""The demo app's HTTP/1.1 stack on loopback: framing, keep-alive, and the client's failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from chaos.platforms.shared import minihttp
from chaos.platforms.shared.minihttp import Request, Response

HOST = "127.0.0.1"


async def _echo(request: Request) -> Response:
    return minihttp.json_response(
        {"method": request.method, "target": request.target, "body": request.body.decode()}
    )


async def _with_server(body: Callable[[int], Awaitable[None]]) -> None:
    server = minihttp.Server(_echo)
    await server.start(HOST, 0)
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    try:
        await body(port)
    finally:
        await server.close()


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)  # until the server closes
    writer.close()
    return answer


def test_a_chunked_body_is_read_whole_and_http_1_0_is_closed_after_the_answer() -> None:
    async def body(port: int) -> None:
        answer = await _raw(
            port,
            b"POST /api/x?a=1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
        )
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in head
        assert payload == b'{"method": "POST", "target": "/api/x?a=1", "body": "abcde"}'

    asyncio.run(_with_server(body))


def test_http_1_1_keeps_the_connection_for_the_next_request() -> None:
    async def body(port: int) -> None:
        one = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
        two = b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = await _raw(port, one + two)
        assert answer.count(b"HTTP/1.1 200 OK") == 2
        assert b'"target": "/one"' in answer and b'"target": "/two"' in answer

    asyncio.run(_with_server(body))


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET / HTTP/2.0\r\n\r\n", b"GET /\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"],
)
def test_a_malformed_request_gets_400_and_the_connection_closed(request_bytes: bytes) -> None:
    async def body(port: int) -> None:
        answer = await _raw(port, request_bytes)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request")

    asyncio.run(_with_server(body))


def test_the_client_keeps_a_connection_and_never_sends_on_one_that_was_closed() -> None:
    async def body(port: int) -> None:
        client = minihttp.Client(timeout_s=30)
        url = f"http://{HOST}:{port}/api/a"
        first = await client.request("GET", url, {"Host": "payments"}, None)
        assert first.status == 200 and b'"/api/a"' in first.body
        assert len(client._idle[(HOST, port)]) == 1
        kept = client._idle[(HOST, port)][0]
        kept.writer.transport.abort()  # closed while idle: a fresh connection carries the next
        second = await client.request("GET", url, {}, None)
        assert second.status == 200
        await client.close()

    asyncio.run(_with_server(body))


def test_the_client_reads_an_answer_framed_by_close_and_names_a_refused_upstream() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nx-chaos-auth: none\r\n\r\nno more")
        await writer.drain()
        writer.close()

    async def body() -> None:
        server = await asyncio.start_server(answer_once, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        client = minihttp.Client(timeout_s=30)
        answer = await client.request("POST", f"http://{HOST}:{port}/p", {}, b"{}")
        assert (answer.status, answer.body) == (503, b"no more")
        assert answer.headers["x-chaos-auth"] == "none"
        assert (HOST, port) not in client._idle or not client._idle[(HOST, port)]
        server.close()
        await server.wait_closed()
        with pytest.raises(minihttp.UpstreamError, match="cannot connect"):
            await client.request("GET", f"http://{HOST}:{port}/p", {}, None)

    asyncio.run(body())
