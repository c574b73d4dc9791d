"""The bench's load target and how a process is measured.

A real Envoy answering every request with 200 "ok" from a ``direct_response``, on
loopback, with one listener per load generator so that each one's requests are
counted apart (``downstream_rq_completed`` per listener, flushed on every admin read);
pinning a process to a core; and the CPU a process ran, from the scheduler's own count.
Used by :mod:`chaos.bench.driver` and the bench's driver figures.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chaos.errors import StartupError
from chaos.platforms.local.envoy_process import envoy_binary
from chaos.proc import spawn, stop_processes

HOST = "127.0.0.1"
_STAT_PREFIX = "bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _stat_prefix(listener: int) -> str:
    return _STAT_PREFIX if listener == 0 else f"{_STAT_PREFIX}_{listener}"


def _listener(port: int, listener: int) -> dict[str, object]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": _stat_prefix(listener),
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": f"bench-{listener}",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                          "typed_config": hcm}]}
        ],
    }  # fmt: skip


def _bootstrap(ports: Sequence[int], admin_port: int) -> dict[str, object]:
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        # workers' counters reach /stats only at a flush (every 5 s by default): flush on
        # each admin read, so a window's count is exact
        "stats_flush_on_admin": True,
        "static_resources": {"listeners": [_listener(p, i) for i, p in enumerate(ports)]},
    }


@dataclass(frozen=True)
class Target:
    """The Envoy being loaded: its URLs (one per listener) and how many requests each completed."""

    url: str
    admin_url: str
    pid: int
    #: Every listener's URL (``url`` is the first); each counts its requests apart.
    urls: tuple[str, ...] = ()

    def completed(self, listener: int = 0) -> int:
        """Requests Envoy has completed so far on one listener (``downstream_rq_completed``)."""
        name = f"http.{_stat_prefix(listener)}.downstream_rq_completed"
        with urllib.request.urlopen(f"{self.admin_url}/stats?filter=^{name}$", timeout=5) as r:
            text = bytes(r.read()).decode()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return int(value)
        return 0


@contextmanager
def envoy_target(work: Path, core: int | None, listeners: int = 1) -> Iterator[Target]:
    """A real Envoy answering every request with 200 "ok", on loopback; ended by its pid.

    ``listeners`` ports, each counting its own requests (:meth:`Target.completed`).
    """
    ports, admin_port = [_free_port() for _ in range(max(1, listeners))], _free_port()
    config = work / f"envoy-target-{admin_port}.json"
    config.write_text(json.dumps(_bootstrap(ports, admin_port)))
    argv = [
        str(envoy_binary()), "--config-path", str(config), "--disable-hot-restart",
        "--concurrency", "1", "--log-level", "error", "--log-path", str(work / "envoy.log"),
    ]  # fmt: skip
    proc = spawn(argv, log_path=work / "envoy.out", name="Envoy target")
    try:
        admin = f"http://{HOST}:{admin_port}"
        deadline = time.monotonic() + 15.0
        while True:
            try:
                with urllib.request.urlopen(f"{admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StartupError(f"the Envoy target did not get ready (see {work}/envoy.out)")
            time.sleep(0.05)
        if core is not None:
            pin(proc.pid, core)
        urls = tuple(f"http://{HOST}:{p}" for p in ports)
        yield Target(urls[0], admin, proc.pid, urls)
    finally:
        stop_processes([proc], 3.0)


# -- measuring a process ------------------------------------------------------------------


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to one core (best effort: a thread may have ended)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except OSError:
            continue


def process_cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has run, all threads: the scheduler's own count, in nanoseconds
    (``/proc/<pid>/task/*/schedstat``), else ``utime + stime`` in clock ticks."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
        return total_ns / 1e9
    except (OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def cores() -> tuple[int | None, int | None]:
    """The target's core and the load generators' core (None, None with one core)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], available[1]
