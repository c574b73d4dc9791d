"""What a cost step records: one JSON line per cost window in ``<run>/cost.jsonl``.

A cost window is one setup at one offered rate in steady state (no fault). Its record
holds the measured interval, the requests the schedule called for and those sent, and
for every process the topology started (by pid and start time) the CPU it used over
the interval and its memory at the end, from the process's own accounting.

Memory is PSS (proportional set size, ``/proc/<pid>/smaps_rollup``): pages shared by
several processes (the Envoy binary's text, shared libraries) are split evenly among
them, so the PSS of every proxy adds up to what the proxies cost the machine together;
RSS would count the shared binary once per proxy.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The cost windows of a run, one JSON object a line.
COST_FILE = "cost.jsonl"


class ProxyKind(enum.StrEnum):
    """What a process is, for cost: each proxy kind, and the app itself."""

    SIDECAR = "sidecar"  # the per-pod security sidecar (static config)
    MESH_SIDECAR = "mesh-sidecar"  # the per-pod proxy fed by the control plane
    NODE_PROXY = "node-proxy"  # ambient: the shared L4 proxy of a node
    WAYPOINT = "waypoint"  # ambient: the L7 proxy of a service
    INGRESS = "ingress"  # the entry point every setup shares
    CONTROL_PLANE = "control-plane"
    APP = "app"  # the demo service (not a proxy: the pod's own work)


#: Kinds that grow with the pods, with the nodes, with the services, or not at all.
PER_POD_KINDS = (ProxyKind.SIDECAR, ProxyKind.MESH_SIDECAR)
PER_NODE_KINDS = (ProxyKind.NODE_PROXY,)
PER_SERVICE_KINDS = (ProxyKind.WAYPOINT,)
FIXED_KINDS = (ProxyKind.INGRESS, ProxyKind.CONTROL_PLANE)


@dataclass(frozen=True)
class ProcessCost:
    """One process over a cost window's measured interval."""

    name: str
    kind: ProxyKind
    #: The pod it belongs to (a sidecar, an app), else "".
    pod: str
    #: The node it runs on (a node proxy, a pod's processes), else "".
    node: str
    pid: int
    start_ticks: int
    #: On-CPU time over the interval, in seconds: the scheduler's ns account summed over
    #: the threads (``utime + stime`` in 10 ms ticks where a thread exited mid-interval).
    cpu_s: float
    #: Proportional set size at the end of the interval, in bytes.
    pss_bytes: int
    rss_bytes: int
    #: utime + stime over the interval in whole clock ticks, in seconds (the coarse
    #: account, kept to show what the tick rounding does to a short window).
    cpu_tick_s: float = 0.0
    #: Where the source samples on its own schedule (the kubelet): the seconds between
    #: its two samples ``cpu_s`` spans; the figures scale it to the measured interval.
    #: 0: ``cpu_s`` spans the measured interval itself (``/proc`` read at its bounds).
    cpu_interval_s: float = 0.0


@dataclass(frozen=True)
class CostWindowRecord:
    """One setup at one rate, one repetition."""

    setup: str
    rate: float
    repetition: int
    #: time.monotonic() bounds of the measured interval (samples are on the same clock).
    start_t: float
    end_t: float
    processes: tuple[ProcessCost, ...] = ()
    #: Why the window does not count (a process exited or restarted, the load died).
    broken: str = ""
    #: Counts of the topology: pods, nodes, services (for the growth line).
    pods: int = 0
    nodes: int = 0
    services: int = 0
    #: Seconds of CPU the sampling itself used (the runner's own threads).
    sampling_cpu_s: float = 0.0
    #: The machine's 1-minute load average at the end of the hold (other programs'
    #: load weighs on a proxy's CPU per request: it is reported beside the spread).
    load_avg_1m: float = 0.0
    #: What ``pss_bytes`` holds: ``pss`` (local ``/proc``) or ``working-set`` (the
    #: kubelet's ``container_memory_working_set_bytes`` on Kubernetes: no PSS there).
    memory: str = "pss"
    #: The CPU readings of the hold, one per tick and the last at ``end_t``:
    #: (time.monotonic(), proxies' CPU-s since ``start_t``, apps' CPU-s since ``start_t``),
    #: in clock ticks (``cpu_tick_s``: the readings between the two ends are the cheap ones).
    #: The analysis splits the hold into these slices (see ``chaos.analysis.cost``).
    ticks: tuple[tuple[float, float, float], ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The window's directory name under samples/ and topologies/."""
        return f"cost-{self.setup}-{self.rate:g}rps-r{self.repetition}"

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CostWindowRecord:
        data = json.loads(text)
        processes = tuple(
            ProcessCost(**{**p, "kind": ProxyKind(p["kind"])}) for p in data.pop("processes", [])
        )
        ticks = tuple((float(t), float(p), float(a)) for t, p, a in data.pop("ticks", []))
        return cls(**data, processes=processes, ticks=ticks)


def cost_slug(setup: str, rate: float, repetition: int) -> str:
    """The directory name of one cost window (as :attr:`CostWindowRecord.slug`)."""
    return f"cost-{setup}-{rate:g}rps-r{repetition}"


def append_cost(run_dir: Path, record: CostWindowRecord) -> None:
    """Add one cost window to the run's record."""
    with (run_dir / COST_FILE).open("a", encoding="utf-8") as out:
        out.write(record.to_json() + "\n")


def read_cost(run_dir: Path) -> list[CostWindowRecord]:
    """Every cost window of a run (none when the run had no cost step)."""
    path = run_dir / COST_FILE
    if not path.is_file():
        return []
    return [
        CostWindowRecord.from_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


__all__ = [
    "COST_FILE",
    "FIXED_KINDS",
    "PER_NODE_KINDS",
    "PER_POD_KINDS",
    "PER_SERVICE_KINDS",
    "CostWindowRecord",
    "ProcessCost",
    "ProxyKind",
    "append_cost",
    "cost_slug",
    "read_cost",
]
