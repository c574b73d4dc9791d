"""The report's security table: what each setup let through, per fault, in exact requests.

One row per setup and fault (summed over repetitions) from each window's
``security`` counts in ``results.json`` (:mod:`chaos.analysis.security`): requests
served, served unauthenticated (fail open), unreported, credentials exposed (count and
share against the bound), and the bypass probe's requests refused, denied or served
(with the anonymous stream's requests served, when the run sent one).
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.analysis.model import FaultResult
from chaos.analysis.security import SecurityTotal, security_totals


@dataclass(frozen=True)
class SecurityRow:
    """One setup and fault, ready to print."""

    fault: str
    setup: str
    windows: str
    served: str
    unauthenticated: str
    unreported: str
    credentials: str
    bypass: str
    held: bool
    verdict: str


@dataclass(frozen=True)
class SecurityView:
    """The table and what it means, in words."""

    rows: list[SecurityRow]
    bound: str
    broken: int


def _row(t: SecurityTotal) -> SecurityRow:
    share = t.credentials_share
    credentials = f"{t.credentials_exposed:,}" + (
        f" ({share * 100:.1f} %)" if share is not None else ""
    )
    bypass = (
        f"{t.bypass_refused} refused, {t.bypass_denied} denied, {t.bypass_served} served"
        if t.bypass_sent
        else "not probed"
    )
    if t.anonymous_sent:
        bypass += f"; anonymous: {t.anonymous_served} of {t.anonymous_sent} served"
    held = t.windows_held == t.windows
    problems = []
    if t.served_unauthenticated:
        problems.append("fails open")
    if share is not None and share > t.max_credentials_exposed:
        problems.append("exposes credentials")
    verdict = "held" if held else ", ".join(problems) or "broken"
    return SecurityRow(
        fault=t.fault,
        setup=t.setup,
        windows=f"{t.windows_held}/{t.windows}",
        served=f"{t.served:,}",
        unauthenticated=f"{t.served_unauthenticated:,}",
        unreported=f"{t.unreported:,}",
        credentials=credentials,
        bypass=bypass,
        held=held,
        verdict=verdict,
    )


def security_view(runs: list[FaultResult]) -> SecurityView | None:
    """The security table of a run's windows; None when no window has security counts."""
    totals = security_totals([(r.setup, r.fault, r.security) for r in runs])
    if not totals:
        return None
    totals.sort(key=lambda t: (t.fault, t.setup))
    bounds = sorted({t.max_credentials_exposed for t in totals})
    return SecurityView(
        rows=[_row(t) for t in totals],
        bound=", ".join(f"{b * 100:g} %" for b in bounds),
        broken=sum(t.windows - t.windows_held for t in totals),
    )


#: The method section's paragraph on what the security counts model (local platform).
SECURITY_METHOD = (
    "Security. Each app answers with what it received (x-chaos-auth): identity when the "
    "last element of x-forwarded-client-cert (appended by its own proxy, Istio's sidecar "
    "inbound APPEND_FORWARD) names a spiffe:// URI; token when x-jwt-payload is there "
    "(Envoy's jwt_authn sets it only after validating the token); credential when one of "
    "the sensitive headers reached it; verified when identity (and, where its proxy "
    "validates tokens, the token) held on every hop. A request served without verified "
    "counts as served unauthenticated (fail open). The bypass probe models legacy code "
    "calling a pod's app port directly: in the sidecar setup the app listens on that port "
    "(a plain sidecar captures nothing, so the port is open unless something closes it); "
    "in mesh and ambient the proxy captures inbound traffic (Istio's iptables redirection), "
    "so locally the app listens behind the proxy on a port only its proxy is configured to "
    "reach and nothing answers on the app port (refused at connect, where Istio with STRICT "
    "mTLS refuses at the TLS handshake; with PERMISSIVE, Istio's default, a plaintext "
    "request would be served: the local mesh models STRICT)."
)
