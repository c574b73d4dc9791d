"""A running local topology as the port sees it (:class:`~chaos.platforms.base.RunningTopology`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from chaos.errors import FaultError
from chaos.experiment import Setup
from chaos.platforms.base import EventCallback, FaultOps, Pod
from chaos.platforms.local.admin import ANALYSIS_STATS_FILTER, counters
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.local.usage import LocalUsage
from chaos.platforms.shared.layout import PROCESS_LEDGER, Port
from chaos.platforms.shared.promql import PrometheusCounters
from chaos.platforms.usage import UsageReading
from chaos.rundir.counters import CounterSample
from chaos.rundir.journal import JsonValue
from chaos.traffic.bypass import AppPort

#: The demo service that records its writes (lost and duplicated writes are counted there).
_WRITER = "payments"


class LocalRunning:
    """A running :class:`LocalTopology`, as the engine and the faults see it."""

    def __init__(
        self, topology: LocalTopology, prometheus: PrometheusCounters | None = None
    ) -> None:
        self.topology = topology
        self._ops = LocalFaultOps.of(topology)
        self._admins = topology.layout.proxy_admins()
        #: Read the Envoy counters through Prometheus instead of the admin endpoints.
        self.prometheus = prometheus
        self._usage = LocalUsage(topology)

    @property
    def setup(self) -> Setup:
        return self.topology.layout.setup

    @property
    def pods(self) -> tuple[Pod, ...]:
        return self._ops.workload.pods

    @property
    def ingress_url(self) -> str:
        return self.topology.layout.ingress.url

    def app_ports(self) -> list[AppPort]:
        """Each pod's app port on its address (in mesh/ambient nothing listens there)."""
        return [AppPort(p.name, p.address, int(Port.APP)) for p in self.topology.layout.pods]

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
        for proxy, _ in self._admins:
            samples.append(
                CounterSample(time.monotonic(), proxy, "restarts", supervisor.restarts(proxy))
            )
        if self.prometheus is not None:
            return samples + self.prometheus.read()
        for proxy, admin_url in self._admins:
            now = time.monotonic()
            try:
                stats = counters(admin_url, stats_filter=ANALYSIS_STATS_FILTER)
            except FaultError:
                continue  # down or restarting: no reading now
            samples += [CounterSample(now, proxy, name, float(v)) for name, v in stats.items()]
        return samples

    def read_usage(self, *, memory: bool = True, threads: bool = True) -> UsageReading:
        """CPU and memory of every process the topology started (cost steps)."""
        return self._usage.read(memory=memory, threads=threads)

    def counts(self) -> tuple[int, int, int]:
        return self._usage.counts()

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
