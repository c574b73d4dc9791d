"""An in-memory platform: records every call, simulates effects and events; no process runs.

It makes the engine and the faults unit-testable in milliseconds: a test builds a
:class:`FakePlatform`, runs an :class:`~chaos.engine.run.Engine` with it (and
:class:`~chaos.testing.fake_traffic.FakeTraffic`), then reads :attr:`FakePlatform.calls`
to see what was started, applied and reverted, in which order. ``fail_on`` makes
any named call raise, to exercise every error path; ``no_effect`` makes the
mechanisms act without an effect, so faults verify as "no effect".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import FaultError, PlatformError
from chaos.experiment import ALL_SETUPS, Experiment, Setup
from chaos.platforms.base import (
    ControlPlaneState,
    Direction,
    Event,
    EventCallback,
    EventKind,
    FaultOps,
    HttpFault,
    HttpFaultSite,
    Mechanism,
    Platform,
    Pod,
    Problem,
    ProxyTarget,
    RunningTopology,
    StartOptions,
    Workload,
)
from chaos.rundir.counters import CounterSample
from chaos.rundir.journal import JournalEntry, JsonValue

SERVICES = ("frontend", "checkout", "payments")
NODES = ("node-1", "node-2")


def demo_workload(setup: Setup, services: Sequence[str] = SERVICES) -> Workload:
    """Two replicas of each service, replica r on node r + 1 (as the demo deploys it)."""
    pods = tuple(
        Pod(f"{service}-{replica}", service, NODES[replica], replica)
        for service in services
        for replica in range(2)
    )
    return Workload(setup, pods)


@dataclass
class Call:
    """One call the engine or a fault made, with its arguments in words."""

    name: str
    args: tuple[str, ...] = ()
    t: float = field(default_factory=time.monotonic)


class CallLog:
    """The calls made so far; raises for the ones a test asked to fail."""

    def __init__(
        self, fail_on: Sequence[str] = (), on_call: Callable[[str], None] | None = None
    ) -> None:
        self.calls: list[Call] = []
        self.fail_on = set(fail_on)
        self.on_call = on_call

    def __call__(self, name: str, *args: object) -> None:
        self.calls.append(Call(name, tuple(str(a) for a in args)))
        if self.on_call is not None:
            self.on_call(name)
        if name in self.fail_on:
            raise FaultError(f"fake platform: {name} failed (as the test asked)")

    def names(self) -> list[str]:
        return [c.name for c in self.calls]


class FakeOps:
    """Fault mechanisms in memory: set, clear and count, nothing on a network."""

    def __init__(
        self, workload: Workload, log: CallLog, *, running: bool, no_effect: bool = False
    ) -> None:
        self._workload = workload
        self._log = log
        self._running = running
        self._no_effect = no_effect
        self.http_faults: dict[str, HttpFault] = {}
        self.injected: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        self.expired: dict[str, float] = {}
        self.control_plane_down = False
        self.key_rotated = False
        self.denials = 0

    def _act(self, name: str, *args: object) -> None:
        if not self._running:
            raise FaultError("no running topology: this fault can only be planned here")
        self._log(name, *args)

    @property
    def setup(self) -> Setup:
        return self._workload.setup

    @property
    def workload(self) -> Workload:
        return self._workload

    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        return [
            HttpFaultSite(f"{p.name}.proxy", direction, (p.name,), "fake switch", "fake off")
            for p in pods
        ]

    def set_http_fault(self, site: HttpFaultSite, fault: HttpFault) -> None:
        self._act("set_http_fault", site.proxy, fault.percent)
        self.http_faults[site.proxy] = fault
        if not self._no_effect:
            self.injected[site.proxy] = self.injected.get(site.proxy, 0) + 10

    def clear_http_fault(self, site: HttpFaultSite) -> None:
        self._act("clear_http_fault", site.proxy)
        self.http_faults.pop(site.proxy, None)

    def http_faults_injected(self, site: HttpFaultSite) -> int:
        return self.injected.get(site.proxy, 0)

    def crash_targets(self, pods: Sequence[Pod], node: str | None) -> list[ProxyTarget]:
        return [ProxyTarget(f"{p.name}.proxy", (p.name,)) for p in pods]

    def kill_proxy(self, target: ProxyTarget) -> None:
        self._act("kill_proxy", target.name)
        if not self._no_effect:
            self.restarts[target.name] = self.restarts.get(target.name, 0) + 1

    def proxy_restarts(self, target: ProxyTarget) -> int:
        return self.restarts.get(target.name, 0)

    def expiry_mechanism(self, pod: Pod, ttl_s: float) -> Mechanism:
        return Mechanism(f"{pod.name} identity", "", "fake re-issue")

    def expire_identity(self, pod: Pod, ttl_s: float) -> float:
        self._act("expire_identity", pod.name, ttl_s)
        at = time.time() + ttl_s
        self.expired[pod.name] = at
        return at

    def restore_identity(self, pod: Pod) -> None:
        self._act("restore_identity", pod.name)
        self.expired.pop(pod.name, None)

    def tls_failures(self) -> dict[str, int]:
        now = time.time()
        failing = 0 if self._no_effect else sum(1 for at in self.expired.values() if at <= now)
        return {"fake ssl.fail_verify_error": failing}

    def control_plane_mechanisms(self, cert_ttl_s: float | None) -> list[Mechanism]:
        return [Mechanism("control plane", "fake stop", "fake start")]

    def stop_control_plane(self, cert_ttl_s: float | None) -> None:
        self._act("stop_control_plane", cert_ttl_s)
        self.control_plane_down = True

    def start_control_plane(self) -> None:
        self._act("start_control_plane")
        self.control_plane_down = False

    def control_plane_state(self) -> ControlPlaneState:
        missed = 0 if self._no_effect or not self.control_plane_down else 1
        return ControlPlaneState(self.control_plane_down, rotations_missed=missed)

    def validates_tokens(self) -> bool:
        return True

    def key_rotation_mechanism(self) -> Mechanism:
        return Mechanism("identity provider", "fake rotation", "fake restore")

    def rotate_signing_key(self) -> None:
        self._act("rotate_signing_key")
        self.key_rotated = True
        if not self._no_effect:
            self.denials += 5

    def restore_signing_key(self) -> None:
        self._act("restore_signing_key")
        self.key_rotated = False

    def token_denials(self) -> dict[str, int]:
        return {"fake jwt_authn.denied": self.denials}

    def key_set_updates(self) -> int:
        return 0


class FakeTopology:
    """A started setup: pods, events on demand, counters that only rise."""

    def __init__(self, platform: FakePlatform, setup: Setup, options: StartOptions) -> None:
        self.options = options
        self._setup = setup
        self._workload = platform.workload(setup)
        self._ops = FakeOps(
            self._workload, platform.log, running=True, no_effect=platform.no_effect
        )
        self._subscribers: list[EventCallback] = []
        self.writes: list[str] = list(platform.writes)

    @property
    def setup(self) -> Setup:
        return self._setup

    @property
    def pods(self) -> tuple[Pod, ...]:
        return self._workload.pods

    @property
    def ingress_url(self) -> str:
        return "http://127.0.0.1:9"

    @property
    def token_url(self) -> str | None:
        return None

    @property
    def startup_s(self) -> float:
        return 0.0

    @property
    def ops(self) -> FakeOps:
        return self._ops

    def journal_record(self) -> dict[str, JsonValue]:
        return {"fake": True}

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, kind: EventKind, subject: str, detail: str = "") -> None:
        """Simulate an event (a crash, a restart, a push) for the subscribers."""
        for callback in list(self._subscribers):
            callback(Event.now(kind, subject, detail))

    def read_counters(self) -> list[CounterSample]:
        now = time.monotonic()
        restarts = self._ops.restarts
        return [
            CounterSample(now, name, "restarts", float(restarts.get(name, 0)))
            for name in (f"{p.name}.proxy" for p in self.pods)
        ]

    def recorded_writes(self) -> list[str]:
        return list(self.writes)


@dataclass
class FakePlatform:
    """Implements :class:`chaos.platforms.base.Platform` in memory."""

    #: Calls whose name is listed here raise (``start``, ``set_http_fault``, ...).
    fail_on: Sequence[str] = ()
    #: Mechanisms act but change nothing measurable: faults verify as "no effect".
    no_effect: bool = False
    services: Sequence[str] = SERVICES
    #: Problems :meth:`validate` reports.
    problems: Sequence[Problem] = ()
    #: Write ids every topology reports as recorded.
    writes: Sequence[str] = ()
    #: Called with each topology once it is up (a test can emit events from it).
    on_start: Callable[[FakeTopology], None] | None = None
    #: Called with the name of every call, after it is recorded.
    on_call: Callable[[str], None] | None = None
    #: Whether a window's topology may start during the previous one's recovery.
    ahead: bool = False
    log: CallLog = field(init=False)
    topologies: list[FakeTopology] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.log = CallLog(self.fail_on, self.on_call)

    @property
    def calls(self) -> list[Call]:
        return self.log.calls

    @property
    def name(self) -> str:
        return "fake"

    def starts_ahead(self) -> bool:
        return self.ahead

    @property
    def setups(self) -> tuple[Setup, ...]:
        return ALL_SETUPS

    def workload(self, setup: Setup) -> Workload:
        return demo_workload(setup, self.services)

    def validate(self, experiment: Experiment) -> list[Problem]:
        return list(self.problems)

    @contextlib.contextmanager
    def start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        try:
            self.log("start", setup)
        except FaultError as exc:
            raise PlatformError(f"{setup}: did not start: {exc}") from exc
        topology = FakeTopology(self, setup, options)
        self.topologies.append(topology)
        try:
            if self.on_start is not None:
                self.on_start(topology)
            yield topology
        finally:
            self.log.calls.append(Call("stop", (setup.value,)))

    def plan_ops(self, setup: Setup) -> FaultOps:
        return FakeOps(self.workload(setup), self.log, running=False)

    def versions(self) -> dict[str, str]:
        return {"envoy": "fake"}

    def parameters(self) -> dict[str, float | str]:
        return {"connection_lifetime_s": 1.0}

    def clean(self, run_dir: Path, entries: Sequence[JournalEntry]) -> list[str]:
        self.log.calls.append(Call("clean", (str(run_dir),)))
        return []


def _implements_the_port(
    platform: FakePlatform, running: FakeTopology, ops: FakeOps
) -> tuple[Platform, RunningTopology, FaultOps]:
    """Never called: mypy checks here that the fakes implement the port."""
    return platform, running, ops


__all__ = ["Call", "FakeOps", "FakePlatform", "FakeTopology", "demo_workload"]
