"""A traffic driver that sends nothing: scripted live statistics for engine unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from chaos.errors import TrafficError
from chaos.traffic.config import TrafficConfig
from chaos.traffic.live import LiveStats

#: What the fake reports at a moment: (requests, errors, p95 ms) over the last second.
Script = Callable[[float], tuple[int, int, float | None]]
#: Why the load has died at a moment (as a dead Locust would say), or None while it runs.
Death = Callable[[float], str | None]


def healthy(now: float) -> tuple[int, int, float | None]:
    """100 requests a second, no error, p95 20 ms."""
    return (100, 0, 20.0)


class FakeTraffic:
    """Implements :class:`chaos.traffic.base.Traffic`; records when it started and stopped."""

    def __init__(
        self, config: TrafficConfig, script: Script = healthy, death: Death | None = None
    ) -> None:
        self.config = config
        self.script = script
        self.death = death
        self.started_t: float | None = None
        self.stopped_t: float | None = None

    def __enter__(self) -> FakeTraffic:
        self.started_t = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return []

    def wait_started(self, timeout: float | None = None) -> None:
        return None

    def check(self) -> None:
        reason = self.death(time.monotonic()) if self.death is not None else None
        if reason is not None and self.stopped_t is None:
            raise TrafficError(reason)

    def live_stats(self) -> LiveStats:
        now = time.monotonic()
        requests, errors, p95 = self.script(now)
        return LiveStats(now - 1.0, now, requests, errors, p95)

    def stop(self, grace_s: float | None = None) -> None:
        if self.stopped_t is None:
            self.stopped_t = time.monotonic()
