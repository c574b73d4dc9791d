"""What the platform reads of a pod: where it runs, its readiness, its containers' restarts
(native sidecars included), from the pod's JSON as the API server sends it.

Pure: nothing here imports ``kubernetes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContainerState:
    """One container of a pod as its status shows it."""

    name: str
    ready: bool
    restarts: int
    #: ``running``, ``waiting`` or ``terminated`` (or ``unknown``).
    state: str
    reason: str = ""
    #: A native sidecar (an init container with ``restartPolicy: Always``), as Istio 1.27+.
    native_sidecar: bool = False


@dataclass(frozen=True)
class PodState:
    """What the platform reads of a pod: where it runs, its readiness and restarts."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    node_name: str
    phase: str
    ready: bool
    deleting: bool
    containers: tuple[ContainerState, ...]
    resource_version: str = ""

    def container(self, name: str) -> ContainerState | None:
        return next((c for c in self.containers if c.name == name), None)

    def restarts(self, container: str | None = None) -> int:
        """Restarts of one container, or of all (native sidecars included)."""
        if container is not None:
            found = self.container(container)
            return found.restarts if found else 0
        return sum(c.restarts for c in self.containers)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodState:
        meta = pod.get("metadata", {})
        spec = pod.get("spec", {})
        status = pod.get("status", {}) or {}
        native = {
            c.get("name")
            for c in spec.get("initContainers", []) or []
            if c.get("restartPolicy") == "Always"
        }
        containers = [
            _container_state(s, native_sidecar=s.get("name") in native)
            for s in status.get("initContainerStatuses", []) or []
            if s.get("name") in native
        ]
        containers += [
            _container_state(s, native_sidecar=False)
            for s in status.get("containerStatuses", []) or []
        ]
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", []) or []
        )
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            labels=dict(meta.get("labels") or {}),
            node_name=str(spec.get("nodeName", "")),
            phase=str(status.get("phase", "Unknown")),
            ready=ready,
            deleting=bool(meta.get("deletionTimestamp")),
            containers=tuple(containers),
            resource_version=str(meta.get("resourceVersion", "")),
        )


def _container_state(status: Mapping[str, Any], *, native_sidecar: bool) -> ContainerState:
    state = status.get("state") or {}
    which = next((k for k in ("running", "waiting", "terminated") if k in state), "unknown")
    reason = (state.get(which) or {}).get("reason", "") if which != "unknown" else ""
    return ContainerState(
        name=str(status.get("name", "")),
        ready=bool(status.get("ready", False)),
        restarts=int(status.get("restartCount", 0)),
        state=which,
        reason=str(reason or ""),
        native_sidecar=native_sidecar,
    )
