"""A team's own workload as the target: ``target: {namespace, selector, container}``.

The demo workload is found by the tool's naming conventions; an existing one is
found by its labels. Its pods come from the cluster (namespace + selector), each
becomes a :class:`~chaos.platforms.base.Pod` (service: the Kubernetes Service that
selects it, else its ``app.kubernetes.io/name`` / ``app`` label; replica: its index
among that service's pods sorted by name; node: ``spec.nodeName``), and the existing
fault mechanisms act on them:

* mesh (an ``istio-proxy`` container, or a native sidecar of that name): HTTP faults
  as a VirtualService ``fault`` on its Service (an owned one created when no
  VirtualService names the host; else the whole ``http`` list patched from what was
  read), crash by ``pilot-agent request POST quitquitquit``;
* ambient (``istio.io/dataplane-mode=ambient`` on the namespace or pod): the same
  VirtualService, crash by deleting the ztunnel pod of the target's node;
* sidecar (the named ``container``, a plain Envoy with the fault filters' runtime keys
  and its admin on port 15000): runtime keys through a port-forward, crash by exec.

The setup is told (the window's setup) and checked against what the pods show
(:func:`detect_setup`); a mismatch is one line before anything is changed. Nothing is
created in the team's namespace but the faults' own (journaled, reverted) changes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.errors import FaultError, InputError
from chaos.experiment import Setup as SpecSetup
from chaos.experiment.models import EXTRA_HOST, EXTRA_TARGET
from chaos.platforms.base import Direction, HttpFaultSite, Pod, Workload
from chaos.platforms.kubernetes import builders, names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.changes import Change, ClusterWriter
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import (
    FORBIDDEN_NAMESPACES,
    NAMESPACE,
    POD,
    SERVICE,
    VIRTUAL_SERVICE,
)
from chaos.platforms.kubernetes.opsbase import AMBIENT, SIDECAR, Site
from chaos.platforms.kubernetes.podstate import PodState

#: Istio's label (namespace or pod) putting a workload in the ambient data plane.
DATAPLANE_MODE = "istio.io/dataplane-mode"
#: Istio's label (namespace or Service) sending a service's traffic through a waypoint,
#: the only place an ambient data plane applies an HTTP (L7) fault.
USE_WAYPOINT = "istio.io/use-waypoint"
SERVICE_LABELS = ("app.kubernetes.io/name", "app")


@dataclass(frozen=True)
class ExistingTarget:
    """The team's workload: its namespace, the labels of its pods, its proxy container."""

    namespace: str
    selector: tuple[tuple[str, str], ...]
    container: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.selector)

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.selector)
        return f"{self.namespace} pods {labels}"

    @classmethod
    def of(
        cls, namespace: str, selector: Mapping[str, str], container: str | None
    ) -> ExistingTarget:
        if namespace in FORBIDDEN_NAMESPACES:
            raise InputError(f"namespace {namespace} is never targeted")
        return cls(namespace, tuple(sorted(selector.items())), container)

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> ExistingTarget | None:
        raw = extra.get(EXTRA_TARGET)
        if not raw:
            return None
        data = json.loads(raw)
        return cls.of(str(data["namespace"]), dict(data["selector"]), data.get("container"))


def detect_setup(
    pods: Sequence[PodState], namespace_labels: Mapping[str, str], container: str | None
) -> tuple[names.Setup | None, str]:
    """The setup the pods show, and why: mesh, ambient, sidecar, or None (and why not)."""
    if not pods:
        return None, "no pod matches"
    if all(p.container(names.ISTIO_PROXY_CONTAINER) is not None for p in pods):
        return names.Setup.MESH, f"their pods run an {names.ISTIO_PROXY_CONTAINER} container"
    if namespace_labels.get(DATAPLANE_MODE) == "ambient":
        return names.Setup.AMBIENT, f"their namespace has {DATAPLANE_MODE}=ambient"
    if all(p.labels.get(DATAPLANE_MODE) == "ambient" for p in pods):
        return names.Setup.AMBIENT, f"their pods have {DATAPLANE_MODE}=ambient"
    if container is not None and all(p.container(container) is not None for p in pods):
        return names.Setup.SIDECAR, f"their pods run the named container {container}"
    if container is not None:
        return None, f"not every pod runs an {names.ISTIO_PROXY_CONTAINER} or {container} container"
    return None, (
        f"no {names.ISTIO_PROXY_CONTAINER} container, no {DATAPLANE_MODE}=ambient, "
        "and no proxy container named (target.container)"
    )


