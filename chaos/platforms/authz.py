"""Optional for a platform's :class:`~chaos.platforms.base.FaultOps`: rolling out an
authorization policy at the proxies in front of some pods (``policy-mismatch``).

The fault keeps the policy (which rule, where, how to tell it took); the platform the
mechanism (locally: the RBAC filter's config file, re-read by ECDS; on a cluster an
AuthorizationPolicy through the change ledger, :mod:`chaos.platforms.kubernetes.authzops`).
Undo is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chaos.platforms.base import Pod


@dataclass(frozen=True)
class AuthzSite:
    """A proxy that authorizes requests for some pods, and who legitimately calls them."""

    proxy: str
    #: The pods whose inbound requests it authorizes (the blast radius).
    affects: tuple[str, ...]
    #: The legitimate caller's principal (its SPIFFE ID).
    caller: str
    mechanism: str
    undo: str


@runtime_checkable
class AuthzOps(Protocol):
    """Authorization policy rollouts (see the module docstring)."""

    def authz_sites(self, pods: Sequence[Pod]) -> list[AuthzSite]:
        """Where a policy for ``pods`` goes (a waypoint may serve every pod of a service)."""
        ...

    def set_authz_rule(self, site: AuthzSite, rule: str) -> None:
        """Roll out ``rule`` (``deny-caller``, ``allow-other`` or ``allow-any``) at ``site``."""
        ...

    def clear_authz_rule(self, site: AuthzSite) -> None:
        """Back to no policy at ``site`` (safe to call twice)."""
        ...

    def authz_denials(self, site: AuthzSite) -> int:
        """Requests ``site`` denied for authorization so far (a counter that only rises)."""
        ...

    def authz_let_through(self, site: AuthzSite) -> int:
        """Requests ``site`` let through that its standing policy denies (``allow-any``:
        the shadow rules' denials; a counter that only rises)."""
        ...
