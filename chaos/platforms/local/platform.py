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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import FaultError
from chaos.platforms.base import (
    EventCallback,
    FaultOps,
    Platform,
    Pod,
    Problem,
    RunningTopology,
    StartOptions,
    Workload,
)
from chaos.platforms.local.admin import ANALYSIS_STATS_FILTER, counters
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.envoy_config import ProxyOptions, envoy_binary
from chaos.platforms.local.faultops import LocalFaultOps, workload_of
from chaos.platforms.local.layout import DEFAULT_SLOT, build_layout, default_ingress_port
from chaos.platforms.local.topology import PROCESS_LEDGER, LocalTopology, TopologyOptions
from chaos.proc import is_same_process, kill_group
from chaos.rundir.counters import CounterSample
from chaos.rundir.journal import JournalEntry, JsonValue
from chaos.spec import ALL_SETUPS, Experiment, Setup

#: The demo service that records its writes (lost and duplicated writes are counted there).
_WRITER = "payments"


class LocalRunning:
    """A running :class:`LocalTopology`, as the engine and the faults see it."""

    def __init__(self, topology: LocalTopology) -> None:
        self.topology = topology
        self._ops = LocalFaultOps.of(topology)
        self._admins = topology.layout.proxy_admins()

    @property
    def setup(self) -> Setup:
        return self.topology.layout.setup

    @property
    def pods(self) -> tuple[Pod, ...]:
        return self._ops.workload.pods

    @property
    def ingress_url(self) -> str:
        return self.topology.layout.ingress.url

    @property
    def token_url(self) -> str | None:
        server = self.topology.idp_server
        return server.token_url if server is not None else None

    @property
    def startup_s(self) -> float:
        return self.topology.startup_s

    @property
    def ops(self) -> FaultOps:
        return self._ops

    def journal_record(self) -> dict[str, JsonValue]:
        pids: dict[str, JsonValue] = dict(self.topology.supervisor.pids().items())
        return {
            "pids": pids,
            "ledger": str(self.topology.layout.dir / PROCESS_LEDGER),
            "marker": self.topology.options.marker,
        }

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        return self.topology.events.subscribe(callback)

    def read_counters(self) -> list[CounterSample]:
        supervisor = self.topology.supervisor
        samples: list[CounterSample] = []
        for proxy, admin_url in self._admins:
            now = time.monotonic()
            samples.append(CounterSample(now, proxy, "restarts", supervisor.restarts(proxy)))
            try:
                stats = counters(admin_url, stats_filter=ANALYSIS_STATS_FILTER)
            except FaultError:
                continue  # down or restarting: no reading now
            samples += [CounterSample(now, proxy, name, float(v)) for name, v in stats.items()]
        return samples

    def recorded_writes(self) -> list[str]:
        ids: list[str] = []
        for pod in self.topology.layout.pods_of(_WRITER):
            path = pod.dir / "writes.jsonl"
            if path.is_file():
                ids += _write_ids(path)
        return ids


def _write_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                ids.append(record["id"])
    return ids


@dataclass
class LocalPlatform:
    """Real Envoy processes on loopback addresses ``127.0.<slot>.x``, one slot per setup."""

    #: Slot per setup (third octet of pod addresses); default: the setup's own.
    slots: Mapping[str, int] = field(default_factory=dict)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Record started topologies for ``status``/``down``.
    publish: bool = False

    @property
    def name(self) -> str:
        return "local"

    @property
    def setups(self) -> tuple[Setup, ...]:
        return ALL_SETUPS

    def _slot(self, setup: Setup) -> int:
        # Read at call time: DEFAULT_SLOT may be moved (the tests lease free slots).
        return self.slots.get(setup.value, DEFAULT_SLOT[setup])

    def _layout_only(self, setup: Setup) -> LocalFaultOps:
        slot = self._slot(setup)
        layout = build_layout(
            setup,
            Path(tempfile.gettempdir()) / "sidecar-chaos-plan",
            slot=slot,
            ingress_port=default_ingress_port(slot),
        )
        return LocalFaultOps(layout)

    def workload(self, setup: Setup) -> Workload:
        return workload_of(self._layout_only(setup).layout)

    def validate(self, experiment: Experiment) -> list[Problem]:
        problems = []
        for name, slot in self.slots.items():
            if name not in ALL_SETUPS:
                problems.append(Problem(("setups",), f"--slot {name}={slot}: not a setup"))
            elif not 1 <= slot <= 254:
                problems.append(Problem(("setups",), f"--slot {name}={slot}: not within 1..254"))
        return problems

    @contextlib.contextmanager
    def start(self, setup: Setup, options: StartOptions) -> Iterator[RunningTopology]:
        proxy = ProxyOptions()
        if options.connection_lifetime_s is not None:
            proxy = ProxyOptions(connection_lifetime_s=options.connection_lifetime_s)
        topology_options = TopologyOptions(
            proxy=proxy,
            setup=setup,
            run_dir=options.run_dir,
            slot=options.slot if options.slot is not None else self._slot(setup),
            ingress_port=0,
            backoff=self.backoff,
            publish=self.publish,
            marker=options.run_marker,
        )
        with LocalTopology(topology_options) as topology:
            yield LocalRunning(topology)

    def plan_ops(self, setup: Setup) -> FaultOps:
        return self._layout_only(setup)

    def versions(self) -> dict[str, str]:
        try:
            envoy = subprocess.run(
                [str(envoy_binary()), "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            version = envoy.split("version:")[-1].strip().split("/")[1] if envoy else "unknown"
        except (OSError, IndexError, subprocess.SubprocessError, FaultError):
            version = "unknown"
        return {"envoy": version}

    def parameters(self) -> dict[str, float | str]:
        return {"connection_lifetime_s": ProxyOptions().connection_lifetime_s}

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


__all__ = ["LocalPlatform", "LocalRunning"]
