"""Real Locust against real servers on loopback: rate, weights, error kinds, JWTs, workers.

Every run is short (2-4 s); each test checks that no Locust process outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from aiohttp import web

from chaos.analysis.model import validate_samples
from chaos.errors import InputError
from chaos.rundir.samples import SAMPLE_DTYPES
from chaos.traffic import Endpoint, TrafficConfig, TrafficRun
from chaos.traffic.config import CONFIG_ENV

pytestmark = pytest.mark.timeout(60)
JWT_KEY = "test-signing-key-of-32-bytes-or-more!"


@dataclass(frozen=True)
class SecureRequest:
    """The server's record of one ``/secure`` request: when it arrived, which token it
    carried (the fetch that issued it, the key generation that signed it), the answer."""

    t: float
    token_serial: int
    token_gen: int
    status: int


@dataclass
class DemoState:
    """What the test server saw."""

    writes: list[str] = field(default_factory=list)
    oks: int = 0
    token_fetches: list[float] = field(default_factory=list)
    unauthenticated: int = 0
    #: The signing key rotates once this many ``/secure`` requests were accepted (never: 0).
    rotate_after: int = 0
    generation: int = 1
    rotated_at: float = float("inf")
    secure: list[SecureRequest] = field(default_factory=list)

    def accepted(self) -> int:
        return sum(1 for r in self.secure if r.status == 200)


def _app(state: DemoState) -> web.Application:
    async def ok(_: web.Request) -> web.Response:
        state.oks += 1
        return web.Response(text="ok")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=503, text="unavailable")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.Response(text="late")

    async def write(request: web.Request) -> web.Response:
        body = await request.json()
        state.writes.append(body["id"])
        return web.json_response({"stored": body["id"]}, status=201)

    async def token(_: web.Request) -> web.Response:
        state.token_fetches.append(time.monotonic())
        claims = {"sub": "locust", "gen": state.generation, "serial": len(state.token_fetches)}
        return web.json_response({"access_token": jwt.encode(claims, JWT_KEY, "HS256")})

    async def secure(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            state.unauthenticated += 1
            return web.Response(status=401)
        claims = jwt.decode(header.removeprefix("Bearer "), JWT_KEY, algorithms=["HS256"])
        # a key rotation: tokens signed by the old key are refused
        status = 200 if claims["gen"] == state.generation else 401
        state.secure.append(SecureRequest(arrived, claims["serial"], claims["gen"], status))
        if state.generation == 1 and state.accepted() == state.rotate_after:
            state.generation, state.rotated_at = 2, time.monotonic()
        return web.Response(status=status, text="secret" if status == 200 else "")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    app.router.add_post("/write", write)
    app.router.add_post("/token", token)
    app.router.add_get("/secure", secure)
    return app


@dataclass
class Servers:
    base: str
    state: DemoState
    reset_url: str
    closed_url: str
    tls_url: str


@pytest.fixture
def servers() -> Iterator[Servers]:
    """The aiohttp demo app (two ports), a server that resets every connection, a closed port."""
    state = DemoState()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def serve() -> None:
        runner = web.AppRunner(_app(state), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        # a second port for https:// to plain HTTP (geventhttpclient pools by host:port)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        holder["tls_port"] = runner.addresses[1][1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    ready.wait(10)

    resetter = socket.socket()
    resetter.bind(("127.0.0.1", 0))
    resetter.listen(64)
    resetter.settimeout(0.2)
    stop = threading.Event()

    def reset_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = resetter.accept()
            except TimeoutError:
                continue
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.recv(4096)
            # linger 0: close() sends RST instead of FIN
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    reset_thread = threading.Thread(target=reset_loop, daemon=True)
    reset_thread.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    try:
        yield Servers(
            base=f"http://127.0.0.1:{holder['port']}",
            state=state,
            reset_url=f"http://127.0.0.1:{resetter.getsockname()[1]}/r",
            closed_url=f"http://127.0.0.1:{closed_port}/c",
            tls_url=f"https://127.0.0.1:{holder['tls_port']}/ok",
        )
    finally:
        stop.set()
        reset_thread.join(5)
        resetter.close()
        runner = holder["runner"]
        assert isinstance(runner, web.AppRunner)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _processes_of(config_path: Path) -> list[int]:
    """Pids of live processes started for this run (they carry its config path)."""
    needle = f"{CONFIG_ENV}={config_path}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _run(config: TrafficConfig) -> TrafficRun:
    """Run to completion and check that nothing is left behind."""
    with TrafficRun(config) as run:
        run.wait_started(15)
        assert run.wait(config.duration_s + 15)
    assert not run.running
    assert all(code == 0 for code in run.returncodes.values()), run.returncodes
    assert _processes_of(run.config_path) == []
    return run


def test_rate_weights_and_write_ids(servers: Servers, tmp_path: Path) -> None:
    config = TrafficConfig(
        host=servers.base,
        out_dir=tmp_path,
        duration_s=3.0,
        users=20,
        rate=200.0,
        # The cap is not what this test is about: never reach it, however slowly a loaded
        # machine answers (all 600 requests of the schedule may be under way at once).
        max_in_flight=600,
        endpoints=(Endpoint("read", "GET", "/ok", 3.0), Endpoint("pay", "POST", "/write", 1.0)),
    )
    before = time.monotonic()
    run = _run(config)
    after = time.monotonic()
    frame = run.samples()

    assert {c: str(d) for c, d in frame.dtypes.items()} == SAMPLE_DTYPES
    assert 600 * 0.85 <= len(frame) <= 600 * 1.15, len(frame)
    assert before < frame.t.min() and frame.t.max() < after
    assert frame.t.max() - frame.t.min() == pytest.approx(3.0, abs=0.3)
    assert (frame.error_kind == "").all(), frame.error_kind.value_counts()
    assert (frame.latency_ms > 0).all()
    share = (frame.endpoint == "pay").mean()
    assert 0.25 - 0.06 <= share <= 0.25 + 0.06, share

    writes = frame[frame.endpoint == "pay"]
    assert (writes.method == "POST").all() and (writes.status == 201).all()
    assert writes.write_id.is_unique and (writes.write_id != "").all()
    assert set(writes.write_id) == set(servers.state.writes)
    assert (frame[frame.endpoint == "read"].write_id == "").all()


def test_error_kinds(servers: Servers, tmp_path: Path) -> None:
    config = TrafficConfig(
        host=servers.base,
        out_dir=tmp_path,
        duration_s=2.0,
        users=10,
        rate=50.0,
        max_in_flight=100,
        request_timeout_s=0.3,
        endpoints=(
            Endpoint("ok", "GET", "/ok", 1.0),
            Endpoint("fail", "GET", "/fail", 1.0),
            Endpoint("slow", "GET", "/slow", 1.0),
            Endpoint("reset", "GET", servers.reset_url, 1.0),
            Endpoint("closed", "GET", servers.closed_url, 1.0),
            # TLS spoken to a plain HTTP server: the handshake fails
            Endpoint("tls", "GET", servers.tls_url, 1.0),
        ),
    )
    frame = _run(config).samples()
    validate_samples(frame)  # the analysis package accepts what the recorder wrote
    kinds = {name: set(group.error_kind) for name, group in frame.groupby("endpoint")}
    assert kinds == {
        "ok": {""},
        "fail": {"http"},
        "slow": {"timeout"},
        "reset": {"reset"},
        "closed": {"connect"},
        "tls": {"tls"},
    }
    assert set(frame[frame.endpoint == "fail"].status) == {503}
    assert set(frame[frame.endpoint.isin(["slow", "reset", "closed", "tls"])].status) == {0}
    # the client gave up at its 0.3 s timeout, before the server's answer at 2 s
    slow = frame[frame.endpoint == "slow"].latency_ms
    assert slow.between(300, 2000, inclusive="left").all(), slow.describe()


def test_workers_share_the_load(servers: Servers, tmp_path: Path) -> None:
    config = TrafficConfig(
        host=servers.base,
        out_dir=tmp_path,
        duration_s=3.0,
        users=4,
        rate=100.0,
        workers=2,
        max_in_flight=100,
        endpoints=(Endpoint("pay", "POST", "/write", 1.0),),
    )
    run = _run(config)
    files = sorted(run.samples_path.glob("*.chs"))
    assert len(files) == 2  # one per worker, none from the master
    frame = run.samples()
    worker = frame.write_id.str.rsplit("-", n=1).str[0]
    prefixes = worker.value_counts()
    assert len(prefixes) == 2 and prefixes.min() > 0.3 * len(frame)
    # Each worker keeps half the rate on its own schedule, judged from its own record
    # (when the workers start depends on the machine's load, not the rate they keep).
    for _, sent in frame.groupby(worker).t:
        span = float(sent.max() - sent.min())
        assert 50 * 0.85 <= (len(sent) - 1) / span <= 50 * 1.15, (len(sent), span)
    assert frame.write_id.is_unique
    assert set(frame.write_id) == set(servers.state.writes)


def test_jwt_is_sent_and_refetched_after_a_rotation(servers: Servers, tmp_path: Path) -> None:
    """Judged from the server's record of which token each request carried, never from
    when the client thinks it sent one: the key rotates once the server has accepted
    100 requests, whatever either clock says."""
    config = TrafficConfig(
        host=servers.base,
        out_dir=tmp_path,
        duration_s=3.0,
        users=5,
        rate=100.0,
        workers=0,  # one Locust process: one shared token, so one re-fetch
        max_in_flight=100,
        token_url=f"{servers.base}/token",
        endpoints=(Endpoint("secure", "GET", "/secure", 1.0),),
    )
    state = servers.state
    state.rotate_after = 100
    with TrafficRun(config) as run:
        run.wait_started(15)
        assert run.wait(20)
    frame = run.samples()
    log = state.secure
    assert state.unauthenticated == 0  # every request carried the token
    assert state.generation == 2, "the run ended before the server accepted 100 requests"
    rotated = state.rotated_at
    before = [r for r in log if r.t < rotated]
    after = [r for r in log if r.t >= rotated]
    # before the rotation: the first token, accepted every time
    assert len(before) >= 100 and all(r.status == 200 and r.token_serial == 1 for r in before)
    # after it, the first token is refused; the client fetched one new token (not one per
    # user), only after it saw a refusal, and the new token was never refused
    denied = [r for r in log if r.status == 401]
    assert denied and all(r.token_serial == 1 and r.t >= rotated for r in denied)
    assert len(state.token_fetches) == 2
    assert state.token_fetches[1] > denied[0].t
    renewed = [r for r in after if r.token_serial == 2]
    assert renewed and all(r.token_gen == 2 and r.status == 200 for r in renewed)
    assert {r.token_serial for r in after} == {1, 2}
    assert len(before) + len(denied) + len(renewed) == len(log)
    # the client recorded what the server answered, request for request
    assert len(frame) == len(log)
    assert (frame.status == 401).sum() == len(denied)
    assert (frame.status == 200).sum() == len(log) - len(denied)
    # only requests already under way with the old token were refused: each one left the
    # client (``sent``, taken just before the request goes out, with no switch between
    # reading the token and it) before the first request with the new token reached the
    # server. Both are CLOCK_MONOTONIC readings on one machine; no bound on how long.
    sent = frame.t + frame.send_lag_ms / 1000.0
    first_renewed = renewed[0].t
    assert (sent[frame.status == 401] < first_renewed).all()
    assert (frame[sent > first_renewed].status == 200).all()


def test_users_own_locustfile_is_recorded(servers: Servers, tmp_path: Path) -> None:
    locustfile = tmp_path / "mine.py"
    locustfile.write_text(
        textwrap.dedent(
            """
            from locust import HttpUser, constant_throughput, task

            class Mine(HttpUser):
                wait_time = constant_throughput(20)

                @task
                def hit(self):
                    self.client.get("/ok", name="mine-ok")
                    self.client.get("/fail", name="mine-fail")
            """
        )
    )
    config = TrafficConfig(
        host=servers.base, out_dir=tmp_path / "run", duration_s=2.0, users=2, locustfile=locustfile
    )
    frame = _run(config).samples()
    kinds = {name: set(group.error_kind) for name, group in frame.groupby("endpoint")}
    assert kinds == {"mine-ok": {""}, "mine-fail": {"http"}}
    assert len(frame) > 60


def test_stop_ends_a_long_run_early(servers: Servers, tmp_path: Path) -> None:
    config = TrafficConfig(
        host=servers.base,
        out_dir=tmp_path,
        duration_s=600.0,
        users=5,
        rate=100.0,
        workers=1,
        endpoints=(Endpoint("read", "GET", "/ok", 1.0),),
    )
    run = TrafficRun(config)
    run.start()
    try:
        run.wait_started(15)
        deadline = time.monotonic() + 30
        while servers.state.oks <= 100 and time.monotonic() < deadline:
            time.sleep(0.1)  # the server's count, not a guess at how long 100 requests take
        live = run.live_stats()
        assert live.requests > 0 and live.errors == 0 and live.p95_ms is not None, live
    finally:
        started = time.monotonic()
        run.stop()
    # a 600 s run ended at once (a tenth of it is more than any machine needs)
    assert time.monotonic() - started < 60
    assert not run.running
    assert _processes_of(run.config_path) == []
    frame = run.samples()
    assert len(frame) > 100
    # the live count is read from the samples: the ones done in its one-second window
    done = frame.t + frame.latency_ms / 1000.0
    in_window = int(((done >= live.window_start) & (done < live.window_end)).sum())
    assert 0 < live.requests <= in_window, (live, in_window)


def test_locust_dies_with_a_killed_runner(servers: Servers, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from chaos.traffic import TrafficConfig, TrafficRun
        config = TrafficConfig(host={servers.base!r}, out_dir=Path({str(tmp_path)!r}),
                               duration_s=60, users=2, rate=20, workers=1,
                               endpoints=[("read", "GET", "/ok", 1)])
        run = TrafficRun(config)
        run.start()
        run.wait_started(15)
        print(" ".join(map(str, run.pids)), flush=True)
        time.sleep(60)
        """
    )
    config_path = tmp_path / "traffic-config.json"
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as runner:
        try:
            assert runner.stdout is not None
            pids = [int(p) for p in runner.stdout.readline().split()]
            assert len(pids) == 2
            assert sorted(_processes_of(config_path)) == sorted(pids)
            os.kill(runner.pid, signal.SIGKILL)
            runner.wait(5)
            deadline = time.monotonic() + 5
            while _processes_of(config_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _processes_of(config_path) == []
        finally:
            if runner.poll() is None:
                runner.kill()


def test_non_loopback_host_starts_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="loopback"):
        TrafficConfig(
            host="http://192.0.2.1:80",
            out_dir=tmp_path,
            duration_s=2.0,
            endpoints=(Endpoint("x", "GET", "/", 1.0),),
        )
    assert not (tmp_path / "traffic-config.json").exists()


def test_a_failing_locust_is_reported(tmp_path: Path) -> None:
    locustfile = tmp_path / "broken.py"
    locustfile.write_text("raise RuntimeError('broken locustfile')\n")
    config = TrafficConfig(
        host="http://127.0.0.1:1", out_dir=tmp_path / "run", duration_s=2.0, locustfile=locustfile
    )
    with TrafficRun(config) as run, pytest.raises(Exception, match="broken locustfile"):
        run.wait_started(15)
    assert not run.running
