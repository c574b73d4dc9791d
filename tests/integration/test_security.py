"""Security on real processes: what each app received, the bypass probe, a policy rollout.

One topology per setup (real Envoy, the real demo service). Every assertion reads the
server's own record: the ``x-chaos-auth`` each app answered with (what it received),
the status a bypass request got, the proxies' RBAC counters.
"""

from __future__ import annotations

import httpx
import pytest

from chaos.experiment import Setup
from chaos.platforms.base import Pod
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.running import LocalRunning
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.shared.layout import Port
from chaos.rundir.auth import AUTH_HEADER, CREDENTIAL, IDENTITY, TOKEN, VERIFIED, encode
from chaos.traffic.bypass import AppPort, attempt

#: What the first app says of the whole chain, per setup. sidecar: every proxy requires
#: the token and passes it on, every app holds it. mesh: Istio's default removes it
#: before frontend's app (forwardOriginalToken false), so no app holds it and only
#: frontend's proxy saw one. ambient validates no token: it reaches frontend's app as sent.
EXPECTED = {
    Setup.SIDECAR: VERIFIED | IDENTITY | TOKEN | CREDENTIAL,
    Setup.MESH: VERIFIED | IDENTITY,
    Setup.AMBIENT: VERIFIED | IDENTITY | CREDENTIAL,
}
#: What a request without a token gets at the ingress: sidecar: frontend's jwt_authn
#: refuses it (401); mesh: jwt_authn lets it on, frontend's AuthorizationPolicy
#: (requestPrincipals) denies it (403, Istio's "RBAC: access denied"); ambient checks no token.
NO_TOKEN = {Setup.SIDECAR: 401, Setup.MESH: 403, Setup.AMBIENT: 200}
#: With an ALLOW-any rule rolled out at frontend (policy-mismatch allow-any).
NO_TOKEN_ALLOW_ANY = {Setup.SIDECAR: 401, Setup.MESH: 200, Setup.AMBIENT: 200}
#: What a plaintext, token-less request to a pod's app port gets (the local model).
BYPASS = {Setup.SIDECAR: "served", Setup.MESH: "refused", Setup.AMBIENT: "refused"}


def _get(topology: LocalTopology, headers: dict[str, str] | None = None) -> httpx.Response:
    token = topology.idp.token()
    return httpx.get(
        topology.layout.ingress.url + "/",
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        timeout=10.0,
    )


class TestWhatTheAppReceived:
    def test_the_chain_reports_identity_token_and_credential(
        self, running_topology: LocalTopology
    ) -> None:
        setup = running_topology.layout.setup
        for _ in range(10):
            response = _get(running_topology)
            assert response.status_code == 200
            bits = encode(response.headers.get(AUTH_HEADER))
            assert bits & ~1 == EXPECTED[setup], response.headers.get(AUTH_HEADER)

    def test_only_the_setups_that_require_a_token_refuse_a_request_without_one(
        self, running_topology: LocalTopology
    ) -> None:
        setup = running_topology.layout.setup
        response = httpx.get(running_topology.layout.ingress.url + "/", timeout=10.0)
        assert response.status_code == NO_TOKEN[setup]
        if setup is Setup.MESH:
            # a token that is there but invalid is refused by jwt_authn itself
            bad = httpx.get(
                running_topology.layout.ingress.url + "/",
                headers={"Authorization": "Bearer not.a.token"},
                timeout=10.0,
            )
            assert bad.status_code == 401

    def test_a_client_cannot_forge_the_identity_header(
        self, running_topology: LocalTopology
    ) -> None:
        # the ingress drops a client's XFCC (Envoy's SANITIZE); the app's proxy appends
        # its own, verified element last, which is the one the app reads
        forged = {"x-forwarded-client-cert": "URI=spiffe://evil.example/ns/x/sa/y"}
        response = _get(running_topology, forged)
        assert (
            encode(response.headers.get(AUTH_HEADER)) & ~1
            == EXPECTED[running_topology.layout.setup]
        )

    def test_a_bypass_request_is_refused_or_served_as_the_setup_models(
        self, running_topology: LocalTopology
    ) -> None:
        setup = running_topology.layout.setup
        ports = LocalRunning(running_topology).app_ports()
        assert {p.port for p in ports} == {int(Port.APP)}
        outcomes = {attempt(p)[0] for p in ports}
        assert outcomes == {BYPASS[setup]}
        if setup is not Setup.SIDECAR:
            # positive control: the app is up behind its proxy, on a port the proxy reaches
            pod = running_topology.layout.pods[-1]
            behind = AppPort(pod.name, pod.address, pod.app_port)
            assert attempt(behind)[0] == "served"
        else:
            # the app served it, and said it arrived with nothing verified
            leaf = next(p for p in ports if p.pod.startswith("payments"))
            answer = httpx.get(f"http://{leaf.host}:{leaf.port}/", timeout=5.0)
            assert answer.status_code == 200
            assert answer.headers[AUTH_HEADER] == "none"


@pytest.mark.parametrize("rule", ["deny-caller", "allow-other"])
def test_policy_mismatch_fails_closed_and_reverts(
    running_topology: LocalTopology, rule: str
) -> None:
    ops = LocalFaultOps.of(running_topology)
    pods = [Pod(p.name, p.service, p.node, p.replica) for p in running_topology.layout.pods]
    sites = ops.authz_sites([p for p in pods if p.service == "checkout"])
    before = sum(ops.authz_denials(s) for s in sites)
    assert _get(running_topology).status_code == 200
    try:
        for site in sites:
            ops.set_authz_rule(site, rule)
        statuses = [_get(running_topology).status_code for _ in range(10)]
        # the frontend passes checkout's proxy's 403 on: denied, never served
        assert statuses == [403] * 10
        assert sum(ops.authz_denials(s) for s in sites) - before == 10
    finally:
        for site in sites:
            ops.clear_authz_rule(site)
            ops.clear_authz_rule(site)  # idempotent
    assert [_get(running_topology).status_code for _ in range(5)] == [200] * 5


def _anonymous(topology: LocalTopology) -> httpx.Response:
    return httpx.get(topology.layout.ingress.url + "/", timeout=10.0)


def test_policy_mismatch_allow_any_fails_open_where_the_token_is_a_policy(
    running_topology: LocalTopology,
) -> None:
    setup = running_topology.layout.setup
    ops = LocalFaultOps.of(running_topology)
    pods = [Pod(p.name, p.service, p.node, p.replica) for p in running_topology.layout.pods]
    sites = ops.authz_sites([p for p in pods if p.service == "frontend"])
    before = sum(ops.authz_let_through(s) for s in sites)
    assert _anonymous(running_topology).status_code == NO_TOKEN[setup]
    try:
        for site in sites:
            ops.set_authz_rule(site, "allow-any")
        answers = [_anonymous(running_topology) for _ in range(6)]
        assert [a.status_code for a in answers] == [NO_TOKEN_ALLOW_ANY[setup]] * 6
        let_through = sum(ops.authz_let_through(s) for s in sites) - before
        if setup is Setup.MESH:
            # served by the app (its header came back), each one counted by the proxy's
            # shadow rules (the standing require-jwt policy) as one it would have denied
            assert all(AUTH_HEADER in a.headers for a in answers)
            assert let_through == 6
        else:
            # sidecar: jwt_authn refused them before authorization; ambient: no standing
            # policy to open (it checks no token at all)
            assert let_through == 0
        assert _get(running_topology).status_code == 200  # the legitimate caller still is
    finally:
        for site in sites:
            ops.clear_authz_rule(site)
    assert _anonymous(running_topology).status_code == NO_TOKEN[setup]
