"""The traffic driver's CPU per request, side by side with plain Locust ``FastHttpUser``.

The target is a real Envoy (:mod:`chaos.bench.target`) with one listener per load
generator, pinned to the first core; every generator is a Locust process pinned to
the second, all started together. They take turns: one runs, the others are paused
(SIGSTOP); each round resumes every generator in turn for a settling second (a paused
open loop has slots to skip) and a measured window, in an order that reverses every
round. So each figure is the generator alone on its core, and a machine that drifts
over the minutes (a shared VM does) weighs on every generator alike; separate runs
one after the other moved the ratios by ±5-8 %. CPU per request = the process's
scheduler run time / requests Envoy completed on its listener, pooled over windows.

The tool's driver must also lose no sample: every request Envoy saw on its listener
over the whole run is a sample in the run directory (dropped requests, which Envoy
never saw, apart).

Each driver row has a plain Locust baseline in the same mode: ``FastHttpUser``, the
same users, target, pinning and spawn rate, no recording. Closed loop: the driver at a
rate it cannot reach (50,000/s) against plain users with ``constant(0)``. Open loop:
the driver's arrival schedule at 2,000/s against plain Locust keeping the same even
schedule (a shared next slot and 20 sender greenlets, no cap, drops or recording: the
like-for-like baseline; after a pause it skips the slots more than 0.1 s late, as the
driver drops them), and, as a reference, against plain Locust's cheapest pacing,
``constant_throughput(rate / users)`` per user. That one keeps no schedule: its users'
sends bunch up, and the event loop serves a bunch in one wake-up where evenly spaced
arrivals cost one each, so it is cheaper per request than any even schedule. The
driver rows with recording off (``TrafficConfig.record``) show what recording costs.

Call :func:`measure_driver_cost` (the bench calls it; it returns a
:class:`DriverCostReport`), or run
``python -m chaos.bench.driver [--window 2] [--repeats 8] [--json FILE]``.
Loopback only; every process is ended by its own pid; bounded in time (about
``repeats * drivers * (window + 1) s`` plus start-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.bench.plainlocust import plain_locustfile
from chaos.bench.target import Target, cores, envoy_target, pin, process_cpu_s
from chaos.errors import ChaosError, ProcessError, StartupError
from chaos.proc import spawn, stop_processes
from chaos.rundir.samples import DROPPED, load_samples, samples_dir
from chaos.traffic.config import CLOSED, OPEN, Endpoint, TrafficConfig
from chaos.traffic.runner import TrafficRun

_WARMUP_S = 1.0
#: After a generator is resumed, before its window opens (an open loop skips or drops
#: the slots it missed while paused; a closed loop is at full speed at once).
_SETTLE_S = 1.0
_STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DriverSpec:
    """One load generator to measure: plain Locust or the tool's driver, and its load."""

    name: str
    #: "plain" (a bare FastHttpUser locustfile, paced per user), "plain-open" (a bare
    #: FastHttpUser keeping an even arrival schedule), or "driver" (chaos.traffic)
    kind: str
    #: Locust users; for "plain-open" and an open-loop driver, the requests in flight.
    users: int = 20
    #: Requests per second in all; None: as fast as it goes (plain: no wait at all).
    rate: float | None = None
    mode: str = OPEN
    #: The plain Locust row this one is compared with (same target, same load).
    baseline: str | None = None
    #: A second plain row to compare with, shown apart (the open loop's cheapest pacing).
    reference: str | None = None
    #: The driver only: whether it keeps its samples (False: the no-recording row).
    record: bool = True


