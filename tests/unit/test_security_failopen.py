"""The fail-open variant of policy-mismatch and the anonymous stream, without processes.

The RBAC configs a rollout writes (what Envoy enforces and what its shadow rules prove),
the anonymous stream's records counted as served unauthenticated, the totals over
windows, and ``results.json``'s round trip of the new counts.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chaos.analysis.security import (
    COUNT_FIELDS,
    BypassAttempt,
    invariant_lines,
    load_bypass,
    measure_security,
    security_from_dict,
    security_to_dict,
    security_totals,
)
from chaos.errors import InputError
from chaos.platforms.shared.envoy_rbac import REQUEST_PRINCIPAL, rbac_config
from chaos.rundir import BYPASS_DIR
from chaos.rundir.auth import AUTH_HEADER, IDENTITY, REPORTED, VERIFIED
from chaos.traffic.bypass import anonymous_stream

CALLER = "spiffe://cluster.local/ns/mesh/sa/ingress"


def _rules(rule: str | None, *, require_token: bool) -> dict[str, Any]:
    config: dict[str, Any] = rbac_config(rule, CALLER, "v1", require_token=require_token)
    typed: dict[str, Any] = config["resources"][0]["typed_config"]
    return typed


def test_the_standing_policy_requires_a_request_principal() -> None:
    standing = _rules(None, require_token=True)
    assert standing["rules"] == {
        "action": "ALLOW",
        "policies": {
            "require-jwt": {"permissions": [{"any": True}], "principals": [REQUEST_PRINCIPAL]}
        },
    }
    assert "rules" not in _rules(None, require_token=False)  # no policy: no enforcement


def test_allow_any_is_ored_with_the_standing_policy_which_stays_as_shadow() -> None:
    opened = _rules("allow-any", require_token=True)
    assert opened["rules"]["action"] == "ALLOW"
    assert set(opened["rules"]["policies"]) == {"require-jwt", "allow-any"}
    # the proof: what the standing policy would deny, counted as shadow denials
    assert opened["shadow_rules"] == _rules(None, require_token=True)["rules"]
    # without a standing policy there is nothing to open, and no shadow to count
    assert "shadow_rules" not in _rules("allow-any", require_token=False)


def test_deny_caller_keeps_the_token_requirement() -> None:
    (policy,) = _rules("deny-caller", require_token=True)["rules"]["policies"].values()
    ids = policy["principals"][0]["and_ids"]["ids"]
    assert REQUEST_PRINCIPAL in ids
    assert {"not_id": {"authenticated": {"principal_name": {"exact": CALLER}}}} in ids
    assert _rules("deny-caller", require_token=False)["rules"]["action"] == "DENY"


def _window(anonymous: list[BypassAttempt]) -> Any:
    t = np.arange(10, dtype=np.float64)
    status = np.full(10, 200, dtype=np.int32)
    failed = np.zeros(10, dtype=np.bool_)
    auth = np.full(10, REPORTED | VERIFIED | IDENTITY, dtype=np.uint8)
    bypass = [BypassAttempt(1.5, "payments-0", "refused"), *anonymous]
    return measure_security(t, status, failed, auth, 0.0, 10.0, bypass, 0.001)


def test_anonymous_requests_the_app_served_are_served_unauthenticated() -> None:
    anonymous = [
        BypassAttempt(2.0, "ingress", "served", 200, "anonymous"),
        BypassAttempt(3.0, "ingress", "served", 200, "anonymous"),
        BypassAttempt(4.0, "ingress", "denied", 403, "anonymous"),
        BypassAttempt(12.0, "ingress", "served", 200, "anonymous"),  # after the window
    ]
    s = _window(anonymous)
    assert (s.served, s.anonymous_sent, s.anonymous_served) == (10, 3, 2)
    assert s.served_unauthenticated == 2 and not s.fail_open_held
    assert (s.bypass_sent, s.bypass_refused) == (1, 1)  # the bypass probe's, apart
    closed = _window([BypassAttempt(2.0, "ingress", "denied", 403, "anonymous")])
    assert closed.served_unauthenticated == 0 and closed.fail_open_held

    class Run:
        setup, fault, repetition, security = "mesh", "open", 0, s

    (line,) = invariant_lines([Run()])
    assert "2 requests served unauthenticated (fail open, 2 of them anonymous" in line


def test_counts_sum_over_windows_and_round_trip() -> None:
    a = _window([BypassAttempt(2.0, "ingress", "served", 200, "anonymous")])
    b = _window([BypassAttempt(2.0, "ingress", "denied", 401, "anonymous")])
    (total,) = security_totals([("mesh", "f", a), ("mesh", "f", b), ("mesh", "f", None)])
    for name in COUNT_FIELDS:
        assert getattr(total, name) == getattr(a, name) + getattr(b, name), name
    assert (total.windows, total.windows_held) == (2, 1)
    assert security_from_dict(json.loads(json.dumps(security_to_dict(a)))) == a
    # a window written before the anonymous counts reads them as 0
    old = {k: v for k, v in security_to_dict(a).items() if not k.startswith("anonymous")}
    back = security_from_dict(old)
    assert back is not None and (back.anonymous_sent, back.anonymous_served) == (0, 0)


class _Front(BaseHTTPRequestHandler):
    """An ingress that answers as the app would only when the request has a token."""

    def do_GET(self) -> None:
        has_token = "Authorization" in self.headers
        self.send_response(200 if has_token else 403)
        if has_token:
            self.send_header(AUTH_HEADER, "verified")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


def test_the_anonymous_stream_is_bounded_tokenless_and_recorded(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Front)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out = tmp_path / BYPASS_DIR / "w.anonymous.jsonl"

    class Spec:
        rate, max_requests = 200.0, 4

    try:
        with anonymous_stream(f"http://127.0.0.1:{server.server_port}", Spec(), out) as probe:
            for _ in range(200):
                if probe.sent == 4:
                    break
                threading.Event().wait(0.05)
    finally:
        server.shutdown()
        server.server_close()
    seen = server.seen  # type: ignore[attr-defined]
    assert len(seen) == 4 and not any("Authorization" in h for h in seen)
    attempts = load_bypass(tmp_path)
    assert [(a.kind, a.pod, a.outcome, a.status) for a in attempts] == [
        ("anonymous", "ingress", "denied", 403)
    ] * 4
    with pytest.raises(InputError, match="not on loopback"):
        anonymous_stream("http://10.0.0.1:8000", Spec(), out)
