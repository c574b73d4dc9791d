"""Bearer tokens in a setup's data plane: where they are validated, whether the app gets them.

One row of the data-plane table (:mod:`.dataplane`, ``SetupDataPlane.token``): the
hand-written sidecar's stated choice and Istio's default, rendered into the local
Envoy configs' ``jwt_authn`` and RBAC filters and the Kubernetes RequestAuthentication
and AuthorizationPolicy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TokenCheck = Literal["every hop", "first hop", "none"]


@dataclass(frozen=True)
class TokenPolicy:
    """Bearer tokens: which hops require one, and whether the app behind still receives it.

    ``every hop``: each service's proxy requires a valid token. ``first hop``: every
    proxy rejects an invalid token but lets a request without one through (Istio's
    RequestAuthentication: ``provider OR allow_missing``), only the first service's
    requires one (an AuthorizationPolicy with ``requestPrincipals`` there); later hops
    are authorised by their caller's mTLS identity. ``none``: no proxy looks at tokens.
    """

    check: TokenCheck
    #: jwt_authn ``forward`` (Istio's ``forwardOriginalToken``): the validating proxy
    #: leaves the Authorization header on the request to its app.
    forward: bool
    #: Who refuses a request without a token where one is required: ``jwt_authn`` itself
    #: (401), or an authorization policy after it (Istio: an AuthorizationPolicy with
    #: ``requestPrincipals``; the RBAC filter, 403), which a policy rollout can open.
    required_by: Literal["jwt_authn", "rbac"] = "jwt_authn"

    @property
    def validates(self) -> bool:
        return self.check != "none"

    def requires(self, *, first: bool) -> bool:
        """Whether a service's proxy refuses a request without a valid token (``first``: the
        service the ingress calls)."""
        return self.check == "every hop" or (self.check == "first hop" and first)

    def jwt_requires(self, *, first: bool) -> bool:
        """Whether jwt_authn itself refuses a request without a token (else it lets it on)."""
        return self.requires(first=first) and self.required_by == "jwt_authn"

    def rbac_requires(self, *, first: bool) -> bool:
        """Whether the proxy's standing authorization policy requires a request principal."""
        return self.requires(first=first) and self.required_by == "rbac"


#: Our hand-written sidecar: every sidecar requires and re-validates the token, so it
#: must pass it on to its app, which sends it with its own call.
SIDECAR_TOKEN = TokenPolicy("every hop", forward=True)
#: Istio: forwardOriginalToken defaults to false (the token is removed before the app).
ISTIO_TOKEN = TokenPolicy("first hop", forward=False, required_by="rbac")


__all__ = ["ISTIO_TOKEN", "SIDECAR_TOKEN", "TokenCheck", "TokenPolicy"]
