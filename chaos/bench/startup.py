"""``make bench``: how fast each local topology comes up, and what it carries.

For each setup the six-pod topology is started ``--repeats`` times (in a slot
leased each time with the tests' lock, ``lease_slot``; not published in the
registry) and timed from the start of ``LocalTopology.__enter__`` to every process
ready; the issue's target is 3 s.
Then, on the last start, a closed-loop client (``--connections`` keep-alive
connections, each sending its next request when the last one answered) sends
``GET /`` through the ingress for ``--duration`` seconds: every request crosses
the whole chain, so the number is the chain's, not a single proxy's. Loopback
only, bounded in time; about half a minute in all with the defaults.

Run as ``python -m chaos.bench [--setups sidecar,mesh] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from chaos.errors import ChaosError
from chaos.experiment import ALL_SETUPS, Setup
from chaos.platforms.local.slots import lease_slot
from chaos.platforms.local.topology import LocalTopology, TopologyOptions

#: The issue's aim for start-up to ready of the six-pod topology.
TARGET_STARTUP_S = 3.0


@dataclass(frozen=True)
class Throughput:
    """What the closed-loop client saw through the ingress."""

    duration_s: float
    connections: int
    requests: int
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class SetupResult:
    """Start-up and teardown times of one setup's runs, and its throughput."""

    setup: str
    startup_s: list[float]
    teardown_s: list[float]
    throughput: Throughput | None

    @property
    def startup_min_s(self) -> float:
        return min(self.startup_s)

    @property
    def startup_median_s(self) -> float:
        return statistics.median(self.startup_s)

    @property
    def ratio_to_target(self) -> float:
        return self.startup_median_s / TARGET_STARTUP_S


async def _closed_loop(url: str, token: str, duration_s: float, connections: int) -> Throughput:
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=5.0)
    started = time.monotonic()
    deadline = started + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            if status == 200:
                latencies.append(time.monotonic() - sent)
            else:
                errors += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    return Throughput(
        duration_s=round(elapsed, 3),
        connections=connections,
        requests=len(latencies) + errors,
        ok=len(latencies),
        errors=errors,
        rps=round(len(latencies) / elapsed, 1),
        p50_ms=round(quantile(0.50), 2),
        p99_ms=round(quantile(0.99), 2),
    )


def bench_setup(setup: Setup, repeats: int, duration_s: float, connections: int) -> SetupResult:
    """Start ``setup`` ``repeats`` times; measure throughput on the last start."""
    startups: list[float] = []
    teardowns: list[float] = []
    throughput: Throughput | None = None
    for run in range(repeats):
        with lease_slot() as slot:  # the lock the tests take: never the slot of a test
            options = TopologyOptions(setup=setup, slot=slot, ingress_port=0, publish=False)
            topology = LocalTopology(options)
            with topology:
                startups.append(topology.startup_s)
                if run == repeats - 1 and duration_s > 0:
                    url = topology.layout.ingress.url + "/"
                    throughput = asyncio.run(
                        _closed_loop(url, topology.idp.token(), duration_s, connections)
                    )
                closing = time.monotonic()
            teardowns.append(time.monotonic() - closing)
    return SetupResult(setup.value, startups, teardowns, throughput)


def render(results: Sequence[SetupResult]) -> str:
    """The results as a small text table."""
    lines = [
        f"start-up to ready (target {TARGET_STARTUP_S:g} s), and GET / through the whole chain",
        f"{'setup':8} {'runs':>4} {'min s':>6} {'median s':>8} {'/target':>7} {'down s':>6}"
        f" {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}",
    ]
    for r in results:
        t = r.throughput
        tail = f" {t.rps:7.0f} {t.p50_ms:7.1f} {t.p99_ms:7.1f} {t.errors:6d}" if t else " " * 30
        lines.append(
            f"{r.setup:8} {len(r.startup_s):4d} {r.startup_min_s:6.2f} {r.startup_median_s:8.2f}"
            f" {r.ratio_to_target:7.2f} {statistics.median(r.teardown_s):6.2f}{tail}"
        )
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--setups", default=",".join(s.value for s in ALL_SETUPS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="throughput seconds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.connections < 1 or not 0 <= args.duration <= 60:
        parser.error("need --repeats >= 1, --connections >= 1, 0 <= --duration <= 60")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit code 2 on bad input, 1 when a topology fails."""
    args = _parse(argv)
    try:
        setups = [Setup(name.strip()) for name in args.setups.split(",") if name.strip()]
    except ValueError as exc:
        print(f"error: --setups: {exc}", file=sys.stderr)
        return 2
    results: list[SetupResult] = []
    try:
        for setup in setups:
            results.append(bench_setup(setup, args.repeats, args.duration, args.connections))
            print(f"{setup.value}: done", file=sys.stderr, flush=True)
    except ChaosError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return exc.exit_code
    print(render(results))
    if args.json is not None:
        payload = [
            {
                **asdict(r),
                "startup_min_s": r.startup_min_s,
                "startup_median_s": r.startup_median_s,
                "ratio_to_target": r.ratio_to_target,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
