"""The fault mechanisms of the local platform (:class:`chaos.platforms.base.FaultOps`).

The faults hold the policy; this module decides how each intent is carried
out on a local topology. Each "undo" is idempotent, so a revert can run twice,
or after a partial apply. HTTP faults go where each setup puts L7 policy:

* sidecar: the pod proxy's fault filter, switched through the admin API's runtime;
* mesh: the control plane pushes the fault as a route override (RDS), so its
  propagation time is part of the result; a fault on a whole service sits on its
  callers' outbound route (a VirtualService fault); the frontend's caller is the
  ingress, whose fault filter is switched through its admin runtime (as the
  Kubernetes platform's VirtualService is applied by the Locust workers' sidecars);
* ambient: the target service's waypoint, through its admin runtime.

Each site names the ``downstream_rq_total`` of the HTTP connection manager it sits
on, and :meth:`LocalFaultOps.client_requests_counter` the ingress's: the affected
share of requests (``chaos.analysis.shares``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from chaos.errors import FaultError
from chaos.experiment import Setup
from chaos.platforms.base import (
    ControlPlaneState,
    Direction,
    HttpFault,
    HttpFaultSite,
    Mechanism,
    Pod,
    ProxyTarget,
    Workload,
)
from chaos.platforms.local.admin import admin_post, counters
from chaos.platforms.local.authzops import LocalAuthzOps
from chaos.platforms.local.certagent import init_identity
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.shared.envoy_faults import FaultConfig, fault_runtime_values
from chaos.platforms.shared.layout import CALLS, TopologyLayout, workload_of
from chaos.platforms.shared.layout import Pod as LayoutPod
from chaos.platforms.shared.pki import read_certificate

_TLS_FAILURES = (".ssl.fail_verify_error", ".ssl.connection_error", ".upstream_cx_connect_fail")
_JWT_DENIED = (".jwt_authn.denied",)
_RUNTIME = "admin API runtime_modify on the fault filter"
_RUNTIME_UNDO = "fault filter back to 0 %"
#: The process name and HTTP connection manager stat prefix of every setup's ingress.
INGRESS = "ingress"


def requests_stat(hcm: str) -> str:
    """The stat that counts every request an HTTP connection manager received."""
    return f"http.{hcm}.downstream_rq_total"


def _fault_config(fault: HttpFault) -> FaultConfig:
    if fault.delay_ms is not None:
        return FaultConfig(delay_percent=fault.percent, delay_ms=fault.delay_ms)
    return FaultConfig(abort_percent=fault.percent, abort_status=fault.abort_status or 503)


class LocalFaultOps(LocalAuthzOps):
    """Fault mechanisms on one local topology (or on its layout only, for a plan)."""

    def __init__(self, layout: TopologyLayout, topology: LocalTopology | None = None) -> None:
        self.layout = layout
        self._topology = topology
        self._workload = workload_of(layout)
        self._admin = dict(layout.proxy_admins())

    @classmethod
    def of(cls, topology: LocalTopology) -> LocalFaultOps:
        return cls(topology.layout, topology)

    @property
    def setup(self) -> Setup:
        return self.layout.setup

    @property
    def workload(self) -> Workload:
        return self._workload

    @property
    def topology(self) -> LocalTopology:
        """The running topology (absent when only planning, as in a dry run)."""
        if self._topology is None:
            raise FaultError("no running topology: this fault can only be planned here")
        return self._topology

    def _pod(self, pod: Pod) -> LayoutPod:
        return self.layout.pod(pod.name)

    def _proxy_of(self, pod: Pod) -> str:
        layout_pod = self._pod(pod)
        return layout_pod.proxy_name or layout_pod.name

    def _admin_url(self, proxy: str) -> str:
        try:
            return self._admin[proxy]
        except KeyError:
            raise FaultError(f"no proxy {proxy!r} in the {self.setup} topology") from None

    # -- HTTP faults ---------------------------------------------------------------------

    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        if self.setup is Setup.AMBIENT:
            # The waypoint carries the fault for every pod of the service.
            services = sorted({p.service for p in pods})
            return [
                HttpFaultSite(
                    proxy=self.layout.waypoint(s).name,
                    direction="inbound",
                    affects=tuple(p.name for p in self.layout.pods_of(s)),
                    mechanism=_RUNTIME,
                    undo=_RUNTIME_UNDO,
                    requests_stat=requests_stat("waypoint"),
                )
                for s in services
            ]
        if self.setup is Setup.MESH:
            mechanism = "control plane pushes a route fault override (RDS)"
            undo = "control plane pushes the route without the fault"
            callers = self._mesh_caller_sites(pods, direction, mechanism, undo)
            if callers is not None:
                return callers
        else:
            mechanism, undo = _RUNTIME, _RUNTIME_UNDO
        return [
            HttpFaultSite(
                self._proxy_of(p), direction, (p.name,), mechanism, undo, requests_stat(direction)
            )
            for p in pods
        ]

    def client_requests_counter(self) -> str:
        """Every client request enters through the ingress (the affected share's base)."""
        return f"{INGRESS}:{requests_stat(INGRESS)}"

    def _mesh_caller_sites(
        self, pods: Sequence[Pod], direction: Direction, mechanism: str, undo: str
    ) -> list[HttpFaultSite] | None:
        """A fault on a whole service, as a VirtualService fault: on its callers' outbound.

        Istio applies a VirtualService ``fault`` in the client's sidecar, on the outbound
        route to the destination, for every replica of it (and the caller does not retry
        its own injected fault: the fault filter answers before the router). The frontend's
        caller is the ingress (its fault filter, switched by the admin runtime). None where
        that does not apply: a single replica (a VirtualService cannot single one out) or an
        outbound fault.
        """
        services = {p.service for p in pods}
        if direction != "inbound" or len(services) != 1:
            return None
        (service,) = services
        replicas = self.layout.pods_of(service)
        if {p.name for p in pods} != {p.name for p in replicas}:
            return None
        callers = [p for p in self.layout.pods if CALLS.get(p.service) == service]
        affects = tuple(p.name for p in replicas)
        if not callers:
            return [
                HttpFaultSite(
                    INGRESS, "outbound", affects, _RUNTIME, _RUNTIME_UNDO, requests_stat(INGRESS)
                )
            ]
        return [
            HttpFaultSite(
                c.proxy_name or c.name,
                "outbound",
                affects,
                mechanism,
                undo,
                requests_stat("outbound"),
            )
            for c in callers
        ]

    def _site_pod(self, site: HttpFaultSite) -> str:
        """The pod whose proxy carries ``site``."""
        for pod in self.layout.pods:
            if (pod.proxy_name or pod.name) == site.proxy:
                return pod.name
        return site.affects[0]

    def set_http_fault(self, site: HttpFaultSite, fault: HttpFault) -> None:
        self._switch(site, _fault_config(fault))

    def clear_http_fault(self, site: HttpFaultSite) -> None:
        self._switch(site, None)

    def _switch(self, site: HttpFaultSite, fault: FaultConfig | None) -> None:
        control_plane = self.topology.control_plane
        if self.setup is Setup.MESH and control_plane is not None and site.proxy != INGRESS:
            pod = self._site_pod(site)
            if control_plane.state(pod).faults.get(site.direction) == fault:
                # Already what the proxy was told to run. Envoy ignores an RDS update whose
                # content is unchanged (its version stays), so pushing it again would make
                # wait_applied time out: a second revert would fail instead of doing nothing.
                return
            control_plane.push_fault(pod, site.direction, fault)
            if not control_plane.paused:
                control_plane.wait_applied(pod, site.direction, timeout_s=5.0)
            return
        admin_post(
            self._admin_url(site.proxy),
            "/runtime_modify",
            fault_runtime_values(site.direction, fault),
        )

    def http_faults_injected(self, site: HttpFaultSite) -> int:
        if site.proxy == INGRESS:
            prefix = INGRESS
        else:
            prefix = "waypoint" if self.setup is Setup.AMBIENT else site.direction
        stats = counters(
            self._admin_url(site.proxy), (".fault.delays_injected", ".fault.aborts_injected")
        )
        return sum(v for k, v in stats.items() if k.startswith(f"http.{prefix}."))

    # -- crashes -------------------------------------------------------------------------

    def crash_targets(self, pods: Sequence[Pod], node: str | None) -> list[ProxyTarget]:
        if self.setup is Setup.AMBIENT:
            # The node proxy carries every pod on its node: the blast radius is the node.
            nodes = sorted({node} if node else {p.node for p in pods})
            return [
                ProxyTarget(
                    self.layout.node_proxy(n).name,
                    tuple(p.name for p in self.layout.pods_on(n)),
                )
                for n in nodes
            ]
        return [ProxyTarget(self._proxy_of(p), (p.name,)) for p in pods]

    def kill_proxy(self, target: ProxyTarget) -> None:
        self.topology.supervisor.kill(target.name)

    def proxy_restarts(self, target: ProxyTarget) -> int:
        return self.topology.supervisor.restarts(target.name)

    # -- identities ----------------------------------------------------------------------

    def _cert_dir(self, pod: LayoutPod) -> Path:
        if self.setup is Setup.AMBIENT:
            return self.layout.node_proxy(pod.node).dir / "certs" / pod.name
        return pod.certs_dir

    def expiry_mechanism(self, pod: Pod, ttl_s: float) -> Mechanism:
        if self.setup is Setup.SIDECAR:
            return Mechanism(
                f"{pod.name} identity",
                "the proxy restarts to load it: sidecar certs are read at start only",
                "re-run the init step (fresh certificate), restart the proxy",
            )
        undo = {
            Setup.MESH: "agent re-issues through SDS, rotation unblocked",
            Setup.AMBIENT: "node proxy re-fetches a fresh certificate (SDS), rotation unblocked",
        }[self.setup]
        return Mechanism(f"{pod.name} identity", "", undo)

    def expire_identity(self, pod: Pod, ttl_s: float) -> float:
        """Install a certificate that expires after ``ttl_s`` with rotation blocked.

        The sidecar has no agent: its proxy reads certificate files at start only, so
        it is restarted to take the short-lived one (what an init step with a short
        TTL would have produced).
        """
        layout_pod = self._pod(pod)
        ttl = timedelta(seconds=ttl_s)
        topology = self.topology
        agent = topology.cert_agent
        if agent is None:
            proxy = self._proxy_of(pod)
            issued = init_identity(topology.ca, layout_pod.certs_dir, layout_pod.identity, ttl)
            topology.supervisor.restart(proxy)
            topology.supervisor.wait_ready([proxy], timeout_s=10.0)
            return issued.not_after.timestamp()
        directory = self._cert_dir(layout_pod)
        agent.block(directory)
        status = agent.install_short_lived(directory, ttl)
        return status.not_after.timestamp()

    def restore_identity(self, pod: Pod) -> None:
        """Undo :meth:`expire_identity`: rotation restored and a fresh certificate in place."""
        layout_pod = self._pod(pod)
        topology = self.topology
        agent = topology.cert_agent
        ttl = topology.cert_ttl
        if agent is None:
            # What an operator does: re-run the init step, restart the proxy.
            init_identity(topology.ca, layout_pod.certs_dir, layout_pod.identity, ttl)
            topology.supervisor.restart(self._proxy_of(pod))
            return
        directory = self._cert_dir(layout_pod)
        agent.issue_now(directory, ttl)
        agent.unblock(directory)

    def cert_not_after(self, pod: Pod) -> float:
        """notAfter of the certificate ``pod`` presents, as a POSIX timestamp."""
        cert = read_certificate(self._cert_dir(self._pod(pod)))
        return cert.not_valid_after_utc.timestamp()

    def _counts(self, suffixes: tuple[str, ...]) -> dict[str, int]:
        """Every matching counter of every proxy that answers, keyed by proxy and counter.

        A proxy that does not answer (crashed, restarting) has no reading now; its
        counters start again from zero when it is back, which ``_rise`` in the faults
        treats as no rise.
        """
        found: dict[str, int] = {}
        for proxy, url in self._admin.items():
            try:
                stats = counters(url, suffixes)
            except FaultError:
                continue
            found |= {f"{proxy} {name}": value for name, value in stats.items()}
        return found

    def tls_failures(self) -> dict[str, int]:
        return self._counts(_TLS_FAILURES)

    # -- control plane ---------------------------------------------------------------------

    def control_plane_mechanisms(self, cert_ttl_s: float | None) -> list[Mechanism]:
        if self.setup is Setup.SIDECAR:
            return []
        found = [
            Mechanism("CA", "stop issuing and rotating certificates", "resume; re-issue overdue")
        ]
        if self.setup is Setup.MESH:
            found.append(Mechanism("config push", "queue every push", "resume; push the queue"))
        if cert_ttl_s:
            found.append(
                Mechanism(
                    "all identities",
                    f"re-issued with a {cert_ttl_s:g} s lifetime",
                    "fresh certificates with the normal lifetime",
                )
            )
        return found

    def stop_control_plane(self, cert_ttl_s: float | None) -> None:
        topology = self.topology
        agent = topology.cert_agent
        if agent is None:
            return
        # Blocked first: the short certificates are due for rotation at half their life,
        # and the agent's thread would otherwise renew some before the block came in.
        agent.block()
        if topology.control_plane is not None:
            topology.control_plane.pause()
        if cert_ttl_s:
            for status in agent.status():
                agent.issue_now(status.dir, timedelta(seconds=cert_ttl_s))

    def start_control_plane(self) -> None:
        topology = self.topology
        if topology.control_plane is not None:
            topology.control_plane.resume()
        if topology.cert_agent is not None:
            topology.cert_agent.unblock()

    def control_plane_state(self) -> ControlPlaneState:
        topology = self.topology
        agent = topology.cert_agent
        if agent is None:
            return ControlPlaneState(False, detail="no control plane in this setup")
        statuses = agent.status()
        now = time.monotonic()
        blocked = [s for s in statuses if s.blocked]
        missed = [s for s in blocked if s.next_rotation <= now]
        expired = [s for s in statuses if s.expired]
        control_plane = topology.control_plane
        queued = control_plane.pending if control_plane is not None else 0
        push = "" if control_plane is None else f"; {queued} config pushes queued"
        return ControlPlaneState(
            stopped=bool(blocked) and (control_plane is None or control_plane.paused),
            rotations_missed=len(missed),
            pushes_blocked=queued,
            certs_expired=len(expired),
            detail=f"{len(missed)} rotations overdue, {len(expired)} certificates expired{push}",
        )

    # -- token validation ------------------------------------------------------------------

    def validates_tokens(self) -> bool:
        return self.setup is not Setup.AMBIENT

    def key_rotation_mechanism(self) -> Mechanism:
        holders = {
            Setup.SIDECAR: "sidecars keep their stale key set (read once at start)",
            Setup.MESH: "the control plane pushes the new key set to every proxy",
            Setup.AMBIENT: "no JWT validation in this setup",
        }[self.setup]
        return Mechanism(
            "identity provider",
            f"rotate the signing key; {holders}",
            "restore the previous signing key",
        )

    def rotate_signing_key(self) -> None:
        self.topology.idp.rotate_key()

    def restore_signing_key(self) -> None:
        self.topology.idp.revert()

    def token_denials(self) -> dict[str, int]:
        return self._counts(_JWT_DENIED)

    def key_set_updates(self) -> int:
        control_plane = self.topology.control_plane
        if control_plane is None:
            return 0
        return sum(int(control_plane.version(p.name, "jwt")) for p in self.layout.pods)
