"""The fault models of an experiment file: a discriminated union on ``type``.

Each fault names a ``target`` and its own parameters, and can say in one line what
it will do (``summary()``), which the dry-run plan and the report reuse.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from chaos.experiment._base import Int, Percent, SetupName, Share, Slug, SpecModel, field_error
from chaos.experiment.durations import CertLifetime, Duration, NonNegativeDuration, format_duration

Direction = Literal["inbound", "outbound"]

#: A Kubernetes label key (``app``, ``app.kubernetes.io/name``) and value.
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
#: Namespaces a fault never targets.
REFUSED_NAMESPACES = ("kube-system",)


class Target(SpecModel):
    """Where a fault lands: a service's replicas (all, one, or a share), a node, some setups.

    Without ``replica`` and ``share`` every replica of the service is targeted; with only
    ``node``, everything on that node (in ambient: the node proxy itself).
    """

    service: Slug | None = None
    replica: Annotated[Int, Field(ge=0, le=1000)] | None = None
    share: Share | None = None
    node: Slug | None = None
    #: Narrow the fault to some of the experiment's setups (default: all of them).
    setups: Annotated[tuple[SetupName, ...], Field(min_length=1)] | None = None
    #: Kubernetes only: the team's own workload instead of the demo (an existing one).
    namespace: Slug | None = None
    #: The labels its pods carry (with ``namespace``).
    selector: dict[str, str] | None = None
    #: The proxy container of a plain sidecar setup (an Envoy whose admin port is 15000).
    container: Slug | None = None

    @property
    def existing(self) -> bool:
        """Whether the target is an existing workload (``namespace`` + ``selector``)."""
        return self.namespace is not None

    @model_validator(mode="after")
    def _one_selector(self) -> Target:
        if self.replica is not None and self.share is not None:
            raise field_error("share", "replica and share exclude each other; give one")
        self._check_existing()
        if self.service is None and self.node is None and not self.existing:
            raise field_error("service", "a target needs a service or a node")
        narrows = self.replica is not None or self.share is not None
        if self.service is None and narrows and not self.existing:
            at = "replica" if self.replica is not None else "share"
            raise field_error(at, "replica and share select pods of a service; name the service")
        if self.setups is not None and len(set(self.setups)) != len(self.setups):
            raise field_error("setups", "lists a setup twice")
        return self

    def _check_existing(self) -> None:
        if self.namespace in REFUSED_NAMESPACES:
            raise field_error("namespace", f"{self.namespace} is never targeted")
        for key, value in (self.selector or {}).items():
            if len(key) > 253 or not LABEL_KEY.match(key):
                raise field_error(f"selector.{key}", "is not a Kubernetes label key")
            if len(value) > 63 or not LABEL_VALUE.match(value):
                raise field_error(f"selector.{key}", f"{value!r} is not a Kubernetes label value")
        if self.selector is not None and not 1 <= len(self.selector) <= 20:
            raise field_error("selector", "needs 1 to 20 labels")
        if self.namespace is not None and self.selector is None:
            raise field_error("selector", "an existing workload needs the labels of its pods")
        if self.selector is not None and self.namespace is None:
            raise field_error("namespace", "a selector needs the namespace of its pods")
        if self.container is not None and self.namespace is None:
            raise field_error("container", "names the proxy of an existing workload (namespace)")
        if self.existing and self.service is not None:
            raise field_error(
                "service", "an existing workload is named by its selector, not by service"
            )
        if self.existing and self.node is not None:
            raise field_error("node", "an existing workload is named by its selector, not by node")

    def describe(self) -> str:
        """``checkout replica 0``, ``30% of checkout pods``, ``every pod on node-1``."""
        if self.existing:
            labels = ",".join(f"{k}={v}" for k, v in sorted((self.selector or {}).items()))
            where = f"pods {labels} in {self.namespace}"
            if self.replica is not None:
                where = f"replica {self.replica} of {where}"
            elif self.share is not None:
                where = f"{self.share * 100:g}% of {where}"
            if self.setups is not None:
                where += f" ({', '.join(self.setups)} only)"
            return where
        if self.service is None:
            where = f"every pod on {self.node}"
        elif self.replica is not None:
            where = f"{self.service} replica {self.replica}"
        elif self.share is not None:
            where = f"{self.share * 100:g}% of {self.service} pods"
        else:
            where = f"every {self.service} replica"
        if self.service is not None and self.node is not None:
            where += f" on {self.node}"
        if self.setups is not None:
            where += f" ({', '.join(self.setups)} only)"
        return where


class _FaultBase(SpecModel):
    name: Slug | None = None
    target: Target


class UniformDelay(SpecModel):
    """A delay drawn uniformly from ``[min, max]``."""

    kind: Literal["uniform"]
    min: NonNegativeDuration
    max: Duration

    @model_validator(mode="after")
    def _ordered(self) -> UniformDelay:
        if self.max <= self.min:
            raise field_error("max", "must be greater than min")
        return self

    def describe(self) -> str:
        return f"uniform {format_duration(self.min)}..{format_duration(self.max)}"


class NormalDelay(SpecModel):
    """A delay drawn from a normal distribution (negative draws count as 0)."""

    kind: Literal["normal"]
    mean: Duration
    stddev: Duration

    def describe(self) -> str:
        return f"normal mean {format_duration(self.mean)} sd {format_duration(self.stddev)}"


DelayDistribution = Annotated[UniformDelay | NormalDelay, Field(discriminator="kind")]


class LatencyFault(_FaultBase):
    """Delay a share of requests at the target proxy: a fixed ``delay`` or a ``distribution``."""

    type: Literal["latency"]
    delay: Duration | None = None
    distribution: DelayDistribution | None = None
    percent: Percent = 100.0
    direction: Direction = "inbound"

    @model_validator(mode="after")
    def _one_delay(self) -> LatencyFault:
        if self.delay is not None and self.distribution is not None:
            raise field_error("distribution", "give delay or distribution, not both")
        if self.delay is None and self.distribution is None:
            raise field_error(
                "delay", "a latency fault needs a delay (like 200ms) or a distribution"
            )
        return self

    def summary(self) -> str:
        """One line: what is delayed, by how much, where."""
        how = format_duration(self.delay) if self.delay is not None else self._dist()
        return (
            f"latency {how} on {self.percent:g}% of {self.direction} requests "
            f"at {self.target.describe()}"
        )

    def _dist(self) -> str:
        return self.distribution.describe() if self.distribution is not None else "?"


class AbortFault(_FaultBase):
    """Answer a share of requests with an HTTP error status at the target proxy."""

    type: Literal["abort"]
    status: Annotated[Int, Field(ge=400, le=599)] = 503
    percent: Percent = 100.0
    direction: Direction = "inbound"

    def summary(self) -> str:
        """One line: which status, on which share, where."""
        return (
            f"abort with HTTP {self.status} on {self.percent:g}% of {self.direction} requests "
            f"at {self.target.describe()}"
        )


class CrashFault(_FaultBase):
    """SIGKILL the target proxy, once or ``times`` times ``interval`` apart (a crash loop)."""

    type: Literal["crash"]
    times: Annotated[Int, Field(ge=1, le=100)] = 1
    interval: Duration | None = None

    @model_validator(mode="after")
    def _interval_for_loops(self) -> CrashFault:
        if self.times > 1 and self.interval is None:
            raise field_error(
                "interval", f"is required when times is more than 1 (times is {self.times})"
            )
        return self

    def summary(self) -> str:
        """One line: how often the proxy is killed, where."""
        if self.times == 1:
            return f"crash (SIGKILL) the proxy of {self.target.describe()} once"
        every = format_duration(self.interval) if self.interval is not None else "?"
        where = self.target.describe()
        return f"crash (SIGKILL) the proxy of {where} {self.times} times, every {every}"


class CertExpiryFault(_FaultBase):
    """Let the target's workload certificate expire (``ttl``) while rotation is blocked.

    ``connection_lifetime`` bounds how long a connection lives: open connections survive
    a cert's expiry (Envoy keeps open connections), so it decides how fast the expiry shows.
    """

    type: Literal["cert-expiry"]
    ttl: CertLifetime
    connection_lifetime: Duration | None = None

    def summary(self) -> str:
        """One line: the cert lifetime, the connection lifetime, where."""
        conns = (
            f", connections live at most {format_duration(self.connection_lifetime)}"
            if self.connection_lifetime is not None
            else ""
        )
        return (
            f"certificate of {self.target.describe()} expires after "
            f"{format_duration(self.ttl)} with rotation blocked{conns}"
        )


class ControlPlaneOutageFault(_FaultBase):
    """Stop the CA and config push for the hold; ``cert_ttl`` shortens certs so it shows."""

    type: Literal["control-plane-outage"]
    cert_ttl: CertLifetime | None = None

    def summary(self) -> str:
        """One line: what is stopped, and the cert lifetime if shortened."""
        ttl = f" (certs live {format_duration(self.cert_ttl)})" if self.cert_ttl is not None else ""
        return f"control plane (CA and config push) down for {self.target.describe()}{ttl}"


class PolicyDesyncFault(_FaultBase):
    """Rotate the identity provider's signing key while proxies keep the stale key set.

    ``refresh`` is how often proxies re-fetch keys, where the setup refreshes at all.
    """

    type: Literal["policy-desync"]
    refresh: Duration | None = None

    def summary(self) -> str:
        """One line: the key rotation, where, and the refresh if any."""
        again = f", key set refreshed every {format_duration(self.refresh)}" if self.refresh else ""
        return f"signing key rotated, stale key set at {self.target.describe()}{again}"


class PolicyMismatchFault(_FaultBase):
    """Roll out an authorization rule at the target's proxies that its legitimate caller
    does not pass: ``deny-caller`` (a DENY naming the caller) or ``allow-other`` (an ALLOW
    naming another principal). The question is whether the setup fails closed.
    ``allow-any`` is the fail-open variant: an ALLOW matching every caller, so whatever
    the standing policy denies (a request without a token) may get through."""

    type: Literal["policy-mismatch"]
    rule: Literal["deny-caller", "allow-other", "allow-any"] = "deny-caller"

    def summary(self) -> str:
        """One line: which rule, where."""
        what = {
            "deny-caller": "a DENY rule for the legitimate caller",
            "allow-other": "an ALLOW rule naming another caller",
            "allow-any": "an ALLOW rule for any caller (fail open)",
        }[self.rule]
        return f"authorization policy rolled out at {self.target.describe()}: {what}"


#: Any fault, told apart by ``type``.
Fault = Annotated[
    LatencyFault
    | AbortFault
    | CrashFault
    | CertExpiryFault
    | ControlPlaneOutageFault
    | PolicyDesyncFault
    | PolicyMismatchFault,
    Field(discriminator="type"),
]
FAULT_TYPES: tuple[str, ...] = (
    "latency",
    "abort",
    "crash",
    "cert-expiry",
    "control-plane-outage",
    "policy-desync",
    "policy-mismatch",
)
