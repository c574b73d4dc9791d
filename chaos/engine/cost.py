"""The cost step of a run: each setup at each offered rate in steady state, no fault.

Every cost window is a window like the fault windows: its own topology brought up for
it, the experiment's open-loop load at the step's rate (the driver's shortfall is
recorded as DROPPED rows, never hidden by lowering the rate), a warm-up, then the
measured hold. At the start, every tick and at the end of the hold the topology reads
the CPU of each process it started (which also proves every process is still the one
that started), and at the end its memory; the difference is the window's cost. A process
that exits or restarts mid-hold, or a load that dies, breaks the window: it is recorded
with the reason and left out of the figures.

With the experiment's ``repetitions: auto`` and cost hypotheses, the step runs its
``repetitions`` rounds, then decides its hypotheses after each round (the same
decisions ``finish`` makes, at that look's share of alpha) and runs another round of
only the setups the undecided ones compare, until each is decided, the step's
``max_repetitions`` rounds were run, or another round would not fit in what is left of
the experiment's ``budget`` (``chaos.analysis.cost_budget``).

Order: repetition by repetition, the setups rotated per repetition so that the
machine's drift weighs on each alike; one topology per setup and repetition, its
rates measured in turn, each with its own load (so repetitions are independent
topologies, the unit of the intervals).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_budget import Spent, over_budget
from chaos.analysis.cost_hypotheses import decide_cost, open_setups
from chaos.errors import AbortedError, ChaosError, UsageError
from chaos.experiment import Experiment, Setup
from chaos.experiment.cost import cost_setups
from chaos.platforms.base import HostsTraffic, Platform, RunningTopology, StartOptions
from chaos.platforms.usage import MeasuresUsage, UsageReading, usage_between
from chaos.proc import RUN_MARKER_ENV, start_ticks
from chaos.rundir import SAMPLES_DIR, TOPOLOGIES_DIR
from chaos.rundir.cost import CostWindowRecord, ProcessCost, ProxyKind, append_cost, cost_slug
from chaos.rundir.journal import Journal
from chaos.traffic import TrafficConfig
from chaos.traffic.base import TrafficFactory
from chaos.traffic.config import LOOPBACK

#: Locust's own run time past the window (the engine stops it itself; a backstop).
COST_TRAFFIC_SLACK_S = 30.0


@dataclass(frozen=True)
class CostKey:
    """One cost window: a setup at a rate, one repetition (from 1)."""

    setup: Setup
    rate: float
    repetition: int

    @property
    def slug(self) -> str:
        return cost_slug(self.setup.value, self.rate, self.repetition)


def cost_schedule(experiment: Experiment) -> list[CostKey]:
    """Every cost window of the first ``repetitions`` rounds in run order (none without a step)."""
    cost = experiment.cost
    if cost is None:
        return []
    keys = []
    for repetition in range(1, cost.repetitions + 1):
        keys += cost_round(experiment, repetition)
    return keys


def cost_round(
    experiment: Experiment, repetition: int, only: set[str] | None = None
) -> list[CostKey]:
    """The windows of one round (from 1), the setups rotated; ``only``: these setups."""
    cost = experiment.cost
    assert cost is not None
    setups = [s for s in cost_setups(cost, experiment.setups) if only is None or s.value in only]
    if not setups:
        return []
    shift = (repetition - 1) % len(setups)
    turn = setups[shift:] + setups[:shift]
    return [CostKey(s, rate, repetition) for rate in cost.rates for s in turn]


def next_cost_round(
    experiment: Experiment, run_dir: Path, done: int, spent: Spent | None = None
) -> tuple[set[str], str]:
    """After ``done`` rounds of an adaptive step: the setups another round needs, and why.

    No setups: stop (every cost hypothesis decided, the most rounds were run, or, with
    the experiment's ``budget`` and ``spent`` (the run's time so far), another round
    would not fit in what is left of it: ``chaos.analysis.cost_budget``).
    """
    cost = experiment.cost
    assert cost is not None
    most = cost.most_rounds(experiment.adaptive)
    if done < cost.repetitions:
        return {s.value for s in cost_setups(cost, experiment.setups)}, "first rounds"
    figures = analyze_cost(run_dir, seed=experiment.seed, cpu=cost.cpu)
    decisions = (
        decide_cost(figures, cost, seed=experiment.seed, most_rounds=most, final=False)
        if figures is not None
        else []
    )
    needed = open_setups(decisions)
    if not needed:
        return set(), f"every cost hypothesis was decided after {done} round(s)"
    if done >= most:
        return set(), f"the most rounds ({most}) were run; {len(needed)} setup(s) undecided"
    undecided = sum(d.outcome == "undecided" for d in decisions)
    over = over_budget(experiment.budget, cost, len(needed), spent)
    if over is not None:
        return set(), f"{over}; {undecided} cost hypothesis(es) undecided"
    return needed, f"{undecided} cost hypothesis(es) undecided"


class MeasuresUsageTopology(RunningTopology, MeasuresUsage, Protocol):
    """A running topology that reads its processes' usage."""


