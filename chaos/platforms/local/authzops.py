"""The local platform's authorization rollouts (:class:`chaos.platforms.authz.AuthzOps`).

The policy goes where each setup authorizes inbound requests: the pod's proxy (sidecar,
mesh) or the service's waypoint (ambient, for every pod of the service). Rolling it
out replaces that proxy's RBAC config file, which Envoy re-reads by ECDS
(:mod:`chaos.platforms.shared.envoy_rbac`); the version is checked in the proxy's
stats before a rollout counts as applied.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.errors import FaultError
from chaos.experiment import Setup
from chaos.platforms.authz import AuthzSite
from chaos.platforms.base import Pod
from chaos.platforms.local.admin import counters
from chaos.platforms.local.envoy_process import write_json_atomically
from chaos.platforms.shared.dataplane import DEFAULTS
from chaos.platforms.shared.envoy_rbac import RBAC_FILTER, RULES, rbac_config, rbac_path
from chaos.platforms.shared.layout import CALLS, SERVICES, TopologyLayout, spiffe_id

_MECHANISM = "RBAC filter config replaced (ECDS file, re-read by the proxy)"
_UNDO = "RBAC filter config without rules"
_VERSION = "extension_config_discovery.http_filter." + RBAC_FILTER + ".version_text"
_versions = itertools.count(1)


def caller_of(setup: Setup, service: str) -> str:
    """The principal that legitimately calls ``service`` (the ingress calls the frontend)."""
    callers = [s for s, upstream in CALLS.items() if upstream == service]
    return spiffe_id(setup, callers[0] if callers else "ingress")


class LocalAuthzOps:
    """Mixed into :class:`~chaos.platforms.local.faultops.LocalFaultOps`."""

    layout: TopologyLayout

    def _admin_url(self, proxy: str) -> str:  # provided by LocalFaultOps
        raise NotImplementedError

    def _proxy_dir(self, proxy: str) -> Path:
        if self.layout.setup is Setup.AMBIENT:
            return next(w.dir for w in self.layout.waypoints if w.name == proxy)
        return next(p.dir for p in self.layout.pods if p.proxy_name == proxy)

    def authz_sites(self, pods: Sequence[Pod]) -> list[AuthzSite]:
        setup = self.layout.setup
        if setup is Setup.AMBIENT:
            services = sorted({p.service for p in pods})
            return [
                AuthzSite(
                    self.layout.waypoint(s).name,
                    tuple(p.name for p in self.layout.pods_of(s)),
                    caller_of(setup, s),
                    _MECHANISM,
                    _UNDO,
                )
                for s in services
            ]
        sites = []
        for pod in pods:
            proxy = self.layout.pod(pod.name).proxy_name
            if proxy is None:
                raise FaultError(f"{pod.name} has no proxy that could authorize its requests")
            sites.append(
                AuthzSite(proxy, (pod.name,), caller_of(setup, pod.service), _MECHANISM, _UNDO)
            )
        return sites

    def set_authz_rule(self, site: AuthzSite, rule: str) -> None:
        if rule not in RULES:
            raise FaultError(f"unknown authorization rule {rule!r} (known: {', '.join(RULES)})")
        self._push(site, rule)

    def clear_authz_rule(self, site: AuthzSite) -> None:
        self._push(site, None)

    def _requires_token(self, site: AuthzSite) -> bool:
        """Whether the site's standing policy requires a request principal (mesh frontend)."""
        first = all(self.layout.pod(p).service == SERVICES[0] for p in site.affects)
        return DEFAULTS[self.layout.setup].token.rbac_requires(first=first)

    def _push(self, site: AuthzSite, rule: str | None) -> None:
        version = f"chaos-{next(_versions)}"
        config = rbac_config(rule, site.caller, version, require_token=self._requires_token(site))
        write_json_atomically(rbac_path(self._proxy_dir(site.proxy)), config)
        self._wait_version(site, version)

    def _wait_version(self, site: AuthzSite, version: str, timeout_s: float = 5.0) -> None:
        """Until the proxy runs ``version`` (a proxy that is down reads the file at start)."""
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            try:
                url = self._admin_url(site.proxy)
                text = _version_text(url)
            except FaultError:
                return  # down (crashed, restarting): it reads the new file when it starts
            if text == version:
                return
            seen = text
            time.sleep(0.05)
        raise FaultError(f"{site.proxy} did not load RBAC config {version} (runs {seen!r})")

    def authz_denials(self, site: AuthzSite) -> int:
        stats = counters(self._admin_url(site.proxy), (".rbac.denied",))
        return sum(v for k, v in stats.items() if k.startswith("http."))

    def authz_let_through(self, site: AuthzSite) -> int:
        stats = counters(self._admin_url(site.proxy), (".rbac.shadow_denied",))
        return sum(v for k, v in stats.items() if k.startswith("http."))


def _version_text(admin_url: str) -> str | None:
    """The RBAC filter config version a proxy runs (a text stat, not in ``counters``)."""
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"{admin_url}/stats?filter={_VERSION.replace('.', '[.]')}", timeout=1.0
        ) as response:
            body = bytes(response.read()).decode()
    except OSError as exc:
        raise FaultError(f"admin API at {admin_url}: {exc}") from exc
    for line in body.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == _VERSION:
            return value.strip().strip('"')
    return None
