"""The data plane's agents follow the table: CA retries back off, key sets arrive at a refresh.

Istio's behaviour modelled here (istio/ztunnel 1.28.0 ``src/identity/manager.rs``: a failed
certificate fetch is retried after an exponential backoff, and a certificate is renewed at
its next try after the CA is back, not at once; istio/istio 1.28.0
``pilot/pkg/features/pilot.go`` PILOT_JWT_PUB_KEY_REFRESH_INTERVAL: istiod re-reads a
``jwksUri`` on a fixed interval). Everything is asserted from the events the agent records.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import replace
from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.local.certagent import CertAgent
from chaos.platforms.local.controlplane import KeySetPoller, MeshControlPlane
from chaos.platforms.local.envoy_config import ProxyOptions
from chaos.platforms.local.envoy_mesh import mesh_xds_paths
from chaos.platforms.shared.dataplane import DEFAULTS, Backoff
from chaos.platforms.shared.layout import build_layout
from chaos.platforms.shared.pki import CertificateAuthority

Record = tuple[str, str, str]


class Events:
    def __init__(self) -> None:
        self.seen: list[Record] = []
        self.cond = threading.Condition()

    def __call__(self, kind: str, subject: str, detail: str) -> None:
        with self.cond:
            self.seen.append((kind, subject, detail))
            self.cond.notify_all()

    def wait_for(self, kind: str, count: int, timeout_s: float = 30.0) -> list[Record]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.of(kind)) >= count, timeout_s), self.seen
            return self.of(kind)

    def of(self, kind: str) -> list[Record]:
        return [e for e in self.seen if e[0] == kind]


def test_a_blocked_ca_is_retried_with_backoff_and_reissued_at_the_next_try(
    tmp_path: Path,
) -> None:
    events = Events()
    backoff = Backoff(first_s=0.1, factor=2.0, max_s=0.4, jitter=0.0)
    agent = CertAgent(CertificateAuthority.create(), events=events, backoff=backoff)
    with agent:
        agent.start()
        agent.block()  # the CA is down before the first renewal is due
        agent.register(
            tmp_path / "a" / "certs", "spiffe://cluster.local/ns/mesh/sa/a", dt.timedelta(seconds=1)
        )
        retries = events.wait_for("cert_retry", 4)
        waits = [float(m.group(1)) for e in retries if (m := re.search(r"in ([0-9.]+)s", e[2]))]
        # ztunnel's schedule: the first wait, doubling, capped.
        assert waits[:4] == [0.1, 0.2, 0.4, 0.4]
        assert not events.of("cert_rotated")  # nothing issued while the CA is away
        agent.unblock()
        rotated = events.wait_for("cert_rotated", 1)
    assert len(rotated) == 1
    # The renewal came from a try of the backoff's schedule (the agent's own count reset).
    assert agent.status()[0].blocked is False


def test_without_backoff_overdue_identities_are_reissued_on_unblock(tmp_path: Path) -> None:
    events = Events()
    agent = CertAgent(CertificateAuthority.create(), events=events)
    with agent:
        agent.start()
        agent.block()
        agent.register(
            tmp_path / "b" / "certs", "spiffe://cluster.local/ns/mesh/sa/b", dt.timedelta(seconds=1)
        )
        status = agent.status()[0]
        while agent.status()[0].next_rotation > _now(agent):
            threading.Event().wait(0.05)
        agent.unblock()  # re-issued before unblock returns
        assert events.of("cert_rotated") and not events.of("cert_retry")
        assert agent.status()[0].serial != status.serial


def _now(agent: CertAgent) -> float:
    return agent._clock()  # the agent's own clock


def test_key_set_arrives_at_the_next_refresh_not_at_once() -> None:
    published = ["k1"]
    pushed: list[str] = []
    poller = KeySetPoller(lambda: published[-1], pushed.append, refresh_s=1200.0)
    published.append("k2")  # the identity provider rotates its key
    assert pushed == []  # istiod has not fetched yet
    assert poller.poll() and pushed == ["k2"]  # the next refresh brings it
    assert not poller.poll() and pushed == ["k2"]  # unchanged: nothing pushed


def test_key_set_poller_runs_on_its_interval() -> None:
    published = ["k1"]
    arrived = threading.Event()
    poller = KeySetPoller(lambda: published[-1], lambda _: arrived.set(), refresh_s=0.05)
    with_thread = poller.start()
    try:
        published.append("k2")
        assert arrived.wait(10.0)
    finally:
        with_thread.close()
    never = KeySetPoller(lambda: "k", lambda _: None, refresh_s=None).start()
    never.close()  # read once: no thread to stop


def _endpoints(cds: Path, cluster: str) -> list[str]:
    raw = json.loads(cds.read_text())
    (found,) = [c for c in raw["resources"] if c["name"] == cluster]
    hosts = found["load_assignment"]["endpoints"][0].get("lb_endpoints", [])
    return [h["endpoint"]["address"]["socket_address"]["address"] for h in hosts]


def test_an_unready_pod_leaves_its_callers_endpoints_after_one_debounced_push(
    tmp_path: Path,
) -> None:
    # istio/istio 1.28.0 pilot/pkg/features/tuning.go: PILOT_DEBOUNCE_AFTER 100 ms (quiet
    # time before a push), PILOT_DEBOUNCE_MAX 10 s; events within it make one push.
    layout = build_layout(Setup.MESH, tmp_path, slot=61, ingress_port=18061)
    events = Events()
    # A debounce of 1 s (Istio: 100 ms) so that the three calls below surely fall within it.
    mesh = DEFAULTS[Setup.MESH]
    slow = replace(mesh, control=replace(mesh.control, endpoint_debounce_s=1.0))
    plane = MeshControlPlane(layout, ProxyOptions().with_policy(slow), events=events)
    cds = mesh_xds_paths(layout.pod("checkout-0")).cds
    payments = {p.name: p.address for p in layout.pods_of("payments")}
    assert sorted(_endpoints(cds, "payments")) == sorted(payments.values())
    try:
        plane.set_endpoint_ready("payments-0", False)  # crashed
        plane.set_endpoint_ready("payments-0", True)  # a flap within the debounce...
        plane.set_endpoint_ready("payments-0", False)  # ...settles on the last state
        pushed = events.wait_for("config_pushed", len(layout.pods))
    finally:
        plane.close()
    assert _endpoints(cds, "payments") == [payments["payments-1"]]
    # One push per proxy for the three events (cds version 2 everywhere).
    assert sorted(e[1] for e in pushed) == sorted(p.proxy_name or p.name for p in layout.pods)
    assert {e[2] for e in pushed} == {"cds version 2"}


def test_a_crashed_frontend_leaves_the_ingress_and_the_change_is_journaled(
    tmp_path: Path,
) -> None:
    # Istio's ingress gateway gets its endpoints from istiod like any sidecar: a NotReady
    # frontend pod leaves it after the debounce, and comes back when ready.
    layout = build_layout(Setup.MESH, tmp_path, slot=62, ingress_port=18062)
    events = Events()
    plane = MeshControlPlane(layout, ProxyOptions(), events=events)
    cds = layout.ingress.dir / "xds" / "cds" / "cds.json"
    frontends = {p.name: p.address for p in layout.pods_of("frontend")}
    assert sorted(_endpoints(cds, "frontend")) == sorted(frontends.values())
    try:
        plane.set_endpoint_ready("frontend-0", False)
        (removed,) = events.wait_for("endpoints_removed", 1)
        assert _endpoints(cds, "frontend") == [frontends["frontend-1"]]
        plane.set_endpoint_ready("frontend-0", True)
        (restored,) = events.wait_for("endpoints_restored", 1)
    finally:
        plane.close()
    assert removed[1] == restored[1] == "frontend-0"
    assert sorted(_endpoints(cds, "frontend")) == sorted(frontends.values())
    ingress = [e for e in events.seen if e[0] == "config_pushed" and e[1] == "ingress"]
    assert [e[2] for e in ingress] == ["cds version 2", "cds version 3"]
