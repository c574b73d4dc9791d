"""Which Envoy stats an Istio proxy exports, and the stats matcher ``cluster up`` installs.

Istio's sidecars and waypoints create only the stats their bootstrap's ``stats_matcher``
includes. Istio's defaults (istio/istio at 86c9f01f, ``pkg/bootstrap/config.go``:
``requiredEnvoyStatsMatcherInclusionPrefixes``, ``rbacEnvoyStatsMatcherInclusionSuffix``,
``requiredEnvoyStatsMatcherInclusionRegexes``; ``tools/packaging/common/envoy_bootstrap.json``:
the ``reporter=``, ``component`` and ``istio`` prefixes) leave out every counter our faults
verify with: fault injections, JWT denials, TLS failures, retries, ejections, the xDS
connection state. ``cluster up`` therefore installs Istio with
``meshConfig.defaultConfig.proxyStatsMatcher`` naming each counter the platform reads
(:data:`READ_PREFIXES`, :data:`READ_SUFFIXES`); a mesh-wide ``defaultConfig`` reaches
waypoints too. On a team's own cluster, where we do not install Istio, a counter may not
exist: :func:`missing` names those, and verify says so instead of reading zero.

Not modelled: the per-pod ``sidecar.istio.io/statsInclusion*`` annotations (which replace
the proxy config's lists), ``downstream_cx_active`` (added only with
``EXIT_ON_ZERO_ACTIVE_CONNECTIONS``), and that the matcher is read at proxy start only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Istio's inclusion lists (see the module docstring for the source lines).
ISTIO_PREFIXES: tuple[str, ...] = (
    "reporter=",
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
    "component",
    "istio",
)
ISTIO_SUFFIXES: tuple[str, ...] = ("rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied")
ISTIO_REGEXPS: tuple[str, ...] = (r"vhost\..*\.route\..*",)

#: Every counter the platform reads from a proxy's ``/stats`` (name suffixes).
FAULT_SUFFIXES = (".fault.delays_injected", ".fault.aborts_injected")
TLS_SUFFIXES = (".ssl.fail_verify_error", ".ssl.connection_error", ".upstream_cx_connect_fail")
DENIED_SUFFIXES = (".jwt_authn.denied", ".rbac.denied")
#: What the sampler records for the analysis (as on the local platform).
COUNTER_SUFFIXES = (
    ".upstream_rq_retry",
    ".ssl.fail_verify_error",
    ".ssl.connection_error",
    ".ssl.fail_verify_san",
    ".ssl.fail_verify_no_cert",
    ".ejections_enforced_total",
    ".upstream_cx_connect_fail",
)
#: Envoy's gauge of the xDS stream (``control_plane.connected_state``).
CONNECTED_STATE = "control_plane.connected_state"

READ_PREFIXES: tuple[str, ...] = ("control_plane.",)
READ_SUFFIXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        s.lstrip(".") for s in (*FAULT_SUFFIXES, *TLS_SUFFIXES, *DENIED_SUFFIXES, *COUNTER_SUFFIXES)
    )
)


@dataclass(frozen=True)
class StatsMatcher:
    """An Envoy ``stats_matcher`` inclusion list: a stat is created when any entry matches."""

    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    regexps: tuple[str, ...] = ()

    def exports(self, name: str) -> bool:
        """Whether a stat of this name exists (Envoy's ``safe_regex`` matches the whole name)."""
        return (
            name.startswith(self.prefixes)
            or name.endswith(self.suffixes)
            or any(re.fullmatch(r, name) for r in self.regexps)
        )


def proxy_matcher(proxy_stats_matcher: Mapping[str, Any] | None) -> StatsMatcher:
    """What a proxy's bootstrap includes: ProxyConfig's ``proxyStatsMatcher`` plus Istio's."""
    given = proxy_stats_matcher or {}

    def listed(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in given.get(key) or [])

    return StatsMatcher(
        prefixes=(*listed("inclusionPrefixes"), *ISTIO_PREFIXES),
        suffixes=(*listed("inclusionSuffixes"), *ISTIO_SUFFIXES),
        regexps=(*listed("inclusionRegexps"), *ISTIO_REGEXPS),
    )


def proxy_stats_matcher() -> dict[str, list[str]]:
    """``meshConfig.defaultConfig.proxyStatsMatcher`` that ``cluster up`` installs."""
    return {"inclusionPrefixes": list(READ_PREFIXES), "inclusionSuffixes": list(READ_SUFFIXES)}


def istioctl_set_flags() -> list[str]:
    """``--set`` flags of ``istioctl install`` for :func:`proxy_stats_matcher`."""
    flags: list[str] = []
    base = "meshConfig.defaultConfig.proxyStatsMatcher"
    for key, values in proxy_stats_matcher().items():
        for index, value in enumerate(values):
            flags += ["--set", f"{base}.{key}[{index}]={value}"]
    return flags


def missing(names: Iterable[str], suffixes: Iterable[str]) -> list[str]:
    """The suffixes no stat of ``names`` ends with (counters the proxies do not export)."""
    seen = list(names)
    return [s for s in suffixes if not any(n.endswith(s) for n in seen)]


__all__ = [
    "CONNECTED_STATE",
    "COUNTER_SUFFIXES",
    "DENIED_SUFFIXES",
    "FAULT_SUFFIXES",
    "ISTIO_PREFIXES",
    "ISTIO_REGEXPS",
    "ISTIO_SUFFIXES",
    "READ_PREFIXES",
    "READ_SUFFIXES",
    "TLS_SUFFIXES",
    "StatsMatcher",
    "istioctl_set_flags",
    "missing",
    "proxy_matcher",
    "proxy_stats_matcher",
]
