"""The running Envoys of each setup do what the data-plane table says Istio does.

Each setup's proxies are started from their generated configs (real Envoy, no apps
needed) and read back through ``/config_dump``: what Envoy runs, not our own dicts.
``EXPECTED`` is written from Istio's source (istio/istio tag 1.28.0, paths per row) for
mesh and ambient, and from Envoy's defaults for the hand-written sidecar.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.experiment import ALL_SETUPS, Setup
from chaos.platforms.local.controlplane import MeshControlPlane
from chaos.platforms.local.envoy_config import (
    ProxyConfig,
    ProxyOptions,
    envoy_binary,
    proxy_configs,
    sidecar_jwks_path,
)
from chaos.platforms.local.slots import lease_slot
from chaos.platforms.shared.dataplane import DEFAULTS, ISTIO_VERSION, resolve
from chaos.platforms.shared.idp import IdentityProvider
from chaos.platforms.shared.layout import JWT_AUDIENCE, TopologyLayout, build_layout, spiffe_id
from chaos.platforms.shared.pki import CertificateAuthority, write_identity
from chaos.proc import spawn, stop_processes

Json = dict[str, object]
ISTIO = f"istio/istio {ISTIO_VERSION} pilot/pkg/networking/core/"
RETRY_GO = ISTIO + "route/retry/retry.go DefaultPolicy"
INBOUND_GO = ISTIO + "route/route.go BuildDefaultHTTPInboundRoute"
WAYPOINT_GO = ISTIO + "listener_waypoint.go buildWaypointInboundHTTPRouteConfig"
POLICY_GO = ISTIO + "cluster_traffic_policy.go"
MESH_GO = f"istio/istio {ISTIO_VERSION} pkg/config/mesh/mesh.go DefaultMeshConfig"
ENVOY = "Envoy 1.40 default (field unset)"

ISTIO_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": "5",
}
INBOUND_RETRY = {"retry_on": "reset-before-request", "num_retries": 2}
UNLIMITED = {
    "max_connections": 2**32 - 1,
    "max_pending_requests": 2**32 - 1,
    "max_requests": 2**32 - 1,
    "max_retries": 2**32 - 1,
    "track_remaining": True,
}
ENVOY_BREAKERS = {
    "max_connections": 1024,
    "max_pending_requests": 1024,
    "max_requests": 1024,
    "max_retries": 3,
}


def _istio_cluster(name: str) -> list[tuple[str, str, object, str]]:
    return [
        (f"cluster {name} lb_policy", f"cluster:{name}:lb_policy", "LEAST_REQUEST", POLICY_GO),
        (f"cluster {name} connect_timeout", f"cluster:{name}:connect_timeout", "10s", MESH_GO),
        (
            f"cluster {name} circuit breakers",
            f"cluster:{name}:breakers",
            UNLIMITED,
            POLICY_GO + " getDefaultCircuitBreakerThresholds",
        ),
        (f"cluster {name} outlier_detection", f"cluster:{name}:outlier", None, POLICY_GO),
        (f"cluster {name} max_connection_duration", f"cluster:{name}:lifetime", None, POLICY_GO),
        (f"cluster {name} idle_timeout", f"cluster:{name}:idle", "3600s", ENVOY),
    ]


# (setup, proxy, what, where in the dump, expected, source)
EXPECTED: dict[Setup, dict[str, list[tuple[str, str, object, str]]]] = {
    Setup.MESH: {
        "frontend-0.proxy": [
            ("outbound retries", "route:outbound:checkout:retry", ISTIO_RETRY, RETRY_GO),
            ("outbound timeout", "route:outbound:checkout:timeout", "0s", INBOUND_GO),
            ("inbound retries", "route:inbound:*:retry", INBOUND_RETRY, INBOUND_GO),
            ("inbound timeout", "route:inbound:*:timeout", "0s", INBOUND_GO),
            *_istio_cluster("checkout"),
        ],
        "ingress": [
            ("gateway route retries", "route:ingress:*:retry", ISTIO_RETRY, RETRY_GO),
            *_istio_cluster("frontend"),
        ],
    },
    Setup.AMBIENT: {
        "waypoint-checkout": [
            ("waypoint retries", "route:waypoint:*:retry", INBOUND_RETRY, WAYPOINT_GO),
            ("waypoint timeout", "route:waypoint:*:timeout", "0s", INBOUND_GO),
            *_istio_cluster("checkout"),
        ],
        "ingress": [
            ("gateway route retries", "route:ingress:*:retry", ISTIO_RETRY, RETRY_GO),
            *_istio_cluster("frontend"),
        ],
    },
    Setup.SIDECAR: {
        "frontend-0.proxy": [
            ("outbound retries", "route:outbound:checkout:retry", None, "none: hand-written"),
            ("outbound timeout", "route:outbound:checkout:timeout", "15s", ENVOY),
            ("inbound retries", "route:inbound:*:retry", None, "none: hand-written"),
            ("cluster lb_policy", "cluster:checkout:lb_policy", "ROUND_ROBIN", ENVOY),
            ("cluster connect_timeout", "cluster:checkout:connect_timeout", "5s", ENVOY),
            ("cluster circuit breakers", "cluster:checkout:breakers", ENVOY_BREAKERS, ENVOY),
            ("cluster outlier_detection", "cluster:checkout:outlier", None, "none: hand-written"),
            ("cluster max_connection_duration", "cluster:checkout:lifetime", None, ENVOY),
        ],
    },
}


def _get(url: str) -> Json | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            result: Json = json.load(answer)
            return result
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Dump:
    """One proxy's ``/config_dump``, indexed: clusters and routes by name."""

    clusters: dict[str, Json]
    routes: dict[str, Json]

    @classmethod
    def of(cls, raw: Json) -> Dump:
        clusters: dict[str, Json] = {}
        routes: dict[str, Json] = {}
        configs = raw.get("configs")
        assert isinstance(configs, list)
        for config in configs:
            for key in ("static_clusters", "dynamic_active_clusters"):
                for entry in config.get(key, []):
                    clusters[entry["cluster"]["name"]] = entry["cluster"]
            for key in ("static_route_configs", "dynamic_route_configs"):
                for entry in config.get(key, []):
                    routes[entry["route_config"]["name"]] = entry["route_config"]
        return cls(clusters, routes)

    def read(self, where: str) -> object:
        kind, name, *rest = where.split(":")
        if kind == "route":
            vhost, field = rest
            config = self.routes[name]
            hosts = config["virtual_hosts"]
            assert isinstance(hosts, list)
            host = next(h for h in hosts if vhost in h["domains"])
            action = host["routes"][0]["route"]
            return action.get({"retry": "retry_policy", "timeout": "timeout"}[field])
        cluster = self.clusters[name]
        field = rest[0]
        options = cluster.get("typed_extension_protocol_options", {})
        assert isinstance(options, dict)
        common = next(iter(options.values()), {}).get("common_http_protocol_options", {})
        if field == "breakers":
            breakers = cluster.get("circuit_breakers", {})
            assert isinstance(breakers, dict)
            return breakers.get("thresholds", [None])[0]
        return {
            # proto3 JSON leaves out a field at its default (ROUND_ROBIN is 0).
            "lb_policy": cluster.get("lb_policy", "ROUND_ROBIN"),
            "connect_timeout": cluster.get("connect_timeout"),
            "outlier": cluster.get("outlier_detection"),
            "lifetime": common.get("max_connection_duration"),
            "idle": common.get("idle_timeout"),
        }[field]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _identities(layout: TopologyLayout) -> list[tuple[Path, str]]:
    found = [(layout.ingress.dir / "certs", spiffe_id(layout.setup, "ingress"))]
    if layout.setup is Setup.AMBIENT:
        for proxy in layout.node_proxies:
            found += [(proxy.dir / "certs" / n, layout.pod(n).identity) for n in proxy.pods]
        found += [(w.dir / "certs", w.identity) for w in layout.waypoints]
    else:
        found += [(p.certs_dir, p.identity) for p in layout.pods]
    return found


