"""Two probes of the cost measurement on running topologies with no load.

* ``idle_cpu``: each setup's proxies' CPU with no load (``--idle``), to show how little
  of a window's proxy CPU is the proxies' idle work;
* ``reading_cost``: the CPU the runner spends on one usage reading of each kind
  (``--reading-cost``): the exact one (each thread's run time), the cheap one taken at
  the ticks between (clock ticks only) and the last one with memory (``smaps_rollup``).
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.base import StartOptions
from chaos.platforms.local.platform import LocalPlatform
from chaos.platforms.local.slots import lease_slot
from chaos.platforms.usage import MeasuresUsage, usage_between
from chaos.rundir.cost import ProxyKind

_ALL = (Setup.BASELINE, Setup.SIDECAR, Setup.MESH, Setup.AMBIENT)
#: Readings timed per kind and setup.
READINGS = 30


@contextlib.contextmanager
def _topologies(setups: tuple[Setup, ...]) -> Iterator[Iterator[tuple[Setup, MeasuresUsage]]]:
    """Each setup's topology in turn (one up at a time), on one leased slot."""
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp, lease_slot() as slot:
        platform = LocalPlatform(slots={s.value: slot for s in setups}, list_runs=False)

        def each() -> Generator[tuple[Setup, MeasuresUsage], None, None]:
            for setup in setups:
                options = StartOptions(
                    run_dir=Path(tmp) / setup.value, run_marker=secrets.token_hex(8)
                )
                with platform.start(setup, options) as topology:
                    assert isinstance(topology, MeasuresUsage)
                    yield setup, topology

        topologies = each()
        try:
            yield topologies
        finally:
            topologies.close()  # the one still up (a probe that raised) is stopped here


def idle_cpu(seconds: float = 6.0) -> list[str]:
    """Each setup's topology with no load: every proxy's CPU in ms per second."""
    lines = ["| setup | idle proxy CPU, ms/s (all proxies) | per process |", "|---|---|---|"]
    with _topologies(_ALL) as topologies:
        for setup, topology in topologies:
            first, begun = topology.read_usage(memory=False), time.monotonic()
            time.sleep(seconds)
            costs = usage_between(first, topology.read_usage(memory=False))
            took = time.monotonic() - begun
            proxies = [c for c in costs if c.kind is not ProxyKind.APP]
            each = ", ".join(f"{c.name} {c.cpu_s / took * 1e3:.1f}" for c in proxies)
            total = sum(c.cpu_s for c in proxies) / took * 1e3
            lines.append(f"| {setup.value} | {total:.1f} | {each} |")
    return lines


def reading_cost() -> list[str]:
    """The runner's CPU (``time.thread_time``) per usage reading, by kind, per setup."""
    kinds: tuple[tuple[str, dict[str, bool]], ...] = (
        ("exact (each thread's run time)", {"memory": False}),
        ("at a tick (clock ticks only)", {"memory": False, "threads": False}),
        ("last (with memory)", {}),
    )
    lines = [
        "| setup | processes / threads | " + " | ".join(f"{k}, ms" for k, _ in kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    with _topologies((Setup.MESH, Setup.AMBIENT)) as topologies:
        for setup, topology in topologies:
            reading = topology.read_usage(memory=False)
            threads = sum(len(p.threads) for p in reading.processes)
            spent = []
            for _, options in kinds:
                before = time.thread_time()
                for _ in range(READINGS):
                    topology.read_usage(**options)
                spent.append((time.thread_time() - before) / READINGS * 1e3)
            lines.append(
                f"| {setup.value} | {len(reading.processes)} / {threads} | "
                + " | ".join(f"{ms:.2f}" for ms in spent)
                + " |"
            )
    return lines


__all__ = ["idle_cpu", "reading_cost"]
