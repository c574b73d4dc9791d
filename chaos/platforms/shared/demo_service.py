"""The demo workload: a small async HTTP service whose answers show the path a request took.

Run one replica as::

    python -m chaos.platforms.shared.demo_service --service checkout --replica 0 \\
        --pod checkout-0 --node node-1 --listen 127.0.12.21:8080 \\
        --upstream-url http://127.0.12.21:15001 --upstream-host payments

Endpoints:

* ``GET /healthz`` -> 200 ``ok`` (the readiness probe).
* ``GET /`` and ``GET /api/...`` -> calls the upstream (when there is one) on the
  same path and answers JSON: ``service, replica, pod, node, address, peer, via,
  upstream``. ``via`` lists the proxies the request crossed on its way here (the
  ``x-chaos-via`` header, to which each proxy appends its name); ``peer`` names
  the TCP peer, through ``--peer-names`` when its address is known.
* ``POST /api/...`` with ``{"id": "<write id>"}`` -> forwarded upstream unchanged;
  the last service of the chain (no upstream) records it: one JSON line
  ``{"id", "t"}`` in ``--writes-file`` (``t`` on the monotonic clock, flushed per
  write) and 201 ``{"id", "recorded": true, ...}``. A POST without an id -> 400.
* ``GET /writes`` -> ``{"pod", "count", "ids"}``: every write this replica has
  recorded, duplicates included, also those of earlier runs of the same
  ``--writes-file`` (so a restarted replica still reports what it accepted).

Every answer of ``/`` and ``/api/...`` carries ``x-chaos-auth`` (see
:mod:`chaos.rundir.auth`): whether the request arrived with a peer identity its proxy
verified (the last element of ``x-forwarded-client-cert`` names a ``spiffe://`` URI),
with a token its proxy validated (``x-jwt-payload``), whether a credential reached the
app (any of ``--sensitive-headers``), and ``verified`` when identity and, with
``--expects-token``, the token were there; folded with the upstream's answer.

When the upstream fails (connection error, timeout, or a 5xx), the answer is
that 5xx (503 for a connection error or a timeout, 502 for a malformed answer)
with a JSON body whose ``hop`` names the deepest failing hop, e.g.
``checkout->payments``. An upstream 4xx (e.g. a proxy's 401) is passed on as is.

It stays light on purpose, as it sits under thousands of requests per second and six of
them start per topology: HTTP/1.1 from the standard library (:mod:`.minihttp`), one set of
keep-alive upstream connections, no access log, no per-request logging.
SIGTERM or SIGINT ends it cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chaos.errors import AddressInUseError, ChaosError
from chaos.platforms.shared import minihttp
from chaos.platforms.shared.minihttp import Request, Response, json_response
from chaos.rundir import auth

#: A header field name (RFC 9110 section 5.1: a ``token``), the rule the experiment file's
#: ``security.sensitive_headers`` follows too. Not imported from the experiment model: that
#: would load pydantic into every demo app (0.4 s of a topology's start-up, measured with
#: ``python -X importtime -c "import chaos.platforms.shared.demo_service"``).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

VIA_HEADER = "x-chaos-via"
REQUEST_ID_HEADER = "x-request-id"
_FORWARDED_HEADERS = ("Authorization", REQUEST_ID_HEADER)
_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class ServiceConfig:
    """Who this replica is and whom it calls."""

    service: str
    replica: int
    pod: str
    node: str
    host: str
    port: int
    upstream_url: str | None = None
    upstream_host: str | None = None
    writes_file: Path | None = None
    peer_names: Mapping[str, str] = field(default_factory=dict)
    upstream_timeout_s: float = 3.0
    #: Request headers that count as a credential reaching the app (lower case).
    sensitive_headers: tuple[str, ...] = ("authorization",)
    #: Whether the app's proxy requires a token (then ``verified`` needs one).
    expects_token: bool = False
    #: More replicas of the upstream, called in turn with ``upstream_url`` (no proxy to
    #: balance: the baseline setup).
    more_upstream_urls: tuple[str, ...] = ()


class WriteLog:
    """The writes a replica accepted, in memory and (optionally) appended to a JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self.ids: list[str] = []
        self._file: IO[str] | None = None
        if path is not None:
            if path.exists():
                self.ids.extend(_read_write_ids(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def record(self, write_id: str) -> None:
        self.ids.append(write_id)
        if self._file is not None:
            self._file.write(json.dumps({"id": write_id, "t": time.monotonic()}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _read_write_ids(path: Path) -> list[str]:
    ids: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.append(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill mid-write is not an accepted write
    return ids


def received(config: ServiceConfig, request: Request) -> int:
    """What this app received with ``request``, as :mod:`chaos.rundir.auth` bits."""
    headers = request.headers
    bits = auth.REPORTED
    xfcc = headers.get(auth.XFCC_HEADER, "")
    # The proxy appends its element last (APPEND_FORWARD): that is the one it verified.
    if xfcc and "uri=spiffe://" in xfcc.rsplit(",", 1)[-1].lower():
        bits |= auth.IDENTITY
    if auth.JWT_PAYLOAD_HEADER in headers:
        bits |= auth.TOKEN
    if any(name in headers for name in config.sensitive_headers):
        bits |= auth.CREDENTIAL
    if bits & auth.IDENTITY and (bits & auth.TOKEN or not config.expects_token):
        bits |= auth.VERIFIED
    return bits


def _with_auth(response: Response, bits: int) -> Response:
    response.headers[auth.AUTH_HEADER] = auth.header_value(bits)
    return response


class UpstreamFailure(Exception):
    """The upstream call failed; carries the answer this service gives instead."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", "upstream failure"))
        self.status = status
        self.body = body


class DemoService:
    """One replica of a demo service: its routes and its upstream client."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.writes = WriteLog(config.writes_file)
        self._client = minihttp.Client(timeout_s=config.upstream_timeout_s, keepalive_s=30.0)
        self._turn = 0

    async def handle(self, request: Request) -> Response:
        """Route one request: GET /healthz, /writes, / and /api/..., POST /api/..."""
        path = request.path
        api = path.startswith("/api/")
        if not (api or path in ("/", "/healthz", "/writes")):
            return minihttp.text_response("404: Not Found", 404)
        if request.method not in (("GET", "POST") if api else ("GET",)):
            return minihttp.text_response("405: Method Not Allowed", 405)
        if request.method == "POST":
            return await self._post(request)
        if path == "/healthz":
            return await self._healthz(request)
        if path == "/writes":
            return await self._writes(request)
        return await self._get(request)

    async def close(self) -> None:
        await self._client.close()
        self.writes.close()

    async def _healthz(self, _request: Request) -> Response:
        return minihttp.text_response("ok")

    async def _writes(self, _request: Request) -> Response:
        ids = list(self.writes.ids)
        return json_response({"pod": self.config.pod, "count": len(ids), "ids": ids})

    def _path_fields(self, request: Request) -> dict[str, Any]:
        remote = request.remote or ""
        via_header = request.headers.get(VIA_HEADER, "")
        return {
            "service": self.config.service,
            "replica": self.config.replica,
            "pod": self.config.pod,
            "node": self.config.node,
            "address": self.config.host,
            "peer": self.config.peer_names.get(remote, remote),
            "via": [name.strip() for name in via_header.split(",") if name.strip()],
        }

    async def _get(self, request: Request) -> Response:
        mine = received(self.config, request)
        fields = self._path_fields(request)
        if self.config.upstream_url is None:
            return _with_auth(json_response({**fields, "upstream": None}), mine)
        try:
            _status, upstream, theirs = await self._call_upstream(request, "GET", None)
        except UpstreamFailure as failure:
            answer = json_response({**fields, **failure.body}, status=failure.status)
            return _with_auth(answer, mine)
        return _with_auth(json_response({**fields, "upstream": upstream}), auth.fold(mine, theirs))

    async def _post(self, request: Request) -> Response:
        return _with_auth(*await self._write(request))

    async def _write(self, request: Request) -> tuple[Response, int]:
        mine = received(self.config, request)
        fields = self._path_fields(request)
        body = request.body
        write_id = _write_id(body)
        if write_id is None:
            error = {"error": 'a write needs a JSON body {"id": "<write id>"}'}
            return json_response({**fields, **error}, status=400), mine
        if self.config.upstream_url is None:
            self.writes.record(write_id)
            answer = {"id": write_id, "recorded": True, **fields, "upstream": None}
            return json_response(answer, status=201), mine
        try:
            status, upstream, theirs = await self._call_upstream(request, "POST", body)
        except UpstreamFailure as failure:
            failed = {"id": write_id, **fields, **failure.body}
            return json_response(failed, status=failure.status), mine
        recorded = bool(upstream.get("recorded")) if isinstance(upstream, dict) else False
        answer = {"id": write_id, "recorded": recorded, **fields, "upstream": upstream}
        return json_response(answer, status=status), auth.fold(mine, theirs)

    async def _call_upstream(
        self, request: Request, method: str, body: bytes | None
    ) -> tuple[int, Any, int]:
        """Call the upstream on the same path; the status, JSON and ``auth`` bits of a
        2xx/3xx answer."""
        assert self.config.upstream_url is not None
        hop = f"{self.config.service}->{self.config.upstream_host or self.config.upstream_url}"
        got = request.headers
        headers = {name: got[name.lower()] for name in _FORWARDED_HEADERS if name.lower() in got}
        if self.config.upstream_host is not None:
            headers["Host"] = self.config.upstream_host
        if body is not None:
            headers["Content-Type"] = got.get("content-type", "application/json")
        url = self._next_upstream() + request.target
        try:
            resp = await self._client.request(method, url, headers, body)
        except TimeoutError as exc:
            raise _failure(503, "upstream timeout", hop, repr(exc)) from exc
        except minihttp.UpstreamError as exc:
            raise _failure(503, "upstream unavailable", hop, str(exc) or repr(exc)) from exc
        status, raw = resp.status, resp.body
        theirs = auth.encode(resp.headers.get(auth.AUTH_HEADER))
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = None
        if status >= 400:
            deeper = answer.get("hop") if isinstance(answer, dict) else None
            detail = raw[:_DETAIL_LIMIT].decode("utf-8", "replace")
            failure = _failure(status, "upstream error", deeper or hop, detail)
            failure.body["upstream"] = answer
            raise failure
        if answer is None:
            detail = raw[:_DETAIL_LIMIT].decode("utf-8", "replace")
            raise _failure(502, "bad upstream response", hop, detail)
        return status, answer, theirs

    def _next_upstream(self) -> str:
        """The upstream to call: ``upstream_url``, or each of several in turn."""
        assert self.config.upstream_url is not None
        urls = (self.config.upstream_url, *self.config.more_upstream_urls)
        self._turn = (self._turn + 1) % len(urls)
        return urls[self._turn]


def _failure(status: int, error: str, hop: str, detail: str) -> UpstreamFailure:
    body: dict[str, Any] = {"error": error, "hop": hop, "status": status, "detail": detail}
    body["upstream"] = None
    return UpstreamFailure(status, body)


def _write_id(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    write_id = payload.get("id") if isinstance(payload, dict) else None
    return write_id if isinstance(write_id, str) and write_id else None


def parse_args(argv: Sequence[str] | None = None) -> ServiceConfig:
    """The command line of one replica (argparse exits with code 2 on bad input)."""
    parser = argparse.ArgumentParser(prog="demo_service", description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--replica", type=int, required=True)
    parser.add_argument("--pod", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument(
        "--upstream-url", action="append", default=None, help="repeat: called in turn"
    )
    parser.add_argument("--upstream-host", default=None, help="the Host header on upstream calls")
    parser.add_argument("--writes-file", type=Path, default=None)
    parser.add_argument("--peer-names", default="{}", help='JSON object {"address": "name"}')
    parser.add_argument("--upstream-timeout", type=float, default=3.0, help="seconds")
    parser.add_argument(
        "--sensitive-headers",
        default="authorization",
        help="comma-separated request headers that count as a credential reaching the app",
    )
    parser.add_argument(
        "--expects-token", action="store_true", help="the app's proxy requires a token"
    )
    args = parser.parse_args(argv)
    sensitive = tuple(
        h.strip().lower() for h in str(args.sensitive_headers).split(",") if h.strip()
    )
    if not sensitive or not all(HEADER_NAME.match(h) for h in sensitive):
        parser.error("--sensitive-headers must be comma-separated header names")
    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    try:
        peer_names = json.loads(args.peer_names)
    except ValueError:
        parser.error("--peer-names must be a JSON object")
    if not isinstance(peer_names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in peer_names.items()
    ):
        parser.error("--peer-names must be a JSON object of strings")
    if args.upstream_timeout <= 0:
        parser.error("--upstream-timeout must be positive")
    return ServiceConfig(
        service=args.service,
        replica=args.replica,
        pod=args.pod,
        node=args.node,
        host=host,
        port=int(port),
        upstream_url=args.upstream_url[0].rstrip("/") if args.upstream_url else None,
        more_upstream_urls=tuple(u.rstrip("/") for u in (args.upstream_url or [])[1:]),
        upstream_host=args.upstream_host,
        writes_file=args.writes_file,
        peer_names=peer_names,
        upstream_timeout_s=args.upstream_timeout,
        sensitive_headers=sensitive,
        expects_token=bool(args.expects_token),
    )


async def serve(config: ServiceConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set, or until SIGTERM/SIGINT when no event is given."""
    service = DemoService(config)
    server = minihttp.Server(service.handle)
    try:
        try:
            await server.start(config.host, config.port, backlog=1024)
        except OSError as exc:
            where = f"{config.host}:{config.port}"
            raise AddressInUseError(f"{config.pod}: cannot listen on {where}: {exc}") from exc
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        print(
            f"{config.pod}: {config.service} listening on {config.host}:{config.port}", flush=True
        )
        await stop.wait()
    finally:
        await server.close()
        await service.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m chaos.platforms.shared.demo_service``."""
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except ChaosError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
