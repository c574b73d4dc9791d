"""The data-plane table holds the setups to Istio's source, and the experiment can change it.

``ISTIO`` is written from Istio's own source (tag 1.28.0 of istio/istio and istio/ztunnel,
read for this test): each row says what Istio does by default and where. Mesh and ambient
must equal it; the sidecar setup is a hand-written Envoy sidecar (Envoy's defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.errors import SpecError
from chaos.experiment import Experiment, Setup, load_experiment
from chaos.platforms.shared.dataplane import (
    DEFAULTS,
    ISTIO_VERSION,
    UINT32_MAX,
    Hop,
    RetryPolicy,
    SetupDataPlane,
    istio_http_retries,
    istio_traffic_policy,
    resolve,
)
from chaos.platforms.shared.dataplane_rows import rows

Get = Callable[[SetupDataPlane], object]


def _retry(dp: SetupDataPlane, hop: Hop) -> RetryPolicy:
    policy = dp.route(hop).retries
    assert policy is not None
    return policy


def _client_side(dp: SetupDataPlane) -> RetryPolicy:
    """The client side's policy: mesh sidecars' outbound, ambient's ingress (no L7 client)."""
    return _retry(dp, "outbound" if dp.setup is Setup.MESH else "ingress")


def _server_side(dp: SetupDataPlane) -> RetryPolicy:
    return _retry(dp, "inbound" if dp.setup is Setup.MESH else "waypoint")


# (what, value read from the table, Istio's default, where Istio says so)
ISTIO: list[tuple[str, Get, object, str]] = [
    (
        "outbound retries: attempts",
        lambda d: _client_side(d).attempts,
        2,
        "pilot/pkg/networking/core/route/retry/retry.go defaultPolicy: NumRetries 2",
    ),
    (
        "outbound retries: conditions (no 503: no RetriableStatusCodes)",
        lambda d: _client_side(d).retry_on,
        ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"),
        "pilot/pkg/networking/core/route/retry/retry.go defaultPolicy: RetryOn",
    ),
    (
        "outbound retries: status codes",
        lambda d: _client_side(d).retriable_status_codes,
        (),
        "retry.go 1.28.0 sets none (1.24 added 503 unless EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY)",
    ),
    (
        "outbound retries: previous_hosts predicate",
        lambda d: _client_side(d).previous_hosts,
        True,
        "retry.go DefaultPolicy: RetryHostPredicate xdsfilters.RetryPreviousHosts",
    ),
    (
        "outbound retries: host_selection_retry_max_attempts",
        lambda d: _client_side(d).host_selection_retry_max_attempts,
        5,
        "retry.go defaultPolicy: HostSelectionRetryMaxAttempts 5",
    ),
    (
        "outbound retries: per-try timeout",
        lambda d: _client_side(d).per_try_timeout_s,
        None,
        "retry.go: PerTryTimeout only from a VirtualService",
    ),
    (
        "server-side route (sidecar inbound, waypoint without VirtualService): retries",
        lambda d: (_server_side(d).attempts, _server_side(d).retry_on),
        (2, ("reset-before-request",)),
        "pilot/pkg/networking/core/route/route.go BuildDefaultHTTPInboundRoute; "
        "listener_waypoint.go buildWaypointInboundHTTPRouteConfig -> "
        "httproute.go buildSidecarInboundHTTPRouteConfig",
    ),
    (
        "route timeout",
        lambda d: {r.timeout_s for r in d.routes.values()},
        {None},
        "route.go: Notimeout without a VirtualService timeout",
    ),
    (
        "circuit breakers (max_retries included)",
        lambda d: (
            d.upstream.circuit_breakers.max_connections,
            d.upstream.circuit_breakers.max_pending_requests,
            d.upstream.circuit_breakers.max_requests,
            d.upstream.circuit_breakers.max_retries,
        ),
        (UINT32_MAX,) * 4,
        "pilot/pkg/networking/core/cluster_traffic_policy.go getDefaultCircuitBreakerThresholds",
    ),
    (
        "load balancing",
        lambda d: d.upstream.lb_policy,
        "LEAST_REQUEST",
        "cluster_traffic_policy.go defaultLBAlgorithm",
    ),
    (
        "outlier detection",
        lambda d: d.upstream.outlier_detection,
        None,
        "cluster_traffic_policy.go applyOutlierDetection: nil without a DestinationRule",
    ),
    (
        "connect timeout",
        lambda d: d.upstream.connect_timeout_s,
        10.0,
        "pkg/config/mesh/mesh.go DefaultMeshConfig: ConnectTimeout 10s",
    ),
    (
        "max_connection_duration",
        lambda d: d.upstream.max_connection_duration_s,
        None,
        "cluster_traffic_policy.go: only from connectionPool.tcp.maxConnectionDuration",
    ),
    (
        "idle timeout (Envoy's default: Istio sets none)",
        lambda d: d.upstream.idle_timeout_s,
        3600.0,
        "cluster_traffic_policy.go: IdleTimeout only from connectionPool",
    ),
    (
        "certificate TTL",
        lambda d: d.identity.cert_ttl_s,
        86400.0,
        "pilot/cmd/pilot-agent/options/options.go SECRET_TTL 24h",
    ),
    (
        "rotation at a share of the life",
        lambda d: d.identity.rotation_ratio,
        0.5,
        "options.go SECRET_GRACE_PERIOD_RATIO 0.5; ztunnel src/tls/certificate.rs refresh_at",
    ),
    (
        "JWKS refresh",
        lambda d: d.control.jwks_refresh_s,
        1200.0,
        "pilot/pkg/features/pilot.go PILOT_JWT_PUB_KEY_REFRESH_INTERVAL 20m",
    ),
    (
        "endpoint removal debounce",
        lambda d: (d.control.endpoint_debounce_s, d.control.endpoint_debounce_max_s),
        (0.1, 10.0),
        "pilot/pkg/features/tuning.go PILOT_DEBOUNCE_AFTER 100ms, PILOT_DEBOUNCE_MAX 10s",
    ),
]


