"""Identity faults: ``cert-expiry``, ``control-plane-outage`` and ``policy-desync``.

* cert-expiry: the target's workload certificate expires while rotation is
  blocked; revert restores rotation and a fresh certificate (how is the
  platform's: re-run an init step, re-issue through SDS, a new Secret).
  Connections already open survive an expiry (measured with Envoy 1.40): how fast it shows
  depends on the proxies' connection lifetime, a reported parameter.
* control-plane-outage: the CA and config push stop for the hold; with a short
  ``cert_ttl`` the certificates expire during it. Where a setup has no control
  plane the outage cannot reach it, and verify says so.
* policy-desync: the identity provider rotates its signing key; proxies that
  hold a stale key set deny fresh tokens until revert, a control plane that
  pushes key sets heals it. Where nothing validates tokens it has no effect.

Each ``verify`` reads the effect from the platform (expired certificates and TLS
failures; overdue rotations and queued pushes; denied tokens and delivered key
sets), never from the fact that ``apply`` ran.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from chaos.experiment import CertExpiryFault, ControlPlaneOutageFault, PolicyDesyncFault
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.base import Pod
from chaos.traffic.live import LiveStats


@runtime_checkable
class BlocksRotationOnce(Protocol):
    """Fault ops that block rotation once after every target's certificate is short-lived.

    (Kubernetes: istiod scaled to 0 per target would leave the next target's rollout to a
    sidecar injector that fails closed.) Others block it inside ``expire_identity``.
    """

    def block_rotation(self) -> None: ...


@runtime_checkable
class IdentityCounterGaps(Protocol):
    """Fault ops whose proxies may not export the identity counters (Istio's stats matcher)."""

    def unexported_identity_counters(self, which: str) -> list[str]:
        """``which`` is ``tls`` or ``denied``: the counters no reachable proxy exports."""
        ...

    def samples_now(self) -> LiveStats | None:
        """The last second of the window's requests, or None."""
        ...


def _from_samples(ops: object, which: str) -> tuple[list[str], LiveStats | None]:
    """The missing counters and the samples to decide from instead (none missing: ``[]``)."""
    if not isinstance(ops, IdentityCounterGaps):
        return [], None
    gaps = sorted({g.lstrip(".") for g in ops.unexported_identity_counters(which)})
    return gaps, ops.samples_now() if gaps else None


@runtime_checkable
class WideBlastRadius(Protocol):
    """Fault ops whose identity faults reach beyond the targets (istiod, ztunnel, load)."""

    def identity_blast_radius(self, fault_type: str, pods: tuple[Pod, ...]) -> list[str]: ...


def _rise(before: dict[str, int], after: dict[str, int]) -> int:
    """How much the counters rose; a counter that went down (its proxy restarted) adds 0."""
    return sum(max(0, value - before.get(key, 0)) for key, value in after.items())


class CertExpiryFaultDriver(Fault[CertExpiryFault]):
    fault_type = "cert-expiry"
    _tls_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _not_after: dict[str, float] = {}  # noqa: RUF012 - replaced per instance in apply()
    _touched: tuple[Pod, ...] = ()

    def blast_radius(self) -> list[str]:
        if isinstance(self.ops, WideBlastRadius):
            return self.ops.identity_blast_radius(self.fault_type, tuple(self.pods))
        return super().blast_radius()

    def plan(self) -> FaultPlan:
        action = f"certificate expires {self.spec.ttl:g} s after injection, rotation blocked"
        changes = []
        for pod in self.pods:
            how = self.ops.expiry_mechanism(pod, self.spec.ttl)
            text = f"{action} ({how.action})" if how.action else action
            changes.append(Change(how.subject, text, how.undo))
        return self._plan(changes)

    def apply(self) -> None:
        self._not_after = {}
        for pod in self.pods:
            # Marked before it is touched: a half-done expiry is restored too.
            self._touched = (*self._touched, pod)
            self._not_after[pod.name] = self.ops.expire_identity(pod, self.spec.ttl)
        if isinstance(self.ops, BlocksRotationOnce):
            self.ops.block_rotation()
        # Counted after the expiry is in place: a platform may restart proxies to load
        # the short-lived certificate, which starts their counters again from zero.
        self._tls_before = self.ops.tls_failures()

    def verify(self) -> Evidence:
        now = time.time()
        expired = [name for name, at in self._not_after.items() if at <= now]
        failures = _rise(self._tls_before, self.ops.tls_failures())
        detail = f"expired: {', '.join(expired) or 'none yet'}; TLS/connect failures: {failures}"
        if failures == 0 and expired:
            gaps, stats = _from_samples(self.ops, "tls")
            if gaps:
                seen = (
                    f"{stats.unavailable} of {stats.requests} requests unanswered or 503 in "
                    "the last second"
                    if stats is not None and stats.requests
                    else "no samples to read"
                )
                took = stats is not None and stats.unavailable > 0
                return Evidence(
                    took,
                    f"expired: {', '.join(expired)}; the proxies export no {', '.join(gaps)} "
                    f"(their stats matcher leaves them out), so from the samples: {seen}",
                )
        return Evidence(bool(expired) and failures > 0, detail)

    def revert(self) -> None:
        # Only what apply touched, once: restoring may restart a proxy, which a second
        # revert (or a revert before apply) must not do again.
        while self._touched:
            self.ops.restore_identity(self._touched[0])
            self._touched = self._touched[1:]


class ControlPlaneOutageFaultDriver(Fault[ControlPlaneOutageFault]):
    fault_type = "control-plane-outage"
    _applied = False

    def blast_radius(self) -> list[str]:
        if not self.ops.control_plane_mechanisms(self.spec.cert_ttl):
            return []
        if isinstance(self.ops, WideBlastRadius):
            return self.ops.identity_blast_radius(self.fault_type, tuple(self.pods))
        return [p.name for p in self.ops.workload.pods]

    def plan(self) -> FaultPlan:
        mechanisms = self.ops.control_plane_mechanisms(self.spec.cert_ttl)
        if not mechanisms:
            return self._plan([Change("control plane", "none in this setup: nothing to stop", "-")])
        return self._plan([Change(m.subject, m.action, m.undo) for m in mechanisms])

    def apply(self) -> None:
        self._applied = True
        self.ops.stop_control_plane(self.spec.cert_ttl)

    def verify(self) -> Evidence:
        state = self.ops.control_plane_state()
        if not state.stopped:
            return Evidence(False, f"the control plane is not down: {state.detail}")
        bit = state.rotations_missed + state.pushes_blocked + state.certs_expired
        if not bit:
            return Evidence(
                False,
                f"control plane down, but nothing needed it during the hold: {state.detail}",
            )
        return Evidence(True, f"control plane down: {state.detail}")

    def revert(self) -> None:
        if self._applied:
            self.ops.start_control_plane()
            self._applied = False


class PolicyDesyncFaultDriver(Fault[PolicyDesyncFault]):
    fault_type = "policy-desync"
    _denied_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _updates_before = 0
    _rotated = False

    def blast_radius(self) -> list[str]:
        if not self.ops.validates_tokens():
            return []
        return [p.name for p in self.ops.workload.pods]

    def plan(self) -> FaultPlan:
        how = self.ops.key_rotation_mechanism()
        return self._plan([Change(how.subject, how.action, how.undo)])

    def apply(self) -> None:
        self._denied_before = self.ops.token_denials()
        self._updates_before = self.ops.key_set_updates()
        self._rotated = True
        self.ops.rotate_signing_key()

    def verify(self) -> Evidence:
        if not self.ops.validates_tokens():
            # Nothing validates tokens here: the rotation cannot reach the data path.
            return Evidence(False, "no proxy validates JWTs here; the rotation changed nothing")
        denied = _rise(self._denied_before, self.ops.token_denials())
        updates = self.ops.key_set_updates() - self._updates_before
        detail = f"signing key rotated; {denied} requests denied since"
        if updates:
            detail += f"; the new key set reached proxies {updates} times"
        if self._rotated and not denied and not updates:
            gaps, stats = _from_samples(self.ops, "denied")
            if gaps:
                seen = (
                    f"{stats.denied} of {stats.requests} requests answered 401/403 in the "
                    "last second"
                    if stats is not None and stats.requests
                    else "no samples to read"
                )
                return Evidence(
                    stats is not None and stats.denied > 0,
                    f"signing key rotated; the proxies export no {', '.join(gaps)} (their "
                    f"stats matcher leaves them out), so from the samples: {seen}",
                )
        return Evidence(self._rotated and (denied > 0 or updates > 0), detail)

    def revert(self) -> None:
        if self._rotated:
            self.ops.restore_signing_key()
            self._rotated = False
