"""``sidecar-chaos up|status|down|token`` end to end, as subprocesses, as a person would use them.

Every test has its own registry (``SIDECAR_CHAOS_STATE_DIR``, set by the conftest and
inherited by the subprocesses) and free slots; every pid a topology showed in
``status --json`` must be gone at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.experiment import Setup
from chaos.platforms.local import registry
from chaos.platforms.shared.layout import CAPTURING_SETUPS, SERVICES, Port, build_layout
from tests.conftest import LEAK_TIMEOUT_S, ProcessTracker, lease_slot

CLI = str(Path(sys.executable).with_name("sidecar-chaos"))
READY_TIMEOUT_S = 30.0
POD_KEYS = {"name", "service", "node", "address", "ports", "ready", "restarts", "pids"}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to its end."""
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout, env=environ, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 2 and exactly one non-empty line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def status_json(setup: str | None = None) -> dict[str, Any]:
    result = cli("status", "--json", *(("--setup", setup) if setup else ()))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def all_pids(status: dict[str, Any]) -> list[int]:
    return [p for pod in status["pods"] for p in pod["pids"].values() if isinstance(p, int)]


def alive_after(pids: list[int], timeout_s: float = LEAK_TIMEOUT_S) -> list[int]:
    from chaos.proc import pid_alive

    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


