"""A restarted mesh proxy waits for its certificate and config (chaos.platforms.local.restartfetch).

Istio 1.28.0: the restarted istio-proxy serves only after pilot-agent got a certificate
from the CA and istiod answered its first xDS requests. The gate holds the restart with
the reason while either is out, then fetches both (a real re-issue by the cert agent, a
full push by the control plane) before it lets the restart through. Asserted from the
events the agent and the control plane record, in order.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.experiment import Setup
from chaos.platforms.local.certagent import CertAgent
from chaos.platforms.local.controlplane import MeshControlPlane
from chaos.platforms.local.envoy_config import ProxyOptions
from chaos.platforms.local.restartfetch import FETCHING, RestartFetch
from chaos.platforms.shared.layout import build_layout
from chaos.platforms.shared.pki import CertificateAuthority


@dataclass
class Deps:
    cert_agent: CertAgent | None
    control_plane: MeshControlPlane | None
    cert_ttl: dt.timedelta = dt.timedelta(hours=1)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, subject: str, detail: str) -> None:
        with self.lock:
            self.seen.append((kind, subject, detail))


def _until_open(gate: object) -> list[str | None]:
    """Ask the gate as the supervisor does (every tick) until it lets the restart through."""
    assert callable(gate)
    answers: list[str | None] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers.append(gate())
        if answers[-1] is None:
            return answers
        time.sleep(0.01)
    raise AssertionError(answers)


def test_the_restart_is_held_during_an_outage_then_fetches_cert_and_config(
    tmp_path: Path,
) -> None:
    layout = build_layout(Setup.MESH, tmp_path, slot=63, ingress_port=18063)
    events = Events()
    pod = layout.pod("payments-0")
    agent = CertAgent(CertificateAuthority.create(), events=events)
    plane = MeshControlPlane(layout, ProxyOptions(), events=events)
    fetch = RestartFetch(Deps(agent, plane))
    gate = fetch.gate(pod.proxy_name or pod.name, [pod.certs_dir], pod.name)
    with agent:
        agent.register(pod.certs_dir, pod.identity, dt.timedelta(hours=1))
        agent.start()
        serial = agent.status_of(pod.certs_dir).serial
        agent.block()
        plane.pause()
        assert gate() == "CA unreachable (certificate fetch)"
        agent.unblock()
        assert gate() == "control plane unreachable (config fetch)"
        assert not [e for e in events.seen if e[0] == "config_pushed"]
        plane.resume()
        answers = _until_open(gate)
        assert answers[0] == FETCHING and answers[-1] is None
        assert agent.status_of(pod.certs_dir).serial != serial  # a fresh certificate
    plane.close()
    kinds = [(k, s) for k, s, _ in events.seen]
    issued = kinds.index(("cert_issued", pod.name)) if ("cert_issued", pod.name) in kinds else -1
    pushed = [i for i, (k, s) in enumerate(kinds) if k == "config_pushed" and s == pod.proxy_name]
    assert issued >= 0 and len(pushed) == 5, events.seen  # cds, jwt, lds and both routes
    # The next crash fetches again: the gate starts over.
    assert gate() == FETCHING
    fetch.close()
