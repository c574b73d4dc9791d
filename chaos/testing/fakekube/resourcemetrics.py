"""The fake's kubelets' resource metrics, through the API server's node proxy.

``GET /api/v1/nodes/{node}/proxy/metrics/resource`` answers, as a real kubelet does
(kubernetes ``pkg/kubelet/metrics/collectors/resource_metrics.go``), in the Prometheus
text format, one series per running container of the node's pods (labels
``container``, ``pod``, ``namespace``):

* ``container_cpu_usage_seconds_total`` (counter, with the sample's timestamp),
* ``container_memory_working_set_bytes`` (gauge, with the sample's timestamp),
* ``container_start_time_seconds`` (gauge).

An unknown node is 404 ``NotFound`` (``nodes "<name>" not found``), as the API server
answers; another path under a node's proxy is 404 too (the fake's kubelet has no more).

The fake's containers use no CPU of their own: a test *charges* a container the CPU its
work would have used (:meth:`FakeResourceMetrics.charge`), and sets its working set
(default ``DEFAULT_WORKING_SET``). A restarted container (``restartCount`` rises) is a
new container: its counter starts again from 0 with a new start time (the status's
``startedAt``, whole seconds, plus the restart count in ms so that a restart within the
same second still shows). The kubelet samples on its own schedule: by default every
scrape is a new sample taken now; after :meth:`FakeResourceMetrics.hold_sample` each
node answers the sample of its next scrape again and again (values and timestamp), as
between two housekeeping passes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chaos.testing.fakekube.rules import ApiError, Obj
from chaos.testing.fakekube.store import FakeCluster

#: The working set a container reports unless a test set one (bytes).
DEFAULT_WORKING_SET = 20 * 1024 * 1024
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ["container", "pod", "namespace"]

#: (namespace, pod, container) of a container as the kubelet names it.
Key = tuple[str, str, str]


class FakeResourceMetrics:
    """What each fake kubelet reports for the running containers of its node."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()
        #: CPU-seconds charged per container instance (key + pod uid + restart count).
        self._cpu: dict[tuple[Key, str, int], float] = {}
        self._memory: dict[Key, float] = {}
        #: The sample answered while held: its time and text per node.
        self._held: dict[str, tuple[float, str]] | None = None

    def charge(self, namespace: str, pod: str, container: str, cpu_s: float) -> None:
        """Add ``cpu_s`` CPU-seconds to the container's counter (its current instance)."""
        uid, restarts = self._instance(namespace, pod, container)
        with self._lock:
            key = ((namespace, pod, container), uid, restarts)
            self._cpu[key] = self._cpu.get(key, 0.0) + cpu_s

    def set_working_set(self, namespace: str, pod: str, container: str, size: float) -> None:
        with self._lock:
            self._memory[(namespace, pod, container)] = size

    def hold_sample(self, held: bool = True) -> None:
        """Keep answering the last sample of each node (no new housekeeping pass)."""
        with self._lock:
            self._held = {} if held else None

    def _instance(self, namespace: str, pod: str, container: str) -> tuple[str, int]:
        obj = self.cluster.get(self.cluster.resource("v1", "pods"), namespace, pod)
        for status in _statuses(obj):
            if status.get("name") == container:
                return str(obj["metadata"].get("uid", "")), int(status.get("restartCount", 0))
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")

    def text(self, node: str) -> str:
        """The node's ``/metrics/resource`` answer (404 for a node the cluster lacks)."""
        self.cluster.get(self.cluster.resource("v1", "nodes"), "", node)  # 404 if unknown
        with self._lock:
            if self._held is not None and node in self._held:
                return self._held[node][1]
            now = time.time()
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Kubelet(self, node, now))
            answer = generate_latest(registry).decode()
            if self._held is not None:
                self._held[node] = (now, answer)
            return answer

    def families(self, node: str, now: float) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "container_cpu_usage_seconds",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            labels=_LABELS,
        )
        memory = GaugeMetricFamily(
            "container_memory_working_set_bytes",
            "[STABLE] Current working set of the container in bytes",
            labels=_LABELS,
        )
        started = GaugeMetricFamily(
            "container_start_time_seconds",
            "[STABLE] Start time of the container since unix epoch in seconds",
            labels=_LABELS,
        )
        pods = self.cluster.select(
            self.cluster.resource("v1", "pods"), None, None, f"spec.nodeName={node}"
        )
        for pod in pods:
            meta = pod["metadata"]
            namespace, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
            for status in _statuses(pod):
                running = (status.get("state") or {}).get("running")
                if not running:
                    continue
                container = str(status.get("name", ""))
                key = (namespace, name, container)
                restarts = int(status.get("restartCount", 0))
                labels = [container, name, namespace]
                used = self._cpu.get((key, uid, restarts), 0.0)
                cpu.add_metric(labels, used, timestamp=now)
                memory.add_metric(labels, self._memory.get(key, DEFAULT_WORKING_SET), timestamp=now)
                begun = _epoch(str(running.get("startedAt", ""))) + restarts / 1000.0
                started.add_metric(labels, begun)
        yield from (started, cpu, memory)


class _Kubelet(Collector):
    def __init__(self, metrics: FakeResourceMetrics, node: str, now: float) -> None:
        self.metrics, self.node, self.now = metrics, node, now

    def collect(self) -> Iterator[Metric]:
        return self.metrics.families(self.node, self.now)


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def serve_node_proxy(metrics: FakeResourceMetrics, node: str, path: str) -> web.Response:
    """``/api/v1/nodes/{node}/proxy/<rest>``: the kubelet's ``/metrics/resource`` only."""
    rest = path.split(f"/nodes/{node}/proxy", 1)[-1]
    text = metrics.text(node)  # an unknown node is 404 before the path is looked at
    if rest.rstrip("/") != "/metrics/resource":
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_TEXT})


__all__ = ["DEFAULT_WORKING_SET", "FakeResourceMetrics", "serve_node_proxy"]
