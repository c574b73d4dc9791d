"""Identity faults: ``cert-expiry``, ``control-plane-outage`` and ``policy-desync``.

* cert-expiry: the target's workload certificate expires while rotation is
  blocked. Revert restores rotation: sidecar re-runs the init step and restarts
  the proxy (as an operator would); mesh and ambient re-issue through SDS.
  Connections already open survive an expiry (FACTS.md): how fast it shows
  depends on the proxies' connection lifetime, a reported parameter.
* control-plane-outage: the CA and config push stop for the hold; with a short
  ``cert_ttl`` the certificates expire during it. The sidecar setup has no
  control plane, so the outage cannot reach it.
* policy-desync: the identity provider rotates its signing key; the sidecar
  keeps its stale key set until revert, the mesh's control plane pushes the new
  one, ambient validates no JWTs.
"""

from __future__ import annotations

import time
from datetime import timedelta

from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.local.faultops import counters
from chaos.platforms.local.layout import Pod, Setup
from chaos.spec import CertExpiryFault, ControlPlaneOutageFault, PolicyDesyncFault

_TLS_FAILURES = (".ssl.fail_verify_error", ".ssl.connection_error", ".upstream_cx_connect_fail")
_JWT_DENIED = (".jwt_authn.denied",)


def _admin_urls(
    fault: Fault[CertExpiryFault] | Fault[ControlPlaneOutageFault] | Fault[PolicyDesyncFault],
) -> list[str]:
    return [url for _, url in fault.ops.layout.proxy_admins()]


def _counts(urls: list[str], suffixes: tuple[str, ...]) -> dict[str, int]:
    """Every matching counter of every reachable proxy, keyed by proxy and counter name."""
    found: dict[str, int] = {}
    for url in urls:
        try:
            found |= {f"{url} {name}": value for name, value in counters(url, suffixes).items()}
        except Exception:
            continue
    return found


def _rise(before: dict[str, int], after: dict[str, int]) -> int:
    """How much the counters rose; a counter that went down (its proxy restarted) adds 0."""
    return sum(max(0, value - before.get(key, 0)) for key, value in after.items())


class CertExpiryFaultDriver(Fault[CertExpiryFault]):
    fault_type = "cert-expiry"
    _tls_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _not_after: dict[str, float] = {}  # noqa: RUF012 - replaced per instance in apply()
    _touched: tuple[Pod, ...] = ()

    def plan(self) -> FaultPlan:
        setup = self.ops.layout.setup
        undo = {
            Setup.SIDECAR: "re-run the init step (fresh certificate), restart the proxy",
            Setup.MESH: "agent re-issues through SDS, rotation unblocked",
            Setup.AMBIENT: "node proxy re-fetches a fresh certificate (SDS), rotation unblocked",
        }[setup]
        action = f"certificate expires {self.spec.ttl:g} s after injection, rotation blocked"
        if setup is Setup.SIDECAR:
            action += " (the proxy restarts to load it: sidecar certs are read at start only)"
        return self._plan([Change(f"{p.name} identity", action, undo) for p in self.pods])

    def apply(self) -> None:
        ttl = timedelta(seconds=self.spec.ttl)
        self._not_after = {}
        for pod in self.pods:
            # Marked before it is touched: a half-done expiry is restored too.
            self._touched = (*self._touched, pod)
            self._not_after[pod.name] = self.ops.expire_cert(pod, ttl)
        # Counted after the expiry is in place: in the sidecar setup it restarts proxies,
        # which starts their counters again from zero.
        self._tls_before = _counts(_admin_urls(self), _TLS_FAILURES)

    def verify(self) -> Evidence:
        now = time.time()
        expired = [name for name, at in self._not_after.items() if at <= now]
        failures = _rise(self._tls_before, _counts(_admin_urls(self), _TLS_FAILURES))
        detail = f"expired: {', '.join(expired) or 'none yet'}; TLS/connect failures: {failures}"
        return Evidence(bool(expired) and failures > 0, detail)

    def revert(self) -> None:
        # Only what apply touched, once: restoring restarts a sidecar's proxy, which a
        # second revert (or a revert before apply) must not do again.
        while self._touched:
            self.ops.restore_cert(self._touched[0])
            self._touched = self._touched[1:]


