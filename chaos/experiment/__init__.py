"""Experiment files: typed models, loading with line numbers, overrides, JSON Schema.

The only package that reads experiment YAML. Public API::

    load_experiment(path, overrides=(), setups=()) -> Experiment
    experiment_json_schema() -> dict
    parse_duration("1m30s") -> 90.0

Every problem raises ``chaos.errors.SpecError`` (one line: ``FILE:LINE: FIELD: MESSAGE``),
or ``SpecErrorGroup`` (a ``SpecError``; one line per problem) when there are several.
"""

from __future__ import annotations

from chaos.experiment._base import ALL_SETUPS, SETUP_NAMES, Setup, SetupName
from chaos.experiment.durations import (
    CertLifetime,
    Duration,
    NonNegativeDuration,
    format_duration,
    parse_duration,
)
from chaos.experiment.faults import (
    FAULT_TYPES,
    AbortFault,
    CertExpiryFault,
    ControlPlaneOutageFault,
    CrashFault,
    DelayDistribution,
    Direction,
    Fault,
    LatencyFault,
    NormalDelay,
    PolicyDesyncFault,
    PolicyMismatchFault,
    Target,
    UniformDelay,
)
from chaos.experiment.loader import experiment_json_schema, load_experiment
from chaos.experiment.models import (
    Endpoint,
    ErrorRateAbove,
    Experiment,
    P95Above,
    SteadyState,
    StopCondition,
    Timeline,
    Traffic,
)
from chaos.experiment.source import SpecErrorGroup

__all__ = [
    "ALL_SETUPS",
    "FAULT_TYPES",
    "SETUP_NAMES",
    "AbortFault",
    "CertExpiryFault",
    "CertLifetime",
    "ControlPlaneOutageFault",
    "CrashFault",
    "DelayDistribution",
    "Direction",
    "Duration",
    "Endpoint",
    "ErrorRateAbove",
    "Experiment",
    "Fault",
    "LatencyFault",
    "NonNegativeDuration",
    "NormalDelay",
    "P95Above",
    "PolicyDesyncFault",
    "PolicyMismatchFault",
    "Setup",
    "SetupName",
    "SpecErrorGroup",
    "SteadyState",
    "StopCondition",
    "Target",
    "Timeline",
    "Traffic",
    "UniformDelay",
    "experiment_json_schema",
    "format_duration",
    "load_experiment",
    "parse_duration",
]