@pytest.mark.parametrize("setup", [Setup.MESH, Setup.AMBIENT])
@pytest.mark.parametrize(("what", "get", "expected", "source"), ISTIO, ids=[r[0] for r in ISTIO])
def test_mesh_and_ambient_follow_istio(
    setup: Setup, what: str, get: Get, expected: object, source: str
) -> None:
    assert get(DEFAULTS[setup]) == expected, f"{what}: Istio {ISTIO_VERSION} {source}"


def test_istio_ca_retry_backoff() -> None:
    # istio/ztunnel 1.28.0 src/identity/manager.rs: ExponentialBackoff, current_interval 1 s,
    # multiplier 2, randomization 0.2, max_interval 150 s (CERT_REFRESH_FAILURE_RETRY_DELAY_MAX).
    ztunnel = DEFAULTS[Setup.AMBIENT].identity.ca_backoff
    assert ztunnel is not None
    assert [ztunnel.delay_s(n) for n in (1, 2, 3, 8, 9, 20)] == [1, 2, 4, 128, 150, 150]
    assert ztunnel.jitter == 0.2
    # istio/istio 1.28.0 pkg/security/retry.go CARetryOptions: 100 ms exponential, jitter 0.1.
    agent = DEFAULTS[Setup.MESH].identity.ca_backoff
    assert agent is not None and (agent.first_s, agent.factor, agent.jitter) == (0.1, 2.0, 0.1)


def test_sidecar_is_a_hand_written_envoy_sidecar() -> None:
    dp = DEFAULTS[Setup.SIDECAR]
    assert all(r.retries is None for r in dp.routes.values())
    assert {r.timeout_s for r in dp.routes.values()} == {15.0}  # Envoy's route timeout
    up = dp.upstream
    assert (up.lb_policy, up.connect_timeout_s, up.outlier_detection) == ("ROUND_ROBIN", 5.0, None)
    assert up.circuit_breakers.max_retries == 3  # Envoy's default
    assert dp.identity.rotation_ratio is None and dp.control.jwks_refresh_s is None


def test_every_row_cites_its_source_and_defaults_are_no_deviation() -> None:
    for dp in DEFAULTS.values():
        table = rows(dp)
        assert table and not any(r.deviation for r in table)
        assert all(r.source for r in table)
    mesh = {r.name: r for r in rows(DEFAULTS[Setup.MESH])}
    assert "retry/retry.go" in mesh["retries (outbound)"].source
    assert ISTIO_VERSION in mesh["retries (outbound)"].source


# -- the experiment's dataplane block ---------------------------------------------------------

BASE = """\
name: dp
setups: [sidecar, mesh]
traffic: {users: 1, spawn_rate: 1, rate: 1, endpoints: [{name: a, path: /}]}
faults:
  - {type: abort, target: {service: checkout}, status: 503, percent: 50}
"""


def _load(tmp_path: Path, block: str) -> Experiment:
    path = tmp_path / "e.yaml"
    path.write_text(BASE + block)
    return load_experiment(path)


