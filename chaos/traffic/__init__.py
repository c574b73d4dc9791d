"""Locust traffic in its own processes, and the per-request samples it records.

The main process uses :class:`TrafficRun`; nothing here imports locust (the Locust
side lives in ``recorder.py`` and ``locustfile.py``). The samples' format is the
run directory's contract: :mod:`chaos.rundir.samples`.
"""

from __future__ import annotations

from chaos.traffic.config import Endpoint, TrafficConfig
from chaos.traffic.live import LiveStats
from chaos.traffic.runner import TrafficRun

__all__ = ["Endpoint", "LiveStats", "TrafficConfig", "TrafficRun"]
