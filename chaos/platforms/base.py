"""The platform port: what a platform implements so the engine and the faults can use it.

The engine, the faults, traffic, analysis and report never import a platform;
they see only these protocols. A platform (``local``, ``kubernetes``, the
in-memory ``fake``) registers under the ``sidecar_chaos.platforms`` entry point
group and provides:

* :class:`Platform`: its name and setups, ``validate`` (targets against the
  workload it deploys, before anything starts), ``start`` (a context manager
  yielding a :class:`RunningTopology`), ``plan_ops`` (the mechanisms, for a
  plan without a running topology: the dry run) and ``clean`` (undo what a
  dead runner's journal says is still applied).
* :class:`RunningTopology`: the pods, the ingress URL, a token source, events
  to subscribe to, proxy counters, recorded writes, the start-up time, and the
  :class:`FaultOps` bound to it.
* :class:`HostsTraffic` (optional on a running topology): the platform runs the
  window's load itself (Locust inside a cluster) instead of the engine's Locust
  on this machine; :class:`PlansTraffic` (optional on a platform) lists the
  calls that load makes, for the dry run.
* :class:`FaultOps`: the mechanisms faults need, named by intent. The platform
  decides *how* (an admin runtime call, a pushed route, a VirtualService, a
  kill, a Kubernetes object); the fault keeps the policy (what, where, for how
  long, how to tell it took).

Every "undo" operation is idempotent: it may run twice, or after a partial apply.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from chaos.experiment import Experiment, Setup
from chaos.experiment.dataplane import DataPlaneSpec
from chaos.rundir.counters import CounterSample
from chaos.rundir.journal import JournalEntry, JsonValue
from chaos.traffic.base import TrafficFactory
from chaos.traffic.config import TrafficConfig

Direction = Literal["inbound", "outbound"]


# -- neutral data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """One replica of a service, as every platform names it."""

    name: str
    service: str
    node: str
    replica: int


@dataclass(frozen=True)
class Workload:
    """What a platform will deploy for a setup (or found running): its pods."""

    setup: Setup
    pods: tuple[Pod, ...]

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.service for p in self.pods))

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({p.node for p in self.pods}))

    def replicas_of(self, service: str) -> tuple[int, ...]:
        return tuple(sorted({p.replica for p in self.pods if p.service == service}))


class EventKind(enum.StrEnum):
    """What happened. Add a member here to add a kind; the value is what is serialised."""

    STARTED = "started"
    READY = "ready"
    UNREADY = "unready"
    CRASHED = "crashed"
    #: A process ended on its own with exit code 0.
    EXITED = "exited"
    RESTARTED = "restarted"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    CERT_ISSUED = "cert_issued"
    CERT_ROTATED = "cert_rotated"
    #: A certificate request the CA did not answer; the agent tries again after a backoff.
    CERT_RETRY = "cert_retry"
    CONFIG_PUSHED = "config_pushed"
    #: A pod left (or came back into) its callers' endpoints, after the control plane's
    #: debounce (its proxy crashed: the pod went NotReady; it is ready again).
    ENDPOINTS_REMOVED = "endpoints_removed"
    ENDPOINTS_RESTORED = "endpoints_restored"
    FAULT_INJECTED = "fault_injected"
    FAULT_REVERTED = "fault_reverted"


def utc_now() -> str:
    """The current UTC time as ISO-8601 with microseconds (``...+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Event:
    """One thing that happened to one subject (a process or pod name)."""

    kind: EventKind
    subject: str
    t: float
    utc: str
    detail: str = ""

    @classmethod
    def now(cls, kind: EventKind | str, subject: str, detail: str = "") -> Event:
        """An event stamped with the current monotonic and UTC times."""
        return cls(EventKind(kind), subject, time.monotonic(), utc_now(), detail)

    def to_dict(self) -> dict[str, str | float]:
        """The event as a JSON-ready mapping."""
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "t": self.t,
            "utc": self.utc,
            "detail": self.detail,
        }


EventCallback = Callable[[Event], None]


@dataclass(frozen=True)
class HttpFault:
    """An HTTP fault at a proxy: a fixed delay or an error status on ``percent`` of requests."""

    percent: int
    delay_ms: int | None = None
    abort_status: int | None = None


@dataclass(frozen=True)
class HttpFaultSite:
    """Where an HTTP fault for some pods is applied, and by which mechanism."""

    #: The proxy that applies it (a pod's proxy, a waypoint, a VirtualService route).
    proxy: str
    direction: Direction
    #: The pods whose requests it reaches (the blast radius).
    affects: tuple[str, ...]
    #: How it is switched on and off, in words (the plan shows them).
    mechanism: str
    undo: str
    #: The stat at ``proxy`` that counts every request through the site (one HTTP
    #: connection manager's ``downstream_rq_total``), for the share of requests it saw;
    #: None where the platform cannot read one.
    requests_stat: str | None = None


