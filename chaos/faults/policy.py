"""``policy-mismatch``: an authorization rule rolled out that the legitimate caller fails.

The seed's claim is that a policy engine out of step with who actually calls a
service "can deny every request". The fault rolls out such a rule at the proxies that
authorize the target's inbound requests (``deny-caller``: a DENY naming the caller;
``allow-other``: an ALLOW naming someone else) and reverts to no rule. Proof that it
took: the proxies' authorization denials rose. Whether the setup then failed closed
(denied) or open (served anyway, unauthenticated) is what the security counts show.
The platform must offer :class:`~chaos.platforms.authz.AuthzOps` (the local one does;
on Kubernetes the experiment is refused at the fault's line for now).
"""

from __future__ import annotations

from chaos.errors import FaultError
from chaos.experiment import PolicyMismatchFault
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.authz import AuthzOps, AuthzSite


class PolicyMismatchFaultDriver(Fault[PolicyMismatchFault]):
    fault_type = "policy-mismatch"
    _denied_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _applied: list[AuthzSite] = []  # noqa: RUF012 - replaced per instance in apply()

    def _authz(self) -> AuthzOps:
        if not isinstance(self.ops, AuthzOps):
            raise FaultError(f"the {self.ops.setup} platform cannot roll out authorization rules")
        return self.ops

    def _sites(self) -> list[AuthzSite]:
        return self._authz().authz_sites(self.pods)

    def blast_radius(self) -> list[str]:
        return list(dict.fromkeys(p for s in self._sites() for p in s.affects))

    def plan(self) -> FaultPlan:
        changes = [
            Change(s.proxy, f"{s.mechanism}: {self.spec.rule} (caller {s.caller})", s.undo)
            for s in self._sites()
        ]
        return self._plan(changes)

    def apply(self) -> None:
        authz = self._authz()
        sites = self._sites()
        self._denied_before = {s.proxy: authz.authz_denials(s) for s in sites}
        self._applied = []
        for site in sites:
            self._applied.append(site)  # before the push: a partial apply is reverted too
            authz.set_authz_rule(site, self.spec.rule)

    def verify(self) -> Evidence:
        authz = self._authz()
        rises = {}
        for site in self._applied:
            try:
                now = authz.authz_denials(site)
            except FaultError as exc:
                rises[site.proxy] = f"no reading ({exc})"
                continue
            rise = now - self._denied_before.get(site.proxy, 0)
            rises[site.proxy] = str(max(0, rise))
        denied = sum(int(v) for v in rises.values() if v.isdigit())
        detail = f"{self.spec.rule} rolled out; denials: " + ", ".join(
            f"{p}: {n}" for p, n in rises.items()
        )
        return Evidence(denied > 0, detail)

    def revert(self) -> None:
        authz = self._authz()
        applied, self._applied = self._applied, []
        for site in applied:
            authz.clear_authz_rule(site)
