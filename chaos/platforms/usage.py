"""The port's optional side for cost: a running topology that reads its processes' usage.

A platform whose topologies implement :class:`MeasuresUsage` can run a cost step: the
engine reads every process the topology started at the start and at the end of a
measured interval, and :func:`usage_between` turns the two readings into CPU-seconds
and memory per process. A process is named by pid *and* start time: a pid that exited
(or was restarted, or reused) between the readings breaks the window rather than
being counted as another process's CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chaos.errors import UsageError
from chaos.rundir.cost import ProcessCost, ProxyKind


@dataclass(frozen=True)
class ProcessReading:
    """One process at one moment, from its own accounting."""

    name: str
    kind: ProxyKind
    pod: str
    node: str
    pid: int
    start_ticks: int
    #: utime + stime so far, in clock ticks (``SC_CLK_TCK`` a second).
    cpu_ticks: int
    pss_bytes: int
    rss_bytes: int
    #: On-CPU time so far in ns, summed over the process's threads (the scheduler's own
    #: account, ``/proc/<pid>/task/*/schedstat``), or None where it cannot be read.
    cpu_ns: int | None = None
    #: The thread ids ``cpu_ns`` was summed over.
    threads: frozenset[int] = frozenset()
    #: When the source itself sampled ``cpu_ticks`` (epoch seconds), where it samples on
    #: its own schedule (the kubelet); None: read now (``/proc``).
    sampled_at: float | None = None


@dataclass(frozen=True)
class UsageReading:
    """Every process a topology started, read at once."""

    processes: tuple[ProcessReading, ...]
    clk_tck: int
    #: Processes that could not be read (gone); a reading with any breaks its window.
    missing: tuple[str, ...] = ()
    #: What ``pss_bytes`` holds: ``pss`` (``/proc``) or ``working-set`` (the kubelet's).
    memory: str = "pss"


@runtime_checkable
class MeasuresUsage(Protocol):
    """Optional for a :class:`~chaos.platforms.base.RunningTopology`: CPU and memory per process."""

    def read_usage(self, *, memory: bool = True, threads: bool = True) -> UsageReading:
        """Read every process the topology started; gone ones are listed as missing.

        ``memory=False``: CPU and identity only (memory reads 0); ``threads=False``: the
        CPU in clock ticks only, without each thread's run time in ns (where the source
        has both). Both off: the cheap reading taken every tick between the two exact ones.
        """
        ...

    def counts(self) -> tuple[int, int, int]:
        """(pods, nodes, services) of the topology, for the growth line."""
        ...


@runtime_checkable
class PlatformMeasuresUsage(Protocol):
    """Optional for a :class:`~chaos.platforms.base.Platform`: its topologies read usage."""

    @property
    def measures_usage(self) -> bool: ...


def usage_between(first: UsageReading, last: UsageReading) -> tuple[ProcessCost, ...]:
    """CPU over the interval and memory at its end, per process that lived through it.

    Raises :class:`UsageError` when a process of ``first`` is not the same process in
    ``last`` (exited, restarted, pid reused) or a new one appeared: its CPU in the
    interval is not known, so the window is broken.
    """
    if last.missing:
        raise UsageError(f"exited mid-measurement: {', '.join(last.missing)}")
    before = {p.name: p for p in first.processes}
    after = {p.name: p for p in last.processes}
    if set(before) != set(after):
        changed = sorted(set(before) ^ set(after))
        raise UsageError(f"the set of processes changed mid-measurement: {', '.join(changed)}")
    costs = []
    for name, b in before.items():
        a = after[name]
        if (a.pid, a.start_ticks) != (b.pid, b.start_ticks):
            raise UsageError(f"{name} restarted mid-measurement (pid {b.pid} -> {a.pid})")
        tick_s = (a.cpu_ticks - b.cpu_ticks) / last.clk_tck
        sampled = _sampled_interval(name, b, a)
        costs.append(
            ProcessCost(
                name=name,
                kind=b.kind,
                pod=b.pod,
                node=b.node,
                pid=b.pid,
                start_ticks=b.start_ticks,
                cpu_s=_precise_cpu_s(b, a, tick_s),
                pss_bytes=a.pss_bytes,
                rss_bytes=a.rss_bytes,
                cpu_tick_s=tick_s,
                cpu_interval_s=sampled,
            )
        )
    return tuple(costs)


def _sampled_interval(name: str, before: ProcessReading, after: ProcessReading) -> float:
    """Seconds between the source's own samples (0: read at the readings themselves)."""
    if before.sampled_at is None or after.sampled_at is None:
        return 0.0
    interval = after.sampled_at - before.sampled_at
    if interval <= 0:
        raise UsageError(
            f"{name}: no new sample of its CPU during the hold (the kubelet samples on its "
            "own schedule: hold longer)"
        )
    return interval


def _precise_cpu_s(before: ProcessReading, after: ProcessReading, tick_s: float) -> float:
    """The interval's CPU in ns precision where every thread of ``before`` lived through it.

    ``utime + stime`` counts in clock ticks (10 ms): a window of a few hundred ms of a
    proxy's CPU is off by up to a tick at each end, which is the spread of a short
    window. The scheduler's run time is in ns. A thread that exited in the interval
    takes its run time with it (the process's total keeps it, the live threads' sum does
    not), so then the tick count is the figure.
    """
    if before.cpu_ns is None or after.cpu_ns is None or not before.threads <= after.threads:
        return tick_s
    return (after.cpu_ns - before.cpu_ns) / 1e9


__all__ = [
    "MeasuresUsage",
    "PlatformMeasuresUsage",
    "ProcessReading",
    "UsageReading",
    "usage_between",
]
