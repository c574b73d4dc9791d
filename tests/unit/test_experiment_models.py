"""Durations and the fault models: parsing, bounds, and what each fault says it will do."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from chaos.experiment import (
    AbortFault,
    CertExpiryFault,
    ControlPlaneOutageFault,
    Duration,
    Fault,
    LatencyFault,
    NonNegativeDuration,
    PolicyDesyncFault,
    Target,
    format_duration,
    parse_duration,
)

FAULT = TypeAdapter[Fault](Fault)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        (" 250ms ", 0.25),
        ("10", 10.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "15 sec", "200us", "", "s", "1.s", "inf", "nan", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="must be a duration like 500ms, 15s or 2m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "200ms"), (5, "5s"), (120, "2m"), (90, "90s"), (7200, "2h")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


class Windows(BaseModel):
    window: Duration
    warmup: NonNegativeDuration = 0.0


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        ({"window": "1ms"}, True),
        ({"window": "24h"}, True),
        ({"window": "24h1s"}, False),
        ({"window": "0s"}, False),
        ({"window": -1}, False),
        ({"window": "1s", "warmup": 0}, True),
        ({"window": "1s", "warmup": "-1s"}, False),
    ],
)
def test_duration_bounds(data: dict[str, Any], ok: bool) -> None:
    if ok:
        Windows.model_validate(data)
    else:
        with pytest.raises(ValidationError):
            Windows.model_validate(data)


TARGET = {"service": "checkout", "replica": 0}


@pytest.mark.parametrize(
    ("data", "summary"),
    [
        (
            {"type": "latency", "delay": "200ms", "target": TARGET},
            "latency 200ms on 100% of inbound requests at checkout replica 0",
        ),
        (
            {
                "type": "latency",
                "distribution": {"kind": "uniform", "min": "100ms", "max": "300ms"},
                "percent": 50,
                "direction": "outbound",
                "target": {"service": "frontend"},
            },
            "latency uniform 100ms..300ms on 50% of outbound requests at every frontend replica",
        ),
        (
            {
                "type": "latency",
                "distribution": {"kind": "normal", "mean": "200ms", "stddev": "50ms"},
                "target": {"service": "checkout", "share": 0.5, "node": "node-2"},
            },
            "latency normal mean 200ms sd 50ms on 100% of inbound requests "
            "at 50% of checkout pods on node-2",
        ),
        (
            {"type": "abort", "status": 503, "percent": 25, "target": TARGET},
            "abort with HTTP 503 on 25% of inbound requests at checkout replica 0",
        ),
        (
            {"type": "crash", "target": {"node": "node-1", "setups": ["ambient"]}},
            "crash (SIGKILL) the proxy of every pod on node-1 (ambient only) once",
        ),
        (
            {"type": "cert-expiry", "ttl": "5s", "target": TARGET},
            "certificate of checkout replica 0 expires after 5s with rotation blocked",
        ),
        (
            {"type": "control-plane-outage", "cert_ttl": "4s", "target": TARGET},
            "control plane (CA and config push) down for checkout replica 0 (certs live 4s)",
        ),
        (
            {"type": "policy-desync", "target": {"service": "frontend"}},
            "signing key rotated, stale key set at every frontend replica",
        ),
    ],
)
def test_fault_summary(data: dict[str, Any], summary: str) -> None:
    assert FAULT.validate_python(data).summary() == summary


def test_fault_union_picks_the_model_by_type() -> None:
    kinds = {
        "latency": LatencyFault,
        "abort": AbortFault,
        "cert-expiry": CertExpiryFault,
        "control-plane-outage": ControlPlaneOutageFault,
        "policy-desync": PolicyDesyncFault,
    }
    extra = {"latency": {"delay": 1}, "cert-expiry": {"ttl": 2}}
    for kind, model in kinds.items():
        fault = FAULT.validate_python({"type": kind, "target": TARGET, **extra.get(kind, {})})
        assert type(fault) is model


def test_models_are_frozen() -> None:
    target = Target.model_validate(TARGET)
    with pytest.raises(ValidationError):
        target.replica = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        {"service": "checkout", "replica": 0, "share": 0.5},
        {"replica": 0},
        {},
        {"service": "checkout", "setups": ["mesh", "mesh"]},
        {"service": "checkout", "share": 0},
        {"service": "Checkout"},
    ],
)
def test_target_rules(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Target.model_validate(data)
