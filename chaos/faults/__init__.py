"""Faults: one module per kind, each a pure plan plus apply, verify and revert.

Kinds register through the ``sidecar_chaos.faults`` entry point group and load
lazily by name; the built-ins register the same way (see ``pyproject.toml``).
"""

from __future__ import annotations

from chaos import plugins


def driver_for(fault_type: str) -> type:
    """The fault class registered for ``fault_type``."""
    loaded = plugins.load(plugins.FAULTS, fault_type, "fault of type")
    if not isinstance(loaded, type):
        raise TypeError(f"fault {fault_type!r} is registered as {loaded!r}, not a class")
    return loaded
