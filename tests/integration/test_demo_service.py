"""The demo workload as real processes: a frontend -> checkout -> payments chain on loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chaos.proc import spawn, stop_processes

CLIENT_ADDRESS = "127.0.251.99"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_service(
    tmp: Path,
    service: str,
    host: str,
    *,
    upstream: str | None = None,
    upstream_host: str | None = None,
    extra: tuple[str, ...] = (),
) -> Service:
    port = free_port(host)
    argv = [sys.executable, "-m", "chaos.platforms.shared.demo_service"]
    argv += ["--service", service, "--replica", "0", "--pod", f"{service}-0"]
    argv += ["--node", "node-1", "--listen", f"{host}:{port}"]
    if upstream is not None:
        argv += ["--upstream-url", upstream, "--upstream-host", upstream_host or "upstream"]
    argv += list(extra)
    log = tmp / f"{service}-{port}.log"
    return Service(service, f"http://{host}:{port}", spawn(argv, log_path=log), log)


def wait_healthy(*services: Service, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    for svc in services:
        while True:
            try:
                if httpx.get(f"{svc.url}/healthz", timeout=0.5).text == "ok":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or svc.proc.poll() is not None:
                raise AssertionError(f"{svc.name} did not come up:\n{svc.log.read_text()}")
            time.sleep(0.05)


@dataclass
class Chain:
    frontend: Service
    checkout: Service
    payments: Service
    writes_file: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("chain")
    writes = tmp / "payments-0" / "writes.jsonl"
    payments = start_service(tmp, "payments", "127.0.251.31", extra=("--writes-file", str(writes)))
    checkout = start_service(
        tmp, "checkout", "127.0.251.21", upstream=payments.url, upstream_host="payments"
    )
    peers = json.dumps({CLIENT_ADDRESS: "test-client"})
    frontend = start_service(
        tmp,
        "frontend",
        "127.0.251.11",
        upstream=checkout.url,
        upstream_host="checkout",
        extra=("--peer-names", peers),
    )
    services = (payments, checkout, frontend)
    try:
        wait_healthy(*services)
        yield Chain(frontend, checkout, payments, writes)
    finally:
        stop_processes([s.proc for s in services], grace_s=2)


def client() -> httpx.Client:
    """A client whose source address the frontend can name through --peer-names."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT_ADDRESS), timeout=5)


