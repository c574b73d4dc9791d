"""Proxy counters sampled during a window, through the running topology.

A background thread asks the topology for one reading of every proxy's
counters (retries, TLS failures, outlier ejections, connect failures,
restarts) every ``interval_s``. A proxy that is down (crashed, restarting)
simply has no reading at that time; the analysis treats a counter that drops
as a restart.
"""

from __future__ import annotations

import threading
from types import TracebackType

from chaos.platforms.base import RunningTopology
from chaos.rundir.counters import CounterSample


class CounterSampler:
    """Samples one topology's proxy counters until closed (a context manager)."""

    def __init__(self, topology: RunningTopology, interval_s: float = 0.5) -> None:
        self.topology = topology
        self.interval_s = interval_s
        self.samples: list[CounterSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="counter-sampler", daemon=True)

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
        self.samples += self.topology.read_counters()
