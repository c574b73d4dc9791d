"""A run: every setup, fault and repetition, each in its own fault window.

For each window (order interleaved across setups, from the seed): bring the
topology up -> start traffic -> warm up -> inject -> hold -> verify -> revert ->
recovery -> stop traffic -> tear down. Everything that holds a resource is
entered in one ``ExitStack`` per window, and the fault's revert is registered
on it *before* the fault is applied, so revert runs on success, failure,
exception, Ctrl-C and SIGTERM. The journal records every step as it happens.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.engine.ahead import Ahead, Background, HeldStart, Started
from chaos.engine.cost import CostRunner
from chaos.engine.counters import CounterSampler
from chaos.engine.records import WindowKey, WindowRecord
from chaos.engine.rounds import rounds
from chaos.engine.signals import RunInterrupted, SignalGuard
from chaos.engine.view import RunView
from chaos.engine.windowparts import (
    ConditionWatch,
    copy_experiment,
    run_directory_error,
    start_bypass,
    start_options,
    traffic_config,
)
from chaos.errors import AbortedError, ChaosError, RunDirectoryError
from chaos.experiment import Experiment, Setup
from chaos.experiment import Fault as FaultSpec
from chaos.faults import driver_for
from chaos.faults.base import Fault, FaultPlan
from chaos.platforms.ahead import StartsAhead
from chaos.platforms.base import Event, HostsTraffic, Platform, RunningTopology, StartOptions
from chaos.proc import start_ticks
from chaos.rundir import BYPASS_DIR, SAMPLES_DIR, TOPOLOGIES_DIR
from chaos.rundir.cost import CostWindowRecord
from chaos.rundir.counters import append_counters
from chaos.rundir.journal import Journal
from chaos.rundir.writes import RecordedWrites
from chaos.traffic import TrafficConfig, TrafficRun
from chaos.traffic.base import Traffic, TrafficFactory
from chaos.traffic.config import LOOPBACK

#: I/O errors that mean the run directory cannot take more (the run stops: exit 3).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})


class StopConditionHit(AbortedError):
    """A stop condition held for its duration; the run ends early, reverting."""


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what: that is the experiment; not where: that is the platform)."""

    run_dir: Path
    workers: int = 0
    #: Starts the load of a window (Locust in its own processes; a fake in unit tests).
    traffic: TrafficFactory = TrafficRun
    #: Where progress goes (the game-day view); None shows nothing.
    view: RunView | None = None
    tick_s: float = 1.0


