"""HTTP faults at a proxy: ``latency`` (a delay) and ``abort`` (an error status).

The platform decides where the fault goes (a pod's proxy, a pushed route, a
waypoint, a VirtualService) and reports each site; the fault decides what is
injected, on which share of requests, and verifies that the proxies injected it.
Envoy's fault filter injects a fixed delay; a delay *distribution* is applied
as its mean (the plan says so), since the filter has no distribution of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from chaos.experiment import AbortFault, LatencyFault, NormalDelay, UniformDelay
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.base import HttpFault, HttpFaultSite
from chaos.traffic.live import LiveStats


@runtime_checkable
class CounterGaps(Protocol):
    """Fault ops whose proxies may not export the fault counters (Istio's stats matcher)."""

    def unexported_counters(self, site: HttpFaultSite) -> list[str]:
        """The counters none of the site's reachable proxies exports."""
        ...

    def samples_now(self) -> LiveStats | None:
        """The last second of the window's requests, or None."""
        ...


@runtime_checkable
class CountsClientRequests(Protocol):
    """Fault ops that can name the counter of every client request (the ingress's)."""

    def client_requests_counter(self) -> str:
        """``proxy:stat`` of the counter that rises once per client request."""
        ...


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
        plan = self._plan(changes)
        if not isinstance(self.ops, CountsClientRequests):
            return plan
        through = tuple(
            f"{s.proxy}:{s.requests_stat}" for s in self._sites() if s.requests_stat is not None
        )
        if not through:
            return plan
        return dataclasses.replace(
            plan, share_counters=through, client_counter=self.ops.client_requests_counter()
        )

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
        if sum(rises.values()) > 0 or not isinstance(self.ops, CounterGaps):
            return Evidence(sum(rises.values()) > 0, detail)
        gaps = sorted(
            {g.lstrip(".") for s in self._sites() for g in self.ops.unexported_counters(s)}
        )
        if not gaps:
            return Evidence(False, detail)
        took, seen = self._from_samples(self.ops.samples_now())
        return Evidence(
            took,
            f"the proxies export no {', '.join(gaps)} (their stats matcher leaves them out), "
            f"so from the samples: {seen}",
        )

    def _from_samples(self, stats: LiveStats | None) -> tuple[bool, str]:
        """Whether the last second of requests shows the fault (no counters to read)."""
        if stats is None or not stats.requests:
            return False, "no samples to read"
        fault = self._fault()
        said = f"{stats.errors} of {stats.requests} requests failed in the last second"
        if fault.abort_status is not None:
            return stats.errors > 0, said
        p95 = stats.p95_ms
        said += f", p95 {p95:.0f} ms" if p95 is not None else ", no p95"
        delay = fault.delay_ms or 0
        # A delay on fewer than 5 % of requests cannot move the p95: not shown by samples.
        return fault.percent >= 5 and p95 is not None and p95 >= 0.9 * delay, said

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
