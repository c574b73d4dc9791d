"""The baseline setup on real processes: the demo chain with no proxy in any pod.

What a cost measurement relies on: the same chain (frontend -> checkout -> payments,
two replicas on two nodes) answers through the ingress in plaintext without a token,
the apps call each other directly and share the load, and the only Envoy the
topology starts is the ingress every setup has.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from chaos.experiment import Setup
from chaos.platforms.shared.layout import SERVICES
from tests.conftest import StartTopology

REQUESTS = 40


def _hops(answer: dict[str, Any]) -> list[dict[str, Any]]:
    hops = []
    node: dict[str, Any] | None = answer
    while node is not None:
        hops.append(node)
        node = node.get("upstream")
    return hops


def test_baseline_chain_answers_without_proxies_or_token(start_topology: StartTopology) -> None:
    topology = start_topology(Setup.BASELINE)
    layout = topology.layout
    seen: dict[str, Counter[str]] = {s: Counter() for s in SERVICES}
    with httpx.Client(timeout=10.0) as client:  # no Authorization header at all
        for _ in range(REQUESTS):
            response = client.get(layout.ingress.url + "/api/checkout")
            assert response.status_code == 200, response.text
            hops = _hops(response.json())
            assert [h["service"] for h in hops] == list(SERVICES)
            # Only the ingress is crossed; the apps call each other directly.
            assert [h["via"] for h in hops] == [["ingress"], [], []]
            for hop in hops:
                seen[hop["service"]][hop["pod"]] += 1
    for service in SERVICES:
        # Both replicas of every service took requests (the app balances its upstream).
        assert set(seen[service]) == {f"{service}-0", f"{service}-1"}, seen
    envoys = [n for n in topology.supervisor.names() if not n.endswith(".app")]
    assert envoys == ["ingress"]
    assert [name for name, _ in layout.proxy_admins()] == ["ingress"]
