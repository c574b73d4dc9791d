"""The registry's records of runs' topologies: listed while their runner lives, never after.

Records here are owned by real processes: this test process (alive, so its records are
live) or a child that is SIGKILLed (so its record is stale). ``status``/``token``/``down``
run in-process against the private state directory the conftest sets; the one token
is minted by a real HTTP server on loopback.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chaos.cli.app import app
from chaos.errors import InputError
from chaos.platforms.local import registry
from chaos.platforms.local.registry import TopologyStatus
from chaos.proc import start_ticks


def record(setup: str, slot: int, run_id: str = "", **changes: object) -> TopologyStatus:
    """A record owned by this test process: a run's when ``run_id`` is given, else ``up``'s."""
    status = TopologyStatus(
        setup=setup,
        slot=slot,
        ingress=f"http://127.0.0.1:{40000 + slot}",
        owner_pid=os.getpid(),
        run_dir=f"/tmp/reports/{run_id or 'up'}",
        idp_url=f"http://127.0.{slot}.2:9000",
        started_utc=(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=75)).isoformat(),
        kind=registry.KIND_RUN if run_id else registry.KIND_UP,
        owner_start_ticks=start_ticks(os.getpid()),
        run_id=run_id,
        window=f"{setup}-checkout-500-1" if run_id else "",
    )
    return replace(status, **changes)  # type: ignore[arg-type]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"uncaught {result.exception!r}"
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, stderr: str, *needles: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, stderr)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_a_runs_record_is_listed_until_withdrawn(chaos_state_dir: Path) -> None:
    mine = record("sidecar", 105, "20261130T010000Z-tiny")
    path = registry.publish_run(mine)
    assert path.parent == chaos_state_dir / registry.RUNS_DIR
    assert registry.run_topologies() == [mine]
    assert registry.running() == []  # `up`'s list (and so `down`) does not include it
    registry.withdraw_run(mine)
    assert registry.run_topologies() == [] and not path.exists()
    registry.withdraw_run(mine)  # idempotent


def test_two_runs_of_one_setup_coexist(chaos_state_dir: Path) -> None:
    a, b = record("sidecar", 105, "run-a"), record("sidecar", 106, "run-b")
    registry.publish_run(a)
    registry.publish_run(b)
    registry.publish(record("sidecar", 11))  # and `up`'s sidecar beside them
    found = registry.every_topology()
    assert [(s.kind, s.run_id, s.slot) for s in found] == [
        ("up", "", 11),
        ("run", "run-a", 105),
        ("run", "run-b", 106),
    ]


_OWNER = """
import os, sys, time
from dataclasses import replace
from chaos.platforms.local import registry
from chaos.proc import start_ticks
status = registry.TopologyStatus.from_json(__import__("json").loads(sys.argv[1]))
status = replace(status, owner_pid=os.getpid(), owner_start_ticks=start_ticks(os.getpid()))
print(registry.publish_run(status), flush=True)
time.sleep(60)
"""


def test_a_sigkilled_runners_record_is_stale(chaos_state_dir: Path) -> None:
    payload = json.dumps(record("mesh", 107, "killed-run").to_json())
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, payload], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        path = Path(owner.stdout.readline().strip())
        [live] = registry.run_topologies()
        assert live.owner_pid == owner.pid and path.is_file()
        os.kill(owner.pid, signal.SIGKILL)
        assert owner.wait(timeout=10) == -signal.SIGKILL
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert path.is_file()  # nobody withdrew it: the runner died
    code, stdout, _ = invoke("status", "--json")
    assert code == 0 and json.loads(stdout) == {"topologies": []}
    assert not path.exists()  # the reader removed the stale record
    one_line_error(*invoke("token", "--setup", "mesh")[::2], "no local topology is running")


def test_a_reused_pid_is_not_the_owner(chaos_state_dir: Path) -> None:
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    # Our pid, but another start time: the process that wrote these is gone.
    registry.publish_run(record("ambient", 108, "old-run", owner_start_ticks=ticks - 1))
    registry.publish(record("ambient", 13, owner_start_ticks=ticks - 1))
    assert registry.run_topologies() == [] and registry.running() == []
    assert list((chaos_state_dir / registry.RUNS_DIR).glob("*.json")) == []
    # A run's record without a start time is never trusted, even with a live pid.
    forged = chaos_state_dir / registry.RUNS_DIR / f"109-{os.getpid()}-{ticks}.json"
    data = record("ambient", 109, "forged").to_json()
    data["owner_start_ticks"] = None
    forged.write_text(json.dumps(data))
    assert registry.run_topologies() == []


def test_select_by_setup_run_and_slot() -> None:
    up = record("sidecar", 11)
    a, b = record("sidecar", 105, "run-a"), record("sidecar", 106, "run-b")
    mesh = record("mesh", 110, "run-a")
    found = [up, a, b, mesh]
    assert registry.select(found, setup="mesh") == mesh
    assert registry.select(found, setup="sidecar", run="run-b") == b
    assert registry.select(found, setup="sidecar", run=a.run_dir) == a  # or by directory
    assert registry.select(found, setup="sidecar", slot=11) == up
    with pytest.raises(InputError, match=r"several topologies .* pick one with --setup, --run"):
        registry.select(found, setup="sidecar")
    with pytest.raises(InputError, match="no running topology matches --run nope"):
        registry.select(found, run="nope")
    with pytest.raises(InputError, match="no local topology is running"):
        registry.select([], setup="sidecar")


def test_status_shows_which_run_where_and_since_when(chaos_state_dir: Path) -> None:
    registry.publish(record("mesh", 12))
    registry.publish_run(record("sidecar", 105, "20261130T010000Z-tiny"))
    code, stdout, _ = invoke("status")
    assert code == 0
    lines = stdout.splitlines()
    assert any(
        line.startswith("sidecar (run 20261130T010000Z-tiny, slot 105)  ingress ")
        and "http://127.0.0.1:40105" in line
        and "window sidecar-checkout-500-1" in line
        and " up 1m1" in line  # 75 s ago
        for line in lines
    ), stdout
    up_line = "mesh (up, slot 12)  ingress http://127.0.0.1:40012"
    assert any(line.startswith(up_line) for line in lines), stdout

    code, stdout, _ = invoke("status", "--json", "--setup", "sidecar")
    assert code == 0
    payload = json.loads(stdout)
    assert payload["kind"] == "run" and payload["run_id"] == "20261130T010000Z-tiny"
    assert payload["ingress"] == "http://127.0.0.1:40105" and payload["slot"] == 105
    assert payload["token_url"] == "" or payload["token_url"].endswith("/token")
    code, stdout, _ = invoke("status", "--json")
    assert {t["kind"] for t in json.loads(stdout)["topologies"]} == {"up", "run"}


def test_down_leaves_runs_alone(chaos_state_dir: Path) -> None:
    # The record is owned by this very process: a SIGTERM would end the test.
    registry.publish_run(record("sidecar", 105, "run-a"))
    code, stdout, _ = invoke("down")
    assert code == 0 and "nothing to stop" in stdout


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"token-from-" + self.server.server_address[0].encode()  # type: ignore[index]
        self.send_response(200 if self.path == "/token" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[str]:
    """A real token endpoint on 127.0.0.1 (the identity provider's shape: GET /token)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_token_picks_a_runs_topology(chaos_state_dir: Path, token_server: str) -> None:
    registry.publish_run(
        record("sidecar", 105, "run-a", idp_url=token_server, token_url=f"{token_server}/token")
    )
    registry.publish_run(record("sidecar", 106, "run-b"))
    code, _, stderr = invoke("token", "--setup", "sidecar")
    line = one_line_error(code, stderr, "sidecar (run run-a, slot 105)", "--run or --slot")
    assert "sidecar (run run-b, slot 106)" in line
    one_line_error(*invoke("token", "--run", "run-c")[::2], "no running topology matches")
    for selector in (("--run", "run-a"), ("--slot", "105")):
        code, stdout, stderr = invoke("token", "--setup", "sidecar", *selector)
        assert code == 0, stderr
        assert stdout.strip() == "token-from-127.0.0.1"
