"""Waiting for a Deployment's rollout, from its status, as ``kubectl rollout status`` does.

A template change (a proxy's ``SECRET_TTL``) or a scale is not instant on a real cluster: the
Deployment controller grows a new ReplicaSet within ``maxSurge``, its pods turn Ready after
they start, and only then are the old ones scaled down. A rollout is complete when the
Deployment's status says so (kubectl's ``DeploymentStatusViewer``,
``staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go``):
``observedGeneration`` caught up with ``metadata.generation``, ``updatedReplicas`` equal to
``spec.replicas``, no old replicas left (``replicas`` not above ``updatedReplicas``), and every
updated replica available. Zero counts are absent from the status (``omitempty``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chaos.errors import FaultError
from chaos.platforms.kubernetes.kinds import DEPLOYMENT

#: The client's read of one object (None: not found).
Read = Callable[..., dict[str, Any] | None]


def waiting_for(deployment: dict[str, Any]) -> str | None:
    """Why the rollout is not complete yet, or None when it is."""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "?")
    if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
        return f"deployment {name!r}: spec update not observed yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            raise FaultError(f"deployment {name!r} exceeded its progress deadline")
    wanted = int((deployment.get("spec") or {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < wanted:
        return f"{updated} out of {wanted} new replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def wait_deployment(read: Read, namespace: str, name: str, timeout_s: float) -> None:
    """Until Deployment ``namespace/name`` is rolled out; FaultError naming why not in time."""
    deadline = time.monotonic() + timeout_s
    reason = "not read"
    while True:
        found = read(DEPLOYMENT, namespace, name)
        if found is None:
            raise FaultError(f"Deployment {namespace}/{name} is gone")
        pending = waiting_for(found)
        if pending is None:
            return
        reason = pending
        if time.monotonic() >= deadline:
            raise FaultError(
                f"Deployment {namespace}/{name}: rollout not done within {timeout_s:g} s ({reason})"
            )
        time.sleep(0.1)


__all__ = ["wait_deployment", "waiting_for"]
