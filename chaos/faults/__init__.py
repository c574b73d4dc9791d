"""Faults: one module per kind, each a pure plan plus apply, verify and revert.

Kinds register through the ``sidecar_chaos.faults`` entry point group and load
lazily by name; the built-ins register the same way (see ``pyproject.toml``).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from chaos.errors import InputError

ENTRY_POINT_GROUP = "sidecar_chaos.faults"
#: The built-ins, used when the package metadata is not installed (a source checkout).
BUILTIN = {
    "latency": "chaos.faults.http:LatencyFaultDriver",
    "abort": "chaos.faults.http:AbortFaultDriver",
    "crash": "chaos.faults.crash:CrashFaultDriver",
    "cert-expiry": "chaos.faults.identity:CertExpiryFaultDriver",
    "control-plane-outage": "chaos.faults.identity:ControlPlaneOutageFaultDriver",
    "policy-desync": "chaos.faults.identity:PolicyDesyncFaultDriver",
}


def driver_for(fault_type: str) -> type:
    """The fault class registered for ``fault_type``."""
    target = next(
        (ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == fault_type),
        BUILTIN.get(fault_type),
    )
    if target is None:
        raise InputError(f"no fault of type {fault_type!r} is registered")
    module, _, attr = target.partition(":")
    loaded: type = getattr(import_module(module), attr)
    return loaded