@dataclass(frozen=True)
class ProxyTarget:
    """A proxy a crash kills, and the pods that lose their data path with it."""

    name: str
    affects: tuple[str, ...]
    mechanism: str = "SIGKILL"
    undo: str = "stop further kills; the supervisor restarts it"


@dataclass(frozen=True)
class Mechanism:
    """How a platform carries out one intent, in words: what it does and how it is undone."""

    subject: str
    action: str
    undo: str


@dataclass(frozen=True)
class ControlPlaneState:
    """What a control-plane outage has done so far, measured by the platform."""

    stopped: bool
    #: Certificate rotations that were due and did not happen.
    rotations_missed: int = 0
    #: Config pushes (or fetches) that were queued or failed.
    pushes_blocked: int = 0
    certs_expired: int = 0
    detail: str = ""


@dataclass(frozen=True)
class Problem:
    """Something wrong with an experiment on a platform, at a field of the file."""

    #: The field's path in the experiment file, e.g. ``("faults", 0, "target", "service")``.
    at: tuple[str | int, ...]
    message: str


# -- the protocols ----------------------------------------------------------------------------


@runtime_checkable
class FaultOps(Protocol):
    """The fault mechanisms of one topology (running, or only planned for a dry run)."""

    @property
    def setup(self) -> Setup: ...

    @property
    def workload(self) -> Workload: ...

    # HTTP faults
    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        """Where an HTTP fault on ``pods`` goes (one site may serve several pods)."""
        ...

    def set_http_fault(self, site: HttpFaultSite, fault: HttpFault) -> None: ...

    def clear_http_fault(self, site: HttpFaultSite) -> None: ...

    def http_faults_injected(self, site: HttpFaultSite) -> int:
        """Delays and aborts injected at ``site`` so far (a counter that only rises)."""
        ...

    # crashes
    def crash_targets(self, pods: Sequence[Pod], node: str | None) -> list[ProxyTarget]:
        """The proxies whose crash hits ``pods`` (ambient: their nodes' proxies)."""
        ...

    def kill_proxy(self, target: ProxyTarget) -> None: ...

    def proxy_restarts(self, target: ProxyTarget) -> int: ...

    # identities
    def expiry_mechanism(self, pod: Pod, ttl_s: float) -> Mechanism: ...

    def expire_identity(self, pod: Pod, ttl_s: float) -> float:
        """Give ``pod`` a certificate that expires after ``ttl_s``, rotation blocked.

        Returns its notAfter as a POSIX timestamp.
        """
        ...

    def restore_identity(self, pod: Pod) -> None: ...

    def tls_failures(self) -> dict[str, int]:
        """TLS and connect failure counters of every proxy, keyed by proxy and counter."""
        ...

    # control plane
    def control_plane_mechanisms(self, cert_ttl_s: float | None) -> list[Mechanism]:
        """What an outage stops; empty where the setup has no control plane."""
        ...

    def stop_control_plane(self, cert_ttl_s: float | None) -> None: ...

    def start_control_plane(self) -> None: ...

    def control_plane_state(self) -> ControlPlaneState: ...

    # token validation
    def validates_tokens(self) -> bool:
        """Whether any proxy of the setup validates JWTs (else a key rotation cannot bite)."""
        ...

    def key_rotation_mechanism(self) -> Mechanism: ...

    def rotate_signing_key(self) -> None: ...

    def restore_signing_key(self) -> None: ...

    def token_denials(self) -> dict[str, int]:
        """Requests denied for a bad token, per proxy and counter."""
        ...

    def key_set_updates(self) -> int:
        """Key sets delivered to proxies so far (rises when a control plane pushes one)."""
        ...


