"""The bypass probe's exec in the fake (:mod:`chaos.platforms.kubernetes.bypass`).

The probe's command (``python -c PROBE_SCRIPT targets rate max duration``) is answered
as the real script would print it, one JSON line per attempt (``rate`` a second, at
most ``max``, never past ``duration``), with Istio's outcome for a plaintext request
to a pod IP's app port from outside the data plane: where the target's namespace has
a PeerAuthentication ``STRICT`` (Istio's capture sends it to the sidecar's inbound or
ztunnel, which require mTLS) it is *refused*; otherwise (PERMISSIVE, Istio's default,
or no Istio: the plain sidecar's app listens on the pod IP) the app *serves* it
(200, its ``x-chaos-auth``). A target IP that is not the pod's, or a pod that is gone,
is *refused* (nothing listens there). Nothing is slept: the lines carry the offsets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from chaos.platforms.kubernetes.bypass import PROBE_SCRIPT
from chaos.testing.fakekube.rules import ApiError
from chaos.testing.fakekube.store import FakeCluster


def strict(cluster: FakeCluster, namespace: str) -> bool:
    """Whether a PeerAuthentication of ``namespace`` asks for mTLS ``STRICT``."""
    try:
        resource = cluster.resource("security.istio.io/v1", "peerauthentications")
        policies = cluster.select(resource, namespace)
    except ApiError:
        return False
    modes = [((p.get("spec") or {}).get("mtls") or {}).get("mode") for p in policies]
    return "STRICT" in modes


def _outcome(cluster: FakeCluster, namespace: str, pod: str, ip: str) -> tuple[str, int]:
    try:
        obj = cluster.get(cluster.resource("v1", "pods"), namespace, pod)
    except ApiError:
        return "refused", 0
    if (obj.get("status") or {}).get("podIP") != ip or strict(cluster, namespace):
        return "refused", 0
    return "served", 200


def answer(cluster: FakeCluster, command: Sequence[str]) -> str | None:
    """The probe's output, or None: not the probe's command."""
    if len(command) != 7 or list(command[:3]) != ["python", "-c", PROBE_SCRIPT]:
        return None
    targets = json.loads(command[3])
    rate, count, duration = float(command[4]), int(command[5]), float(command[6])
    lines = []
    for i in range(min(count, math.ceil(duration * rate))):
        ns, pod, ip, _port = targets[i % len(targets)]
        outcome, status = _outcome(cluster, ns, pod, ip)
        record = {"dt": i / rate, "pod": pod, "outcome": outcome, "status": status}
        lines.append(json.dumps(record) + "\n")
    return "".join(lines)


__all__ = ["answer", "strict"]
