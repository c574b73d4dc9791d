"""The embedded local platform behind the port: real Envoy processes on loopback addresses.

:class:`LocalPlatform` implements :class:`chaos.platforms.base.Platform`; each
started setup is a :class:`~.topology.LocalTopology` seen through
:class:`LocalRunning`, the port's :class:`~chaos.platforms.base.RunningTopology`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.errors import FaultError
from chaos.experiment import SETUP_NAMES, Experiment, Setup
from chaos.platforms.base import (
    FaultOps,
    Platform,
    Problem,
    RunningTopology,
    StartOptions,
    Workload,
)
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.shared.layout import (
    DEFAULT_SLOT,
    TopologyLayout,
    build_layout,
    default_ingress_port,
    workload_of,
)
from chaos.proc import is_same_process, kill_group
from chaos.rundir import TOPOLOGIES_DIR
from chaos.rundir.journal import JournalEntry

if TYPE_CHECKING:
    # The processes, certificates and Envoy configs are imported when a topology starts:
    # `validate` only needs the layout, and a hostile file must be refused quickly.
    from chaos.platforms.local.faultops import LocalFaultOps
    from chaos.platforms.local.running import LocalRunning
    from chaos.platforms.local.topology import RunLabel
    from chaos.platforms.shared.dataplane import SetupDataPlane
    from chaos.platforms.shared.promql import PrometheusCounters


@dataclass
class LocalPlatform:
    """Real Envoy processes on loopback addresses ``127.0.<slot>.x``, one slot per setup."""

    #: Slot per setup (third octet of pod addresses); default: the setup's own.
    slots: Mapping[str, int] = field(default_factory=dict)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Record started topologies for ``status``/``down`` as ``up`` does (one per setup).
    publish: bool = False
    #: List each started topology as its run's (``status``, ``token``): several runs
    #: of one setup may coexist, each in its own slot.
    list_runs: bool = True
    #: A Prometheus that scrapes the proxies (``up --prometheus-config``): counters come
    #: from its query API instead of the admin endpoints.
    prometheus_url: str | None = None
    #: Slots this platform's topologies hold now (a second topology of a setup whose slot
    #: is held, the next window started ahead, leases another: ``chaos.platforms.ahead``).
    _held: set[int] = field(default_factory=set, init=False, repr=False, compare=False)
    _held_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def name(self) -> str:
        return "local"

    def starts_ahead(self) -> bool:
        """Windows may overlap, each topology in a slot of its own, unless they are ``up``'s
        (one per setup in the registry) or a Prometheus scrapes the setups' own slots."""
        return not self.publish and self.prometheus_url is None

    @contextlib.contextmanager
    def _hold_slot(self, slot: int) -> Iterator[int]:
        """``slot``, or a leased free one while another topology of ours holds ``slot``."""
        with self._held_lock:
            taken = slot in self._held
            self._held.add(slot)
        if not taken:
            try:
                yield slot
            finally:
                with self._held_lock:
                    self._held.discard(slot)
            return
        from chaos.platforms.local.slots import lease_slot

        with lease_slot() as other:
            yield other

    @property
    def setups(self) -> tuple[Setup, ...]:
        return SETUP_NAMES

    @property
    def measures_usage(self) -> bool:
        """Cost steps read ``/proc`` (``chaos.platforms.local.usage``): Linux only."""
        return Path("/proc/self/smaps_rollup").is_file()

    def _slot(self, setup: Setup) -> int:
        # Read at call time: DEFAULT_SLOT may be moved (the tests lease free slots).
        return self.slots.get(setup.value, DEFAULT_SLOT[setup])

    def _layout(self, setup: Setup) -> TopologyLayout:
        slot = self._slot(setup)
        return build_layout(
            setup,
            Path(tempfile.gettempdir()) / "sidecar-chaos-plan",
            slot=slot,
            ingress_port=default_ingress_port(slot),
        )

    def workload(self, setup: Setup) -> Workload:
        return workload_of(self._layout(setup))

    def validate(self, experiment: Experiment) -> list[Problem]:
        problems = []
        for name, slot in self.slots.items():
            if name not in SETUP_NAMES:
                problems.append(Problem(("setups",), f"--slot {name}={slot}: not a setup"))
            elif not 1 <= slot <= 254:
                problems.append(Problem(("setups",), f"--slot {name}={slot}: not within 1..254"))
        from chaos.platforms.local.dataplane_policy import dataplane_problems

        return problems + dataplane_problems(experiment)

    @contextlib.contextmanager
    def start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        from chaos.platforms.local.dataplane_policy import policy_for, record_policy

        policy = policy_for(setup, options)
        record_policy(policy, options)
        wanted = options.slot if options.slot is not None else self._slot(setup)
        with self._hold_slot(wanted) as slot:
            yield from self._start_in(setup, options, slot, policy)

    def _start_in(
        self, setup: Setup, options: StartOptions, slot: int, policy: SetupDataPlane
    ) -> Iterator[RunningTopology]:
        import time

        from chaos.platforms.local.envoy_config import ProxyOptions
        from chaos.platforms.local.running import LocalRunning
        from chaos.platforms.local.topology import LocalTopology, TopologyOptions

        topology_options = TopologyOptions(
            proxy=ProxyOptions().with_policy(policy),
            setup=setup,
            run_dir=options.run_dir,
            slot=slot,
            ingress_port=0,
            backoff=self.backoff,
            publish=self.publish,
            run_label=_run_label(options.run_dir) if self.list_runs else None,
            marker=options.run_marker,
            sensitive_headers=_sensitive_headers(options),
        )
        started_wall = time.time()
        with LocalTopology(topology_options) as topology:
            yield LocalRunning(topology, self._counter_source(setup, started_wall))

    def _counter_source(self, setup: Setup, started_wall: float) -> PrometheusCounters | None:
        if self.prometheus_url is None:
            return None
        from chaos.platforms.local.scrape import SETUP_LABEL
        from chaos.platforms.shared.promql import PrometheusCounters

        return PrometheusCounters(
            self.prometheus_url, selector={SETUP_LABEL: setup.value}, since_wall=started_wall
        )

    def plan_ops(self, setup: Setup) -> FaultOps:
        from chaos.platforms.local.faultops import LocalFaultOps

        return LocalFaultOps(self._layout(setup))

    def versions(self) -> dict[str, str]:
        from chaos.platforms.local.envoy_process import envoy_binary

        try:
            envoy = subprocess.run(
                [str(envoy_binary()), "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            version = envoy.split("version:")[-1].strip().split("/")[1] if envoy else "unknown"
        except (OSError, IndexError, subprocess.SubprocessError, FaultError):
            version = "unknown"
        return {"envoy": version}

    def parameters(self) -> dict[str, float | str]:
        from chaos.platforms.shared.dataplane import ISTIO_VERSION

        # Istio sets no max_connection_duration; the data-plane table has the rest.
        return {"connection_lifetime_s": "none", "istio_model": ISTIO_VERSION}

    def clean(self, run_dir: Path, entries: Sequence[JournalEntry]) -> list[str]:
        """Kill the run's processes that still live, proven by pid, start time and marker.

        Every process a local topology starts is recorded in its ledger with its start
        time, and carries the run's marker in its environment; a pid that matches only
        partly (reused by another program, or a look-alike) is left alone.
        """
        lines: list[str] = []
        for entry in entries:
            if entry.kind != "topology_up":
                continue
            ledger, marker = entry.data.get("ledger"), entry.data.get("marker")
            if not isinstance(ledger, str) or not isinstance(marker, str) or not marker:
                continue
            for record in _ledger(Path(ledger), run_dir):
                name, pid, ticks = record
                if not is_same_process(pid, ticks, marker):
                    continue
                if kill_group(pid, signal.SIGKILL):
                    lines.append(f"killed leftover process {name} (pid {pid})")
                else:
                    lines.append(f"could not kill leftover process {name} (pid {pid})")
        return lines


def _run_label(window_dir: Path) -> RunLabel:
    """The run a window's topology serves: the engine starts it in ``RUN/topologies/WINDOW``."""
    from chaos.platforms.local.topology import RunLabel

    window_dir = window_dir.absolute()
    run_dir = window_dir.parent.parent if window_dir.parent.name == TOPOLOGIES_DIR else window_dir
    return RunLabel(run_id=run_dir.name, run_dir=run_dir, window=window_dir.name)


def _ledger(path: Path, run_dir: Path) -> Iterator[tuple[str, int, int]]:
    """(name, pid, start ticks) of every spawn a ledger under ``run_dir`` recorded."""
    try:
        inside = path.resolve().is_relative_to(run_dir.resolve())
        text = path.read_text(encoding="utf-8", errors="replace") if inside else ""
    except OSError:
        return
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        name, pid, ticks = record.get("name"), record.get("pid"), record.get("start_ticks")
        if isinstance(name, str) and isinstance(pid, int) and isinstance(ticks, int):
            yield name, pid, ticks


def _implements_the_port(
    platform: LocalPlatform, running: LocalRunning, ops: LocalFaultOps
) -> tuple[Platform, RunningTopology, FaultOps]:
    """Never called: mypy checks here that the local classes implement the port."""
    return platform, running, ops


__all__ = ["LocalPlatform"]


def _sensitive_headers(options: StartOptions) -> tuple[str, ...]:
    """The experiment's ``security.sensitive_headers``, as the engine passed them."""
    from chaos.experiment.security import DEFAULT_SENSITIVE_HEADERS, EXTRA_SENSITIVE_HEADERS

    told = options.extra.get(EXTRA_SENSITIVE_HEADERS, "")
    names = tuple(h for h in told.split(",") if h)
    return names or DEFAULT_SENSITIVE_HEADERS
