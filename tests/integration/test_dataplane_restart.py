"""A crashed mesh proxy restarts only when it can fetch its certificate and config.

Istio (1.28.0): pilot-agent exits with Envoy, the container restarts, and the new proxy
serves only after its agent got a certificate from the CA and istiod sent its config; so
during a control-plane outage it does not come back. The supervisor holds the restart on
the topology's gate and journals why; asserted from the event log, not from a clock.
"""

from __future__ import annotations

import threading
import time

from chaos.platforms.base import EventKind
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.events import EventLog
from chaos.platforms.local.processes import ProcessSpec
from chaos.platforms.local.supervisor import Supervisor

POLICY = BackoffPolicy(initial_s=0.05, factor=2, max_s=0.1, first_restart_immediate=False)


def test_a_restart_waits_for_the_control_plane() -> None:
    outage = threading.Event()
    outage.set()
    events = EventLog()

    def gate() -> str | None:
        return "control plane unreachable (config fetch)" if outage.is_set() else None

    spec = ProcessSpec(name="proxy", argv=["sleep", "120"], restart_gate=gate)
    with Supervisor(POLICY, events) as sup:
        sup.add(spec)
        sup.start("proxy")
        sup.kill("proxy")
        held = events.wait_for(EventKind.BACKOFF, "proxy", timeout_s=10)
        assert held is not None
        deadline = time.monotonic() + 10
        while not any("held=" in e.detail for e in events.events(EventKind.BACKOFF, "proxy")):
            assert time.monotonic() < deadline, events.to_json()
            time.sleep(0.01)
        # Held: however long we look, no restart while the control plane is out.
        assert not events.events(EventKind.RESTARTED, "proxy")
        came_back = time.monotonic()
        outage.clear()
        restarted = events.wait_for(EventKind.RESTARTED, "proxy", after=came_back, timeout_s=10)
        assert restarted is not None, events.to_json()
    details = [e.detail for e in events.events(EventKind.BACKOFF, "proxy")]
    assert details[-1] == "held=control plane unreachable (config fetch)"
    assert len([d for d in details if d.startswith("held=")]) == 1  # journaled once per hold
