"""The fault mechanisms on Kubernetes; the faults (``chaos.faults``) keep the policy.

Per setup (the issue's table):

* HTTP fault: sidecar, the fault filter's admin ``/runtime_modify`` through a
  port-forward; mesh, the service's VirtualService ``http`` list (the client-side
  proxies apply it); ambient, the same VirtualService, served by the waypoint.
* crash: sidecar, exec ``kill -TERM 1`` in ``envoy-sidecar``; mesh, exec
  ``pilot-agent request POST quitquitquit`` in ``istio-proxy``; ambient, DELETE the
  ztunnel pod of the node (every pod on it is hit).
* cert expiry: sidecar, the certs Secret swapped for a short-lived certificate and
  the pod re-created (its init step copies it); mesh, ``SECRET_TTL`` on the pod
  template and istiod scaled to 0; ambient, ``SECRET_TTL`` on ztunnel and istiod
  scaled to 0.
* control plane: sidecar, Deployments labelled ``sidecar-chaos.dev/role=config-source``
  scaled to 0 (the demo has none: static config); mesh and ambient, istiod scaled
  to 0, then back to the recorded count.
* policy desync: sidecar, ConfigMap ``jwks`` swapped and the pods re-created (they
  read it once at start); mesh and ambient, the RequestAuthentication ``jwks``
  swapped for a key set without the signing key (where one exists).

Every write goes through :class:`~.changes.ClusterWriter` (recorded before it is
made, undone exactly). Counters come from the proxies' admin ``/stats`` through
:class:`~.api.PodExec`. A mesh HTTP fault on one replica reaches every replica of
the service (a VirtualService route has no per-endpoint fault): the site's
``affects`` says so, and the blast radius follows it.

This module holds the HTTP faults and crashes; the identity intents (cert expiry,
control plane, key rotation) are in :mod:`.identityops`, the shared state and pod
reads in :mod:`.opsbase`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from chaos.errors import FaultError, PlatformError
from chaos.platforms.base import (
    Direction,
    HttpFault,
    HttpFaultSite,
    Pod,
    ProxyTarget,
)
from chaos.platforms.kubernetes import blast, builders, names
from chaos.platforms.kubernetes.authzops import KubeAuthzOps
from chaos.platforms.kubernetes.changes import Change
from chaos.platforms.kubernetes.identityops import MESH_NAMESPACES, IdentityOps
from chaos.platforms.kubernetes.kinds import POD, VIRTUAL_SERVICE
from chaos.platforms.kubernetes.manifests.locust import SETUP_LABEL, WORKER_ROLE
from chaos.platforms.kubernetes.opsbase import (
    AMBIENT,
    CA_KEY_FILE,
    CA_SECRET,
    FAULT_SUFFIXES,
    GATEWAY_NAME_LABEL,
    ISTIOD,
    SIDECAR,
    ZTUNNEL,
    Site,
    demo_workload,
)
from chaos.platforms.kubernetes.podexec import ExecInterrupted
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.statsmatcher import missing
from chaos.platforms.shared.envoy_faults import FaultConfig, fault_runtime_values


class KubeFaultOps(IdentityOps, KubeAuthzOps):
    """:class:`~chaos.platforms.base.FaultOps` on one setup's namespace of a cluster."""

    # -- HTTP faults ---------------------------------------------------------------------

    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        if self._setup == SIDECAR:
            return [self._runtime_site(p, direction) for p in pods]
        if direction == "inbound":
            services = list(dict.fromkeys(p.service for p in pods))
            return [self._vs_site(s, None, direction) for s in services]
        sites = []
        for pod in pods:
            called = names.CALLS.get(pod.service)
            if called is not None:
                sites.append(self._vs_site(called, pod, direction))
        return sites

    def _runtime_site(self, pod: Pod, direction: Direction) -> HttpFaultSite:
        proxy = f"{pod.name}/{self.proxy_container()}"
        self._sites[proxy] = Site("runtime", pod=pod)
        return HttpFaultSite(
            proxy=proxy,
            direction=direction,
            affects=(pod.name,),
            mechanism=(
                f"GET {POD.path(self.namespace, f'<pod of {pod.name}>', 'portforward')}"
                f"?ports={names.ADMIN_PORT}, then POST /runtime_modify ({direction} fault "
                "filter keys) to the sidecar's admin"
            ),
            undo="POST /runtime_modify clearing the same keys (the filter is back at 0 %)",
        )

    def _vs_site(self, service: str, source: Pod | None, direction: Direction) -> HttpFaultSite:
        labels = (
            None
            if source is None
            else ((names.LABEL_APP, source.service), (names.LABEL_REPLICA, str(source.replica)))
        )
        vs = f"VirtualService {self.namespace}/{service}"
        proxy = vs if source is None else f"{vs} from {source.name}"
        self._sites[proxy] = Site("vs", service=service, source_labels=labels)
        if source is None:
            affects = tuple(p.name for p in self._workload.pods if p.service == service)
            where = "every route of spec.http"
        else:
            affects = (source.name,)
            where = f"a first route of spec.http matching sourceLabels of {source.name}"
        applied_by = (
            f"the {names.waypoint_name(service)} waypoint"
            if self._setup == AMBIENT
            else "the client-side istio-proxy sidecars"
        )
        return HttpFaultSite(
            proxy=proxy,
            direction=direction,
            affects=affects,
            mechanism=(
                f"PUT {VIRTUAL_SERVICE.path(self.namespace, service)} with the whole spec.http "
                f"list as read plus a fault on {where} (applied by {applied_by})"
            ),
            undo="PUT spec.http back exactly as read before the fault",
        )

    def _site(self, site: HttpFaultSite) -> Site:
        if site.proxy not in self._sites:
            for direction in ("inbound", "outbound"):
                self.http_fault_sites(self._workload.pods, direction)
        found = self._sites.get(site.proxy)
        if found is None:
            raise FaultError(f"unknown HTTP fault site {site.proxy!r}")
        return found

    def set_http_fault(self, site: HttpFaultSite, fault: HttpFault) -> None:
        target = self._site(site)
        changes = self._site_changes.setdefault(site.proxy, [])
        if target.via == "runtime":
            assert target.pod is not None
            config = FaultConfig(
                delay_percent=fault.percent if fault.delay_ms is not None else 0,
                delay_ms=fault.delay_ms or 1,
                abort_percent=fault.percent if fault.abort_status is not None else 0,
                abort_status=fault.abort_status or 503,
            )
            values = fault_runtime_values(site.direction, config)
            undo = fault_runtime_values(site.direction, None)
            pod_name = target.pod.name if self.planning else self.live(target.pod).name
            change = self.writer.runtime(
                self.namespace, pod_name, self.proxy_container(), names.ADMIN_PORT, values, undo
            )
        else:
            istio = builders.istio_fault(
                fault.percent, delay_ms=fault.delay_ms, abort_status=fault.abort_status
            )
            change = self._vs_fault(target, istio)
        if change is not None and change not in changes:
            changes.append(change)

    def _vs_fault(self, target: Site, fault: dict[str, Any]) -> Change | None:
        labels = dict(target.source_labels) if target.source_labels is not None else None
        host = names.service_host(target.service, self._setup)

        def build(before: Any) -> list[dict[str, Any]]:
            routes = before if isinstance(before, list) and before else []
            routes = routes or [builders.default_route(host, names.APP_PORT)]
            return builders.http_with_fault(routes, fault, source_labels=labels)

        exists = (
            True
            if self.planning
            else self.writer.api.get(VIRTUAL_SERVICE, self.namespace, target.service) is not None
        )
        if exists:
            return self.writer.set_field(
                VIRTUAL_SERVICE,
                self.namespace,
                target.service,
                ("spec", "http"),
                build,
                detail=f"fault {json.dumps(fault, sort_keys=True)}",
            )
        # No VirtualService for the host (a team's own workload): one of our own.
        manifest = {
            "apiVersion": VIRTUAL_SERVICE.api_version,
            "kind": VIRTUAL_SERVICE.kind,
            "metadata": {"name": f"sc-fault-{target.service}", "namespace": self.namespace},
            "spec": {"hosts": [host], "http": build(None)},
        }
        return self.writer.create(manifest, detail="an HTTP fault")

    def clear_http_fault(self, site: HttpFaultSite) -> None:
        changes = self._site_changes.pop(site.proxy, [])
        for change in reversed(changes):
            self.writer.undo(change)
        if not changes and self.planning:
            self._site(site)

    def http_faults_injected(self, site: HttpFaultSite) -> int:
        target = self._site(site)
        counts = self._counts(self._fault_pods(site), FAULT_SUFFIXES)
        if target.via == "runtime":
            prefix = f"http.{site.direction}."
            return sum(v for k, v in counts.items() if k.split(" ", 1)[1].startswith(prefix))
        return sum(counts.values())

    def _fault_pods(self, site: HttpFaultSite) -> list[PodState]:
        """The proxies that apply ``site``'s fault (and count it)."""
        target = self._site(site)
        if target.via == "runtime":
            assert target.pod is not None
            return [self.live(target.pod)]
        if self._setup == AMBIENT:
            gateway = names.waypoint_name(target.service)
            return self.writer.api.list_pods(self.namespace, {GATEWAY_NAME_LABEL: gateway})
        # Mesh: the client-side sidecars, and the Locust workers' (the frontend's clients).
        return [*self._namespace_pods(), *self._traffic_sidecars()]

    def _traffic_sidecars(self) -> list[PodState]:
        labels = {names.LABEL_TRAFFIC_ROLE: WORKER_ROLE, SETUP_LABEL: self._setup.value}
        found = self.writer.api.list_pods(names.TRAFFIC_NAMESPACE, labels)
        return [p for p in found if not p.deleting]

    def unexported_counters(self, site: HttpFaultSite) -> list[str]:
        """The fault counters none of ``site``'s reachable proxies exports (empty: all there).

        Istio's default stats matcher creates none of them (``cluster up`` installs one
        that does, :mod:`.statsmatcher`); on a team's own Istio they may be missing.
        """
        seen: list[str] = []
        reached = False
        for pod in self._fault_pods(site):
            try:
                seen += self.stats(pod, FAULT_SUFFIXES)
                reached = True
            except (PlatformError, ValueError):
                continue
        return missing(seen, FAULT_SUFFIXES) if reached else []

    # -- blast radius --------------------------------------------------------------------

    def identity_blast_radius(self, fault_type: str, pods: Sequence[Pod]) -> list[str]:
        """Who a cert-expiry or control-plane-outage reaches (:mod:`.blast`)."""
        targets = [p.name for p in (pods if fault_type == "cert-expiry" else self._workload.pods)]
        if self._setup == SIDECAR:
            return targets
        api = None if self.planning else self.writer.api
        served = [ns for ns in MESH_NAMESPACES] if self.namespace in MESH_NAMESPACES else []
        reach = blast.istiod_reach(served)
        if fault_type == "cert-expiry" and self._setup == AMBIENT:
            hosts = sorted(names.NODE_HOSTNAMES.values())
            return [
                *(p.name for p in self._workload.pods),
                *blast.ztunnel_restarts(api, self.istio_namespace),
                *blast.locust_workers_on(api, hosts),
                *reach,
            ]
        return [*targets, *reach]

    # -- crashes -------------------------------------------------------------------------

    def crash_targets(self, pods: Sequence[Pod], node: str | None) -> list[ProxyTarget]:
        if self._setup == AMBIENT:
            nodes = sorted({node} if node else {p.node for p in pods})
            return [
                ProxyTarget(
                    name=f"{ZTUNNEL}/{n}",
                    # The Locust workers are ambient-enrolled and not pinned: those on the
                    # node lose their data path too (the load generator is hit).
                    affects=(
                        *(p.name for p in self._workload.pods if p.node == n),
                        *blast.locust_workers_on(
                            None if self.planning else self.writer.api,
                            [names.NODE_HOSTNAMES.get(n, n)],
                        ),
                    ),
                    mechanism=(
                        f"DELETE {POD.path(self.istio_namespace, f'<{ZTUNNEL} pod>')} of node "
                        f"{names.NODE_HOSTNAMES.get(n, n)} (app={ZTUNNEL}): every pod on the "
                        "node loses its data path"
                    ),
                    undo=f"none: the {ZTUNNEL} DaemonSet creates a new pod",
                )
                for n in nodes
            ]
        container = self.proxy_container()
        if self._setup == SIDECAR:
            command = "kill -TERM 1 (a container's PID 1 ignores a SIGKILL sent from inside it)"
        else:
            command = "pilot-agent request POST quitquitquit"
        return [
            ProxyTarget(
                name=f"{p.name}/{container}",
                affects=(p.name,),
                mechanism=(
                    f"POST {POD.path(self.namespace, f'<pod of {p.name}>', 'exec')}"
                    f"?container={container}: {command}"
                ),
                undo="none: the kubelet restarts the container (CrashLoopBackOff from the second)",
            )
            for p in pods
        ]

    def _pod_of_target(self, target: ProxyTarget) -> Pod:
        name = target.name.split("/", 1)[0]
        for pod in self._workload.pods:
            if pod.name == name:
                return pod
        raise FaultError(f"unknown crash target {target.name!r}")

    def _ztunnels(self, node: str) -> list[PodState]:
        hostname = names.NODE_HOSTNAMES.get(node, node)
        found = self.writer.api.pods_on_node(self.istio_namespace, hostname, {"app": ZTUNNEL})
        return [p for p in found if not p.deleting]

    def kill_proxy(self, target: ProxyTarget) -> None:
        if target.name.startswith(f"{ZTUNNEL}/"):
            node = target.name.split("/", 1)[1]
            if self.planning:
                self.writer.delete_pod(self.istio_namespace, f"<{ZTUNNEL} on {node}>", detail=node)
                return
            pods = self._ztunnels(node)
            if not pods:
                raise FaultError(f"no {ZTUNNEL} pod runs on {node}")
            seen = self._ztunnel_uids.setdefault(node, set())
            for ztunnel in pods:
                seen.add(ztunnel.uid)
                self.writer.delete_pod(self.istio_namespace, ztunnel.name, detail=target.name)
            return
        pod = self._pod_of_target(target)
        container = self.proxy_container()
        if self._setup == SIDECAR:
            command = ["/bin/sh", "-c", "kill -TERM 1"]
        else:
            command = ["pilot-agent", "request", "POST", "quitquitquit"]
        name = pod.name if self.planning else self.live(pod).name
        # The proxy may take the exec session down with it: that is what a kill does.
        with contextlib.suppress(ExecInterrupted):
            self.writer.exec(self.namespace, name, container, command)

    def proxy_restarts(self, target: ProxyTarget) -> int:
        if target.name.startswith(f"{ZTUNNEL}/"):
            node = target.name.split("/", 1)[1]
            pods = self._ztunnels(node)
            seen = self._ztunnel_uids.setdefault(node, set())
            seen.update(p.uid for p in pods)
            # Each pod that replaced a deleted one is a restart of the node's proxy.
            return max(0, len(seen) - 1) + sum(p.restarts() for p in pods)
        pod = self._pod_of_target(target)
        return self.live(pod).restarts(self.proxy_container())


__all__ = ["CA_KEY_FILE", "CA_SECRET", "ISTIOD", "ZTUNNEL", "KubeFaultOps", "demo_workload"]
