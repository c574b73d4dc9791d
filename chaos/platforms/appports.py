"""Optional for a running topology: its pods' application ports, for the bypass probe.

Legacy code calls a pod's application port directly, in plaintext and without a
token, around the proxy. A platform whose topology can be reached that way from
this machine (the local one: every pod is a loopback address) lists the ports here;
what each setup does with such a request (refused, or served) is the measurement.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from chaos.traffic.bypass import AppPort


@runtime_checkable
class ExposesAppPorts(Protocol):
    """A running topology whose pods' application ports this machine can reach."""

    def app_ports(self) -> list[AppPort]:
        """Every pod's application port (the Service's target port)."""
        ...