@dataclass
class Runner:
    """A background ``sidecar-chaos up``."""

    setup: str
    slot: int
    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, tracker: ProcessTracker) -> dict[str, Any]:
        """Poll the registry until the topology is published and every pod is ready."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"up exited with {self.proc.returncode}:\n{self.output()}")
            found = registry.claimed(self.setup)
            if found is not None:
                tracker.add_status(found.to_json())
                if found.pods and all(p.ready for p in found.pods):
                    return status_json(self.setup)
            time.sleep(0.1)
        pytest.fail(f"{self.setup} not ready in {READY_TIMEOUT_S} s:\n{self.output()}")


class Runners:
    """Starts ``up`` in the background; whatever is still running at the end is stopped."""

    def __init__(self, tmp_path: Path, tracker: ProcessTracker) -> None:
        self.tmp_path = tmp_path
        self.tracker = tracker
        self.started: list[Runner] = []
        self.slots = contextlib.ExitStack()

    def up(self, setup: str, *extra: str, slot: int | None = None) -> Runner:
        if slot is None:
            slot = self.slots.enter_context(lease_slot())
        log = self.tmp_path / f"up-{setup}-{slot}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    CLI,
                    "up",
                    "--setup",
                    setup,
                    "--slot",
                    str(slot),
                    "--ingress-port",
                    "0",
                    "--run-dir",
                    str(self.tmp_path / f"run-{slot}"),
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.tracker.add(proc.pid)
        runner = Runner(setup, slot, proc, log)
        self.started.append(runner)
        return runner

    def close(self) -> None:
        for runner in self.started:
            if runner.proc.poll() is None:
                runner.proc.terminate()
        for runner in self.started:
            try:
                runner.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                runner.proc.kill()
                runner.proc.wait()
        self.slots.close()


@pytest.fixture
def runners(tmp_path: Path, process_tracker: ProcessTracker) -> Iterator[Runners]:
    started = Runners(tmp_path, process_tracker)
    try:
        yield started
    finally:
        started.close()


# -- the happy path ---------------------------------------------------------------------------


def test_up_status_token_down(runners: Runners, process_tracker: ProcessTracker) -> None:
    runner = runners.up("sidecar")
    status = runner.wait_ready(process_tracker)

    # status --json: an object with the ingress and every pod, for scripts.
    assert status["setup"] == "sidecar" and status["slot"] == runner.slot
    assert status["ingress"].startswith("http://127.0.0.1:")
    pods = {pod["name"]: pod for pod in status["pods"]}
    assert all(set(pod) == POD_KEYS for pod in pods.values())
    layout = build_layout(Setup.SIDECAR, Path("/"), slot=runner.slot, ingress_port=1)
    for pod in layout.pods:
        row = pods[pod.name]
        assert (row["service"], row["node"], row["address"]) == (pod.service, pod.node, pod.address)
        assert row["ports"] == pod.ports and row["ready"] is True and row["restarts"] == 0
        assert set(row["pids"]) == {"app", "proxy"}
    assert f"ingress: {status['ingress']}" in runner.output()
    table = cli("status")
    assert table.returncode == 0 and "frontend-0" in table.stdout and "sidecar" in table.stdout

    # token: a person's curl through the ingress.
    token = cli("token", "--setup", "sidecar")
    assert token.returncode == 0, token.stderr
    bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
    answer = httpx.get(status["ingress"] + "/", headers=bearer, timeout=10.0)
    assert answer.status_code == 200, answer.text
    services = []
    hop: dict[str, Any] | None = answer.json()
    while hop is not None:
        services.append(hop["service"])
        hop = hop["upstream"]
    assert services == list(SERVICES)
    assert httpx.get(status["ingress"] + "/", timeout=10.0).status_code == 401

    # down: the runner tears down and exits cleanly; no pid is left.
    pids = all_pids(status)
    stopped = cli("down", "--setup", "sidecar")
    assert stopped.returncode == 0 and "sidecar: stopped" in stopped.stdout, stopped
    assert runner.proc.wait(timeout=10) == 0, runner.output()
    assert alive_after(pids) == []
    assert status_json("sidecar") == {}


def test_two_setups_run_side_by_side(runners: Runners, process_tracker: ProcessTracker) -> None:
    sidecar = runners.up("sidecar")
    ambient = runners.up("ambient")
    first, second = sidecar.wait_ready(process_tracker), ambient.wait_ready(process_tracker)
    both = status_json()["topologies"]
    assert sorted(t["setup"] for t in both) == ["ambient", "sidecar"]
    assert first["ingress"] != second["ingress"]
    assert set(all_pids(first)).isdisjoint(all_pids(second))

    # With two running, `token` must be told which one.
    assert_one_line_error(cli("token"), "--setup")
    for status in (first, second):
        token = cli("token", "--setup", status["setup"]).stdout.strip()
        answer = httpx.get(
            status["ingress"] + "/", headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["address"].startswith(f"127.0.{status['slot']}.")

    stopped = cli("down")
    assert stopped.returncode == 0, stopped.stderr
    assert "sidecar: stopped" in stopped.stdout and "ambient: stopped" in stopped.stdout
    assert alive_after(all_pids(first) + all_pids(second)) == []
    assert status_json() == {"topologies": []}


# -- one runner per setup ---------------------------------------------------------------------


def test_up_twice_for_one_setup_is_refused(
    runners: Runners, process_tracker: ProcessTracker
) -> None:
    first = runners.up("sidecar")
    status = first.wait_ready(process_tracker)
    with lease_slot() as other_slot:
        second = cli("up", "--setup", "sidecar", "--slot", str(other_slot), "--ingress-port", "0")
    assert_one_line_error(second, "already running", str(first.proc.pid))
    assert status_json("sidecar")["owner_pid"] == status["owner_pid"]


def test_two_ups_started_together_one_wins(
    runners: Runners, process_tracker: ProcessTracker
) -> None:
    a, b = runners.up("sidecar"), runners.up("sidecar")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while a.proc.poll() is None and b.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    loser, winner = (a, b) if a.proc.poll() is not None else (b, a)
    assert loser.proc.returncode == 2, loser.output()
    assert "already running or starting" in loser.output()
    status = winner.wait_ready(process_tracker)
    assert status["owner_pid"] == winner.proc.pid and status["slot"] == winner.slot


# -- no leftovers ------------------------------------------------------------------------------


def test_sigkilled_up_leaves_no_process(runners: Runners, process_tracker: ProcessTracker) -> None:
    runner = runners.up("ambient")
    pids = all_pids(runner.wait_ready(process_tracker))
    os.kill(runner.proc.pid, signal.SIGKILL)
    assert runner.proc.wait(timeout=5) == -signal.SIGKILL
    assert alive_after(pids) == []
    assert status_json() == {"topologies": []}  # the dead runner's record is stale
    # ...and the setup is free again at once: its lock died with the runner.
    again = runners.up("ambient")
    again.wait_ready(process_tracker)


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket listening on a free port of 127.0.0.1 (someone else's server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_unknown_setup() -> None:
    assert_one_line_error(cli("up", "--setup", "nope"), "unknown setup 'nope'")
    for command in ("status", "down", "token"):
        assert_one_line_error(cli(command, "--setup", "nope"), "unknown setup 'nope'")


def test_ingress_port_taken(listening: socket.socket, free_slot: int) -> None:
    port = listening.getsockname()[1]
    result = cli("up", "--setup", "sidecar", "--slot", str(free_slot), "--ingress-port", str(port))
    assert_one_line_error(result, f"127.0.0.1:{port} is already in use")


@pytest.mark.parametrize("setup", ["sidecar", "ambient"])
def test_pod_address_taken(setup: str, free_slot: int) -> None:
    address = f"127.0.{free_slot}.21"  # checkout-0
    # Where ambient captures inbound traffic, the app listens behind the node proxy.
    port = int(Port.APP_BEHIND_PROXY if Setup(setup) in CAPTURING_SETUPS else Port.APP)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # REUSEADDR: a connection of an earlier topology in TIME_WAIT must not stop the
        # bind; a listening socket still blocks the topology's own (REUSEADDR) bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen()
        result = cli("up", "--setup", setup, "--slot", str(free_slot), "--ingress-port", "0")
    assert_one_line_error(result, f"{address}:{port} is already in use")


def test_missing_envoy_binary(free_slot: int) -> None:
    result = cli(
        "up",
        "--setup",
        "mesh",
        "--slot",
        str(free_slot),
        "--ingress-port",
        "0",
        env={"SIDECAR_CHAOS_ENVOY": "/nonexistent/envoy"},
    )
    assert_one_line_error(result, "/nonexistent/envoy")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--slot", "0"), "--slot must be within 1..254"),
        (("--slot", "300"), "--slot must be within 1..254"),
        (("--ingress-port", "70000"), "--ingress-port must be within 0..65535"),
        (("--run-dir", "/proc/no-such-dir"), "cannot use /proc/no-such-dir as run directory"),
    ],
    ids=["slot-0", "slot-300", "port-70000", "run-dir"],
)
def test_bad_options(args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(cli("up", "--setup", "sidecar", *args), needle)


def test_token_with_nothing_running() -> None:
    assert_one_line_error(cli("token"), "no local topology is running")


# -- make bench --------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_bench_runs_and_reports(tmp_path: Path) -> None:
    """The short mode runs every figure and writes BENCHMARKS.md (numbers are not judged)."""
    out, data = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "chaos.bench", "--short", "--out", str(out), "--json", str(data)],
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    for heading in (
        "## Machine and command",
        "## Topology start-up per setup",
        "## Load generators",
        "## Open-loop schedule accuracy",
        "## Requests/s per worker-core as workers are added",
        "## Time-to-recover fidelity against an independent prober",
        "## Injection lag per fault and setup",
        "## Run wall time against its planned windows",
        "## Finish step at scale",
    ):
        assert heading in text, heading
    assert "Not measured" not in text
    results = json.loads(data.read_text())
    [row] = results["startup"]
    assert row["setup"] == "sidecar" and len(row["startup_s"]) == 1
    assert row["throughput"]["ok"] > 0 and row["throughput"]["errors"] == 0
    [(samples, finish)] = results["finish"]
    assert samples == 240_000 and finish["exit_code"] == 0
    assert results["realrun"]["windows"] == 1 and results["realrun"]["lags"][0]["lag_s"] is not None
    assert results["lateness"]["sent"] > 0 and results["workers"][0]["requests_per_s"] > 0
    assert_one_line_error(
        subprocess.run(
            [sys.executable, "-m", "chaos.bench", "--setups", "nope"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ),
        "--setups",
    )
