"""What the Kubernetes fault mechanisms share: names, the workload, pods and their counters.

:class:`OpsBase` holds the state of one setup's :class:`~.faultops.KubeFaultOps`
(the writer, the namespaces, the changes each intent made) and reads pods and their
proxies' counters; :mod:`.identityops` and :mod:`.faultops` build the intents on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.errors import FaultError, PlatformError
from chaos.experiment import Setup as SpecSetup
from chaos.platforms.base import (
    Pod,
    Workload,
)
from chaos.platforms.kubernetes import names
from chaos.platforms.kubernetes.changes import Change, ClusterWriter
from chaos.platforms.kubernetes.podstate import PodState
from chaos.platforms.kubernetes.statsmatcher import (
    DENIED_SUFFIXES,
    FAULT_SUFFIXES,
    TLS_SUFFIXES,
    missing,
)
from chaos.traffic.live import LiveStats

#: Istio's control plane Deployment and node proxy DaemonSet (in ``istio-system``).
ISTIOD = "istiod"
ZTUNNEL = "ztunnel"
#: Deployments of a plain-sidecar namespace that feed its proxies config (scaled to 0 by
#: control-plane-outage). The demo's sidecars have static config: none there.
ROLE_LABEL = "sidecar-chaos.dev/role"
CONFIG_SOURCE = "config-source"
#: The Secret holding the CA that signed the plain sidecars' certificates (``ca.pem`` and
#: ``ca-key.pem``), needed to issue a short-lived one for cert-expiry.
CA_SECRET = "sidecar-chaos-ca"
CA_KEY_FILE = "ca-key.pem"
#: Waypoint pods carry the name of their Gateway in this label.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
#: The proxies' own cluster to istiod: exported by Istio's defaults, not the data path.
XDS_CLUSTER = "cluster.xds-grpc."


SIDECAR = names.Setup.SIDECAR
MESH = names.Setup.MESH
AMBIENT = names.Setup.AMBIENT


def demo_workload(setup: names.Setup) -> Workload:
    """The pods of the demo workload in ``setup``: one per Deployment ``<service>-<replica>``."""
    pods = tuple(
        Pod(
            name=names.deployment_name(service, replica),
            service=service,
            node=names.node_of_replica(replica),
            replica=replica,
        )
        for service in names.SERVICES
        for replica in range(names.REPLICAS)
    )
    return Workload(setup=SpecSetup(setup.value), pods=pods)


@dataclass(frozen=True)
class Site:
    """What an :class:`HttpFaultSite` changes: a proxy's runtime or a VirtualService."""

    via: str  # "runtime" or "vs"
    pod: Pod | None = None
    service: str = ""
    source_labels: tuple[tuple[str, str], ...] | None = None


