"""One setup's workload on a cluster, as the engine sees it while a window runs.

Pods come from the API (the demo's Deployments, found by label), events from a
watch on the namespace's pods (a restart count that rises is ``restarted``, a
Ready condition that flips is ``ready``/``unready``, a new or deleted pod is
``started``/``stopped``), counters from each proxy's admin ``/stats`` through
:class:`~.api.PodExec` plus the restart counts of the pods' status.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.errors import FaultError, PlatformError
from chaos.platforms.base import (
    Event,
    EventCallback,
    EventKind,
    FaultOps,
    HostedTraffic,
    Pod,
    Workload,
)
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.anonymous import KubeAnonymousStream
from chaos.platforms.kubernetes.api import KubeApi
from chaos.platforms.kubernetes.bypass import KubeBypassProbe
from chaos.platforms.kubernetes.faultops import KubeFaultOps
from chaos.platforms.kubernetes.kinds import POD
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.statsmatcher import COUNTER_SUFFIXES
from chaos.platforms.kubernetes.usage import KubeUsage
from chaos.platforms.usage import UsageReading
from chaos.rundir.counters import CounterSample
from chaos.rundir.journal import JsonValue
from chaos.traffic.base import TrafficFactory
from chaos.traffic.config import CLUSTER


def workload_name(pod: PodState) -> str:
    """The neutral name of a live pod: its Deployment's ``<service>-<replica>``."""
    service = pod.labels.get(names.LABEL_APP)
    replica = pod.labels.get(names.LABEL_REPLICA)
    if service is None or replica is None:
        return pod.name
    return names.deployment_name(service, int(replica))


