"""Locust traffic in its own processes, and the per-request samples it records.

The main process uses :class:`TrafficRun`; nothing here imports locust (the Locust
side lives in ``recorder.py`` and ``locustfile.py``). The samples' format is the
run directory's contract: :mod:`chaos.rundir.samples`.

The names below are loaded when first used, so that importing a submodule (the CLI
reads :mod:`chaos.traffic.config` to validate a file) does not load the runner and
numpy with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.traffic.config import Endpoint, TrafficConfig
    from chaos.traffic.live import LiveStats
    from chaos.traffic.runner import TrafficRun

__all__ = ["Endpoint", "LiveStats", "TrafficConfig", "TrafficRun"]

_HOMES = {
    "Endpoint": "chaos.traffic.config",
    "TrafficConfig": "chaos.traffic.config",
    "LiveStats": "chaos.traffic.live",
    "TrafficRun": "chaos.traffic.runner",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