class Engine:
    """Runs one experiment; :meth:`run` returns the windows it recorded."""

    def __init__(self, experiment: Experiment, platform: Platform, options: RunOptions) -> None:
        self.experiment = experiment
        self.platform = platform
        self.options = options
        self.run_dir = options.run_dir
        self.journal = Journal(options.run_dir)
        self.windows: list[WindowRecord] = []
        self.aborted: str | None = None
        #: Put into everything the platform starts for this run; ``clean`` proves identity by it.
        self.marker = secrets.token_hex(16)
        #: The cost step's windows (``chaos.engine.cost``), after the fault windows.
        self.cost_windows: list[CostWindowRecord] = []
        #: The next window, being brought up during this one's recovery (``StartsAhead``).
        self._ahead: Ahead | None = None
        #: Windows being torn down behind the current one.
        self._teardowns: list[Background[None]] = []

    # -- the run ---------------------------------------------------------------------

    def run(self) -> list[WindowRecord]:
        started = time.monotonic()  # the experiment's budget counts from here (cost too)
        self.journal.write(
            "run_started",
            experiment=self.experiment.name,
            seed=self.experiment.seed,
            platform=self.platform.name,
            marker=self.marker,
        )
        try:
            with SignalGuard():
                try:
                    self._windows_in_turn()
                finally:
                    self._settle()
                self.cost_windows = self._cost_runner().run(started=started)
        except AbortedError as exc:
            self.aborted = str(exc)
            with contextlib.suppress(RunDirectoryError):  # a full disk: the abort still counts
                self.journal.write("run_aborted", reason=str(exc))
        finally:
            with contextlib.suppress(RunDirectoryError):
                self.journal.write("run_finished", aborted=self.aborted is not None)
            self.journal.close()
        return self.windows

    def _cost_runner(self) -> CostRunner:
        return CostRunner(
            self.experiment,
            self.platform,
            self.run_dir,
            self.journal,
            self.marker,
            self.options.traffic,
            lambda host, token_url, out_dir, network: traffic_config(
                self.experiment,
                host=host,
                out_dir=out_dir,
                token_url=token_url,
                workers=self.options.workers,
                marker=self.marker,
                network=network,
            ),
            say=self._say,
            tick_s=self.options.tick_s,
        )

    def _say(self, line: str) -> None:
        if self.options.view is not None:
            self.options.view.say(line)

    def _windows_in_turn(self) -> None:
        """Every window in order; the next one's start overlaps this one's recovery if allowed.

        With ``repetitions: auto`` the next window is known only once this one is measured
        (``rounds``), so those windows run one after the other.
        """
        keys = iter(rounds(self.experiment, self.windows, self.run_dir, say=self._say))
        overlap = (
            not self.experiment.adaptive
            and isinstance(self.platform, StartsAhead)
            and self.platform.starts_ahead()
        )
        key = next(keys, None)
        while key is not None:
            following = next(keys, None) if overlap else None
            self._window(key, following)
            key = following if overlap else next(keys, None)

    def _window(self, key: WindowKey, following: WindowKey | None = None) -> None:
        spec = self.experiment.faults[key.fault_index]
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.key == key:
            record = ahead.record
        else:
            record = WindowRecord(key, fault_type=spec.type)
            self._journal_window_started(key)
        self.windows.append(record)
        stack = contextlib.ExitStack()
        try:
            try:
                started = ahead.start.join() if ahead is not None else None
                if started is None:
                    started = self._bring_up(key, spec, record)
                stack.enter_context(started.stack)
                self._run_window(key, spec, record, started, following)
                if following is not None:
                    # Locust stopped and the topology down while the next window warms up.
                    teardown = stack.pop_all()
                    self._teardowns.append(
                        Background(f"teardown-{key.slug}", lambda: self._teardown(teardown, record))
                    )
            finally:
                stack.close()
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            record.aborted = True
            self._close_window(record)
            raise run_directory_error(self.run_dir, exc) from exc
        except AbortedError:
            record.aborted = True
            self._close_window(record)
            raise
        except ChaosError as exc:
            self._window_failed(record, exc)
        self._close_window(record)

    def _journal_window_started(self, key: WindowKey) -> None:
        self.journal.write(
            "window_started",
            setup=key.setup,
            fault=key.fault,
            repetition=key.repetition,
            window=key.slug,
        )

    def _window_failed(self, record: WindowRecord, exc: ChaosError) -> None:
        key = record.key
        record.error = str(exc)
        self.journal.write(
            "window_failed",
            setup=key.setup,
            fault=key.fault,
            repetition=key.repetition,
            phase=record.phase,
            error=str(exc),
        )
        self._say(f"{key.label}: broken in {record.phase}: {exc}")

    def _close_window(self, record: WindowRecord) -> None:
        now = time.monotonic()
        if record.inject_t is not None:
            record.revert_t = record.revert_t or now
            record.end_t = record.end_t or now

    # -- a window's start and teardown (ahead of and behind its turn where allowed) --------

    def _bring_up(
        self,
        key: WindowKey,
        spec: FaultSpec,
        record: WindowRecord,
        released: threading.Event | None = None,
    ) -> Started:
        """The topology up, its counters sampled, Locust started: a window ready to warm up.

        ``released`` is set once all of it is stopped (``HeldStart``'s thread may end then).
        """
        stack = contextlib.ExitStack()
        if released is not None:
            stack.callback(released.set)
        try:
            # Registered first so it runs last, once the topology is stopped: the window's
            # teardown ends there (chaos.analysis.overhead reads it).
            stack.callback(self.journal.write, "topology_stopped", setup=key.setup, window=key.slug)
            topology = stack.enter_context(
                self.platform.start(Setup(key.setup), self._start_options(key, spec))
            )
            self.journal.write(
                "topology_up",
                setup=key.setup,
                window=key.slug,
                startup_s=round(topology.startup_s, 3),
                **topology.journal_record(),
            )
            stack.callback(self.journal.write, "topology_down", setup=key.setup, window=key.slug)
            stack.callback(self._collect_writes, topology, record)
            stack.callback(topology.subscribe(lambda event: self._on_event(event, key)))

            sampler = CounterSampler(topology)
            # Registered first so it runs last: after the sampler's final reading.
            stack.callback(lambda: append_counters(self.run_dir, sampler.samples))
            stack.enter_context(sampler)
            record.phase = "traffic"
            # A platform that runs the load itself (Locust inside a cluster) provides it.
            hosted = topology.hosted_traffic() if isinstance(topology, HostsTraffic) else None
            start_traffic = hosted.start if hosted is not None else self.options.traffic
            network = hosted.network if hosted is not None else LOOPBACK
            config = self._traffic_config(topology, key, network)
            traffic = stack.enter_context(start_traffic(config))
            traffic.wait_started()
            # What ``clean`` needs to prove a leftover Locust process is this run's.
            self.journal.write(
                "traffic_started",
                setup=key.setup,
                window=key.slug,
                processes=[[pid, start_ticks(pid)] for pid in traffic.pids],
            )
        except BaseException:
            stack.close()
            raise
        return Started(stack, topology, traffic)

    def _start_ahead(self, key: WindowKey) -> None:
        """Bring ``key``'s window up on a thread, once the last window's teardown is over."""
        self._join_teardowns()  # at most two topologies at once: this one and the next
        spec = self.experiment.faults[key.fault_index]
        record = WindowRecord(key, fault_type=spec.type)
        self._journal_window_started(key)
        self._ahead = Ahead(
            key,
            record,
            HeldStart(f"start-{key.slug}", lambda held: self._bring_up(key, spec, record, held)),
        )

    def _teardown(self, stack: contextlib.ExitStack, record: WindowRecord) -> None:
        """Stop a window's load and topology behind its turn (a failure breaks that window)."""
        try:
            with stack:
                pass
        except AbortedError:
            raise
        except ChaosError as exc:
            self._window_failed(record, exc)

    def _join_teardowns(self) -> None:
        teardowns, self._teardowns = self._teardowns, []
        for teardown in teardowns:
            try:
                teardown.join()
            except OSError as exc:
                if exc.errno not in DISK_ERRNOS:
                    raise
                raise run_directory_error(self.run_dir, exc) from exc

    def _settle(self) -> None:
        """Teardowns finished, and a window brought up ahead but never run taken down."""
        ahead, self._ahead = self._ahead, None
        try:
            self._join_teardowns()
        finally:
            if ahead is not None:
                self._abandon(ahead)

    def _abandon(self, ahead: Ahead) -> None:
        try:
            started = ahead.start.join()
        except BaseException:  # it never ran: the error of its start is moot
            started = None
        if started is not None:
            started.stack.close()
        key = ahead.key
        self.journal.write(
            "window_abandoned",
            setup=key.setup,
            fault=key.fault,
            repetition=key.repetition,
            window=key.slug,
        )

    def _run_window(
        self,
        key: WindowKey,
        spec: FaultSpec,
        record: WindowRecord,
        started: Started,
        following: WindowKey | None,
    ) -> None:
        timeline = self.experiment.timeline
        stack, topology, traffic = started.stack, started.topology, started.traffic
        record.warmup_start_t = time.monotonic()
        # The bypass probe (``security.bypass``): its first request inside the window.
        start_bypass(stack, self.experiment, topology, self.run_dir / BYPASS_DIR / key.slug)
        self.journal.write("warmup", setup=key.setup, window=key.slug, seconds=timeline.warmup)
        record.phase = "warm-up"
        self._hold(key, "warm-up", timeline.warmup, traffic)

        fault: Fault[FaultSpec] = driver_for(spec.type)(
            spec,
            topology.ops,
            fault_id=f"{key.slug}",
            name=key.fault,
            seed=self.experiment.seed + key.repetition,
        )
        plan = fault.plan()
        record.self_healing = plan.self_healing
        record.share_counters, record.client_counter = plan.share_counters, plan.client_counter
        self.journal.write(
            "fault_planned",
            fault_id=plan.fault_id,
            setup=key.setup,
            fault=key.fault,
            repetition=key.repetition,
            blast_radius=list(plan.blast_radius),
            summary=plan.summary,
            self_healing=plan.self_healing,
            changes=[line.strip() for line in plan.describe()[1:]],
            share_counters=list(plan.share_counters),
            client_counter=plan.client_counter,
        )
        # Registered before apply: a partial apply is reverted too.
        stack.callback(self._revert, fault, plan, record)
        record.phase = "inject"
        record.inject_t = time.monotonic()
        fault.apply()
        self.journal.write("fault_applied", fault_id=plan.fault_id, inject_t=record.inject_t)
        self._say(f"{key.label}: injected {plan.summary}")
        record.phase = "hold"
        self._hold(key, "hold", timeline.hold, traffic)
        record.evidence = fault.verify()
        self.journal.write(
            "fault_verified",
            fault_id=plan.fault_id,
            took_effect=record.evidence.took_effect,
            detail=record.evidence.detail,
        )
        record.phase = "revert"
        self._revert(fault, plan, record)
        record.phase = "recovery"
        if following is not None:
            self._start_ahead(following)
        self._hold(key, "recovery", timeline.recovery, traffic)
        record.end_t = time.monotonic()
        self.journal.write("recovery_ended", setup=key.setup, window=key.slug)
        record.phase = "stop traffic"
        # Stopped here, or by the teardown (its stack) behind the next window's start.
        stack.callback(traffic.stop)

    def _revert(self, fault: Fault[FaultSpec], plan: FaultPlan, record: WindowRecord) -> None:
        if record.revert_t is not None:
            return
        # Taken before the revert: its propagation (a mesh push, a proxy restart) is part
        # of the recovery, as inject_t is taken before the apply.
        record.revert_t = time.monotonic()
        fault.revert()
        self.journal.write("fault_reverted", fault_id=plan.fault_id, revert_t=record.revert_t)
        self._say(f"{record.key.label}: reverted")

    def _collect_writes(self, topology: RunningTopology, record: WindowRecord) -> None:
        found = topology.recorded_writes()
        if found is None:
            record.writes_unreadable = True
            self.journal.write("writes_unreadable", setup=record.key.setup)
        else:
            record.recorded_writes += RecordedWrites.from_ids(found)

    def _on_event(self, event: Event, key: WindowKey) -> None:
        # The window named: with windows overlapping, its time alone may fall in another's.
        self.journal.write(
            "event",
            setup=key.setup,
            fault=key.fault,
            repetition=key.repetition,
            event=event.kind.value,
            subject=event.subject,
            detail=event.detail,
            event_t=event.t,
        )
        if event.kind.value in ("crashed", "restarted", "cert_rotated", "config_pushed"):
            self._say(f"  event: {event.subject} {event.kind.value} {event.detail}")

    # -- waiting, watching -----------------------------------------------------------

    def _hold(self, key: WindowKey, phase: str, seconds: float, traffic: Traffic) -> None:
        deadline = time.monotonic() + seconds
        watches = [ConditionWatch(c) for c in self.experiment.stop_conditions]
        next_tick = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
            now = time.monotonic()
            if now < next_tick:
                continue
            next_tick = now + self.options.tick_s
            traffic.check()  # the load died (Locust gone, disk full): the window is broken
            stats = traffic.live_stats()
            if self.options.view is not None:
                self.options.view.phase(key.label, phase, max(0.0, deadline - now), stats)
            for watch in watches:
                if watch.violated_for(stats, now):
                    raise StopConditionHit(f"stop condition held: {watch.describe()}")

    # -- building blocks ---------------------------------------------------------------

    def _start_options(self, key: WindowKey, spec: FaultSpec) -> StartOptions:
        return start_options(
            self.experiment,
            spec,
            self.run_dir / TOPOLOGIES_DIR / key.slug,
            self.marker,
            self.journal,
        )

    def _traffic_config(
        self, topology: RunningTopology, key: WindowKey, network: str = LOOPBACK
    ) -> TrafficConfig:
        return traffic_config(
            self.experiment,
            host=topology.ingress_url,
            out_dir=self.run_dir / SAMPLES_DIR / key.slug,
            token_url=topology.token_url,
            workers=self.options.workers,
            marker=self.marker,
            network=network,
        )


__all__ = [
    "Engine",
    "RunInterrupted",
    "RunOptions",
    "StopConditionHit",
    "copy_experiment",
    "traffic_config",
]
