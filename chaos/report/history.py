"""The history store, re-exported: it lives in ``chaos.history`` (light to import, for checks)."""

from __future__ import annotations

from chaos.history import (
    DEFAULT_HISTORY,
    SCHEMA_VERSION,
    HistoryStore,
    RecordedResult,
    RecordedRun,
    parse_utc,
)

__all__ = [
    "DEFAULT_HISTORY",
    "SCHEMA_VERSION",
    "HistoryStore",
    "RecordedResult",
    "RecordedRun",
    "parse_utc",
]
