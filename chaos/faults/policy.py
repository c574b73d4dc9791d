"""``policy-mismatch``: an authorization rule rolled out that the legitimate caller fails.

The seed's claim is that a policy engine out of step with who actually calls a
service "can deny every request". The fault rolls out such a rule at the proxies that
authorize the target's inbound requests (``deny-caller``: a DENY naming the caller;
``allow-other``: an ALLOW naming someone else) and reverts to the standing policy.
Proof that it took: the proxies' authorization denials rose. ``allow-any`` is the
fail-open variant: an ALLOW matching everything beside the standing policy; proof:
the proxies let through requests their standing policy denies (RBAC shadow denials),
which needs illegitimate traffic (``security.anonymous``). Whether the setup then failed closed
(denied) or open (served anyway, unauthenticated) is what the security counts show.
The platform must offer :class:`~chaos.platforms.authz.AuthzOps` (the local one does;
on Kubernetes an AuthorizationPolicy in mesh and ambient, the sidecar's own bootstrap
ConfigMap rolled out for the plain sidecar).
"""

from __future__ import annotations

from chaos.errors import FaultError
from chaos.experiment import PolicyMismatchFault
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.authz import AuthzOps, AuthzSite


class PolicyMismatchFaultDriver(Fault[PolicyMismatchFault]):
    fault_type = "policy-mismatch"
    _denied_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _let_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
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
        self._let_before = {s.proxy: authz.authz_let_through(s) for s in sites}
        self._applied = []
        for site in sites:
            self._applied.append(site)  # before the push: a partial apply is reverted too
            authz.set_authz_rule(site, self.spec.rule)

    def verify(self) -> Evidence:
        authz = self._authz()
        opens = self.spec.rule == "allow-any"
        read = authz.authz_let_through if opens else authz.authz_denials
        before = self._let_before if opens else self._denied_before
        rises = {}
        for site in self._applied:
            try:
                now = read(site)
            except FaultError as exc:
                rises[site.proxy] = f"no reading ({exc})"
                continue
            rises[site.proxy] = str(max(0, now - before.get(site.proxy, 0)))
        count = sum(int(v) for v in rises.values() if v.isdigit())
        what = "let through that the standing policy denies" if opens else "denials"
        detail = f"{self.spec.rule} rolled out; {what}: " + ", ".join(
            f"{p}: {n}" for p, n in rises.items()
        )
        if opens and count == 0:
            detail += (
                " (no request the standing policy denies reached the rule: none sent, or "
                "refused before authorization)"
            )
        return Evidence(count > 0, detail)

    def revert(self) -> None:
        authz = self._authz()
        applied, self._applied = self._applied, []
        for site in applied:
            authz.clear_authz_rule(site)
