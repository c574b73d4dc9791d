"""HTTP faults at a proxy: ``latency`` (a delay) and ``abort`` (an error status).

The platform decides where the fault goes (a pod's proxy, a pushed route, a
waypoint, a VirtualService) and reports each site; the fault decides what is
injected, on which share of requests, and verifies that the proxies injected it.
Envoy's fault filter injects a fixed delay; a delay *distribution* is applied
as its mean (the plan says so), since the filter has no distribution of its own.
"""

from __future__ import annotations

from chaos.experiment import AbortFault, LatencyFault, NormalDelay, UniformDelay
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.base import HttpFault, HttpFaultSite


def delay_ms(spec: LatencyFault) -> int:
    """The fixed delay the proxy injects for ``spec``, in milliseconds."""
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
    """Shared policy: the sites, switching the fault, counting injections."""

    _before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()

    def _fault(self) -> HttpFault:
        raise NotImplementedError

    def _sites(self) -> list[HttpFaultSite]:
        return self.ops.http_fault_sites(self.pods, self.spec.direction)

    def plan(self) -> FaultPlan:
        changes = [
            Change(
                site.proxy,
                f"{site.direction} fault on: {self.spec.summary()} via {site.mechanism}",
                site.undo,
            )
            for site in self._sites()
        ]
        return self._plan(changes)

    def blast_radius(self) -> list[str]:
        return list(dict.fromkeys(pod for site in self._sites() for pod in site.affects))

    def apply(self) -> None:
        sites = self._sites()
        self._before = {site.proxy: self.ops.http_faults_injected(site) for site in sites}
        for site in sites:
            self.ops.set_http_fault(site, self._fault())

    def verify(self) -> Evidence:
        before = self._before
        rises = {
            s.proxy: self.ops.http_faults_injected(s) - before.get(s.proxy, 0)
            for s in self._sites()
        }
        detail = ", ".join(f"{proxy}: {n} injected" for proxy, n in rises.items())
        return Evidence(sum(rises.values()) > 0, detail)

    def revert(self) -> None:
        for site in self._sites():
            self.ops.clear_http_fault(site)


class LatencyFaultDriver(_HttpFault):
    fault_type = "latency"

    def _fault(self) -> HttpFault:
        assert isinstance(self.spec, LatencyFault)
        return HttpFault(percent=round(self.spec.percent), delay_ms=delay_ms(self.spec))


class AbortFaultDriver(_HttpFault):
    fault_type = "abort"

    def _fault(self) -> HttpFault:
        assert isinstance(self.spec, AbortFault)
        return HttpFault(percent=round(self.spec.percent), abort_status=self.spec.status)
