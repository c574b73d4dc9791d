"""Plugins by name: faults and platforms register as entry points and load lazily.

The built-ins register the same way (``pyproject.toml``), so the package's
metadata is the one list of what exists; nothing repeats it in code.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from chaos.errors import InputError

FAULTS = "sidecar_chaos.faults"
PLATFORMS = "sidecar_chaos.platforms"


def names(group: str) -> list[str]:
    """Every name registered in ``group``, sorted."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load(group: str, name: str, what: str) -> object:
    """The object registered as ``name`` in ``group``; ``what`` names the kind in errors."""
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        known = ", ".join(names(group)) or "none (is the package installed?)"
        raise InputError(f"no {what} {name!r} is registered (registered: {known})")
    module, _, attr = found[0].value.partition(":")
    loaded: object = getattr(import_module(module), attr)
    return loaded
