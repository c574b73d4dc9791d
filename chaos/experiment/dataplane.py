"""The experiment file's ``dataplane:`` block: named deviations from a setup's data-plane defaults.

Every setup's defaults (mesh and ambient: Istio's; sidecar: a hand-written security
sidecar) live in ``chaos.platforms.shared.dataplane``. This block changes them, for
every setup at once (top level) or for one (``setups: {mesh: ...}``, which wins)::

    dataplane:
      connection_lifetime: 1s          # max_connection_duration (Istio: none)
      setups:
        mesh:
          outlier_detection: true      # Istio's DestinationRule defaults; or a mapping
          retries: {attempts: 0}       # no retries (Istio: 2)

Unknown keys, a negative attempt count or an unknown retry condition are errors at
their line, like every other field; what a platform cannot apply it refuses at the
field's line (``Platform.validate``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from chaos.experiment._base import Int, SetupName, SpecModel, field_error
from chaos.experiment.durations import Duration, NonNegativeDuration

#: Envoy ``retry_on`` conditions a policy may name (x-envoy-retry-on, router filter docs).
RetryCondition = Literal[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
]
LoadBalancing = Literal["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"]
StatusCode = Annotated[Int, Field(ge=100, le=599)]


class RetriesSpec(SpecModel):
    """A VirtualService ``retries`` block: attempts after the first, on which conditions."""

    #: Retries after the first try; 0 turns retries off (Istio: ``attempts: 0``).
    attempts: Annotated[Int, Field(ge=0, le=100)]
    retry_on: Annotated[tuple[RetryCondition, ...], Field(min_length=1)] | None = None
    retriable_status_codes: tuple[StatusCode, ...] | None = None
    per_try_timeout: Duration | None = None
    #: Prefer a host not tried before (Istio's default ``retryIgnorePreviousHosts: true``).
    previous_hosts: StrictBool | None = None


class OutlierSpec(SpecModel):
    """A DestinationRule ``outlierDetection``; unset fields take Istio's API defaults."""

    consecutive_5xx: Annotated[Int, Field(ge=1, le=1_000_000)] = 5
    interval: Duration = 10.0
    base_ejection: Duration = 30.0
    max_ejection_percent: Annotated[Int, Field(ge=1, le=100)] = 10


class DataPlaneFields(SpecModel):
    """The fields one setup's data plane may change (unset: the setup's default)."""

    retries: RetriesSpec | None = None
    #: true: Istio's DestinationRule defaults; false: none; a mapping: these values.
    outlier_detection: StrictBool | OutlierSpec | None = None
    load_balancing: LoadBalancing | None = None
    connect_timeout: Duration | None = None
    #: 0 disables the route timeout (Istio's default).
    route_timeout: NonNegativeDuration | None = None
    #: ``max_connection_duration`` of upstream connections (Istio: none).
    connection_lifetime: Duration | None = None
    idle_timeout: Duration | None = None
    #: The circuit breaker's ``max_retries`` (parallel retries to one cluster).
    max_retries: Annotated[Int, Field(ge=0, lt=2**32)] | None = None
    #: How often the control plane re-fetches the identity provider's key set.
    jwks_refresh: Duration | None = None

    def is_empty(self) -> bool:
        return not self.model_fields_set


class SetupsDataPlane(SpecModel):
    """Per-setup deviations (a key that is not a setup is an unknown field)."""

    sidecar: DataPlaneFields | None = None
    mesh: DataPlaneFields | None = None
    ambient: DataPlaneFields | None = None

    def items(self) -> list[tuple[SetupName, DataPlaneFields]]:
        """The setups that have a block, with it."""
        return [
            (SetupName(name), fields)
            for name in ("sidecar", "mesh", "ambient")
            if (fields := getattr(self, name)) is not None
        ]


class DataPlaneSpec(DataPlaneFields):
    """Deviations for every setup, and per setup under ``setups`` (a setup's own win)."""

    setups: SetupsDataPlane = SetupsDataPlane()

    def for_setup(self, setup: str) -> DataPlaneFields:
        """The fields that apply to ``setup``: its own over the top level."""
        merged = {
            name: getattr(self, name)
            for name in DataPlaneFields.model_fields
            if name in self.model_fields_set
        }
        own = getattr(self.setups, SetupName(setup).value, None)  # baseline: none of its own
        if own is not None:
            merged |= {name: getattr(own, name) for name in own.model_fields_set}
        return DataPlaneFields.model_validate(merged)


def set_fields(spec: DataPlaneSpec) -> list[tuple[str, ...]]:
    """The path of every field the block sets (``("dataplane", "setups", "mesh", "retries")``)."""
    paths: list[tuple[str, ...]] = [
        ("dataplane", n) for n in sorted(spec.model_fields_set) if n != "setups"
    ]
    for setup, fields in spec.setups.items():
        paths += [("dataplane", "setups", setup.value, n) for n in sorted(fields.model_fields_set)]
    return paths


def check_dataplane_setups(spec: DataPlaneSpec, setups: tuple[str, ...]) -> None:
    """A per-setup block names one of the experiment's setups."""
    for name, _ in spec.setups.items():
        if name not in setups:
            raise field_error(
                f"dataplane.setups.{name}",
                f"{name} is not one of the experiment's setups ({', '.join(setups)})",
            )
