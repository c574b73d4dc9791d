"""The fault filter every targetable HTTP connection manager carries, and its runtime keys.

Every HTTP connection manager a fault can target carries
``envoy.filters.http.fault`` at 0 % delay and 0 % abort, with runtime keys per
direction (:data:`INBOUND_FAULT_KEYS`, :data:`OUTBOUND_FAULT_KEYS`), so that
``POST /runtime_modify?<key>=<value>`` on the proxy's admin API switches a fault
on for the next request. Percent keys are whole percents (0..100); the delay
key is in milliseconds. :func:`fault_runtime_values` turns a
:class:`FaultConfig` into those key/value pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.platforms.shared.envoy_common import FAULT_FILTER, TYPE_FAULT, Direction, Json

#: The fault filter's delay when a runtime switch turns it on without a duration.
DEFAULT_DELAY_MS = 1000


@dataclass(frozen=True)
class FaultRuntimeKeys:
    """The runtime keys that switch one direction's fault filter."""

    delay_percent: str
    delay_duration_ms: str
    abort_percent: str
    abort_http_status: str

    def all(self) -> tuple[str, str, str, str]:
        return (
            self.delay_percent,
            self.delay_duration_ms,
            self.abort_percent,
            self.abort_http_status,
        )


def _keys(direction: str) -> FaultRuntimeKeys:
    return FaultRuntimeKeys(
        delay_percent=f"fault.{direction}.delay.percent",
        delay_duration_ms=f"fault.{direction}.delay.duration_ms",
        abort_percent=f"fault.{direction}.abort.percent",
        abort_http_status=f"fault.{direction}.abort.http_status",
    )


#: Inbound side of a pod (sidecar/mesh ``inbound`` HCM) and every ambient waypoint.
INBOUND_FAULT_KEYS = _keys("inbound")


#: Outbound side of a pod (sidecar/mesh ``outbound`` HCM).
OUTBOUND_FAULT_KEYS = _keys("outbound")


FAULT_KEYS: dict[Direction, FaultRuntimeKeys] = {
    "inbound": INBOUND_FAULT_KEYS,
    "outbound": OUTBOUND_FAULT_KEYS,
}


@dataclass(frozen=True)
class FaultConfig:
    """An HTTP fault at one proxy: a fixed delay and/or an abort on a share of requests."""

    delay_percent: int = 0
    delay_ms: int = DEFAULT_DELAY_MS
    abort_percent: int = 0
    abort_status: int = 503

    def __post_init__(self) -> None:
        for name in ("delay_percent", "abort_percent"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"{name} must be within 0..100, got {value}")
        if self.delay_ms <= 0:
            raise ValueError(f"delay_ms must be positive, got {self.delay_ms}")
        if not 200 <= self.abort_status <= 599:
            raise ValueError(f"abort_status must be an HTTP status, got {self.abort_status}")


def fault_runtime_values(direction: Direction, fault: FaultConfig | None) -> dict[str, str]:
    """The ``/runtime_modify`` parameters that set ``fault``.

    None clears the keys (an empty value removes an admin-layer override), which
    puts the filter back on its config: 0 % in sidecar and waypoints, whatever the
    control plane pushed in mesh. Setting "0" instead would also mask later pushes.
    """
    keys = FAULT_KEYS[direction]
    if fault is None:
        return dict.fromkeys(keys.all(), "")
    return {
        keys.delay_percent: str(fault.delay_percent),
        keys.delay_duration_ms: str(fault.delay_ms),
        keys.abort_percent: str(fault.abort_percent),
        keys.abort_http_status: str(fault.abort_status),
    }


def fault_config(direction: Direction, fault: FaultConfig | None = None) -> Json:
    """The fault filter's config: runtime-switchable, at ``fault`` (default: off)."""
    keys = FAULT_KEYS[direction]
    fault = fault or FaultConfig()
    return {
        "@type": TYPE_FAULT,
        "delay": {
            "fixed_delay": f"{fault.delay_ms / 1000:.3f}s",
            "percentage": {"numerator": fault.delay_percent, "denominator": "HUNDRED"},
        },
        "abort": {
            "http_status": fault.abort_status,
            "percentage": {"numerator": fault.abort_percent, "denominator": "HUNDRED"},
        },
        "delay_percent_runtime": keys.delay_percent,
        "delay_duration_runtime": keys.delay_duration_ms,
        "abort_percent_runtime": keys.abort_percent,
        "abort_http_status_runtime": keys.abort_http_status,
    }


def fault_filter(direction: Direction) -> Json:
    return {"name": FAULT_FILTER, "typed_config": fault_config(direction)}