@runtime_checkable
class RunningTopology(Protocol):
    """One setup's workload, up while the platform's ``start`` context is entered."""

    @property
    def setup(self) -> Setup: ...

    @property
    def pods(self) -> tuple[Pod, ...]: ...

    @property
    def ingress_url(self) -> str: ...

    @property
    def token_url(self) -> str | None: ...

    @property
    def startup_s(self) -> float: ...

    @property
    def ops(self) -> FaultOps: ...

    def journal_record(self) -> dict[str, JsonValue]:
        """What ``clean`` needs to find this topology's leftovers (pids, objects)."""
        ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` on every event from now on; returns the unsubscribe."""
        ...

    def read_counters(self) -> list[CounterSample]:
        """One reading of every proxy's counters the analysis uses (restarts included)."""
        ...

    def recorded_writes(self) -> list[str] | None:
        """The ids of the writes the workload recorded (lost and duplicated writes).

        None when they could not be read: the run's writes are then not checked
        (an empty list would count every acknowledged write as lost).
        """
        ...


@dataclass(frozen=True)
class HostedTraffic:
    """Load a platform runs itself (Locust inside a cluster), not on this machine."""

    #: Starts the window's load from the engine's config (entered on the window's stack).
    start: TrafficFactory
    #: The :class:`~chaos.traffic.config.TrafficConfig` network its URLs are checked
    #: against (``cluster``: the cluster's own Service names, never an external host).
    network: str


@runtime_checkable
class HostsTraffic(Protocol):
    """Optional for a :class:`RunningTopology`: where its platform runs the load itself."""

    def hosted_traffic(self) -> HostedTraffic | None:
        """The platform's own traffic, or None: the engine's Locust on this machine."""
        ...


@runtime_checkable
class PlansTraffic(Protocol):
    """Optional for a :class:`Platform` whose topologies host their load (dry run)."""

    def plan_traffic(self, setup: Setup, config: TrafficConfig) -> list[str]:
        """Each call a window's load makes on the platform, with its undo (no side effects).

        ``config`` is the window's load as the engine configures it; the platform puts
        its own host and network in.
        """
        ...


@runtime_checkable
class PlansDataPlane(Protocol):
    """Optional for a :class:`Platform` that writes an experiment's ``dataplane:`` block
    into the cluster when a window starts (dry run)."""

    def plan_dataplane(self, setup: Setup, spec: DataPlaneSpec) -> list[str]:
        """Each write a window of ``setup`` makes for ``spec``, with its undo (no side effects)."""
        ...


@dataclass(frozen=True)
class StartOptions:
    """How to bring a setup up for one fault window."""

    run_dir: Path
    #: Platform-specific placement (local: the slot, the third octet of pod addresses).
    slot: int | None = None
    #: Upstream connection lifetime of the proxies (bounds how fast a cert expiry shows).
    connection_lifetime_s: float | None = None
    #: How often the control plane re-reads the key set (a policy-desync fault's ``refresh``).
    jwks_refresh_s: float | None = None
    #: The experiment's deviations from each setup's data-plane defaults.
    dataplane: DataPlaneSpec | None = None
    #: A random marker of the run, put into every child process or object the platform
    #: creates (``clean`` proves identity with it).
    run_marker: str = ""
    #: Writes an entry to the run's journal (``record("object_changed", **data)``):
    #: what a platform must know to undo its changes after the runner died.
    record: Callable[..., object] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Platform(Protocol):
    """A place experiments run: the embedded local platform, a Kubernetes cluster, a fake."""

    @property
    def name(self) -> str: ...

    @property
    def setups(self) -> tuple[Setup, ...]: ...

    def workload(self, setup: Setup) -> Workload:
        """The pods ``setup`` will have once started (what targets are checked against)."""
        ...

    def validate(self, experiment: Experiment) -> list[Problem]:
        """Problems of ``experiment`` on this platform (empty: fine), before anything starts.

        Targets are checked against :meth:`workload` by the caller; this is for what
        only the platform knows (a setup it cannot run, a parameter it cannot honour).
        """
        ...

    def start(
        self, setup: Setup, options: StartOptions
    ) -> AbstractContextManager[RunningTopology]: ...

    def plan_ops(self, setup: Setup) -> FaultOps:
        """The mechanisms without a running topology: they describe, they cannot act."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of what the platform runs (Envoy, Kubernetes, Istio...), for results."""
        ...

    def parameters(self) -> dict[str, float | str]:
        """Platform settings that decide results (reported with them), e.g. the proxies'
        default ``connection_lifetime_s``."""
        ...

    def clean(self, run_dir: Path, entries: Sequence[JournalEntry]) -> list[str]:
        """Undo what ``entries`` show as still applied or still running; lines saying what."""
        ...


__all__ = [
    "ControlPlaneState",
    "Direction",
    "Event",
    "EventCallback",
    "EventKind",
    "FaultOps",
    "HostedTraffic",
    "HostsTraffic",
    "HttpFault",
    "HttpFaultSite",
    "Mechanism",
    "PlansDataPlane",
    "PlansTraffic",
    "Platform",
    "Pod",
    "Problem",
    "ProxyTarget",
    "RunningTopology",
    "StartOptions",
    "Workload",
    "utc_now",
]
