"""What the engine needs of a traffic driver (Locust in its processes, or a fake)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from chaos.traffic.config import TrafficConfig

if TYPE_CHECKING:
    from chaos.traffic.live import LiveStats


class Traffic(Protocol):
    """Load running against a topology's ingress until stopped or its duration ends."""

    @property
    def pids(self) -> list[int]:
        """The processes sending the load on this machine (none for a remote driver)."""
        ...

    def wait_started(self, timeout: float | None = None) -> None:
        """Block until requests flow (or raise why they cannot)."""
        ...

    def check(self) -> None:
        """Raise :class:`~chaos.errors.TrafficError` if the load stopped before its time."""
        ...

    def live_stats(self) -> LiveStats:
        """The last second's requests, errors and p95."""
        ...

    def stop(self, grace_s: float | None = None) -> None:
        """Stop sending; every sample reaches the run directory."""
        ...


#: Starts traffic for a config; the engine enters the result on its ``ExitStack``.
TrafficFactory = Callable[[TrafficConfig], AbstractContextManager[Traffic]]