def find_pods(api: KubeApi, target: ExistingTarget) -> list[PodState]:
    """The target's live pods, by name."""
    found = api.list_pods(target.namespace, target.labels)
    return sorted((p for p in found if not p.deleting), key=lambda p: p.name)


def check_setup(api: KubeApi, target: ExistingTarget, told: names.Setup) -> list[PodState]:
    """The target's pods, after checking they run the ``told`` setup (else one line)."""
    ns = api.get(NAMESPACE, None, target.namespace)
    if ns is None:
        raise InputError(f"target.namespace: no namespace {target.namespace} in {api.context}")
    pods = find_pods(api, target)
    ns_labels = dict(ns.get("metadata", {}).get("labels") or {})
    detected, why = detect_setup(pods, ns_labels, target.container)
    if detected is None:
        raise InputError(f"target {target.describe()}: no proxy setup found ({why})")
    if detected != told:
        raise InputError(
            f"target {target.describe()}: the experiment says {told.value}, the pods show "
            f"{detected.value} ({why}); set `setups: [{detected.value}]`"
        )
    if told == SIDECAR and target.container is None:
        raise InputError(f"target {target.describe()}: sidecar needs target.container")
    return pods


def _selects(service: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = service.get("spec", {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def build_workload(
    api: KubeApi, target: ExistingTarget, setup: names.Setup, pods: Sequence[PodState]
) -> tuple[Workload, dict[str, int]]:
    """The Workload of ``pods``, and the first port of each service (for a new route)."""
    services = sorted(api.list_objects(SERVICE, target.namespace), key=_name)
    ports: dict[str, int] = {}
    grouped: dict[str, list[PodState]] = {}
    for pod in pods:
        match = next((s for s in services if _selects(s, pod.labels)), None)
        if match is not None:
            service = _name(match)
            for port in match.get("spec", {}).get("ports") or []:
                ports.setdefault(service, int(port.get("port", names.APP_PORT)))
        else:
            labelled = (pod.labels.get(k) for k in SERVICE_LABELS)
            service = next((v for v in labelled if v), "-".join(v for _, v in target.selector))
        grouped.setdefault(service, []).append(pod)
    built = tuple(
        Pod(name=p.name, service=service, node=p.node_name, replica=index)
        for service, members in sorted(grouped.items())
        for index, p in enumerate(sorted(members, key=lambda p: p.name))
    )
    return Workload(setup=SpecSetup(setup.value), pods=built), ports


def services_with_waypoint(api: KubeApi, namespace: str, services: Sequence[str]) -> set[str]:
    """Which of ``services`` an ambient waypoint serves (``istio.io/use-waypoint``)."""
    ns = api.get(NAMESPACE, None, namespace) or {}
    if (ns.get("metadata", {}).get("labels") or {}).get(USE_WAYPOINT):
        return set(services)
    found = set()
    for service in services:
        obj = api.get(SERVICE, namespace, service) or {}
        if (obj.get("metadata", {}).get("labels") or {}).get(USE_WAYPOINT):
            found.add(service)
    return found


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def virtual_service_of(api: KubeApi, namespace: str, service: str) -> str | None:
    """The team's VirtualService for ``service`` (one of its hosts names it), if any."""
    host = f"{service}.{namespace}.svc.cluster.local"
    aliases = {service, f"{service}.{namespace}", f"{service}.{namespace}.svc", host}
    for vs in sorted(api.list_objects(VIRTUAL_SERVICE, namespace), key=_name):
        if aliases & set(vs.get("spec", {}).get("hosts") or []):
            return _name(vs)
    return None


class ExistingFaultOps(KubeFaultOps):
    """:class:`~.faultops.KubeFaultOps` on a team's pods: found by name, not by convention."""

    def __init__(
        self,
        setup: names.Setup,
        workload: Workload,
        writer: ClusterWriter,
        *,
        target: ExistingTarget,
        ports: Mapping[str, int] | None = None,
        rollout_timeout_s: float = 120.0,
        planned_virtual_services: Mapping[str, str] | None = None,
        waypoints: set[str] | None = None,
    ) -> None:
        super().__init__(
            setup,
            workload,
            writer,
            namespace=target.namespace,
            rollout_timeout_s=rollout_timeout_s,
        )
        self.target = target
        self._ports = dict(ports or {})
        #: A dry run's reading of the team's VirtualServices (service -> name), made
        #: before planning: a planning writer has no cluster to read from.
        self._planned_vs = dict(planned_virtual_services or {})
        #: Ambient: the services a waypoint serves (read as the window starts).
        self._waypoints = set(waypoints or ())

    def proxy_container(self) -> str:
        if self._setup == SIDECAR and self.target.container is not None:
            return self.target.container
        return names.ISTIO_PROXY_CONTAINER

    def live(self, pod: Pod) -> PodState:
        found = self.writer.api.get(POD, self.namespace, pod.name)
        if found is None:
            raise FaultError(f"pod {self.namespace}/{pod.name} is gone")
        state = PodState.of(found)
        if state.deleting:
            raise FaultError(f"pod {self.namespace}/{pod.name} is being deleted")
        return state

    def _pods_of(self, pod: Pod) -> list[PodState]:
        found = self.writer.api.get(POD, self.namespace, pod.name)
        return [] if found is None else [PodState.of(found)]

    def http_fault_sites(self, pods: Sequence[Pod], direction: Direction) -> list[HttpFaultSite]:
        if direction == "outbound" and self._setup != SIDECAR:
            raise FaultError(
                "an outbound fault in a mesh needs the workload's call graph: on an existing "
                "workload, target the called service's pods with an inbound fault"
            )
        if self._setup == AMBIENT:
            missing = sorted({p.service for p in pods} - self._waypoints)
            if missing:
                raise FaultError(
                    f"ambient applies HTTP faults at a waypoint, and {', '.join(missing)} has "
                    f"none ({USE_WAYPOINT} on its Service or namespace)"
                )
        return super().http_fault_sites(pods, direction)

    def _team_vs(self, service: str) -> str | None:
        if self.planning:
            return self._planned_vs.get(service)
        return virtual_service_of(self.writer.api, self.namespace, service)

    def _vs_site(self, service: str, source: Pod | None, direction: Direction) -> HttpFaultSite:
        site = super()._vs_site(service, source, direction)
        applied_by = (
            "the service's waypoint" if self._setup == AMBIENT else "the client-side istio-proxies"
        )
        name = self._team_vs(service)
        if name is not None:
            mechanism = (
                f"PUT {VIRTUAL_SERVICE.path(self.namespace, name)} (the team's; its hosts name "
                f"{service}) with the whole spec.http list as read plus a fault on every route "
                f"(applied by {applied_by})"
            )
            undo = "PUT spec.http back exactly as read before the fault"
        else:
            owned = f"sc-fault-{service}"
            mechanism = (
                f"POST {VIRTUAL_SERVICE.path(self.namespace)} (VirtualService {owned} of this "
                f"run for {service}.{self.namespace}.svc.cluster.local, one route with the "
                f"fault; applied by {applied_by})"
            )
            where = VIRTUAL_SERVICE.path(self.namespace, owned)
            undo = f"DELETE {where} if it carries this run's mark"
        return dataclasses.replace(site, mechanism=mechanism, undo=undo)

    def _vs_fault(self, target: Site, fault: dict[str, Any]) -> Change | None:
        service = target.service
        host = f"{service}.{self.namespace}.svc.cluster.local"
        port = self._ports.get(service, names.APP_PORT)

        def build(before: Any) -> list[dict[str, Any]]:
            routes = before if isinstance(before, list) and before else []
            routes = routes or [builders.default_route(host, port)]
            return builders.http_with_fault(routes, fault, source_labels=None)

        detail = f"fault {json.dumps(fault, sort_keys=True)}"
        found = self._team_vs(service)
        if found is not None:
            return self.writer.set_field(
                VIRTUAL_SERVICE, self.namespace, found, ("spec", "http"), build, detail=detail
            )
        manifest = {
            "apiVersion": VIRTUAL_SERVICE.api_version,
            "kind": VIRTUAL_SERVICE.kind,
            "metadata": {"name": f"sc-fault-{service}", "namespace": self.namespace},
            "spec": {"hosts": [host], "http": build(None)},
        }
        return self.writer.create(manifest, detail="an HTTP fault")

    def _fault_pods(self, site: HttpFaultSite) -> list[PodState]:
        if self._setup == AMBIENT:
            # Waypoints are the team's (any name): every Envoy of the namespace counts.
            return self._namespace_pods()
        return super()._fault_pods(site)


__all__ = [
    "DATAPLANE_MODE",
    "EXTRA_HOST",
    "EXTRA_TARGET",
    "ExistingFaultOps",
    "ExistingTarget",
    "build_workload",
    "check_setup",
    "detect_setup",
    "find_pods",
    "services_with_waypoint",
    "virtual_service_of",
]