@pytest.fixture(scope="module")
def slot() -> Iterator[int]:
    with lease_slot() as leased:
        yield leased


def _dumps(setup: Setup, root: Path, slot: int, opts: ProxyOptions) -> dict[str, Dump]:
    """Start the proxies of ``setup`` that EXPECTED names; their config dumps."""
    layout = build_layout(setup, root, slot=slot, ingress_port=_free_port())
    ca = CertificateAuthority.create()
    idp = IdentityProvider(layout.jwt_issuer, JWT_AUDIENCE)
    for directory, identity in _identities(layout):
        write_identity(directory, ca.issue(identity, dt.timedelta(hours=1)), ca.ca_pem)
    for pod in layout.pods:
        pod.dir.mkdir(parents=True, exist_ok=True)
        idp.write_jwks(sidecar_jwks_path(pod))
    wanted = EXPECTED[setup]
    configs: list[ProxyConfig] = [c for c in proxy_configs(layout, opts) if c.name in wanted]
    assert {c.name for c in configs} == set(wanted)
    if setup is Setup.MESH:
        MeshControlPlane(layout, opts, jwks_json=idp.jwks_json())
    for config in configs:
        config.write()
    envoy = envoy_binary()
    procs = [spawn(c.argv(envoy), log_path=c.dir / "stdout.log") for c in configs]
    try:
        dumps: dict[str, Dump] = {}
        deadline = time.monotonic() + 30
        while len(dumps) < len(configs) and time.monotonic() < deadline:
            for c in configs:
                raw = _get(f"{c.admin_url}/config_dump") if c.name not in dumps else None
                if raw is not None:
                    dump = Dump.of(raw)
                    # A mesh proxy has its clusters and routes once it has read its xDS files.
                    if dump.clusters and dump.routes:
                        dumps[c.name] = dump
            time.sleep(0.05)
        assert set(dumps) == set(wanted), f"no config dump from {set(wanted) - set(dumps)}"
        return dumps
    finally:
        stop_processes(procs)