def test_the_answer_shows_the_whole_path(chain: Chain) -> None:
    headers = {"x-chaos-via": "ingress, frontend-0.proxy", "x-request-id": "r-1"}
    with client() as c:
        resp = c.get(f"{chain.frontend.url}/api/catalog?page=2", headers=headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["service"] == "frontend"
    assert body["pod"] == "frontend-0"
    assert body["node"] == "node-1"
    assert body["replica"] == 0
    assert body["address"] == "127.0.251.11"
    assert body["peer"] == "test-client"
    assert body["via"] == ["ingress", "frontend-0.proxy"]
    checkout = body["upstream"]
    assert checkout["service"] == "checkout"
    assert checkout["via"] == []  # the via header belongs to one hop only
    payments = checkout["upstream"]
    assert payments["service"] == "payments"
    assert payments["address"] == "127.0.251.31"
    assert payments["peer"].startswith("127.")  # unknown addresses are shown as they are
    assert payments["upstream"] is None


def test_root_path_answers_too(chain: Chain) -> None:
    body = httpx.get(f"{chain.frontend.url}/", timeout=5).json()
    assert body["upstream"]["upstream"]["service"] == "payments"


def test_writes_are_recorded_at_payments_and_duplicates_counted(chain: Chain) -> None:
    before = time.monotonic()
    with client() as c:
        first = c.post(f"{chain.frontend.url}/api/pay", json={"id": "w-1"})
        again = c.post(f"{chain.frontend.url}/api/pay", json={"id": "w-1"})
        other = c.post(f"{chain.checkout.url}/api/pay", json={"id": "w-2"})
    after = time.monotonic()
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
    body = first.json()
    assert body["id"] == "w-1" and body["recorded"] is True
    assert body["service"] == "frontend"
    assert body["upstream"]["upstream"]["service"] == "payments"
    assert body["upstream"]["upstream"]["recorded"] is True

    writes = httpx.get(f"{chain.payments.url}/writes", timeout=5).json()
    ids = [i for i in writes["ids"] if i in ("w-1", "w-2")]
    assert ids == ["w-1", "w-1", "w-2"]
    lines = [json.loads(x) for x in chain.writes_file.read_text().splitlines()]
    mine = [line for line in lines if line["id"] in ("w-1", "w-2")]
    assert [line["id"] for line in mine] == ["w-1", "w-1", "w-2"]
    assert all(before <= line["t"] <= after for line in mine)  # one monotonic clock
    # Only the end of the chain records.
    assert httpx.get(f"{chain.checkout.url}/writes", timeout=5).json()["count"] == 0


@pytest.mark.parametrize("payload", [b'{"amount": 3}', b"not json", b'{"id": ""}', b"[1]"])
def test_a_write_without_an_id_is_refused(chain: Chain, payload: bytes) -> None:
    resp = httpx.post(f"{chain.frontend.url}/api/pay", content=payload, timeout=5)
    assert resp.status_code == 400
    assert "id" in resp.json()["error"]


def test_healthz_and_unknown_paths(chain: Chain) -> None:
    assert httpx.get(f"{chain.payments.url}/healthz", timeout=5).text == "ok"
    assert httpx.get(f"{chain.payments.url}/nope", timeout=5).status_code == 404


def test_a_down_upstream_gives_503_naming_the_deepest_failing_hop(tmp_path: Path) -> None:
    nowhere = f"http://127.0.252.31:{free_port('127.0.252.31')}"
    checkout = start_service(tmp_path, "checkout", "127.0.252.21", upstream=nowhere)
    frontend = start_service(tmp_path, "frontend", "127.0.252.11", upstream=checkout.url)
    try:
        wait_healthy(checkout, frontend)
        direct = httpx.get(f"{checkout.url}/api/x", timeout=5)
        assert direct.status_code == 503
        assert direct.json()["error"] == "upstream unavailable"
        assert direct.json()["hop"] == "checkout->upstream"
        nested = httpx.get(f"{frontend.url}/api/x", timeout=5)
        assert nested.status_code == 503
        assert nested.json()["hop"] == "checkout->upstream"
        assert nested.json()["service"] == "frontend"
        write = httpx.post(f"{frontend.url}/api/pay", json={"id": "w-9"}, timeout=5)
        assert write.status_code == 503
        assert write.json()["id"] == "w-9"
    finally:
        stop_processes([checkout.proc, frontend.proc])


def test_a_silent_upstream_times_out_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.252.41", 0))
        silent.listen(16)
        upstream = f"http://127.0.252.41:{silent.getsockname()[1]}"
        svc = start_service(
            tmp_path,
            "checkout",
            "127.0.252.22",
            upstream=upstream,
            extra=("--upstream-timeout", "0.5"),
        )
        try:
            wait_healthy(svc)
            started = time.monotonic()
            resp = httpx.get(f"{svc.url}/api/x", timeout=5)
            took = time.monotonic() - started
        finally:
            stop_processes([svc.proc])
    assert resp.status_code == 503
    assert resp.json()["error"] == "upstream timeout"
    # its own 0.5 s timeout answered (the silent upstream never does, and the client would
    # have given up at 5 s), and not before it
    assert took > 0.4


class _Recorder(BaseHTTPRequestHandler):
    """A real upstream that answers with the headers it received."""

    def do_GET(self) -> None:
        if self.path == "/api/boom":
            self._answer(500, {"error": "exploded", "hop": "payments->db"})
            return
        if self.path == "/api/denied":
            self._answer(401, None)
            return
        self._answer(200, {"headers": {k.lower(): v for k, v in self.headers.items()}})

    def _answer(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode() if payload is not None else b"Jwt is missing"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_headers_are_forwarded_and_upstream_statuses_propagated(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.252.51", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream = f"http://127.0.252.51:{server.server_address[1]}"
    svc = start_service(
        tmp_path, "checkout", "127.0.252.23", upstream=upstream, upstream_host="payments"
    )
    try:
        wait_healthy(svc)
        headers = {"Authorization": "Bearer abc", "x-request-id": "req-7", "x-other": "no"}
        body = httpx.get(f"{svc.url}/api/x", headers=headers, timeout=5).json()
        seen = body["upstream"]["headers"]
        assert seen["host"] == "payments"
        assert seen["authorization"] == "Bearer abc"
        assert seen["x-request-id"] == "req-7"
        assert "x-other" not in seen

        boom = httpx.get(f"{svc.url}/api/boom", timeout=5)
        assert boom.status_code == 500
        assert boom.json()["hop"] == "payments->db"  # the deeper hop is kept
        denied = httpx.get(f"{svc.url}/api/denied", timeout=5)
        assert denied.status_code == 401
        assert denied.json()["detail"] == "Jwt is missing"
    finally:
        stop_processes([svc.proc])
        server.shutdown()
        server.server_close()


def test_sigterm_exits_0_and_a_restarted_replica_still_lists_its_writes(tmp_path: Path) -> None:
    writes = tmp_path / "writes.jsonl"
    extra = ("--writes-file", str(writes))
    first = start_service(tmp_path, "payments", "127.0.252.31", extra=extra)
    wait_healthy(first)
    for write_id in ("a", "b", "a"):
        assert (
            httpx.post(f"{first.url}/api/pay", json={"id": write_id}, timeout=5).status_code == 201
        )
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=5) == 0
    second = start_service(tmp_path, "payments", "127.0.252.31", extra=extra)
    try:
        wait_healthy(second)
        assert httpx.get(f"{second.url}/writes", timeout=5).json()["ids"] == ["a", "b", "a"]
    finally:
        stop_processes([second.proc])


def test_bad_command_lines_exit_2(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "chaos.platforms.shared.demo_service"]
    ident = ["--service", "x", "--replica", "0", "--pod", "x-0", "--node", "n"]
    bad_listen = subprocess.run([*base, *ident, "--listen", "nowhere"], capture_output=True)
    assert bad_listen.returncode == 2
    assert b"HOST:PORT" in bad_listen.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.252.61", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [*base, *ident, "--listen", f"127.0.252.61:{port}"], capture_output=True
        )
    assert busy.returncode == 2
    assert b"cannot listen on 127.0.252.61" in busy.stderr
