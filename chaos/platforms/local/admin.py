"""Envoy's admin API on the local platform: runtime switches and counters."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from chaos.errors import FaultError

#: RE2 filter for ``/stats``: the counters ``chaos.analysis.counters`` reads.
ANALYSIS_STATS_FILTER = (
    r"(upstream_rq_retry|upstream_rq_retry_overflow|ssl\.fail_verify_error|ssl\.connection_error|ssl\.fail_verify_san"
    r"|ssl\.fail_verify_no_cert|ejections_enforced_total|upstream_cx_connect_fail"
    # The requests of the HTTP connection managers a fault sits on (not the admin API's,
    # which every reading itself counts).
    r"|^http\.(inbound|outbound|waypoint|ingress)\.downstream_rq_total)$"
)


def admin_get(admin_url: str, path: str, timeout_s: float = 2.0) -> bytes:
    """GET an admin path; a :class:`FaultError` when the proxy does not answer."""
    try:
        with urllib.request.urlopen(f"{admin_url}{path}", timeout=timeout_s) as answer:
            body: bytes = answer.read()
            return body
    except (urllib.error.URLError, OSError) as exc:
        raise FaultError(f"admin API {admin_url}{path} failed: {exc}") from exc


def admin_post(admin_url: str, path: str, params: dict[str, str], timeout_s: float = 2.0) -> None:
    """POST an admin path with query parameters (``/runtime_modify``)."""
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{admin_url}{path}?{query}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise FaultError(f"admin API {admin_url}{path} failed: {exc}") from exc


def counters(
    admin_url: str, suffixes: tuple[str, ...] = (), *, stats_filter: str | None = None
) -> dict[str, int]:
    """Counters of one proxy whose names end with one of ``suffixes`` (all when empty).

    ``stats_filter`` (RE2) narrows what the proxy sends. Raises :class:`FaultError`
    when the proxy does not answer or answers garbage.
    """
    params = {"format": "json", "type": "Counters"}
    if stats_filter is not None:
        params["filter"] = stats_filter
    body = admin_get(admin_url, "/stats?" + urllib.parse.urlencode(params), timeout_s=1.0)
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise FaultError(f"admin API {admin_url}/stats answered no JSON") from exc
    found: dict[str, int] = {}
    for stat in raw.get("stats", []) if isinstance(raw, dict) else []:
        name, value = stat.get("name"), stat.get("value")
        if not isinstance(name, str) or not isinstance(value, int | float):
            continue
        # str.endswith(()) is always False: no suffixes means every counter.
        if not suffixes or name.endswith(suffixes):
            found[name] = int(value)
    return found
