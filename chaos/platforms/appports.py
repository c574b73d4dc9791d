"""Optional for a running topology: its pods' application ports, for the bypass probe.

Legacy code calls a pod's application port directly, in plaintext and without a
token, around the proxy. A platform whose topology can be reached that way from
this machine (the local one: every pod is a loopback address) lists the ports here;
what each setup does with such a request (refused, or served) is the measurement.
A platform whose pods are reachable only from inside (a cluster) runs the probe
itself (:class:`RunsBypassProbe`), and its anonymous stream too
(:class:`RunsAnonymousStream`: ``security.anonymous`` from inside the cluster).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from chaos.traffic.bypass import AppPort


@runtime_checkable
class ExposesAppPorts(Protocol):
    """A running topology whose pods' application ports this machine can reach."""

    def app_ports(self) -> list[AppPort]:
        """Every pod's application port (the Service's target port)."""
        ...


@runtime_checkable
class RunsBypassProbe(Protocol):
    """A running topology that runs the bypass probe itself (from inside a cluster)."""

    def bypass_probe(
        self, rate: float, max_requests: int, duration_s: float, out: Path
    ) -> AbstractContextManager[object]:
        """The window's probe: entered at the window's start, left at its end."""
        ...


@runtime_checkable
class RunsAnonymousStream(Protocol):
    """A running topology that sends the anonymous stream itself (from inside a cluster)."""

    def anonymous_stream(
        self, rate: float, max_requests: int, duration_s: float, out: Path
    ) -> AbstractContextManager[object]:
        """The window's token-less stream at the front door: entered at the window's start."""
        ...
