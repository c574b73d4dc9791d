"""Figures from one real, short experiment run: injection lag per fault and setup, and overhead.

The run is the product's own ``sidecar-chaos run`` in a subprocess (real Envoy,
real Locust, the real engine) in a slot leased with the tests' lock
(``lease_slot``), on an experiment written here: an abort at the
frontends, a latency fault at a checkout replica and a crash of a payments
proxy, in every setup asked for, one repetition each. From its run directory:

* **injection lag**: for each window, the analysis's time to impact, i.e. from
  the engine's inject timestamp (journal) to the first failed or slowed request
  of the first bucket that left the steady state (samples);
* **wall time against plan**: the subprocess's wall time against the sum of the
  windows' planned warm-up, hold and recovery, which is the least a run can take;
  the difference is topology start/stop, traffic start and the finish step;
* **where that time went**: from ``results.json``'s ``overhead`` section (the journal's own
  timestamps), each window's topology start-up and teardown, and the windows' wall time
  (run start to the last topology stopped, i.e. without the finish step).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.analysis import read_results
from chaos.bench.resilience import ResilienceRow, resilience_rows
from chaos.platforms.local.slots import lease_slot
from chaos.rundir import RESULTS_FILE


@dataclass(frozen=True)
class Timeline:
    """Each window's planned warm-up, hold and recovery (seconds)."""

    warmup_s: float = 3.0
    hold_s: float = 3.0
    recovery_s: float = 5.0

    @property
    def window_s(self) -> float:
        return self.warmup_s + self.hold_s + self.recovery_s


#: Bounds the whole subprocess (a run that hangs is a failed bench, not a stuck one).
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class LagRow:
    """Injection lag of one fault in one setup (seconds; None: no impact seen)."""

    fault: str
    setup: str
    lag_s: float | None
    ttr_s: float | None


@dataclass(frozen=True)
class RealRun:
    """What one real run gave."""

    setups: tuple[str, ...]
    windows: int
    wall_s: float
    planned_s: float
    exit_code: int
    lags: list[LagRow]
    run_dir: Path
    #: Run start to the last topology stopped (the journal's clock): without the finish step.
    windows_wall_s: float | None = None
    #: Each window's topology start-up and teardown (results.json's ``overhead``).
    startup_s: tuple[float, ...] = ()
    teardown_s: tuple[float, ...] = ()
    #: Retry overflows, restart latency and affected share per window (chaos.bench.resilience).
    resilience: tuple[ResilienceRow, ...] = ()

    @property
    def overhead_ratio(self) -> float:
        """Wall time over the planned windows' sum."""
        return self.wall_s / self.planned_s if self.planned_s else float("nan")

    @property
    def windows_ratio(self) -> float | None:
        """The windows' wall time (no finish step) over the planned windows' sum."""
        if self.windows_wall_s is None or not self.planned_s:
            return None
        return self.windows_wall_s / self.planned_s

    @property
    def startup_median_s(self) -> float | None:
        return statistics.median(self.startup_s) if self.startup_s else None

    @property
    def teardown_median_s(self) -> float | None:
        return statistics.median(self.teardown_s) if self.teardown_s else None

    def median_lag(self, fault: str) -> float | None:
        """Median lag of ``fault`` over the setups that showed an impact."""
        values = [r.lag_s for r in self.lags if r.fault == fault and r.lag_s is not None]
        return statistics.median(values) if values else None


FAULTS = ("abort-frontend", "latency-checkout", "crash-payments")


_FAULT_SPECS = {
    "abort-frontend": "type: abort\n    target: {service: frontend}\n    status: 503",
    "latency-checkout": "type: latency\n    target: {service: checkout, replica: 0}\n"
    "    delay: 200ms",
    "crash-payments": "type: crash\n    target: {service: payments, replica: 0}",
}


def experiment_text(
    setups: tuple[str, ...], faults: tuple[str, ...] = FAULTS, timeline: Timeline = Timeline()
) -> str:
    """The bench's experiment file (``faults``: some of :data:`FAULTS`)."""
    blocks = "".join(f"  - name: {name}\n    {_FAULT_SPECS[name]}\n" for name in faults)
    return f"""\
name: bench
description: injection lag and run overhead for make bench
setups: [{", ".join(setups)}]
repetitions: 1
seed: 1
traffic:
  users: 10
  spawn_rate: 10
  rate: 100
  endpoints:
    - {{name: browse, path: /}}
steady_state:
  max_error_rate: 0.01
  max_p95_ms: 150
timeline:
  warmup: {timeline.warmup_s:g}s
  hold: {timeline.hold_s:g}s
  recovery: {timeline.recovery_s:g}s
  recovered_for: 1s
faults:
{blocks}"""


def run_experiment(
    work: Path,
    setups: tuple[str, ...],
    faults: tuple[str, ...] = FAULTS,
    timeline: Timeline = Timeline(),
) -> RealRun:
    """Run the bench experiment with the CLI in a subprocess and read its figures."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "bench-experiment.yaml"
    spec.write_text(experiment_text(setups, faults, timeline), encoding="utf-8")
    run_dir = work / "run"
    cli = Path(sys.executable).with_name("sidecar-chaos")
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "chaos.cli"]
    # One leased slot (the tests' lock) serves all setups; a window started while the previous
    # one still holds it (the next window starts during this one's recovery) leases another.
    with lease_slot() as slot:
        slots = [arg for setup in setups for arg in ("--slot", f"{setup}={slot}")]
        started = time.monotonic()
        done = subprocess.run(
            [*argv, "run", str(spec), "--out", str(run_dir), "--no-history", *slots],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        wall = time.monotonic() - started
    if done.returncode not in (0, 1):  # 1: a hypothesis failed, still a measured run
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the bench experiment failed (exit {done.returncode}): {tail}")
    results = read_results(run_dir)
    lags = [LagRow(r.fault, r.setup, r.time_to_impact_s, r.time_to_recover_s) for r in results.runs]
    windows = len(results.runs)
    overhead = _overhead(run_dir)
    return RealRun(
        setups=setups,
        windows=windows,
        wall_s=round(wall, 2),
        planned_s=windows * timeline.window_s,
        exit_code=done.returncode,
        lags=lags,
        run_dir=run_dir,
        windows_wall_s=overhead[0],
        startup_s=overhead[1],
        teardown_s=overhead[2],
        resilience=tuple(resilience_rows(run_dir)),
    )


def _overhead(run_dir: Path) -> tuple[float | None, tuple[float, ...], tuple[float, ...]]:
    """The windows' wall time and each window's start-up and teardown, from results.json."""
    section = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8")).get("overhead")
    if not isinstance(section, dict):
        return None, (), ()
    windows = [w for w in section.get("windows", []) if isinstance(w, dict)]
    wall = section.get("windows_wall_s")

    def figures(key: str) -> tuple[float, ...]:
        return tuple(float(w[key]) for w in windows if isinstance(w.get(key), (int, float)))

    return (
        float(wall) if isinstance(wall, (int, float)) else None,
        figures("startup_s"),
        figures("teardown_s"),
    )