class ControlPlaneOutageFaultDriver(Fault[ControlPlaneOutageFault]):
    fault_type = "control-plane-outage"
    _applied = False

    def blast_radius(self) -> list[str]:
        if self.ops.layout.setup is Setup.SIDECAR:
            return []
        return [p.name for p in self.ops.layout.pods]

    def plan(self) -> FaultPlan:
        setup = self.ops.layout.setup
        if setup is Setup.SIDECAR:
            return self._plan([Change("control plane", "none in this setup: nothing to stop", "-")])
        changes = [
            Change("CA", "stop issuing and rotating certificates", "resume; re-issue overdue")
        ]
        if setup is Setup.MESH:
            changes.append(Change("config push", "queue every push", "resume; push the queue"))
        if self.spec.cert_ttl:
            changes.append(
                Change(
                    "all identities",
                    f"re-issued with a {self.spec.cert_ttl:g} s lifetime",
                    "fresh certificates with the normal lifetime",
                )
            )
        return self._plan(changes)

    def apply(self) -> None:
        topology = self.ops.topology
        agent = topology.cert_agent
        if agent is None:
            return
        # Blocked first: the short certificates are due for rotation at half their life,
        # and the agent's thread would otherwise renew some before the block came in.
        agent.block()
        self._applied = True
        if topology.control_plane is not None:
            topology.control_plane.pause()
        if self.spec.cert_ttl:
            for status in agent.status():
                agent.issue_now(status.dir, timedelta(seconds=self.spec.cert_ttl))

    def verify(self) -> Evidence:
        topology = self.ops.topology
        if topology.cert_agent is None:
            return Evidence(True, "sidecar: no control plane; the outage does not reach it")
        paused = topology.control_plane.paused if topology.control_plane else True
        expired = [s for s in topology.cert_agent.status() if s.expired]
        detail = f"CA down; config push {'paused' if paused else 'running'}; "
        detail += f"{len(expired)} certificates expired"
        return Evidence(self._applied, detail)

    def revert(self) -> None:
        topology = self.ops.topology
        if topology.control_plane is not None:
            topology.control_plane.resume()
        if topology.cert_agent is not None:
            topology.cert_agent.unblock()


class PolicyDesyncFaultDriver(Fault[PolicyDesyncFault]):
    fault_type = "policy-desync"
    _denied_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _rotated = False

    def blast_radius(self) -> list[str]:
        if self.ops.layout.setup is Setup.AMBIENT:
            return []
        return [p.name for p in self.ops.layout.pods]

    def plan(self) -> FaultPlan:
        holders = {
            Setup.SIDECAR: "sidecars keep their stale key set (read once at start)",
            Setup.MESH: "the control plane pushes the new key set to every proxy",
            Setup.AMBIENT: "no JWT validation in this setup",
        }[self.ops.layout.setup]
        return self._plan(
            [
                Change(
                    "identity provider",
                    f"rotate the signing key; {holders}",
                    "restore the previous signing key",
                )
            ]
        )

    def apply(self) -> None:
        self._denied_before = _counts(_admin_urls(self), _JWT_DENIED)
        self.ops.topology.idp.rotate_key()
        self._rotated = True

    def verify(self) -> Evidence:
        if self.ops.layout.setup is Setup.AMBIENT:
            # Nothing validates tokens here: the rotation cannot reach the data path.
            return Evidence(
                False, "no proxy validates JWTs in ambient; the rotation changed nothing"
            )
        denied = _rise(self._denied_before, _counts(_admin_urls(self), _JWT_DENIED))
        return Evidence(self._rotated, f"signing key rotated; {denied} requests denied since")

    def revert(self) -> None:
        if self._rotated:
            self.ops.topology.idp.revert()
            self._rotated = False