class OpsBase:
    """What every mechanism shares: the writer, the namespace, pods and their counters."""

    def __init__(
        self,
        setup: names.Setup,
        workload: Workload,
        writer: ClusterWriter,
        *,
        namespace: str | None = None,
        istio_namespace: str = names.ISTIO_NAMESPACE,
        rollout_timeout_s: float = 120.0,
        ca_dir: Path | None = None,
    ) -> None:
        self._setup = setup
        self._workload = workload
        self.writer = writer
        self.namespace = namespace or names.namespace_of(setup)
        self.istio_namespace = istio_namespace
        self.rollout_timeout_s = rollout_timeout_s
        #: Where ``cluster up`` keeps the CA (``ca.pem``, ``ca-key.pem``), if not in a Secret.
        self.ca_dir = ca_dir
        self._sites: dict[str, Site] = {}
        self._site_changes: dict[str, list[Change]] = {}
        self._identity_changes: dict[str, list[Change]] = {}
        self._outage_changes: list[Change] = []
        #: istiod scaled to 0 by a cert-expiry, once for all its targets.
        self._rotation_changes: list[Change] = []
        #: Per pod, when its short-lived certificate of an outage was issued, and its TTL.
        self._outage_certs: dict[str, tuple[float, float]] = {}
        self._key_changes: list[Change] = []
        self._ztunnel_uids: dict[str, set[str]] = {}
        self._desync_jwks: str | None = None
        #: The running traffic's last second of samples (set when in-cluster Locust starts).
        self.traffic_stats: Callable[[], LiveStats] | None = None

    @property
    def setup(self) -> Any:
        return self._setup

    @property
    def workload(self) -> Workload:
        return self._workload

    @property
    def planning(self) -> bool:
        return self.writer.dry_run

    def samples_now(self) -> LiveStats | None:
        """The last second of the window's samples; None: no in-cluster traffic, unreadable."""
        if self.traffic_stats is None:
            return None
        try:
            return self.traffic_stats()
        except (PlatformError, OSError, ValueError):
            return None

    # -- pods ----------------------------------------------------------------------------

    def proxy_container(self) -> str:
        return names.SIDECAR_CONTAINER if self._setup == SIDECAR else names.ISTIO_PROXY_CONTAINER

    def live(self, pod: Pod) -> PodState:
        """The running pod of a workload pod (its Deployment's one pod)."""
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        found = [p for p in self.writer.api.list_pods(self.namespace, labels) if not p.deleting]
        if not found:
            raise FaultError(f"no pod of {self.namespace}/{pod.name} is running")
        return sorted(found, key=lambda p: (not p.ready, p.name))[0]

    def _namespace_pods(self) -> list[PodState]:
        return [p for p in self.writer.api.list_pods(self.namespace) if not p.deleting]

    def stats(self, pod: PodState, suffixes: tuple[str, ...]) -> dict[str, int]:
        """Counters of a pod's Envoy (admin port) whose names end with one of ``suffixes``."""
        body = self.writer.pod_exec.http(
            pod.namespace, pod.name, names.ADMIN_PORT, "GET", "/stats?format=json", 3.0
        )
        found: dict[str, int] = {}
        for stat in json.loads(body).get("stats", []):
            name = stat.get("name", "")
            if isinstance(name, str) and name.endswith(suffixes) and "value" in stat:
                found[name] = int(stat["value"])
        return found

    def _counts(self, pods: Sequence[PodState], suffixes: tuple[str, ...]) -> dict[str, int]:
        """Matching counters of every reachable pod, keyed by pod and counter."""
        found: dict[str, int] = {}
        for pod in pods:
            try:
                stats = self.stats(pod, suffixes)
            except (PlatformError, ValueError):
                continue  # restarting or not an Envoy: no reading now
            found |= {f"{pod.name} {name}": value for name, value in stats.items()}
        return found

    def unexported_identity_counters(self, which: str) -> list[str]:
        """The TLS (``tls``) or token (``denied``) counters no reachable proxy exports.

        Istio's default stats matcher exports none of the data path's TLS counters and
        not ``jwt_authn.denied`` (``rbac.denied`` it does, but a bad token never gets
        there); ``cluster up`` installs a matcher that does, a team's Istio may not.
        """
        suffixes = TLS_SUFFIXES if which == "tls" else (".jwt_authn.denied",)
        pods = self._namespace_pods()
        if which == "denied" and self._setup == AMBIENT:
            pods = [p for p in pods if GATEWAY_NAME_LABEL in p.labels]
        seen: list[str] = []
        reached = False
        for pod in pods:
            try:
                seen += [n for n in self.stats(pod, suffixes) if not n.startswith(XDS_CLUSTER)]
                reached = True
            except (PlatformError, ValueError):
                continue
        return missing(seen, suffixes) if reached else []

    def _track(self, changes: list[Change], change: Change | None) -> None:
        if change is not None and change not in changes:
            changes.append(change)

    def _recreate(self, pod: Pod) -> None:
        """Delete a workload pod and wait for its Deployment's new one to be ready."""
        if self.planning:
            self.writer.delete_pod(self.namespace, pod.name, detail="re-created by its Deployment")
            return
        old = self.live(pod)
        self.writer.delete_pod(self.namespace, old.name, detail=f"{pod.name}: re-read its files")
        self._wait_new_pod(pod, {old.uid})

    def _wait_new_pod(self, pod: Pod, old_uids: set[str]) -> None:
        deadline = time.monotonic() + self.rollout_timeout_s
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        while time.monotonic() < deadline:
            pods = self.writer.api.list_pods(self.namespace, labels)
            if any(p.ready and not p.deleting and p.uid not in old_uids for p in pods):
                return
            time.sleep(0.2)
        raise FaultError(
            f"{self.namespace}/{pod.name}: no new ready pod within {self.rollout_timeout_s:g} s"
        )

    def _pods_of(self, pod: Pod) -> list[PodState]:
        labels = {names.LABEL_APP: pod.service, names.LABEL_REPLICA: str(pod.replica)}
        return self.writer.api.list_pods(self.namespace, labels)


__all__ = [
    "AMBIENT",
    "CA_KEY_FILE",
    "CA_SECRET",
    "CONFIG_SOURCE",
    "DENIED_SUFFIXES",
    "FAULT_SUFFIXES",
    "GATEWAY_NAME_LABEL",
    "ISTIOD",
    "MESH",
    "ROLE_LABEL",
    "SIDECAR",
    "TLS_SUFFIXES",
    "XDS_CLUSTER",
    "ZTUNNEL",
    "OpsBase",
    "Site",
    "demo_workload",
]
