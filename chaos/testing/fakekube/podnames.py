"""Names, hashes and readiness of the fake's controller-made pods, as kube-controller-manager
computes them (``pkg/controller/controller_utils.go`` ComputeHash, ``deployment/util``
ResolveFenceposts, ``apimachinery/pkg/util/rand`` for the alphabet)."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from typing import Any

from chaos.testing.fakekube.rules import ApiError, Obj

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
#: k8s.io/apimachinery/pkg/util/rand: the alphabet of generated names and template hashes.
SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pod_template_hash(template: Obj) -> str:
    """The ``pod-template-hash`` of a template: FNV-32a, its decimal digits in :data:`SAFE`."""
    digits = str(_fnv32a(json.dumps(template, sort_keys=True).encode()))
    return "".join(SAFE[int(d) % len(SAFE)] for d in digits)


def template_hash(owner: Obj) -> str:
    template = (owner.get("spec") or {}).get("template") or {}
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def generated_suffix() -> str:
    return "".join(secrets.choice(SAFE) for _ in range(5))


def is_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def set_ready(pod: Obj, ready: bool) -> None:
    status = pod.setdefault("status", {})
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    for field in ("containerStatuses", "initContainerStatuses"):
        for entry in status.get(field) or []:
            entry["ready"] = ready


def _intstr(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        raise ApiError(422, "Invalid", f"invalid value {text!r}: must be an integer or percentage")
    scaled = int(text[:-1]) * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pods, as ``ResolveFenceposts`` computes them."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _intstr(rolling.get("maxSurge"), replicas, True)
    unavailable = _intstr(rolling.get("maxUnavailable"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


__all__ = [
    "HASH_LABEL",
    "REVISION",
    "SAFE",
    "fenceposts",
    "generated_suffix",
    "is_ready",
    "pod_template_hash",
    "set_ready",
    "template_hash",
]