def test_deviations_are_applied_and_marked(tmp_path: Path) -> None:
    experiment = _load(
        tmp_path,
        "dataplane:\n"
        "  connection_lifetime: 1s\n"
        "  setups:\n"
        "    mesh:\n"
        "      outlier_detection: true\n"
        "      retries: {attempts: 0}\n",
    )
    spec = experiment.dataplane
    mesh = resolve(Setup.MESH, spec.for_setup("mesh"))
    assert mesh.route("outbound").retries is None
    assert mesh.upstream.outlier_detection is not None
    assert mesh.upstream.max_connection_duration_s == 1.0
    sidecar = resolve(Setup.SIDECAR, spec.for_setup("sidecar"))
    assert sidecar.upstream.outlier_detection is None
    assert sidecar.upstream.max_connection_duration_s == 1.0
    # baseline (a cost step's) has no block of its own: the top level only.
    assert spec.for_setup("baseline").model_dump(exclude_unset=True) == {"connection_lifetime": 1.0}
    changed = {r.name for r in rows(mesh) if r.deviation}
    assert changed == {
        "retries (ingress)",
        "retries (outbound)",
        "outlier detection",
        "connection lifetime",
    }
    # A fault's own connection lifetime wins over the block's.
    assert (
        resolve(
            Setup.MESH, spec.for_setup("mesh"), connection_lifetime_s=3.0
        ).upstream.max_connection_duration_s
        == 3.0
    )


@pytest.mark.parametrize(
    ("block", "line", "field"),
    [
        ("dataplane:\n  retries: {attempts: -1}\n", 7, "dataplane.retries.attempts"),
        ("dataplane:\n  retry_budget: 3\n", 7, "dataplane.retry_budget"),
        (
            "dataplane:\n  setups:\n    mesh:\n      retries: {attempts: 1, retry_on: [503]}\n",
            9,
            "retry_on",
        ),
        (
            "dataplane:\n  setups:\n    ambient: {connect_timeout: 1s}\n",
            8,
            "dataplane.setups.ambient",
        ),
        ("dataplane:\n  load_balancing: MAGLEV\n", 7, "dataplane.load_balancing"),
    ],
)
def test_bad_policy_is_an_error_at_its_line(
    tmp_path: Path, block: str, line: int, field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, block)
    text = str(caught.value)
    assert f"e.yaml:{line}:" in text and field in text, text


# -- Kubernetes: the same policy as Istio objects ---------------------------------------------


def test_istio_objects_of_the_defaults_are_istio_defaults() -> None:
    # Istio's own defaults need nothing written (a DestinationRule with only mTLS).
    assert istio_traffic_policy(DEFAULTS[Setup.MESH]) == {"tls": {"mode": "ISTIO_MUTUAL"}}
    assert istio_http_retries(DEFAULTS[Setup.MESH]) is None
    # A VirtualService served by a waypoint replaces the inbound default: say it explicitly.
    assert istio_http_retries(DEFAULTS[Setup.AMBIENT], "waypoint") == {
        "attempts": 2,
        "retryOn": "reset-before-request",
        "retryIgnorePreviousHosts": False,
    }


def test_istio_objects_carry_the_deviations(tmp_path: Path) -> None:
    from chaos.experiment.dataplane import DataPlaneFields, OutlierSpec, RetriesSpec

    fields = DataPlaneFields(
        connection_lifetime=2.0,
        outlier_detection=OutlierSpec(consecutive_5xx=3),
        retries=RetriesSpec(attempts=1, retry_on=("connect-failure",)),
        max_retries=10,
    )
    dp = resolve(Setup.MESH, fields)
    policy = istio_traffic_policy(dp)
    assert policy["connectionPool"] == {
        "tcp": {"maxConnectionDuration": "2s"},
        "http": {"maxRetries": 10},
    }
    assert policy["outlierDetection"] == {
        "consecutive5xxErrors": 3,
        "interval": "10s",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 10,
    }
    assert istio_http_retries(dp) == {
        "attempts": 1,
        "retryOn": "connect-failure",
        "retryIgnorePreviousHosts": True,
    }


def test_a_platform_refuses_at_its_line_what_it_cannot_apply(tmp_path: Path) -> None:
    from chaos.engine.preflight import platform_checks
    from chaos.platforms.local.platform import LocalPlatform

    path = tmp_path / "e.yaml"
    path.write_text(BASE + "dataplane:\n  setups:\n    sidecar: {jwks_refresh: 5s}\n")
    with pytest.raises(SpecError) as caught:
        load_experiment(path, check=platform_checks(LocalPlatform()))
    text = str(caught.value)
    assert "e.yaml:8:" in text and "dataplane.setups.sidecar.jwks_refresh" in text, text
    assert "reads its key set once" in text
    # A top-level refresh applies where there is one (mesh) and is no error.
    path.write_text(BASE + "dataplane:\n  jwks_refresh: 5s\n")
    experiment = load_experiment(path, check=platform_checks(LocalPlatform()))
    assert resolve(Setup.MESH, experiment.dataplane.for_setup("mesh")).control.jwks_refresh_s == 5
    sidecar = resolve(Setup.SIDECAR, experiment.dataplane.for_setup("sidecar"))
    assert sidecar.control.jwks_refresh_s is None
