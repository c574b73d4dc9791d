"""The cost step on real topologies and real Locust: what it measures, and of which processes.

Every figure is checked against the processes' own record: the pids and start times the
topology's ledger wrote, the samples Locust wrote. No wall-clock bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.engine.finish import finish
from chaos.engine.run import Engine, RunOptions
from chaos.experiment import Setup, load_experiment
from chaos.platforms.base import RunningTopology, StartOptions
from chaos.platforms.local.platform import LocalPlatform
from chaos.platforms.local.running import LocalRunning
from chaos.platforms.shared.layout import PROCESS_LEDGER
from chaos.platforms.usage import UsageReading
from chaos.rundir import RESULTS_FILE, TOPOLOGIES_DIR
from chaos.rundir.cost import ProxyKind, read_cost

pytestmark = pytest.mark.slow

EXPERIMENT = """\
name: cost-test
setups: [baseline, sidecar]
traffic: {users: 4, spawn_rate: 4, rate: 10, endpoints: [{name: root, path: /}]}
timeline: {warmup: 0s, hold: 1s, recovery: 1s}
faults:
  - type: crash
    target: {service: payments, replica: 0, setups: [sidecar]}
cost: {rates: [20], hold: 2s, warmup: 1s, repetitions: 2}
"""


def _ledger(window_dir: Path, setup: str) -> set[tuple[str, int, int]]:
    lines = (window_dir / setup / PROCESS_LEDGER).read_text().splitlines()
    return {(r["name"], r["pid"], r["start_ticks"]) for r in map(json.loads, lines)}


def _run(tmp_path: Path, platform: LocalPlatform) -> Path:
    source = tmp_path / "cost.yaml"
    source.write_text(EXPERIMENT)
    experiment = load_experiment(source)
    run_dir = tmp_path / "run"
    engine = Engine(experiment, platform, RunOptions(run_dir=run_dir, tick_s=0.2))
    records = engine.run()
    finish(
        experiment, platform, run_dir, records, started_utc="", aborted_reason=None, history=None
    )
    return run_dir


def test_cost_windows_measure_exactly_the_topologys_processes(
    tmp_path: Path, free_slot: int
) -> None:
    platform = LocalPlatform(slots={"baseline": free_slot, "sidecar": free_slot})
    run_dir = _run(tmp_path, platform)
    windows = read_cost(run_dir)
    assert sorted((w.setup, w.repetition) for w in windows) == [
        ("baseline", 1),
        ("baseline", 2),
        ("sidecar", 1),
        ("sidecar", 2),
    ]
    for window in windows:
        assert window.broken == ""
        ledger = _ledger(run_dir / TOPOLOGIES_DIR / window.slug, window.setup)
        measured = {(p.name, p.pid, p.start_ticks) for p in window.processes}
        assert measured == ledger  # every process it started, and nothing else
        kinds = {p.kind for p in window.processes}
        if window.setup == "baseline":
            assert kinds == {ProxyKind.APP, ProxyKind.INGRESS}
        else:
            assert kinds == {ProxyKind.APP, ProxyKind.SIDECAR, ProxyKind.INGRESS}
        assert all(p.pss_bytes > 0 and p.pss_bytes <= p.rss_bytes for p in window.processes)
        assert sum(p.cpu_s for p in window.processes) > 0
        # The hold's readings: in time order, the last at the end of the hold, and the
        # CPU never falls (each process's own account since the hold began, in ticks).
        times = [t for t, _, _ in window.ticks]
        assert len(times) >= 2 and times == sorted(times)
        assert times[-1] == pytest.approx(window.end_t, abs=1e-5)
        assert all(window.start_t < t for t in times)
        for (_, p0, a0), (_, p1, a1) in zip(window.ticks, window.ticks[1:], strict=False):
            assert p1 >= p0 and a1 >= a0
        apps = sum(p.cpu_tick_s for p in window.processes if p.kind is ProxyKind.APP)
        assert window.ticks[-1][2] == pytest.approx(apps, abs=1e-6)
    cost = json.loads((run_dir / RESULTS_FILE).read_text())["cost"]
    by_setup = {s["setup"]: s for s in cost["setups"]}
    assert set(by_setup) == {"baseline", "sidecar"}
    assert by_setup["sidecar"]["windows"] == 2
    assert set(by_setup["sidecar"]["added_ms"]) == {"p50", "p90", "p99"}
    assert "sidecar" in by_setup["sidecar"]["cpu_per_1k"]


class _KillsIngressOnce(LocalPlatform):
    """Kills the ingress of the first cost window after the hold's first reading."""

    killed: list[int]

    @contextlib.contextmanager
    def start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        with super().start(setup, options) as running:
            assert isinstance(running, LocalRunning)
            if "cost-" in options.run_dir.name and not self.killed:
                read = running.read_usage

                def read_then_kill(*, memory: bool = True, threads: bool = True) -> UsageReading:
                    reading = read(memory=memory, threads=threads)
                    if not self.killed:
                        pid = running.topology.supervisor.pid("ingress")
                        assert pid is not None
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                    return reading

                running.read_usage = read_then_kill  # type: ignore[method-assign]
            yield running


def test_a_process_killed_mid_measurement_breaks_that_window_only(
    tmp_path: Path, free_slot: int
) -> None:
    platform = _KillsIngressOnce(slots={"baseline": free_slot, "sidecar": free_slot})
    platform.killed = []
    run_dir = _run(tmp_path, platform)
    windows = read_cost(run_dir)
    broken = [w for w in windows if w.broken]
    assert len(platform.killed) == 1
    assert len(broken) == 1 and "ingress" in broken[0].broken
    assert len(windows) == 4 and all(not w.broken for w in windows if w is not broken[0])
