"""CPU and memory of exactly the processes a local topology started, from ``/proc``.

Each process the supervisor started is read by pid and checked against its start time
(``/proc/<pid>/stat`` field 22), so a pid reused by another program is never counted:

* CPU: ``utime + stime`` (fields 14 and 15, in ``SC_CLK_TCK`` ticks), the kernel's own
  accounting of the process, whatever the machine's load.
* CPU in ns: the scheduler's run time of each thread (``/proc/<pid>/task/<tid>/schedstat``,
  first field), summed over the threads. The tick count rounds each end of a window to
  10 ms, which over a short window of a lightly loaded proxy is the larger part of the
  spread between repetitions; the run time is exact. A thread that exits mid-window
  takes its run time with it, so then the window falls back to the ticks.
* memory: ``Pss`` and ``Rss`` of ``/proc/<pid>/smaps_rollup``. PSS is what the report
  uses: the Envoy binary's pages are shared by every proxy of the machine, and PSS splits
  each shared page among the processes mapping it, so the proxies' PSS adds up to their
  real footprint together; RSS counts the shared pages once per proxy.

Deviation, reported with the figures: the local control plane (certificate agent and
config push) is not a process but a thread of the runner; its CPU is that thread's
(``/proc/self/task/<tid>/stat``) and it has no memory of its own to report (0).
"""

from __future__ import annotations

import os
from pathlib import Path

from chaos.errors import UsageError
from chaos.experiment import Setup
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.usage import ProcessReading, UsageReading
from chaos.rundir.cost import ProxyKind

#: Where the kernel's per-process accounting lives (a parameter for the tests).
PROC = Path("/proc")


def read_stat(path: Path) -> tuple[int, int] | None:
    """(utime + stime, start ticks) of a ``stat`` file, or None when it is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    try:
        # Fields 14, 15 and 22 overall: the 12th, 13th and 20th after "pid (comm)".
        return int(fields[11]) + int(fields[12]), int(fields[19])
    except (IndexError, ValueError):
        return None


def read_threads_ns(task_dir: Path) -> tuple[int, frozenset[int]] | None:
    """On-CPU ns summed over the threads under ``task_dir``, and their ids (None if gone)."""
    total = 0
    tids: set[int] = set()
    try:
        entries = os.listdir(task_dir)
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        ns = read_schedstat(task_dir / entry / "schedstat")
        if ns is not None:  # a thread that just exited is skipped
            total += ns
            tids.add(int(entry))
    return (total, frozenset(tids)) if tids else None


def read_schedstat(path: Path) -> int | None:
    """The first field of a ``schedstat`` file: ns on the CPU so far (None when gone)."""
    try:
        with open(path, "rb", buffering=0) as f:
            first = f.read(64).split(b" ", 1)[0]
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def read_memory(pid: int, proc: Path = PROC) -> tuple[int, int] | None:
    """(PSS, RSS) in bytes from ``smaps_rollup``, or None when it cannot be read."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Rss"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[key] = int(parts[0]) * 1024  # the kernel writes kB
    if "Pss" not in found or "Rss" not in found:
        return None
    return found["Pss"], found["Rss"]


def kind_of(setup: Setup, name: str) -> ProxyKind:
    """The cost kind of a supervised process, from its name in the layout."""
    if name.endswith(".app"):
        return ProxyKind.APP
    if name.endswith(".proxy"):
        return ProxyKind.MESH_SIDECAR if setup is Setup.MESH else ProxyKind.SIDECAR
    if name.startswith("ztunnel-"):
        return ProxyKind.NODE_PROXY
    if name.startswith("waypoint-"):
        return ProxyKind.WAYPOINT
    if name == "ingress":
        return ProxyKind.INGRESS
    raise UsageError(f"{name}: not a process of the local layout")


class LocalUsage:
    """Reads the usage of every process of one running topology (and its control plane)."""

    def __init__(self, topology: LocalTopology, proc: Path = PROC) -> None:
        self.topology = topology
        self.proc = proc
        self.clk_tck = os.sysconf("SC_CLK_TCK")

    def _placement(self, name: str) -> tuple[str, str]:
        layout = self.topology.layout
        group = name.rsplit(".", 1)[0]
        for pod in layout.pods:
            if pod.name == group:
                return pod.name, pod.node
        for proxy in layout.node_proxies:
            if proxy.name == name:
                return "", proxy.node
        return "", ""

    def read(self, *, memory: bool = True, threads: bool = True) -> UsageReading:
        """Read every supervised process now; the gone ones are listed as missing.

        ``memory=False`` skips ``smaps_rollup`` (the kernel walks the page tables for
        it, the costly part of a reading): CPU and identity only, memory 0.
        ``threads=False`` skips each thread's ``schedstat`` (a file per thread: about
        four fifths of a CPU-only reading of a mesh topology): CPU in ticks only.
        """
        setup = self.topology.layout.setup
        readings: list[ProcessReading] = []
        missing: list[str] = []
        for name, pid in sorted(self.topology.supervisor.pids().items()):
            stat = read_stat(self.proc / str(pid) / "stat")
            sizes = read_memory(pid, self.proc) if memory else (0, 0)
            if stat is None or sizes is None:
                missing.append(name)
                continue
            pod, node = self._placement(name)
            run_time = read_threads_ns(self.proc / str(pid) / "task") if threads else None
            readings.append(
                ProcessReading(
                    name,
                    kind_of(setup, name),
                    pod,
                    node,
                    pid,
                    stat[1],
                    stat[0],
                    *sizes,
                    cpu_ns=run_time[0] if run_time else None,
                    threads=run_time[1] if run_time else frozenset(),
                )
            )
        missing += self._expected_but_absent({r.name for r in readings} | set(missing))
        readings += self._control_plane()
        return UsageReading(tuple(readings), self.clk_tck, missing=tuple(missing))

    def _expected_but_absent(self, seen: set[str]) -> list[str]:
        """Processes the supervisor knows that have no running pid (crashed, restarting)."""
        return [n for n in self.topology.supervisor.names() if n not in seen]

    def _control_plane(self) -> list[ProcessReading]:
        """The certificate agent's thread, the local control plane's steady-state work."""
        agent = self.topology.cert_agent
        tid = agent.native_id if agent is not None else None
        if tid is None:
            return []
        task = self.proc / str(os.getpid()) / "task" / str(tid)
        stat = read_stat(task / "stat")
        if stat is None:
            return []
        ns = read_schedstat(task / "schedstat")
        return [
            ProcessReading(
                "control-plane",
                ProxyKind.CONTROL_PLANE,
                "",
                "",
                tid,
                stat[1],
                stat[0],
                0,
                0,
                cpu_ns=ns,
                threads=frozenset({tid}) if ns is not None else frozenset(),
            )
        ]

    def counts(self) -> tuple[int, int, int]:
        """(pods, nodes, services) of the topology."""
        layout = self.topology.layout
        pods = layout.pods
        return len(pods), len({p.node for p in pods}), len({p.service for p in pods})


__all__ = [
    "PROC",
    "LocalUsage",
    "kind_of",
    "read_memory",
    "read_schedstat",
    "read_stat",
    "read_threads_ns",
]
