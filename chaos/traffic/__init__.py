"""Locust traffic in its own processes, and the per-request samples it records.

The main process uses :class:`TrafficRun` and :func:`load_samples`; nothing here
imports locust (the Locust side lives in ``recorder.py`` and ``locustfile.py``).
"""

from __future__ import annotations

from chaos.traffic.config import Endpoint, TrafficConfig
from chaos.traffic.errorkind import ERROR_KINDS
from chaos.traffic.live import LiveStats
from chaos.traffic.runner import TrafficRun
from chaos.traffic.samples import SAMPLE_COLUMNS, SAMPLE_DTYPES, load_samples, samples_dir

__all__ = [
    "ERROR_KINDS",
    "SAMPLE_COLUMNS",
    "SAMPLE_DTYPES",
    "Endpoint",
    "LiveStats",
    "TrafficConfig",
    "TrafficRun",
    "load_samples",
    "samples_dir",
]
