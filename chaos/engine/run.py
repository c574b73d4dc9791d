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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.engine.cost import CostRunner
from chaos.engine.counters import CounterSampler
from chaos.engine.records import WindowKey, WindowRecord
from chaos.engine.rounds import rounds
from chaos.engine.signals import RunInterrupted, SignalGuard
from chaos.engine.view import RunView
from chaos.errors import AbortedError, ChaosError, RunDirectoryError
from chaos.experiment import CertExpiryFault, Experiment, PolicyDesyncFault, Setup, StopCondition
from chaos.experiment import Fault as FaultSpec
from chaos.experiment.models import start_extra
from chaos.experiment.security import security_extra
from chaos.faults import driver_for
from chaos.faults.base import Fault, FaultPlan
from chaos.outpaths import replace_file
from chaos.platforms.appports import ExposesAppPorts, RunsBypassProbe
from chaos.platforms.base import Event, HostsTraffic, Platform, RunningTopology, StartOptions
from chaos.proc import RUN_MARKER_ENV, start_ticks
from chaos.rundir import BYPASS_DIR, EXPERIMENT_FILE, SAMPLES_DIR, TOPOLOGIES_DIR
from chaos.rundir.cost import CostWindowRecord
from chaos.rundir.counters import append_counters
from chaos.rundir.journal import Journal
from chaos.rundir.writes import RecordedWrites
from chaos.traffic import Endpoint, LiveStats, TrafficConfig, TrafficRun
from chaos.traffic.base import Traffic, TrafficFactory
from chaos.traffic.bypass import BypassProbe, anonymous_stream
from chaos.traffic.config import LOOPBACK

#: I/O errors that mean the run directory cannot take more (the run stops: exit 3).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})

#: Locust's own run time past the timeline. The engine stops traffic itself at the end of
#: each window; this is a backstop, long enough that a slow start-up or a loaded machine
#: never lets Locust end first (that would break the window: see ``Traffic.check``).
TRAFFIC_SLACK_S = 60.0

