"""CPU and memory of a setup's proxies on a cluster, from the kubelet's resource metrics.

Each node's kubelet serves ``/metrics/resource`` (Prometheus text), reached through the
API server's node proxy, ``GET /api/v1/nodes/{node}/proxy/metrics/resource``: nothing to
install. Per container (labels ``namespace``, ``pod``, ``container``; kubernetes
``pkg/kubelet/metrics/collectors/resource_metrics.go``, all three STABLE):

* ``container_cpu_usage_seconds_total``: CPU in core-seconds, with the time the kubelet
  sampled it. The kubelet samples on its own schedule, not when asked: the CPU of a
  window is the difference between the two samples around it, over *their* interval,
  scaled by the figures to the measured one (``ProcessCost.cpu_interval_s``). A hold with
  no new sample is broken, never guessed.
* ``container_memory_working_set_bytes``: memory. The working set is what the kubelet
  has (and what it evicts by): it counts shared pages once per container, like RSS,
  not split as the local platform's PSS. The window's record says which it holds.
* ``container_start_time_seconds``: the container's identity across readings, as a
  process's start time is locally: a restart mid-window breaks it.

What counts as which proxy kind (:func:`kind_of_container`): in the setup's namespace
the ``istio-proxy`` of an app pod (mesh sidecar), of a waypoint pod (its Gateway's label)
and the plain ``envoy-sidecar``; in ``istio-system`` the ztunnel pods (ambient's node
proxy), istiod (control plane of mesh and ambient) and an ingress gateway. The demo's
``app`` containers are the pods' own work; the in-cluster Locust pods (``sc-traffic``)
are the load, never counted. ``baseline`` (``sc-baseline``, :mod:`.manifests.baseline`)
has no proxy kind at all, not even an entry proxy: its pods' containers are apps, and
nothing of ``istio-system`` is its cost (as for the plain sidecars), so its windows are
the reference the added latency is measured against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from prometheus_client.parser import text_string_to_metric_families

from chaos.errors import PlatformError
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.opsbase import GATEWAY_NAME_LABEL, ISTIOD, ZTUNNEL
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.usage import ProcessReading, UsageReading
from chaos.rundir.cost import ProxyKind

#: The kubelet's metric names (resource_metrics.go).
CPU_METRIC = "container_cpu_usage_seconds_total"
MEMORY_METRIC = "container_memory_working_set_bytes"
START_METRIC = "container_start_time_seconds"
#: The label Istio's ingress gateway pods carry (``istio: ingressgateway``).
INGRESS_LABEL = ("istio", "ingressgateway")
#: CPU is carried in ns ticks: exact to the kubelet's own precision.
NS_PER_S = 1_000_000_000


def resource_path(node: str) -> str:
    """The API server's proxy path to a node's kubelet resource metrics."""
    return f"/api/v1/nodes/{node}/proxy/metrics/resource"


@dataclass(frozen=True)
class ContainerUsage:
    """One container as one kubelet reports it."""

    namespace: str
    pod: str
    container: str
    cpu_s: float | None = None
    #: When the kubelet sampled ``cpu_s`` (epoch seconds).
    cpu_at: float | None = None
    working_set_bytes: float | None = None
    started: float | None = None


def parse_resource_metrics(text: str) -> dict[tuple[str, str, str], ContainerUsage]:
    """(namespace, pod, container) -> its usage, from ``/metrics/resource`` text."""
    found: dict[tuple[str, str, str], ContainerUsage] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in (CPU_METRIC, MEMORY_METRIC, START_METRIC):
                continue
            labels = sample.labels
            key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
            known = found.get(key, ContainerUsage(*key))
            if sample.name == CPU_METRIC:
                at = float(sample.timestamp) if sample.timestamp is not None else None
                known = replace(known, cpu_s=sample.value, cpu_at=at)
            elif sample.name == MEMORY_METRIC:
                known = replace(known, working_set_bytes=sample.value)
            else:
                known = replace(known, started=sample.value)
            found[key] = known
    return found


def kind_of_container(setup: names.Setup, pod: PodState, container: str) -> ProxyKind | None:
    """The cost kind of one container of ``setup``, or None: not part of its cost."""
    namespace = names.namespace_of(setup)
    if pod.namespace == names.ISTIO_NAMESPACE:
        if setup in _WITHOUT_ISTIO:
            return None  # the plain sidecars and baseline use nothing of Istio
        app = pod.labels.get("app")
        if app == ZTUNNEL:
            return ProxyKind.NODE_PROXY if setup is names.Setup.AMBIENT else None
        if app == ISTIOD:
            return ProxyKind.CONTROL_PLANE
        if pod.labels.get(INGRESS_LABEL[0]) == INGRESS_LABEL[1]:
            return ProxyKind.INGRESS
        return None
    if pod.namespace != namespace:
        return None
    if container == names.ISTIO_PROXY_CONTAINER:
        if GATEWAY_NAME_LABEL in pod.labels:
            return ProxyKind.WAYPOINT
        return ProxyKind.MESH_SIDECAR
    if container == names.SIDECAR_CONTAINER:
        return ProxyKind.SIDECAR
    if container == names.APP_CONTAINER:
        return ProxyKind.APP
    return None


class KubeUsage:
    """Reads the usage of every proxy (and app) container of one setup, node by node."""

    def __init__(self, api: KubeApi, setup: names.Setup, namespace: str) -> None:
        self.api = api
        self.setup = setup
        self.namespace = namespace

    def _pods(self) -> list[PodState]:
        pods = self.api.list_pods(self.namespace)
        if self.setup not in _WITHOUT_ISTIO:
            pods += self.api.list_pods(names.ISTIO_NAMESPACE)
        return [p for p in pods if not p.deleting and p.node_name]

    def _nodes(self, nodes: Iterable[str]) -> dict[str, dict[tuple[str, str, str], ContainerUsage]]:
        found = {}
        for node in sorted(set(nodes)):
            try:
                found[node] = parse_resource_metrics(self.api.get_text(resource_path(node)))
            except (PlatformError, ValueError):
                found[node] = {}  # a node that cannot be read: its containers are missing
        return found

    def read(self, *, memory: bool = True) -> UsageReading:
        """Every counted container now; one the kubelet does not report is missing.

        ``memory`` is accepted for the port: one scrape carries CPU and memory alike.
        """
        del memory
        pods = self._pods()
        counted = [
            (pod, c.name, kind)
            for pod in pods
            for c in pod.containers
            if c.state == "running" and (kind := kind_of_container(self.setup, pod, c.name))
        ]
        metrics = self._nodes(pod.node_name for pod, _, _ in counted)
        readings: list[ProcessReading] = []
        missing: list[str] = []
        for pod, container, kind in counted:
            name = f"{pod.namespace}/{pod.name}/{container}"
            usage = metrics[pod.node_name].get((pod.namespace, pod.name, container))
            if usage is None or usage.cpu_s is None or usage.started is None:
                missing.append(name)
                continue
            readings.append(
                ProcessReading(
                    name,
                    kind,
                    pod.name if kind in (ProxyKind.APP, *_PER_POD) else "",
                    pod.node_name,
                    0,  # no pid: the container's start time is its identity
                    round(usage.started * 1000),
                    round(usage.cpu_s * NS_PER_S),
                    _bytes(usage.working_set_bytes),
                    _bytes(usage.working_set_bytes),
                    sampled_at=usage.cpu_at,
                )
            )
        return UsageReading(tuple(readings), NS_PER_S, missing=tuple(missing), memory="working-set")

    def counts(self, pods: Sequence[PodState] | None = None) -> tuple[int, int, int]:
        """(pods, nodes, services) of the setup's app pods."""
        apps = [
            p
            for p in (pods if pods is not None else self.api.list_pods(self.namespace))
            if not p.deleting and p.container(names.APP_CONTAINER) is not None
        ]
        services = {p.labels.get(names.LABEL_APP, p.name) for p in apps}
        return len(apps), len({p.node_name for p in apps}), len(services)


_PER_POD = (ProxyKind.SIDECAR, ProxyKind.MESH_SIDECAR)
#: The setups none of whose traffic crosses Istio: nothing in ``istio-system`` is theirs.
_WITHOUT_ISTIO = (names.Setup.SIDECAR, names.Setup.BASELINE)


def _bytes(value: float | None) -> int:
    return int(value) if value is not None and math.isfinite(value) else 0


__all__ = [
    "CPU_METRIC",
    "MEMORY_METRIC",
    "START_METRIC",
    "ContainerUsage",
    "KubeUsage",
    "kind_of_container",
    "parse_resource_metrics",
    "resource_path",
]