class KubeTopology:
    """:class:`~chaos.platforms.base.RunningTopology` of one setup's namespace."""

    def __init__(
        self,
        setup: Any,
        workload: Workload,
        api: KubeApi,
        ops: KubeFaultOps,
        *,
        startup_s: float,
        record: dict[str, JsonValue],
        watch_timeout_s: int = 1,
        ingress_url: str | None = None,
        traffic: TrafficFactory | None = None,
        traffic_host: str | None = None,
        demo: bool = True,
    ) -> None:
        self._setup = setup
        self._workload = workload
        self._api = api
        self._ops = ops
        self._startup_s = startup_s
        self._record = record
        self._watch_timeout_s = watch_timeout_s
        self._ingress_url = ingress_url
        self._traffic = traffic
        #: The team's own in-cluster URL (``traffic.host``), for in-cluster Locust.
        self._traffic_host = traffic_host
        #: The demo workload (whose ``payments`` records its writes); False: a team's own,
        #: whose apps the tool never calls.
        self._demo = demo
        self._callbacks: list[EventCallback] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._known: dict[str, PodState] = {}
        self._writes_before: dict[str, int] = {}
        self._thread = threading.Thread(target=self._watch, name="kube-pod-watch", daemon=True)

    # -- RunningTopology -----------------------------------------------------------------

    @property
    def setup(self) -> Any:
        return self._setup

    @property
    def pods(self) -> tuple[Pod, ...]:
        return self._workload.pods

    @property
    def ingress_url(self) -> str:
        """The frontend Service's in-cluster URL (traffic inside the cluster), or as configured.

        ``$SIDECAR_CHAOS_KUBE_INGRESS`` (a loopback port-forward) runs Locust on this
        machine instead: its requests enter the frontend server-side, so they bypass the
        client-side proxy, where a mesh applies VirtualService faults.
        """
        if self._ingress_url:
            return self._ingress_url
        if self._traffic_host:
            return self._traffic_host
        return f"http://{names.service_host('frontend', self._setup)}:{names.APP_PORT}"

    def hosted_traffic(self) -> HostedTraffic | None:
        """Locust in the cluster (:mod:`.traffic`); None with a loopback ingress override."""
        if self._ingress_url or self._traffic is None:
            return None
        return HostedTraffic(start=self._traffic, network=CLUSTER)

    @property
    def token_url(self) -> str | None:
        return None

    @property
    def startup_s(self) -> float:
        return self._startup_s

    @property
    def ops(self) -> FaultOps:
        return self._ops

    def bypass_probe(
        self, rate: float, max_requests: int, duration_s: float, out: Path
    ) -> KubeBypassProbe:
        """The window's bypass probe, from inside the cluster (:mod:`.bypass`)."""
        writer = self._ops.writer
        return KubeBypassProbe(
            writer.api, writer.pod_exec, self._setup, rate, max_requests, duration_s, out
        )

    def anonymous_stream(
        self, rate: float, max_requests: int, duration_s: float, out: Path
    ) -> KubeAnonymousStream:
        """The window's anonymous stream, from a Locust worker (:mod:`.anonymous`)."""
        writer = self._ops.writer
        stream = KubeAnonymousStream(
            writer.api, writer.pod_exec, self._setup, rate, max_requests, duration_s, out
        )
        stream.traffic_host = self._traffic_host
        return stream

    def journal_record(self) -> dict[str, JsonValue]:
        return dict(self._record)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def read_counters(self) -> list[CounterSample]:
        samples: list[CounterSample] = []
        if self._setup is names.Setup.BASELINE:
            return samples  # no proxy in its pods: no admin port, no restarts of one
        container = self._ops.proxy_container()
        pods = [p for p in self._api.list_pods(self._ops.namespace) if not p.deleting]
        for pod in pods:
            now = time.monotonic()
            proxy = f"{workload_name(pod)}/{container}"
            samples.append(CounterSample(now, proxy, "restarts", float(pod.restarts(container))))
            try:
                stats = self._ops.stats(pod, COUNTER_SUFFIXES)
            except (PlatformError, ValueError):
                continue  # down or restarting: no reading now
            samples += [CounterSample(now, proxy, k, float(v)) for k, v in stats.items()]
        return samples

    def read_usage(self, *, memory: bool = True, threads: bool = True) -> UsageReading:
        """CPU and memory of the setup's proxies, from the kubelets (:mod:`.usage`).

        ``threads`` changes nothing here: the kubelet reports a container's CPU only.
        """
        return KubeUsage(self._api, self._setup, self._ops.namespace).read(memory=memory)

    def counts(self) -> tuple[int, int, int]:
        return KubeUsage(self._api, self._setup, self._ops.namespace).counts()

    def recorded_writes(self) -> list[str] | None:
        """The writes ``payments`` recorded since this window's start (None: unreadable).

        Each replica answers ``GET /writes`` (through a port-forward) with every write
        it accepted since it was deployed, in order; the ids before the count read at
        :meth:`start` belong to earlier windows.
        """
        if not self._demo:
            return None  # a team's own apps: not the demo's write log, never read
        try:
            found = self._read_writes()
        except (PlatformError, FaultError):  # no port-forward here, or an app is down
            return None
        ids: list[str] = []
        for pod, written in found.items():
            ids += written[self._writes_before.get(pod, 0) :]
        return ids

    def _read_writes(self) -> dict[str, list[str]]:
        pods = self._api.list_pods(self._ops.namespace, {names.LABEL_APP: names.WRITER_SERVICE})
        found: dict[str, list[str]] = {}
        for pod in pods:
            if pod.deleting:
                continue
            body = self._ops.writer.pod_exec.http(
                pod.namespace, pod.name, names.APP_PORT, "GET", "/writes", 5.0
            )
            try:
                ids = json.loads(body)["ids"]
            except (ValueError, KeyError, TypeError) as exc:
                raise PlatformError(f"{pod.name}: GET /writes: not the demo's answer") from exc
            found[pod.name] = [str(i) for i in ids]
        return found

    # -- the watch -----------------------------------------------------------------------

    def start(self) -> None:
        """List the pods once (the baseline), then watch them in a thread."""
        for pod in self._api.list_pods(self._ops.namespace):
            self._known[pod.name] = pod
        try:
            if self._demo:
                self._writes_before = {p: len(ids) for p, ids in self._read_writes().items()}
        except (PlatformError, FaultError):
            # every id since deployment then comes back; earlier windows' match no request
            self._writes_before = {}
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._watch_timeout_s + 5.0)

    def _emit(self, event: Event) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(event)

    def _watch(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self._api.request("GET", POD.path(self._ops.namespace))
                    version = str(listed.get("metadata", {}).get("resourceVersion", "")) or None
                for event in self._api.watch(
                    POD,
                    self._ops.namespace,
                    resource_version=version,
                    timeout_s=self._watch_timeout_s,
                ):
                    version = str(event.object.get("metadata", {}).get("resourceVersion", version))
                    self._on_change(event.type, PodState.of(event.object))
                    if self._stop.is_set():
                        return
            except PlatformError:
                version = None  # relist and watch again
                self._stop.wait(1.0)

    def _on_change(self, kind: str, pod: PodState) -> None:
        subject = workload_name(pod)
        before = self._known.get(pod.name)
        if kind == "DELETED":
            self._known.pop(pod.name, None)
            self._emit(Event.now(EventKind.STOPPED, subject, f"pod {pod.name} deleted"))
            return
        self._known[pod.name] = pod
        if before is None:
            self._emit(Event.now(EventKind.STARTED, subject, f"pod {pod.name}"))
            if pod.ready:
                self._emit(Event.now(EventKind.READY, subject, f"pod {pod.name}"))
            return
        for container in pod.containers:
            previous = before.container(container.name)
            if previous is not None and container.restarts > previous.restarts:
                self._emit(
                    Event.now(
                        EventKind.RESTARTED,
                        subject,
                        f"{pod.name}/{container.name} restart {container.restarts}",
                    )
                )
        if pod.ready != before.ready:
            kind_ = EventKind.READY if pod.ready else EventKind.UNREADY
            self._emit(Event.now(kind_, subject, f"pod {pod.name}"))


__all__ = ["COUNTER_SUFFIXES", "KubeTopology", "workload_name"]
