"""Each of the six faults on each setup, against a real topology, measured through the ingress.

One topology per setup is shared by the module (started once, torn down at the end);
every test measures the steady state first, applies its fault, measures the effect
with its own bounded prober, reverts (twice: revert is idempotent) and checks that
the topology is back in its steady state, so a leaky revert fails the test that
leaked, not a later one. Proxies recycle upstream connections after 1 s, so
certificate changes show within a second (open connections outlive an expiry).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from chaos.analysis.counters import counter_frame
from chaos.analysis.model import FaultWindow
from chaos.analysis.shares import affected_share
from chaos.experiment import ALL_SETUPS, Setup
from chaos.experiment import Fault as FaultSpec
from chaos.experiment.dataplane import DataPlaneFields
from chaos.faults.base import Fault
from chaos.platforms.base import EventKind
from chaos.platforms.local.admin import ANALYSIS_STATS_FILTER, counters
from chaos.platforms.local.certagent import CertAgent
from chaos.platforms.local.envoy_config import ProxyOptions
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.shared.dataplane import resolve
from chaos.rundir.counters import CounterSample
from tests.conftest import ProcessTracker, lease_slot, topology_options
from tests.integration.conftest_faults import (
    Probe,
    Reply,
    fault_spec,
    make_fault,
    probe,
    wait_for,
)

CONNECTION_LIFETIME_S = 1.0
DELAY_MS = 200


@pytest.fixture(scope="module", params=list(ALL_SETUPS), ids=[s.value for s in ALL_SETUPS])
def topo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTopology]:
    setup: Setup = request.param
    tracker = ProcessTracker()
    with lease_slot() as slot:
        options = replace(
            topology_options(setup, tmp_path_factory.mktemp(f"faults-{setup.value}"), slot),
            # A connection lifetime (Istio has none), so a certificate change shows in seconds.
            proxy=ProxyOptions().with_policy(
                resolve(setup, DataPlaneFields(connection_lifetime=CONNECTION_LIFETIME_S))
            ),
        )
        topology = LocalTopology(options)
        tracker.follow(topology)
        with topology:
            yield topology
    tracker.check()


#: Requests a steady-state probe sends (0.4 s at 50/s on an idle machine).
STEADY_REQUESTS = 20


def steady(topology: LocalTopology, timeout_s: float = 30.0) -> Probe:
    """A probe that must see only 200s (the steady state): a count of requests, not a period.

    Sequential requests: on a busy machine an ambient request can take 100+ ms, so a fixed
    period would hold fewer of them; ``timeout_s`` is a limit on waiting only.
    """
    result = probe(topology, timeout_s, until=lambda p: len(p.replies) >= STEADY_REQUESTS)
    assert len(result.replies) >= STEADY_REQUESTS, result
    assert result.failed == 0, f"not in the steady state: {result}"
    return result


def settle(topology: LocalTopology, timeout_s: float = 8.0) -> None:
    """Wait until every process is ready and ten requests in a row succeed."""
    topology.supervisor.wait_ready(timeout_s=timeout_s)

    def ten_in_a_row(p: Probe) -> bool:
        return len(p.replies) >= 10 and all(r.status == 200 for r in p.replies[-10:])

    result = probe(topology, timeout_s, until=ten_in_a_row)
    assert ten_in_a_row(result), f"did not settle after revert: {result}"


def total_restarts(topology: LocalTopology) -> int:
    return sum(topology.supervisor.restarts(n) for n in topology.supervisor.names())


def revert_again_changes_nothing(topology: LocalTopology, fault: Fault[FaultSpec]) -> None:
    """Revert is idempotent: a second one restarts nothing and pushes nothing."""
    restarts = total_restarts(topology)
    pushes = len(topology.events.events(EventKind.CONFIG_PUSHED))
    fault.revert()
    assert total_restarts(topology) == restarts
    assert len(topology.events.events(EventKind.CONFIG_PUSHED)) == pushes


def proxy_counter(topology: LocalTopology, suffix: str) -> int:
    """The sum of one counter over every proxy of the topology."""
    layout = topology.layout
    urls = [p.admin_url for p in layout.pods if p.admin_url]
    urls += [n.admin_url for n in layout.node_proxies] + [w.admin_url for w in layout.waypoints]
    urls.append(layout.ingress.admin_url)
    return sum(sum(counters(url, (suffix,)).values()) for url in urls)


# -- latency and abort --------------------------------------------------------------------------


def test_latency_delays_requests_through_the_target(topo: LocalTopology) -> None:
    spec = fault_spec(
        type="latency", target={"service": "checkout", "replica": 0}, delay=f"{DELAY_MS}ms"
    )
    fault = make_fault(topo, spec)
    radius = set(fault.plan().blast_radius)

    def through(r: Reply) -> bool:
        return bool(radius & set(r.pods))

    base = steady(topo)
    try:
        fault.apply()
        during = probe(topo, 1.5)
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    after = steady(topo)

    assert evidence.took_effect, evidence.detail
    assert during.failed == 0, during
    base_ms = base.median_ms()
    slowed = during.median_ms(through)
    assert DELAY_MS * 0.9 <= slowed - base_ms <= DELAY_MS + 150, (base_ms, slowed)
    if any(not through(r) for r in during.replies):  # sidecar/mesh: the other replica
        assert during.median_ms(lambda r: not through(r)) < base_ms + 50
    assert after.median_ms() < base_ms + 50, (base_ms, after.median_ms())


def test_abort_answers_with_the_status(topo: LocalTopology) -> None:
    spec = fault_spec(type="abort", target={"service": "checkout"}, status=500, percent=100)
    fault = make_fault(topo, spec)
    steady(topo)
    try:
        fault.apply()
        during = probe(topo, 1.0)
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    settle(topo)
    steady(topo)

    assert evidence.took_effect, evidence.detail
    assert during.share(500) >= 0.9, during


FRONTEND_FAULT_SITE = {
    # Istio applies a VirtualService fault at the caller: the frontend's is the ingress (on
    # Kubernetes the Locust workers' sidecars). Ambient: the frontend's waypoint. Sidecar:
    # each replica's own inbound.
    Setup.SIDECAR: {"frontend-0.proxy", "frontend-1.proxy"},
    Setup.MESH: {"ingress"},
    Setup.AMBIENT: {"waypoint-frontend"},
}


def test_a_frontend_fault_sits_where_the_setup_puts_it_and_is_counted_there(
    topo: LocalTopology,
) -> None:
    spec = fault_spec(type="abort", target={"service": "frontend"}, status=500, percent=100)
    fault = make_fault(topo, spec)
    sites = LocalFaultOps.of(topo).http_fault_sites(
        [p for p in LocalFaultOps.of(topo).workload.pods if p.service == "frontend"], "inbound"
    )
    assert {s.proxy for s in sites} == FRONTEND_FAULT_SITE[topo.layout.setup]
    steady(topo)
    try:
        fault.apply()
        during = probe(topo, 1.0)
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    settle(topo)
    steady(topo)

    assert evidence.took_effect, evidence.detail
    assert during.share(500) >= 0.9, during
    # The proxies' own counters: every injected abort was counted at the expected sites.
    injected = sum(LocalFaultOps.of(topo).http_faults_injected(s) for s in sites)
    assert injected >= during.statuses[500], (injected, during)


def test_the_affected_share_is_read_from_the_proxies_counters(topo: LocalTopology) -> None:
    spec = fault_spec(type="latency", target={"service": "checkout", "replica": 0}, delay="20ms")
    fault = make_fault(topo, spec)
    plan = fault.plan()
    admins = dict(topo.layout.proxy_admins())
    keys = [*plan.share_counters, plan.client_counter]
    proxies = {k.split(":", 1)[0] for k in keys}

    def reading(t: float) -> list[CounterSample]:
        found = []
        for proxy in sorted(proxies):
            stats = counters(admins[proxy], stats_filter=ANALYSIS_STATS_FILTER)
            found += [CounterSample(t, proxy, n, float(v)) for n, v in stats.items()]
        return found

    steady(topo)
    try:
        before = reading(1.0)
        fault.apply()
        during = probe(topo, 1.0)
        after = reading(2.0)
    finally:
        fault.revert()
    window = FaultWindow(
        topo.layout.setup.value, "f", "latency", 0, 0.5, 2.0, 2.0, False, 0.0,
        share_counters=plan.share_counters, client_counter=plan.client_counter,
    )  # fmt: skip
    share = affected_share(counter_frame(before + after), window)
    assert during.replies and share is not None, (before, after)
    if topo.layout.setup is Setup.AMBIENT:
        assert share >= 0.95, share  # the waypoint sees every request to checkout
    else:
        assert 0.0 < share < 1.0, share  # one replica's inbound of two
    settle(topo)


# -- crash --------------------------------------------------------------------------------------


def test_crash_is_restarted_by_the_supervisor(topo: LocalTopology) -> None:
    # payments, not checkout: the abort and cert tests leave checkout replicas ejected by the
    # mesh's outlier detection for a while, and an ejected replica gets no traffic to lose.
    spec = fault_spec(type="crash", target={"service": "payments", "replica": 0})
    fault = make_fault(topo, spec)
    processes = topo.supervisor.names()
    proxies = [c.subject for c in fault.plan().changes]
    assert proxies and all(p in processes for p in proxies), proxies
    restarts = {p: topo.supervisor.restarts(p) for p in proxies}
    since = time.monotonic()
    retries = proxy_counter(topo, ".upstream_rq_retry")
    steady(topo)
    try:
        fault.apply()
        during = probe(topo, 1.5)
        assert wait_for(lambda: all(topo.supervisor.restarts(p) > restarts[p] for p in proxies), 5)
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    settle(topo)
    steady(topo)

    assert evidence.took_effect, evidence.detail
    seen = {
        (e.kind, e.subject)
        for e in topo.events.events()
        if e.t >= since and e.kind in (EventKind.CRASHED, EventKind.RESTARTED)
    }
    for proxy in proxies:
        assert (EventKind.RESTARTED, proxy) in seen, seen
    hidden = proxy_counter(topo, ".upstream_rq_retry") - retries
    if topo.layout.setup is Setup.SIDECAR:
        assert during.failed > 0, during
    else:
        # Mesh and waypoint retries go to another replica: users may see nothing, the
        # proxies' retry counters show what was hidden.
        assert during.failed > 0 or hidden > 0, (during, hidden)


def test_a_crashed_proxy_leaves_the_endpoints_and_restarts_after_fetching_cert_and_config(
    topo: LocalTopology,
) -> None:
    """Istio 1.28.0: a crashed istio-proxy makes its pod NotReady (it leaves the endpoints
    of its callers and of the ingress after istiod's debounce); the restarted proxy serves
    only after its agent got a certificate and istiod sent its config. A ztunnel crash
    leaves the pods Ready (probes bypass it). Asserted from the event log's order."""
    setup = topo.layout.setup
    if setup is Setup.SIDECAR:
        pytest.skip("a hand-written sidecar reads static files: nothing to fetch or remove")
    spec = fault_spec(type="crash", target={"service": "frontend", "replica": 0})
    fault = make_fault(topo, spec)
    (target,) = [c.subject for c in fault.plan().changes]
    restarts = topo.supervisor.restarts(target)
    since = time.monotonic()
    steady(topo)
    try:
        fault.apply()
        assert wait_for(lambda: topo.supervisor.restarts(target) > restarts, 10)
    finally:
        fault.revert()
    settle(topo)
    steady(topo)
    if setup is Setup.MESH:
        assert wait_for(
            lambda: bool(topo.events.events(EventKind.ENDPOINTS_RESTORED, "frontend-0")), 5
        )
    events = [e for e in topo.events.events() if e.t >= since]

    def first(kind: EventKind, subject: str) -> int:
        found = [i for i, e in enumerate(events) if e.kind is kind and e.subject == subject]
        assert found, (kind, subject, [(e.kind, e.subject, e.detail) for e in events])
        return found[0]

    crashed = first(EventKind.CRASHED, target)
    restarted = first(EventKind.RESTARTED, target)
    held = [e.detail for e in events if e.kind is EventKind.BACKOFF and e.subject == target]
    assert "held=fetching certificate and config" in held, held
    issued_for = "frontend-0" if setup is Setup.MESH else None
    issued = [
        i
        for i, e in enumerate(events)
        if e.kind is EventKind.CERT_ISSUED and (issued_for is None or e.subject == issued_for)
    ]
    assert issued and crashed < issued[0] < restarted, (crashed, issued, restarted)
    if setup is Setup.MESH:
        pushed = first(EventKind.CONFIG_PUSHED, target)
        assert crashed < pushed < restarted
        removed = first(EventKind.ENDPOINTS_REMOVED, "frontend-0")
        ingress_push = [
            i
            for i, e in enumerate(events)
            if e.kind is EventKind.CONFIG_PUSHED and e.subject == "ingress" and i > removed
        ]
        assert crashed < removed and ingress_push, (crashed, removed)
        assert first(EventKind.ENDPOINTS_RESTORED, "frontend-0") > restarted
    else:
        assert not [e for e in events if e.kind is EventKind.ENDPOINTS_REMOVED]


# -- identities ---------------------------------------------------------------------------------


def test_cert_expiry_breaks_new_connections_until_revert(topo: LocalTopology) -> None:
    spec = fault_spec(type="cert-expiry", target={"service": "checkout"}, ttl="2s")
    fault = make_fault(topo, spec)
    steady(topo)
    try:
        fault.apply()
        expired_at = max(fault.ops.cert_not_after(p) for p in fault.pods)
        # Expiry + a connection lifetime + slack; stop early once failures are plain.
        during = probe(
            topo, expired_at - time.time() + CONNECTION_LIFETIME_S + 3.5, until=_failing_steadily
        )
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    settle(topo)
    steady(topo)

    assert evidence.took_effect, evidence.detail
    assert during.failed >= 3, during
    assert _number(r"TLS/connect failures: (\d+)", evidence.detail) > 0, evidence.detail


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return int(found.group(1))


def _failing_steadily(p: Probe) -> bool:
    # Failing requests can take half a second (retries with backoff): three in a row will do.
    return len(p.replies) >= 3 and all(r.status != 200 for r in p.replies[-3:])


def _wait_all_renewed(agent: CertAgent, timeout_s: float) -> None:
    """Until no certificate is expired or blocked (each renewed at its next try)."""
    deadline = time.monotonic() + timeout_s
    while any(s.expired or s.blocked for s in agent.status()):
        assert time.monotonic() < deadline, f"not renewed after the CA came back: {agent.status()}"
        time.sleep(0.05)


def test_control_plane_outage_expires_certs_except_in_sidecar(topo: LocalTopology) -> None:
    spec = fault_spec(type="control-plane-outage", target={"service": "checkout"}, cert_ttl="1s")
    fault = make_fault(topo, spec)
    steady(topo)
    sidecar = topo.layout.setup is Setup.SIDECAR
    try:
        started = time.time()
        fault.apply()
        # Certificates (1 s, rounded up to whole seconds) expire, connections recycle.
        during = probe(
            topo, 2.0 + CONNECTION_LIFETIME_S + 1.5, until=None if sidecar else _failing_steadily
        )
        evidence = fault.verify()
        agent = topo.cert_agent
        expired = [s for s in agent.status() if s.expired] if agent is not None else []
        blocked = [s for s in agent.status() if s.blocked] if agent is not None else []
    finally:
        reverted = time.monotonic()
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    # The agents try the CA again on their backoff's schedule (ztunnel: 1 s doubling),
    # so the certificates come back at their next try after the revert, not at once.
    if topo.cert_agent is not None:
        _wait_all_renewed(topo.cert_agent, timeout_s=30.0)
    settle(topo)
    steady(topo)

    # No control plane in the sidecar setup: the outage reaches nothing, and says so.
    assert evidence.took_effect is not sidecar, evidence.detail
    if sidecar:
        assert "no control plane" in evidence.detail, evidence.detail
        assert agent is None and topo.control_plane is None
        assert during.failed == 0, during
        assert time.time() - started >= 4.0  # the whole period was probed
        return
    assert agent is not None
    assert expired and blocked, evidence.detail
    assert "rotations overdue" in evidence.detail, evidence.detail
    assert during.failed >= 3, during
    # While the CA was away every overdue identity was tried and retried with backoff.
    retries = topo.events.events(EventKind.CERT_RETRY)
    assert retries, "no certificate request was retried during the outage"
    renewed = [e for e in topo.events.events(EventKind.CERT_ROTATED) if e.t > reverted]
    assert renewed, "no certificate renewed after the CA came back"
    after = agent.status()
    assert not any(s.expired or s.blocked for s in after), after
    # Revert gives back certificates of the normal lifetime (1 h), not the short ones.
    assert all(s.not_after.timestamp() - time.time() > 600 for s in after)
    if topo.control_plane is not None:
        assert not topo.control_plane.paused


def test_policy_desync_denies_fresh_tokens_where_the_key_set_is_stale(
    topo: LocalTopology,
) -> None:
    spec = fault_spec(type="policy-desync", target={"service": "frontend"})
    fault = make_fault(topo, spec)
    steady(topo)
    old_kid = topo.idp.kid
    try:
        fault.apply()
        assert topo.idp.kid != old_kid
        # Fresh tokens, signed with the new key, as a client would fetch them.
        during = probe(topo, 1.0, token=topo.idp.token)
        evidence = fault.verify()
    finally:
        fault.revert()
    revert_again_changes_nothing(topo, fault)
    assert topo.idp.kid == old_kid
    settle(topo)
    after = probe(topo, 0.6, token=topo.idp.token)

    assert after.failed == 0, after
    setup = topo.layout.setup
    # Ambient validates no JWTs: the fault cannot take effect there, and says so.
    assert evidence.took_effect is (setup is not Setup.AMBIENT), evidence.detail
    if setup is Setup.SIDECAR:
        assert during.share(401) >= 0.9, during
        assert _number(r"(\d+) requests denied", evidence.detail) > 0, evidence.detail
    elif setup is Setup.MESH:
        # istiod re-reads the key set every 20 min (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL,
        # istio/istio 1.28.0 pilot/pkg/features/pilot.go): within the window it stays stale.
        assert during.share(401) >= 0.9, during
    else:  # ambient validates no JWTs
        assert during.failed == 0, during
