"""The tool's driver against one real Envoy: open-loop schedule accuracy, and scaling with workers.

Both run the driver (``chaos.traffic``, recording on) against the Envoy
``direct_response`` target of :func:`chaos.bench.target.envoy_target` (pinned to the
first core; Locust to the others where there are any), skip a warm-up after the
first request, then measure a steady window:

* **schedule accuracy**: open loop at a fixed rate (1,000 requests/s); the
  lateness of each request is its recorded ``send_lag_ms`` (actual send minus its
  scheduled start, which the open-loop driver records); p50, p99 and the worst over
  the window, with the requests dropped (the in-flight cap was full too long);
* **workers**: closed loop as fast as it goes with 0, 1 and 2 workers (0: one
  Locust process; N: a master and N workers); requests/s Envoy answered, CPU of the
  sending processes (the workers, or the one process) and of the master, and
  requests/s per busy worker-core.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chaos.bench.target import Target, process_cpu_s
from chaos.errors import StartupError
from chaos.rundir.samples import DROPPED
from chaos.traffic.config import CLOSED, OPEN, Endpoint, TrafficConfig
from chaos.traffic.runner import TrafficRun

_WARMUP_S = 1.0
_STARTUP_TIMEOUT_S = 60.0


def locust_cores() -> set[int] | None:
    """The cores Locust may use: all but the first (Envoy's), or None with one core."""
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[1:]) if len(cores) > 1 else None


@dataclass(frozen=True)
class Lateness:
    """How late the open-loop driver sent its requests over a window."""

    rate: float
    window_s: float
    sent: int
    dropped: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def achieved_rps(self) -> float:
        return self.sent / self.window_s


@dataclass(frozen=True)
class WorkersRow:
    """The driver with ``workers`` workers (0: one process), as fast as it goes."""

    workers: int
    requests_per_s: float
    worker_cores: float
    master_cores: float

    @property
    def rps_per_worker_core(self) -> float | None:
        return self.requests_per_s / self.worker_cores if self.worker_cores > 0 else None


def _config(
    target: Target, out: Path, window_s: float, *, users: int, rate: float, mode: str, workers: int
) -> TrafficConfig:
    return TrafficConfig(
        host=target.url,
        out_dir=out,
        # a backstop only: the run is stopped right after the window
        duration_s=_STARTUP_TIMEOUT_S + _WARMUP_S + window_s,
        startup_timeout_s=_STARTUP_TIMEOUT_S,
        users=users,
        spawn_rate=1000.0,
        rate=rate,
        mode=mode,
        workers=workers,
        endpoints=(Endpoint("get", "GET", "/"),),
    )


def _pin_all(run: TrafficRun, cores: set[int] | None) -> None:
    if cores is None:
        return
    for pid in run.pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cores)
            except OSError:
                continue


def _first_request(target: Target, before: int) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while target.completed() <= before:
        if time.monotonic() > deadline:
            raise StartupError(f"no request reached the Envoy target in {_STARTUP_TIMEOUT_S} s")
        time.sleep(0.05)


def measure_lateness(target: Target, work: Path, rate: float, window_s: float) -> Lateness:
    """Open loop at ``rate`` for a window: how late the requests went out."""
    out = work / f"openloop-{rate:g}"
    cores = locust_cores()
    config = _config(target, out, window_s, users=50, rate=rate, mode=OPEN, workers=0)
    before = target.completed()
    with TrafficRun(config) as run:
        _pin_all(run, cores)
        _first_request(target, before)
        time.sleep(_WARMUP_S)
        _pin_all(run, cores)
        start = time.monotonic()
        time.sleep(window_s)
        end = time.monotonic()
        run.stop(30.0)
        samples = run.samples()
    t = samples["t"].to_numpy()  # the scheduled start under open loop
    inside = samples[(t >= start) & (t < end)]
    dropped = inside["error_kind"].to_numpy(dtype=object) == DROPPED
    lag = inside["send_lag_ms"].to_numpy(dtype=np.float64)[~dropped]
    if len(lag) == 0:
        raise StartupError("the open-loop driver sent nothing in the window")
    p50, p99 = np.quantile(lag, [0.50, 0.99])
    return Lateness(
        rate=rate,
        window_s=round(end - start, 3),
        sent=len(lag),
        dropped=int(dropped.sum()),
        p50_ms=round(float(p50), 3),
        p99_ms=round(float(p99), 3),
        max_ms=round(float(lag.max()), 3),
    )


def measure_workers(
    target: Target, work: Path, workers: int, window_s: float, users: int = 20
) -> WorkersRow:
    """Closed loop as fast as it goes with ``workers`` workers, over a window."""
    out = work / f"workers-{workers}"
    cores = locust_cores()
    config = _config(
        target, out, window_s, users=users, rate=50_000.0, mode=CLOSED, workers=workers
    )
    before = target.completed()
    with TrafficRun(config) as run:
        _pin_all(run, cores)
        _first_request(target, before)
        time.sleep(_WARMUP_S)
        _pin_all(run, cores)  # again: Locust may have started threads since
        pids = run.pids
        senders = pids if workers == 0 else pids[1:]
        cpu0 = {p: process_cpu_s(p) for p in pids}
        rq0, t0 = target.completed(), time.monotonic()
        time.sleep(window_s)
        cpu1 = {p: process_cpu_s(p) for p in pids}
        rq1, t1 = target.completed(), time.monotonic()
        run.stop(30.0)
    seconds = t1 - t0
    sending = sum(cpu1[p] - cpu0[p] for p in senders) / seconds
    master = 0.0 if workers == 0 else (cpu1[pids[0]] - cpu0[pids[0]]) / seconds
    return WorkersRow(workers, round((rq1 - rq0) / seconds, 1), round(sending, 3), round(master, 3))
