"""Helpers for the fault tests: a bounded prober through the ingress, fault specs, drivers.

The prober is the test's own client, independent of the traffic package: it sends
requests one after another at a fixed pace for a few seconds (bounded in count and
time), with a bearer token from the topology's identity provider, and keeps, per
request, the status, the latency and the pods the request crossed.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import TypeAdapter

from chaos.faults import driver_for
from chaos.faults.base import Fault
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.topology import LocalTopology
from chaos.spec import Fault as FaultSpec

#: Status recorded for a request that got no HTTP answer at all.
NO_ANSWER = 0
REQUEST_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Reply:
    """One probe request: when it was sent (monotonic), what came back, what it crossed."""

    t: float
    status: int
    ms: float
    pods: tuple[str, ...] = ()


@dataclass
class Probe:
    """The replies of one probing period."""

    replies: list[Reply] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.replies)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.replies if r.status == 200)

    @property
    def failed(self) -> int:
        return len(self.replies) - self.ok

    def share(self, status: int) -> float:
        return self.statuses[status] / len(self.replies) if self.replies else 0.0

    def median_ms(self, keep: Callable[[Reply], bool] = lambda r: True) -> float:
        chosen = [r.ms for r in self.replies if r.status == 200 and keep(r)]
        assert chosen, f"no successful reply to take a median of: {self.statuses}"
        return statistics.median(chosen)

    def after(self, t: float) -> Probe:
        return Probe([r for r in self.replies if r.t >= t])

    def __str__(self) -> str:
        return f"{len(self.replies)} requests, statuses {dict(self.statuses)}"


def _pods(body: Any) -> tuple[str, ...]:
    """The pods a demo answer says it crossed, frontend first."""
    found: list[str] = []
    node = body
    while isinstance(node, dict):
        pod = node.get("pod")
        if isinstance(pod, str):
            found.append(pod)
        node = node.get("upstream")
    return tuple(found)


def probe(
    topology: LocalTopology,
    seconds: float,
    *,
    rate: float = 50.0,
    token: Callable[[], str] | None = None,
    until: Callable[[Probe], bool] | None = None,
) -> Probe:
    """Send requests through the ingress at ``rate`` for ``seconds`` (hard stop), one at a time.

    ``token`` gives the bearer token per request (default: one fresh token for the
    period). ``until`` ends the period early once it holds.
    """
    fixed = topology.idp.token()
    get_token = token or (lambda: fixed)
    url = topology.layout.ingress.url + "/"
    result = Probe()
    limit = max(1, int(seconds * rate) + 1)
    start = time.monotonic()
    deadline = start + seconds
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for n in range(limit):
            now = time.monotonic()
            if now >= deadline:
                break
            due = start + n / rate
            if due > now:
                time.sleep(due - now)
            sent = time.monotonic()
            try:
                answer = client.get(url, headers={"Authorization": f"Bearer {get_token()}"})
            except httpx.HTTPError:
                result.replies.append(Reply(sent, NO_ANSWER, (time.monotonic() - sent) * 1000))
                continue
            ms = (time.monotonic() - sent) * 1000
            pods: tuple[str, ...] = ()
            if answer.status_code == 200:
                try:
                    pods = _pods(answer.json())
                except ValueError:
                    pods = ()
            result.replies.append(Reply(sent, answer.status_code, ms, pods))
            if until is not None and until(result):
                break
    return result


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll until ``predicate`` holds or ``timeout_s`` passes; the last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


_FAULT_SPEC: TypeAdapter[FaultSpec] = TypeAdapter(FaultSpec)


def fault_spec(**fields: object) -> FaultSpec:
    """A validated fault spec, written as in an experiment file (durations as strings)."""
    return _FAULT_SPEC.validate_python(fields)


def make_fault(topology: LocalTopology, spec: FaultSpec, seed: int = 1) -> Fault[FaultSpec]:
    """The registered driver of ``spec`` bound to ``topology``."""
    driver: type[Fault[FaultSpec]] = driver_for(spec.type)
    return driver(
        spec,
        LocalFaultOps.of(topology),
        fault_id=f"test-{spec.type}",
        name=spec.name or spec.type,
        seed=seed,
    )


@dataclass
class Applied:
    """A fault applied for the duration of a ``with`` block; reverted on the way out."""

    fault: Fault[FaultSpec]
    applied_t: float = 0.0


@contextlib.contextmanager
def applied(fault: Fault[FaultSpec]) -> Iterator[Applied]:
    """Apply ``fault``; revert it whatever happens (the test may revert earlier itself)."""
    state = Applied(fault)
    try:
        state.applied_t = time.monotonic()
        fault.apply()
        yield state
    finally:
        fault.revert()
