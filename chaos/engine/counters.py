"""Proxy counters sampled during a window: Envoy admin stats and supervisor restarts.

A background thread reads every proxy's admin ``/stats`` (only the counters the
analysis uses: retries, TLS failures, outlier ejections, connect failures)
every ``interval_s``, plus each proxy's restart count from the supervisor. A
proxy that is down (crashed, restarting) simply has no reading at that time;
the analysis treats a counter that drops as a restart.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from chaos.analysis import CounterSample
from chaos.platforms.local.topology import LocalTopology

#: RE2 filter for Envoy's admin ``/stats``: the counters ``chaos.analysis.counters`` reads.
STATS_FILTER = (
    r"(upstream_rq_retry|ssl\.fail_verify_error|ssl\.connection_error|ssl\.fail_verify_san"
    r"|ssl\.fail_verify_no_cert|ejections_enforced_total|upstream_cx_connect_fail)$"
)
COUNTERS_FILE = "counters.csv"


class CounterSampler:
    """Samples one topology's proxy counters until closed (a context manager)."""

    def __init__(self, topology: LocalTopology, interval_s: float = 0.5) -> None:
        self.topology = topology
        self.interval_s = interval_s
        self.samples: list[CounterSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="counter-sampler", daemon=True)
        self._proxies = topology.layout.proxy_admins()
        query = urllib.parse.urlencode(
            {"format": "json", "type": "Counters", "filter": STATS_FILTER}
        )
        self._query = f"/stats?{query}"

    def __enter__(self) -> CounterSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.sample()  # a last reading, so the window's end is covered

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Read every proxy once."""
        supervisor = self.topology.supervisor
        for proxy, admin_url in self._proxies:
            now = time.monotonic()
            self.samples.append(CounterSample(now, proxy, "restarts", supervisor.restarts(proxy)))
            try:
                with urllib.request.urlopen(f"{admin_url}{self._query}", timeout=0.5) as answer:
                    stats = json.loads(answer.read()).get("stats", [])
            except (urllib.error.URLError, OSError, ValueError):
                continue  # down or restarting: no reading now
            for stat in stats:
                name, value = stat.get("name"), stat.get("value")
                if isinstance(name, str) and isinstance(value, int | float):
                    self.samples.append(CounterSample(now, proxy, name, float(value)))


def append_counters(run_dir: Path, samples: list[CounterSample]) -> None:
    """Append readings to ``counters.csv`` in the run directory."""
    path = run_dir / COUNTERS_FILE
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["t", "proxy", "name", "value"])
        writer.writerows((s.t, s.proxy, s.name, s.value) for s in samples)


def read_counters(run_dir: Path) -> list[CounterSample]:
    path = run_dir / COUNTERS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            CounterSample(float(row["t"]), row["proxy"], row["name"], float(row["value"]))
            for row in csv.DictReader(handle)
        ]