@dataclass
class CostRunner:
    """Runs the cost windows of one run, on the engine's platform, journal and marker."""

    experiment: Experiment
    platform: Platform
    run_dir: Path
    journal: Journal
    marker: str
    traffic: TrafficFactory
    #: The load of a window as the engine configures it (host, token, out_dir, network).
    traffic_config: Callable[[str, str | None, Path, str], TrafficConfig]
    say: Callable[[str], None] = lambda _line: None
    tick_s: float = 1.0

    def run(
        self, *, started: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> list[CostWindowRecord]:
        """Every cost window; ``started``: the run's start on ``clock`` (default: now).

        The experiment's ``budget`` counts from ``started``: the fault windows' time and
        the cost rounds' (``next_cost_round``).
        """
        cost = self.experiment.cost
        if cost is None:
            return []
        if cost.most_rounds(self.experiment.adaptive) == cost.repetitions:
            return self._run_keys(cost_schedule(self.experiment))
        begun = clock()
        started = begun if started is None else started
        done: list[CostWindowRecord] = []
        repetition = 0
        while True:
            now = clock()
            spent = Spent(now - started, now - begun, len(done))
            needed, why = next_cost_round(self.experiment, self.run_dir, repetition, spent)
            if not needed:
                self.say(f"cost: repetitions: auto: stop, {why}")
                self.journal.write(
                    "cost_rounds_stopped",
                    rounds=repetition,
                    reason=why,
                    spent_s=round(spent.run_s, 1),
                    budget_s=self.experiment.budget,
                )
                return done
            repetition += 1
            if repetition > cost.repetitions:
                self.say(f"cost: repetitions: auto: round {repetition}, {why}")
            done += self._run_keys(cost_round(self.experiment, repetition, needed))

    def _run_keys(self, keys: list[CostKey]) -> list[CostWindowRecord]:
        done: list[CostWindowRecord] = []
        # One topology per setup and repetition, its rates measured in turn.
        groups = list(dict.fromkeys((k.setup, k.repetition) for k in keys))
        for setup, repetition in groups:
            done += self._topology_round(
                [k for k in keys if (k.setup, k.repetition) == (setup, repetition)]
            )
        return done

    def _topology_round(self, keys: list[CostKey]) -> list[CostWindowRecord]:
        first = keys[0]
        records: list[CostWindowRecord] = []
        try:
            with contextlib.ExitStack() as stack:
                topology = self._start(stack, first)
                for key in keys:
                    records.append(self._window(topology, key))
        except AbortedError:
            raise
        except ChaosError as exc:  # the topology did not start (or stop): its windows break
            done = {(r.rate, r.repetition) for r in records}
            for key in keys:
                if (key.rate, key.repetition) not in done:
                    records.append(self._broken(key, str(exc)))
        return records

    def _start(self, stack: contextlib.ExitStack, key: CostKey) -> MeasuresUsageTopology:
        options = StartOptions(
            run_dir=self.run_dir / TOPOLOGIES_DIR / key.slug,
            run_marker=self.marker,
            record=self.journal.write,
        )
        topology = stack.enter_context(self.platform.start(key.setup, options))
        self.journal.write(
            "topology_up",
            setup=key.setup,
            startup_s=round(topology.startup_s, 3),
            **topology.journal_record(),
        )
        stack.callback(self.journal.write, "topology_down", setup=key.setup)
        if not isinstance(topology, MeasuresUsage):
            raise UsageError(f"{self.platform.name} cannot read its processes' CPU and memory")
        return topology

    def _broken(self, key: CostKey, reason: str) -> CostWindowRecord:
        record = CostWindowRecord(
            key.setup.value, key.rate, key.repetition, 0.0, 0.0, broken=reason
        )
        self.journal.write("cost_window_failed", setup=key.setup, rate=key.rate, error=reason)
        self.say(f"cost {key.slug}: broken: {reason}")
        append_cost(self.run_dir, record)
        return record

    def _window(self, topology: MeasuresUsageTopology, key: CostKey) -> CostWindowRecord:
        self.journal.write(
            "cost_window_started", setup=key.setup, rate=key.rate, repetition=key.repetition
        )
        try:
            with contextlib.ExitStack() as stack:
                record = self._measure(stack, topology, key)
        except AbortedError:
            raise
        except ChaosError as exc:
            return self._broken(key, str(exc))
        append_cost(self.run_dir, record)
        return record

    def _measure(
        self, stack: contextlib.ExitStack, topology: MeasuresUsageTopology, key: CostKey
    ) -> CostWindowRecord:
        cost = self.experiment.cost
        assert cost is not None
        # A platform that runs the load itself (Locust inside a cluster) provides it.
        hosted = topology.hosted_traffic() if isinstance(topology, HostsTraffic) else None
        config = self.traffic_config(
            topology.ingress_url,
            topology.token_url,
            self.run_dir / SAMPLES_DIR / key.slug,
            hosted.network if hosted is not None else LOOPBACK,
        )
        config = replace(
            config,
            rate=key.rate,
            duration_s=cost.warmup + cost.hold + COST_TRAFFIC_SLACK_S,
            extra_env=((RUN_MARKER_ENV, self.marker),),
        )
        start = hosted.start if hosted is not None else self.traffic
        traffic = stack.enter_context(start(config))
        traffic.wait_started()
        self.journal.write(
            "traffic_started",
            setup=key.setup,
            processes=[[pid, start_ticks(pid)] for pid in traffic.pids],
        )
        self._wait(cost.warmup, traffic.check)
        sampling = 0.0
        # Memory is read once, at the end (the costly part of a reading); CPU and
        # identity at the start, every tick and at the end: exact (each thread's run
        # time) at both ends, in clock ticks at the ticks between (a file per process,
        # not per thread: the sampling stays under 1 % of a core).
        first, spent = _timed(functools.partial(topology.read_usage, memory=False))
        sampling += spent
        start_t = time.monotonic()
        ticks: list[tuple[float, float, float]] = []
        light = functools.partial(topology.read_usage, memory=False, threads=False)
        for reading, spent in self._ticks(cost.hold, light, traffic.check):
            sampling += spent
            # A process gone or restarted: broken now.
            ticks.append(_tick(time.monotonic(), usage_between(first, reading)))
        last, spent = _timed(topology.read_usage)
        sampling += spent
        end_t = time.monotonic()
        traffic.stop()
        processes = usage_between(first, last)
        if ticks:
            ticks[-1] = _tick(end_t, processes)
        pods, nodes, services = topology.counts()
        self.say(f"cost {key.slug}: measured {end_t - start_t:.1f} s")
        return CostWindowRecord(
            key.setup.value,
            key.rate,
            key.repetition,
            start_t=start_t,
            end_t=end_t,
            processes=processes,
            pods=pods,
            nodes=nodes,
            services=services,
            sampling_cpu_s=sampling,
            load_avg_1m=os.getloadavg()[0],
            memory=last.memory,
            ticks=tuple(ticks),
        )

    def _wait(self, seconds: float, check: Callable[[], None]) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.tick_s))
            check()

    def _ticks(
        self, seconds: float, read: Callable[[], UsageReading], check: Callable[[], None]
    ) -> Iterator[tuple[UsageReading, float]]:
        """A reading every tick until ``seconds`` passed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.tick_s))
            check()
            yield _timed(read)


def _tick(at: float, costs: tuple[ProcessCost, ...]) -> tuple[float, float, float]:
    """One reading of the hold: when, the proxies' and the apps' CPU-s since its start.

    In clock ticks (``cpu_tick_s``), as the readings between the two exact ones are.
    """
    apps = sum(c.cpu_tick_s for c in costs if c.kind is ProxyKind.APP)
    return round(at, 6), round(sum(c.cpu_tick_s for c in costs) - apps, 9), round(apps, 9)


def _timed(read: Callable[[], UsageReading]) -> tuple[UsageReading, float]:
    """A reading and the CPU-seconds this thread spent taking it (the sampling's own cost)."""
    before = time.thread_time()
    reading = read()
    return reading, time.thread_time() - before


__all__ = ["CostKey", "CostRunner", "cost_round", "cost_schedule", "next_cost_round"]