#: A client renews its bearer token this often (policy-desync shows through it).
TOKEN_REFRESH_S = 1.0


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

    # -- the run ---------------------------------------------------------------------

    def run(self) -> list[WindowRecord]:
        self.journal.write(
            "run_started",
            experiment=self.experiment.name,
            seed=self.experiment.seed,
            platform=self.platform.name,
            marker=self.marker,
        )
        try:
            with SignalGuard():
                for key in rounds(self.experiment, self.windows, self.run_dir, say=self._say):
                    self._window(key)
                self.cost_windows = self._cost_runner().run()
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

    def _window(self, key: WindowKey) -> None:
        spec = self.experiment.faults[key.fault_index]
        record = WindowRecord(key, fault_type=spec.type)
        self.windows.append(record)
        self.journal.write(
            "window_started", setup=key.setup, fault=key.fault, repetition=key.repetition
        )
        try:
            with contextlib.ExitStack() as stack:
                self._run_window(stack, key, spec, record)
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
        self._close_window(record)

    def _close_window(self, record: WindowRecord) -> None:
        now = time.monotonic()
        if record.inject_t is not None:
            record.revert_t = record.revert_t or now
            record.end_t = record.end_t or now

    def _run_window(
        self, stack: contextlib.ExitStack, key: WindowKey, spec: FaultSpec, record: WindowRecord
    ) -> None:
        timeline = self.experiment.timeline
        # Registered first so it runs last, once the topology is stopped: the window's
        # teardown ends there (chaos.analysis.overhead reads it).
        stack.callback(self.journal.write, "topology_stopped", setup=key.setup)
        topology = stack.enter_context(
            self.platform.start(Setup(key.setup), self._start_options(key, spec))
        )
        self.journal.write(
            "topology_up",
            setup=key.setup,
            startup_s=round(topology.startup_s, 3),
            **topology.journal_record(),
        )
        stack.callback(self.journal.write, "topology_down", setup=key.setup)
        stack.callback(self._collect_writes, topology, record)
        stack.callback(topology.subscribe(self._on_event))

        sampler = CounterSampler(topology)
        # Registered first so it runs last: after the sampler's final reading.
        stack.callback(lambda: append_counters(self.run_dir, sampler.samples))
        stack.enter_context(sampler)
        record.phase = "traffic"
        # A platform that runs the load itself (Locust inside a cluster) provides it.
        hosted = topology.hosted_traffic() if isinstance(topology, HostsTraffic) else None
        start_traffic = hosted.start if hosted is not None else self.options.traffic
        network = hosted.network if hosted is not None else LOOPBACK
        traffic = stack.enter_context(start_traffic(self._traffic_config(topology, key, network)))
        traffic.wait_started()
        # What ``clean`` needs to prove a leftover Locust process is this run's.
        self.journal.write(
            "traffic_started",
            setup=key.setup,
            processes=[[pid, start_ticks(pid)] for pid in traffic.pids],
        )
        record.warmup_start_t = time.monotonic()
        self._start_bypass(stack, topology, key)  # its first request inside the window
        self.journal.write("warmup", setup=key.setup, seconds=timeline.warmup)
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
        self._hold(key, "recovery", timeline.recovery, traffic)
        record.end_t = time.monotonic()
        self.journal.write("recovery_ended", setup=key.setup)
        record.phase = "stop traffic"
        traffic.stop()

    def _start_bypass(
        self, stack: contextlib.ExitStack, topology: RunningTopology, key: WindowKey
    ) -> None:
        """The window's bypass probe (``security.bypass``), where the platform lists app
        ports, and its anonymous stream through the ingress (``security.anonymous``)."""
        security = self.experiment.security
        if security is not None and security.anonymous is not None:
            stack.enter_context(
                anonymous_stream(
                    topology.ingress_url,
                    security.anonymous,
                    self.run_dir / BYPASS_DIR / f"{key.slug}.anonymous.jsonl",
                )
            )
        if security is None or security.bypass is None:
            return
        out = self.run_dir / BYPASS_DIR / f"{key.slug}.jsonl"
        if isinstance(topology, RunsBypassProbe):
            bp = security.bypass
            span = self.experiment.timeline.total
            stack.enter_context(topology.bypass_probe(bp.rate, bp.max_requests, span, out))
            return
        if not isinstance(topology, ExposesAppPorts):
            return  # validation keeps the probe to platforms that have it
        probe = BypassProbe(
            topology.app_ports(),
            security.bypass.rate,
            security.bypass.max_requests,
            self.run_dir / BYPASS_DIR / f"{key.slug}.jsonl",
        )
        stack.enter_context(probe)

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

    def _on_event(self, event: Event) -> None:
        self.journal.write(
            "event",
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
        watches = [_ConditionWatch(c) for c in self.experiment.stop_conditions]
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
        lifetime = None
        if isinstance(spec, CertExpiryFault) and spec.connection_lifetime is not None:
            # It decides how fast an expiry shows: the fault sets it for its windows.
            lifetime = spec.connection_lifetime
        # A policy-desync fault's refresh is the control plane's key-set refresh there.
        refresh = spec.refresh if isinstance(spec, PolicyDesyncFault) else None
        return StartOptions(
            run_dir=self.run_dir / TOPOLOGIES_DIR / key.slug,
            connection_lifetime_s=lifetime,
            jwks_refresh_s=refresh,
            dataplane=self.experiment.dataplane,
            run_marker=self.marker,
            record=self.journal.write,
            extra={
                **start_extra(self.experiment, spec),
                **security_extra(self.experiment.security),
            },
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


def traffic_config(
    experiment: Experiment,
    *,
    host: str,
    out_dir: Path,
    token_url: str | None = None,
    workers: int = 0,
    marker: str = "",
    network: str = LOOPBACK,
) -> TrafficConfig:
    """The load of one window of ``experiment`` (the dry run describes it too)."""
    traffic = experiment.traffic
    timeline = experiment.timeline
    return TrafficConfig(
        host=host,
        out_dir=out_dir,
        duration_s=timeline.warmup + timeline.hold + timeline.recovery + TRAFFIC_SLACK_S,
        users=traffic.users,
        spawn_rate=traffic.spawn_rate,
        rate=traffic.rate,
        endpoints=tuple(
            Endpoint(e.name, e.method, e.path, e.weight) for e in traffic.endpoints or ()
        ),
        locustfile=traffic.locustfile,
        token_url=token_url,
        token_refresh_s=TOKEN_REFRESH_S,
        workers=workers,
        mode=traffic.mode,
        max_in_flight=traffic.max_in_flight,
        extra_env=((RUN_MARKER_ENV, marker),),
        network=network,
    )


class _ConditionWatch:
    """How long a stop condition has held without a break."""

    def __init__(self, condition: StopCondition) -> None:
        self.condition = condition
        self.since: float | None = None

    def describe(self) -> str:
        c = self.condition
        if c.type == "error_rate":
            return f"error rate above {c.above:.0%} for {c.for_:g} s"
        return f"p95 above {c.above_ms:g} ms for {c.for_:g} s"

    def violated_for(self, stats: LiveStats, now: float) -> bool:
        c = self.condition
        if c.type == "error_rate":
            bad = stats.requests > 0 and stats.error_rate > c.above
        else:
            bad = stats.p95_ms is not None and stats.p95_ms > c.above_ms
        if not bad:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= c.for_


def run_directory_error(run_dir: Path, exc: OSError) -> RunDirectoryError:
    """One line for an I/O error under the run directory (a full disk, mostly)."""
    where = exc.filename or run_dir
    return RunDirectoryError(f"{where}: cannot write the run directory: {exc.strerror or exc}")


def copy_experiment(source: Path, run_dir: Path) -> None:
    """Keep the exact experiment file with the run (the report shows it; ``OutputError``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    replace_file(run_dir / EXPERIMENT_FILE, lambda p: shutil.copyfile(source, p))


__all__ = ["Engine", "RunInterrupted", "RunOptions", "StopConditionHit"]