#: The default comparison: as fast as each goes, and at one fixed rate both can carry.
_PLAIN_FAST = "plain FastHttpUser, no wait"
_PLAIN_PACED = "plain constant_throughput, 2,000/s"
_PLAIN_OPEN = "plain open loop, 2,000/s"
DEFAULT_DRIVERS: tuple[DriverSpec, ...] = (
    DriverSpec(_PLAIN_FAST, "plain"),
    DriverSpec(
        "driver closed loop, rate 50,000", "driver", rate=50_000.0, mode=CLOSED,
        baseline=_PLAIN_FAST,
    ),
    DriverSpec(
        "driver closed loop, recording off", "driver", rate=50_000.0, mode=CLOSED,
        baseline=_PLAIN_FAST, record=False,
    ),
    DriverSpec(_PLAIN_PACED, "plain", rate=2_000.0),
    DriverSpec(_PLAIN_OPEN, "plain-open", rate=2_000.0),
    DriverSpec(
        "driver open loop, 2,000/s", "driver", rate=2_000.0,
        baseline=_PLAIN_OPEN, reference=_PLAIN_PACED,
    ),
    DriverSpec(
        "driver open loop, recording off", "driver", rate=2_000.0,
        baseline=_PLAIN_OPEN, record=False,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DriverRun:
    """One measured window of one load generator (its ``round``, counted from 0)."""

    name: str
    round: int
    window_s: float
    cpu_s: float
    requests: int

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("inf")

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window_s

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second of the window (1.0 is one busy core)."""
        return self.cpu_s / self.window_s


@dataclass
class DriverCost:
    """One load generator over the rounds, and every request it sent accounted for."""

    name: str
    runs: list[DriverRun] = field(default_factory=list)
    spec: DriverSpec | None = None
    #: Requests Envoy completed on this generator's listener over the whole run.
    requests_sent: int = 0
    #: Samples of sent requests in the run directory (a recording driver only).
    samples_recorded: int | None = None
    #: Open-loop requests recorded as dropped (never sent: the cap was full).
    samples_dropped: int | None = None

    @property
    def cpu_us_per_request(self) -> float:
        """CPU microseconds per request, pooled over the windows (the figure compared)."""
        requests = sum(r.requests for r in self.runs)
        return sum(r.cpu_s for r in self.runs) / requests * 1e6 if requests else float("inf")

    @property
    def requests_per_s(self) -> float:
        """Median requests per second Envoy completed in the measured windows."""
        return statistics.median(r.requests_per_s for r in self.runs)

    @property
    def samples_lost(self) -> int | None:
        """Requests Envoy completed that have no sample (a recording driver only)."""
        if self.samples_recorded is None:
            return None
        return self.requests_sent - self.samples_recorded


@dataclass(frozen=True)
class DriverCostReport:
    """What :func:`measure_driver_cost` returns: every generator, and each driver's ratio.

    ``generators`` is in the order of the specs measured; ``ratio(name)`` is a
    driver's CPU per request over its like-for-like plain baseline's (1.05 is the
    goal), ``reference_ratio(name)`` over its reference row's where it has one, and
    ``round_ratios(name)`` the ratio of each round's two windows, which shows how
    steady it was. ``load_average`` is ``os.getloadavg()`` before and after.
    """

    window_s: float
    repeats: int
    generators: tuple[DriverCost, ...]
    load_average: tuple[tuple[float, float, float], tuple[float, float, float]]
    #: Cores the Envoy target and the load generators were pinned to (None: not pinned).
    cores: tuple[int | None, int | None]

    def get(self, name: str) -> DriverCost:
        """The generator called ``name``."""
        for cost in self.generators:
            if cost.name == name:
                return cost
        raise KeyError(name)

    def baseline_of(self, name: str) -> DriverCost | None:
        """The plain Locust row a driver row is compared with (None for a plain row)."""
        spec = self.get(name).spec
        return self.get(spec.baseline) if spec is not None and spec.baseline else None

    def ratio(self, name: str) -> float | None:
        """CPU per request of ``name`` over its baseline's; None without a baseline."""
        base = self.baseline_of(name)
        if base is None:
            return None
        return self.get(name).cpu_us_per_request / base.cpu_us_per_request

    def round_ratios(self, name: str) -> list[float]:
        """Each round's CPU per request of ``name`` over its baseline's in that round."""
        base = self.baseline_of(name)
        if base is None:
            return []
        by_round = {r.round: r for r in base.runs}
        return [
            r.cpu_us_per_request / by_round[r.round].cpu_us_per_request
            for r in self.get(name).runs
            if r.round in by_round
        ]

    def reference_ratio(self, name: str) -> float | None:
        """CPU per request of ``name`` over its reference row's (``DriverSpec.reference``)."""
        spec = self.get(name).spec
        if spec is None or not spec.reference:
            return None
        return self.get(name).cpu_us_per_request / self.get(spec.reference).cpu_us_per_request

    @property
    def samples_lost(self) -> int:
        """Requests sent and not recorded, over every driver run (0 is the goal)."""
        return sum(c.samples_lost or 0 for c in self.generators)


# -- the load generators ------------------------------------------------------------------


@dataclass(frozen=True)
class _Generator:
    """One load generator's Locust process, against its own listener of the target."""

    spec: DriverSpec
    listener: int
    pid: int
    #: Exit codes of its processes (None while running).
    exit_codes: Callable[[], Sequence[int | None]]
    #: The driver's run directory (None for plain Locust).
    out: Path | None = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def check_running(self) -> None:
        """Raise :class:`ProcessError` if a process of this generator has ended."""
        if any(code is not None for code in self.exit_codes()):
            raise ProcessError(f"{self.spec.name} ended during the bench: {self.exit_codes()}")


def _start_plain(
    spec: DriverSpec, listener: int, target: Target, work: Path, life_s: float, stack: ExitStack
) -> _Generator:
    locustfile = plain_locustfile(work, spec.kind, spec.users, spec.rate)
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--host", target.urls[listener],
        "--headless", "--users", str(1 if spec.kind == "plain-open" else spec.users),
        "--spawn-rate", "1000",
        # a backstop only: the bench ends it (SIGTERM) once every round is measured
        "--run-time", f"{math.ceil(life_s)}s", "--only-summary", "--exit-code-on-error", "0",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    proc = spawn(argv, env=env, log_path=work / f"plain-{spec.kind}.out", name="plain Locust")

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        stop_processes([proc], 5.0)

    stack.callback(stop)
    return _Generator(spec, listener, proc.pid, lambda: (proc.poll(),))


def _start_driver(
    spec: DriverSpec, listener: int, target: Target, work: Path, life_s: float, stack: ExitStack
) -> _Generator:
    out = Path(tempfile.mkdtemp(prefix="driver-", dir=work))
    config = TrafficConfig(
        host=target.urls[listener],
        out_dir=out,
        # a backstop only, as for plain Locust: the bench stops it after the last round
        duration_s=life_s,
        startup_timeout_s=_STARTUP_TIMEOUT_S,
        users=spec.users,
        spawn_rate=1000.0,
        rate=spec.rate or 50_000.0,
        mode=spec.mode,
        endpoints=(Endpoint("get", "GET", "/"),),
        record=spec.record,
    )
    run = stack.enter_context(TrafficRun(config))

    def resume_all() -> None:
        for pid in run.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM

    stack.callback(resume_all)  # runs before the TrafficRun's own stop (last in, first out)
    return _Generator(spec, listener, run.pids[0], lambda: tuple(run.returncodes.values()), out)


def _first_requests(target: Target, gen: _Generator) -> None:
    """Wait until the generator's first request reached its listener (or it died)."""
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while target.completed(gen.listener) == 0:
        gen.check_running()
        if time.monotonic() > deadline:
            raise StartupError(
                f"{gen.spec.name}: no request reached the Envoy target in {_STARTUP_TIMEOUT_S} s"
            )
        time.sleep(0.05)


def _measure_window(
    target: Target, gen: _Generator, round_: int, window_s: float, core: int | None
) -> DriverRun:
    """Resume ``gen``, let it settle, measure one window, pause it again."""
    gen.check_running()
    gen.resume()
    try:
        if core is not None:
            pin(gen.pid, core)  # again: Locust may have started threads since
        time.sleep(_SETTLE_S)
        cpu0, rq0, t0 = process_cpu_s(gen.pid), target.completed(gen.listener), time.monotonic()
        time.sleep(window_s)
        cpu1, rq1, t1 = process_cpu_s(gen.pid), target.completed(gen.listener), time.monotonic()
    finally:
        gen.pause()
    return DriverRun(gen.spec.name, round_, t1 - t0, cpu1 - cpu0, rq1 - rq0)


def measure_driver_cost(
    window_s: float = 2.0,
    repeats: int = 8,
    *,
    drivers: Sequence[DriverSpec] = DEFAULT_DRIVERS,
    work_dir: Path | None = None,
) -> DriverCostReport:
    """CPU per request of each load generator against one real Envoy, taking turns.

    Every generator starts at once (each on its own listener, pinned to the second
    core), warms up, and is paused; then ``repeats`` rounds each resume one generator
    at a time for a ``window_s``-second window (after :data:`_SETTLE_S`), in an order
    that reverses every round. Bounded: about ``repeats * len(drivers) * (window_s + 1)``
    seconds plus start-up. Raises :class:`~chaos.errors.ChaosError` when a generator
    cannot start or dies.
    """
    envoy_core, locust_core = cores()
    load_before = os.getloadavg()
    results = {d.name: DriverCost(d.name, spec=d) for d in drivers}
    life_s = _STARTUP_TIMEOUT_S + len(drivers) * (
        _WARMUP_S + repeats * (_SETTLE_S + window_s + 1.0)
    )
    with tempfile.TemporaryDirectory(prefix="bench-driver-", dir=work_dir) as tmp:
        work = Path(tmp)
        with envoy_target(work, envoy_core, len(drivers)) as target, ExitStack() as stack:
            gens: list[_Generator] = []
            for i, spec in enumerate(drivers):  # all at once: start-up is mostly imports
                start = _start_driver if spec.kind == "driver" else _start_plain
                gens.append(start(spec, i, target, work, life_s, stack))
                if locust_core is not None:
                    pin(gens[-1].pid, locust_core)
            for gen in gens:
                _first_requests(target, gen)
            time.sleep(_WARMUP_S)
            for gen in gens:
                gen.pause()
            for rep in range(repeats):
                for gen in gens if rep % 2 == 0 else gens[::-1]:
                    results[gen.spec.name].runs.append(
                        _measure_window(target, gen, rep, window_s, locust_core)
                    )
            for gen in gens:
                gen.check_running()
            stack.close()  # resume and stop every generator: requests under way are recorded
            for gen in gens:
                if gen.out is not None and any(code != 0 for code in gen.exit_codes()):
                    raise ProcessError(f"{gen.spec.name} ended with {gen.exit_codes()}")
                cost = results[gen.spec.name]
                cost.requests_sent = target.completed(gen.listener)
                if gen.out is not None and gen.spec.record:
                    frame = load_samples(samples_dir(gen.out))
                    dropped = int((frame["error_kind"] == DROPPED).sum())
                    cost.samples_recorded = len(frame) - dropped
                    cost.samples_dropped = dropped
    return DriverCostReport(
        window_s=window_s,
        repeats=repeats,
        generators=tuple(results[d.name] for d in drivers),
        load_average=(load_before, os.getloadavg()),
        cores=(envoy_core, locust_core),
    )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _spread(ratios: Sequence[float]) -> str:
    return f"{min(ratios):.3f}-{max(ratios):.3f}" if ratios else ""


def render(report: DriverCostReport) -> str:
    """A plain-text table: each generator's CPU per request, each driver row against its
    plain Locust row (pooled, and the lowest to highest of the rounds)."""
    head = (
        f"{'load generator':<36} {'CPU µs/req':>10} {'vs plain':>9} {'rounds':>11} "
        f"{'req/s':>8} {'sent':>8} {'recorded':>8} {'dropped':>7} {'lost':>5}"
    )
    lines = [head]
    for c in report.generators:
        ratio = report.ratio(c.name)
        shown = f"{ratio:>8.3f}x" if ratio is not None else " " * 9
        n = _count
        lines.append(
            f"{c.name:<36} {c.cpu_us_per_request:>10.1f} {shown} "
            f"{_spread(report.round_ratios(c.name)):>11} {c.requests_per_s:>8,.0f} "
            f"{c.requests_sent:>8} {n(c.samples_recorded):>8} {n(c.samples_dropped):>7} "
            f"{n(c.samples_lost):>5}"
        )
    for c in report.generators:
        ref = report.reference_ratio(c.name)
        if ref is not None and c.spec is not None:
            lines.append(f"{c.name} vs {c.spec.reference}: {ref:.3f}x")
    before, after = report.load_average
    lines.append(
        f"{report.repeats} rounds of one {report.window_s:g}-s window per generator, taking "
        f"turns (the others paused); CPU per request pooled over the rounds; "
        f"Envoy on core {report.cores[0]}, Locust on core {report.cores[1]}; "
        f"load average {before[0]:.2f} before, {after[0]:.2f} after"
    )
    if any(c.samples_dropped for c in report.generators):
        lines.append(
            "dropped: open-loop slots that fell due while the generator was paused "
            "(recorded as dropped, never sent)"
        )
    return "\n".join(lines)


def to_json(report: DriverCostReport) -> dict[str, object]:
    """The report as plain JSON data: figures, ratios and every window."""
    return {
        "window_s": report.window_s,
        "repeats": report.repeats,
        "load_average": report.load_average,
        "cores": report.cores,
        "generators": [
            {
                "name": c.name,
                "baseline": c.spec.baseline if c.spec else None,
                "reference": c.spec.reference if c.spec else None,
                "cpu_us_per_request": c.cpu_us_per_request,
                "ratio": report.ratio(c.name),
                "round_ratios": report.round_ratios(c.name),
                "reference_ratio": report.reference_ratio(c.name),
                "requests_per_s": c.requests_per_s,
                "requests_sent": c.requests_sent,
                "samples_recorded": c.samples_recorded,
                "samples_dropped": c.samples_dropped,
                "samples_lost": c.samples_lost,
                "runs": [asdict(r) for r in c.runs],
            }
            for c in report.generators
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per window")
    parser.add_argument("--repeats", type=int, default=8, help="rounds (windows each)")
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    args = parser.parse_args(argv)
    try:
        report = measure_driver_cost(args.window, args.repeats)
    except ChaosError as exc:
        print(f"chaos.bench.driver: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
