"""The mechanisms faults use on the local platform; the faults themselves hold the policy.

Each operation comes in pairs (set / clear, block / unblock, ...) and each
"undo" is idempotent, so a revert can run twice, or after a partial apply.
HTTP faults go where each setup puts L7 policy:

* sidecar: the pod proxy's fault filter, switched through the admin API's runtime;
* mesh: the control plane pushes the fault as a route override (RDS), so its
  propagation time is part of the result;
* ambient: the target service's waypoint, through its admin runtime.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from chaos.errors import FaultError
from chaos.platforms.local.certagent import init_identity
from chaos.platforms.local.envoy_common import Direction, FaultConfig, fault_runtime_values
from chaos.platforms.local.layout import Pod, Setup, TopologyLayout
from chaos.platforms.local.pki import read_certificate
from chaos.platforms.local.topology import LocalTopology


@dataclass(frozen=True)
class HttpFaultSite:
    """Where an HTTP fault for a pod is applied: a proxy (by process name) and its admin URL."""

    proxy: str
    admin_url: str
    direction: Direction
    pod: str | None  # the pod whose proxy it is (sidecar/mesh), None for a waypoint


def admin_get(admin_url: str, path: str, timeout_s: float = 2.0) -> bytes:
    try:
        with urllib.request.urlopen(f"{admin_url}{path}", timeout=timeout_s) as answer:
            body: bytes = answer.read()
            return body
    except (urllib.error.URLError, OSError) as exc:
        raise FaultError(f"admin API {admin_url}{path} failed: {exc}") from exc


def admin_post(admin_url: str, path: str, params: dict[str, str], timeout_s: float = 2.0) -> None:
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{admin_url}{path}?{query}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise FaultError(f"admin API {admin_url}{path} failed: {exc}") from exc


def counters(admin_url: str, suffixes: tuple[str, ...]) -> dict[str, int]:
    """Counters of one proxy whose names end with one of ``suffixes``."""
    raw = json.loads(admin_get(admin_url, "/stats?format=json&type=Counters"))
    found: dict[str, int] = {}
    for stat in raw.get("stats", []):
        name = stat.get("name", "")
        if isinstance(name, str) and name.endswith(suffixes) and "value" in stat:
            found[name] = int(stat["value"])
    return found


class LocalFaultOps:
    """Fault mechanisms on one running :class:`LocalTopology`."""

    def __init__(self, layout: TopologyLayout, topology: LocalTopology | None = None) -> None:
        self.layout = layout
        self._topology = topology

    @classmethod
    def of(cls, topology: LocalTopology) -> LocalFaultOps:
        return cls(topology.layout, topology)

    @property
    def topology(self) -> LocalTopology:
        """The running topology (absent when only planning, as in a dry run)."""
        if self._topology is None:
            raise FaultError("no running topology: this fault can only be planned here")
        return self._topology

    # -- HTTP faults ---------------------------------------------------------------------

    def http_sites(self, pods: list[Pod], direction: Direction) -> list[HttpFaultSite]:
        if self.layout.setup is Setup.AMBIENT:
            services = sorted({p.service for p in pods})
            return [
                HttpFaultSite(
                    self.layout.waypoint(s).name, self.layout.waypoint(s).admin_url, "inbound", None
                )
                for s in services
            ]
        return [
            HttpFaultSite(p.proxy_name or p.name, p.admin_url or "", direction, p.name)
            for p in pods
        ]

    def set_http_fault(self, site: HttpFaultSite, fault: FaultConfig | None) -> None:
        """Switch the fault at ``site`` on (a config) or off (None); idempotent."""
        control_plane = self.topology.control_plane
        if self.layout.setup is Setup.MESH and control_plane is not None and site.pod:
            if control_plane.state(site.pod).faults.get(site.direction) == fault:
                # Already what the proxy was told to run. Envoy ignores an RDS update whose
                # content is unchanged (its version stays), so pushing it again would make
                # wait_applied time out: a second revert would fail instead of doing nothing.
                return
            control_plane.push_fault(site.pod, site.direction, fault)
            if not control_plane.paused:
                control_plane.wait_applied(site.pod, site.direction, timeout_s=5.0)
            return
        admin_post(site.admin_url, "/runtime_modify", fault_runtime_values(site.direction, fault))

    def injected(self, site: HttpFaultSite) -> int:
        """How many delays and aborts the fault filter at ``site`` has injected so far."""
        prefix = "waypoint" if site.pod is None else site.direction
        stats = counters(site.admin_url, (".fault.delays_injected", ".fault.aborts_injected"))
        return sum(v for k, v in stats.items() if k.startswith(f"http.{prefix}."))

    # -- crashes -------------------------------------------------------------------------

    def proxy_processes(self, pods: list[Pod], node: str | None) -> list[str]:
        """The proxy processes whose crash hits ``pods`` (ambient: their nodes' proxies)."""
        if self.layout.setup is Setup.AMBIENT:
            nodes = sorted({node} if node else {p.node for p in pods})
            return [self.layout.node_proxy(n).name for n in nodes]
        return [p.proxy_name or p.name for p in pods]

    def kill(self, process: str) -> int:
        return self.topology.supervisor.kill(process)

    def restarts(self, process: str) -> int:
        return self.topology.supervisor.restarts(process)

    # -- identities ----------------------------------------------------------------------

    def cert_dir(self, pod: Pod) -> Path:
        if self.layout.setup is Setup.AMBIENT:
            return self.layout.node_proxy(pod.node).dir / "certs" / pod.name
        return pod.certs_dir

    def expire_cert(self, pod: Pod, ttl: timedelta) -> float:
        """Install a certificate that expires after ``ttl`` with rotation blocked.

        Returns its notAfter as a POSIX timestamp. The sidecar has no agent: its proxy
        reads certificate files at start only, so it is restarted to take the
        short-lived one (what an init step with a short TTL would have produced).
        """
        directory = self.cert_dir(pod)
        agent = self.topology.cert_agent
        if agent is None:
            issued = init_identity(self.topology.ca, pod.certs_dir, pod.identity, ttl)
            self.topology.supervisor.restart(pod.proxy_name or pod.name)
            self.topology.supervisor.wait_ready([pod.proxy_name or pod.name], timeout_s=10.0)
            return issued.not_after.timestamp()
        agent.block(directory)
        status = agent.install_short_lived(directory, ttl)
        return status.not_after.timestamp()

    def restore_cert(self, pod: Pod) -> None:
        """Undo :meth:`expire_cert`: rotation restored and a fresh certificate in place."""
        agent = self.topology.cert_agent
        ttl = self.topology.options.cert_ttl
        if agent is None:
            # What an operator does: re-run the init step, restart the proxy.
            init_identity(self.topology.ca, pod.certs_dir, pod.identity, ttl)
            self.topology.supervisor.restart(pod.proxy_name or pod.name)
            return
        directory = self.cert_dir(pod)
        agent.issue_now(directory, ttl)
        agent.unblock(directory)

    def cert_not_after(self, pod: Pod) -> float:
        return read_certificate(self.cert_dir(pod)).not_valid_after_utc.timestamp()
