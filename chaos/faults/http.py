"""HTTP faults at a proxy: ``latency`` (a delay) and ``abort`` (an error status).

Envoy's fault filter injects a fixed delay; a delay *distribution* is applied as
its mean (the plan says so), since the filter has no distribution of its own.
"""

from __future__ import annotations

from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.local.envoy_common import FaultConfig
from chaos.platforms.local.faultops import HttpFaultSite
from chaos.platforms.local.layout import Setup
from chaos.spec import AbortFault, LatencyFault, NormalDelay, UniformDelay


def delay_ms(spec: LatencyFault) -> int:
    """The fixed delay Envoy injects for ``spec``, in milliseconds."""
    if spec.delay is not None:
        seconds = spec.delay
    elif isinstance(spec.distribution, UniformDelay):
        seconds = (spec.distribution.min + spec.distribution.max) / 2
    elif isinstance(spec.distribution, NormalDelay):
        seconds = spec.distribution.mean
    else:  # the spec guarantees one of the above
        raise ValueError("latency fault without a delay")
    return max(1, round(seconds * 1000))


class _HttpFault(Fault[LatencyFault | AbortFault]):
    """Shared mechanics: the sites, switching the filter, counting injections."""

    _before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()

    def _config(self) -> FaultConfig:
        raise NotImplementedError

    def _sites(self) -> list[HttpFaultSite]:
        return self.ops.http_sites(self.pods, self.spec.direction)

    def _mechanism(self) -> str:
        setup = self.ops.layout.setup
        if setup is Setup.MESH:
            return "control plane pushes a route fault override (RDS)"
        return "admin API runtime_modify on the fault filter"

    def plan(self) -> FaultPlan:
        action = f"{self.spec.summary()} via {self._mechanism()}"
        undo = (
            "control plane pushes the route without the fault"
            if self.ops.layout.setup is Setup.MESH
            else "fault filter back to 0 %"
        )
        changes = [
            Change(site.proxy, f"{site.direction} fault on: {action}", undo)
            for site in self._sites()
        ]
        return self._plan(changes)

    def blast_radius(self) -> list[str]:
        if self.ops.layout.setup is Setup.AMBIENT:
            # The waypoint carries the fault for every pod of the service.
            services = {p.service for p in self.pods}
            return [p.name for p in self.ops.layout.pods if p.service in services]
        return [p.name for p in self.pods]

    def apply(self) -> None:
        self._before = {site.proxy: self.ops.injected(site) for site in self._sites()}
        for site in self._sites():
            self.ops.set_http_fault(site, self._config())

    def verify(self) -> Evidence:
        before = self._before
        rises = {s.proxy: self.ops.injected(s) - before.get(s.proxy, 0) for s in self._sites()}
        total = sum(rises.values())
        detail = ", ".join(f"{proxy}: {n} injected" for proxy, n in rises.items())
        return Evidence(total > 0, detail)

    def revert(self) -> None:
        for site in self._sites():
            self.ops.set_http_fault(site, None)


class LatencyFaultDriver(_HttpFault):
    fault_type = "latency"

    def _config(self) -> FaultConfig:
        assert isinstance(self.spec, LatencyFault)
        return FaultConfig(delay_percent=round(self.spec.percent), delay_ms=delay_ms(self.spec))


class AbortFaultDriver(_HttpFault):
    fault_type = "abort"

    def _config(self) -> FaultConfig:
        assert isinstance(self.spec, AbortFault)
        return FaultConfig(abort_percent=round(self.spec.percent), abort_status=self.spec.status)