@pytest.mark.parametrize("setup", ALL_SETUPS)  # baseline: no proxy of the table
def test_running_envoy_follows_the_table(setup: Setup, tmp_path: Path, slot: int) -> None:
    dumps = _dumps(setup, tmp_path, slot, ProxyOptions())
    wrong = [
        f"{proxy} {what}: {dumps[proxy].read(where)!r} != {expected!r} ({source})"
        for proxy, checks in EXPECTED[setup].items()
        for what, where, expected, source in checks
        if dumps[proxy].read(where) != expected
    ]
    assert not wrong, "\n".join(wrong)


def test_deviations_reach_the_running_envoy(tmp_path: Path, slot: int) -> None:
    from chaos.experiment.dataplane import DataPlaneFields, RetriesSpec

    fields = DataPlaneFields(
        outlier_detection=True, connection_lifetime=2.0, retries=RetriesSpec(attempts=0)
    )
    opts = ProxyOptions().with_policy(resolve(Setup.MESH, fields))
    dump = _dumps(Setup.MESH, tmp_path, slot, opts)["frontend-0.proxy"]
    assert dump.read("route:outbound:checkout:retry") is None
    assert dump.read("cluster:checkout:lifetime") == "2s"
    outlier = dump.read("cluster:checkout:outlier")
    assert isinstance(outlier, dict) and outlier["consecutive_5xx"] == 5
    # The table is unchanged for every other setup.
    assert opts.policy(Setup.SIDECAR) == DEFAULTS[Setup.SIDECAR]
