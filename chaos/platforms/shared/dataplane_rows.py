"""A setup's data plane as the table the journal, ``meta.json`` and the report carry.

Each row names one behaviour of :class:`~chaos.platforms.shared.dataplane.SetupDataPlane`,
its value in words, where the default comes from
(:data:`~chaos.platforms.shared.dataplane.SOURCES`) and whether the experiment changed it.
"""

from __future__ import annotations

from chaos.experiment import Setup
from chaos.platforms.shared.dataplane import (
    DEFAULTS,
    HOPS,
    SOURCES,
    RetryPolicy,
    SetupDataPlane,
)
from chaos.platforms.shared.tokenpolicy import TokenPolicy
from chaos.rundir.dataplane import DataPlaneRow


def _s(seconds: float | None, none: str = "none") -> str:
    if seconds is None:
        return none
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def describe_retries(policy: RetryPolicy | None) -> str:
    if policy is None:
        return "none"
    text = f"{policy.attempts} on {','.join(policy.retry_on)}"
    if policy.retriable_status_codes:
        text += f" (codes {','.join(map(str, policy.retriable_status_codes))})"
    if policy.previous_hosts:
        text += f"; previous_hosts, {policy.host_selection_retry_max_attempts} host picks"
    if policy.per_try_timeout_s is not None:
        text += f"; per try {_s(policy.per_try_timeout_s)}"
    return text


def describe_token(token: TokenPolicy) -> str:
    if not token.validates:
        return "not validated: reaches the app as sent"
    where = {
        "every hop": "required at every hop",
        "first hop": "required at the first hop, validated when present at the others",
    }[token.check]
    by = " (by jwt_authn)" if token.required_by == "jwt_authn" else " (by an authorization policy)"
    return where + by + ("; passed on to the app" if token.forward else "; removed before the app")


def _values(dp: SetupDataPlane) -> list[tuple[str, str, str]]:
    """(row, value, SOURCES key) of ``dp``."""
    up, ident, ctl = dp.upstream, dp.identity, dp.control
    present = [(h, dp.routes[h]) for h in HOPS if h in dp.routes]
    out = [
        (
            f"retries ({hop})",
            describe_retries(r.retries),
            "inbound retries" if hop in ("inbound", "waypoint") else "retries",
        )
        for hop, r in present
    ]
    out += [
        (f"route timeout ({hop})", _s(r.timeout_s, "disabled"), "route timeout")
        for hop, r in present
    ]
    cb = up.circuit_breakers
    od = up.outlier_detection
    out += [
        (
            "circuit breakers",
            f"connections {cb.max_connections}, pending {cb.max_pending_requests}, "
            f"requests {cb.max_requests}, retries {cb.max_retries}",
            "circuit breakers",
        ),
        ("load balancing", up.lb_policy, "load balancing"),
        (
            "outlier detection",
            "none"
            if od is None
            else f"{od.consecutive_5xx} x 5xx, every {_s(od.interval_s)}, eject "
            f"{_s(od.base_ejection_s)}, at most {od.max_ejection_percent} %",
            "outlier detection",
        ),
        ("connect timeout", _s(up.connect_timeout_s), "connect timeout"),
        ("connection lifetime", _s(up.max_connection_duration_s), "connection lifetime"),
        ("idle timeout", _s(up.idle_timeout_s), "idle timeout"),
        (
            "certificate",
            f"TTL {_s(ident.cert_ttl_s)}, "
            + (
                "not rotated"
                if ident.rotation_ratio is None
                else f"renewed at {ident.rotation_ratio:g} of life +- {ident.rotation_jitter:g}"
            ),
            "certificate",
        ),
        (
            "CA retry backoff",
            "none"
            if ident.ca_backoff is None
            else f"{_s(ident.ca_backoff.first_s)} x{ident.ca_backoff.factor:g} up to "
            f"{_s(ident.ca_backoff.max_s)}, +- {ident.ca_backoff.jitter:.0%}",
            "CA retry backoff",
        ),
        ("JWKS refresh", _s(ctl.jwks_refresh_s, "read once"), "JWKS refresh"),
        (
            "endpoint removal",
            "never"
            if ctl.endpoint_debounce_s is None
            else f"after a debounce of {_s(ctl.endpoint_debounce_s)} (at most "
            f"{_s(ctl.endpoint_debounce_max_s)})"
            + (
                ", also when its proxy crashed (NotReady)"
                if ctl.crash_unready
                else "; a proxy crash leaves the pods Ready: not removed"
            ),
            "endpoint removal",
        ),
        ("token", describe_token(dp.token), "token"),
        (
            "restart",
            "fetches certificate and config first" if ctl.restart_fetches else "static files",
            "restart",
        ),
        ("HTTP fault placement", dp.fault_placement, "HTTP fault placement"),
    ]
    return out


def rows(dp: SetupDataPlane) -> tuple[DataPlaneRow, ...]:
    """``dp`` as the report's table: each row with its source, deviations marked."""
    default = {n: v for n, v, _ in _values(DEFAULTS[dp.setup])}
    side = 0 if dp.setup is Setup.SIDECAR else 1
    return tuple(
        DataPlaneRow(name, value, SOURCES[key][side], value != default.get(name))
        for name, value, key in _values(dp)
    )
