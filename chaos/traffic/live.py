"""Cheap live statistics over the last second, read from the sample files as they grow.

Freshness: the Locust processes write a chunk at least every 0.25 s
(:data:`chaos.rundir.chunks.DEFAULT_MAX_AGE_S`), so the window is the second of
request *completions* that ended between 1.25 s and 0.25 s ago; every request that
finished in it has been written. A request still in flight (a timeout to come) is
counted when it ends, not when it started.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from chaos.rundir.chunks import DEFAULT_MAX_AGE_S, SUFFIX, ChunkTail
from chaos.rundir.samples import DROPPED

WINDOW_S = 1.0
LAG_S = DEFAULT_MAX_AGE_S
_KEEP_S = 5.0
#: ``error_kind`` of a request the app never answered.
_NO_ANSWER = np.array(["connect", "reset", "tls", "timeout"], dtype=object)


@dataclass(frozen=True)
class LiveStats:
    """Requests that completed in ``[window_start, window_end)`` (monotonic seconds)."""

    window_start: float
    window_end: float
    requests: int
    errors: int
    p95_ms: float | None
    #: Of ``errors``: answered 401 or 403 (a token or a policy refused them).
    denied: int = 0
    #: Of ``errors``: no answer from the app (connect, reset, TLS, timeout) or a 503.
    unavailable: int = 0

    @property
    def error_rate(self) -> float:
        """Errors over requests; 0 when there were none."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        """Completed requests per second in the window."""
        return self.requests / (self.window_end - self.window_start)


class LiveTail:
    """Follows every sample file in a directory and keeps the last few seconds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._tails: dict[Path, ChunkTail] = {}
        self._done = np.empty(0, dtype=np.float64)
        self._latency = np.empty(0, dtype=np.float64)
        self._failed = np.empty(0, dtype=bool)
        self._denied = np.empty(0, dtype=bool)
        self._unavailable = np.empty(0, dtype=bool)

    def _ingest(self) -> None:
        if self.directory.is_dir():
            for path in self.directory.glob(f"*{SUFFIX}"):
                self._tails.setdefault(path, ChunkTail(path))
        done: list[npt.NDArray[np.float64]] = [self._done]
        latency: list[npt.NDArray[np.float64]] = [self._latency]
        failed: list[npt.NDArray[np.bool_]] = [self._failed]
        denied: list[npt.NDArray[np.bool_]] = [self._denied]
        unavailable: list[npt.NDArray[np.bool_]] = [self._unavailable]
        for tail in self._tails.values():
            for chunk in tail.read_new():
                sent = chunk.error_kind != DROPPED  # never sent: neither done nor failed
                done.append(chunk.t[sent] + chunk.latency_ms[sent] / 1000.0)
                latency.append(chunk.latency_ms[sent])
                failed.append(chunk.error_kind[sent] != "")
                status = chunk.status[sent]
                denied.append((status == 401) | (status == 403))
                kinds = chunk.error_kind[sent]
                unavailable.append((status == 503) | np.isin(kinds, _NO_ANSWER))
        self._done = np.concatenate(done)
        self._latency = np.concatenate(latency)
        self._failed = np.concatenate(failed)
        self._denied = np.concatenate(denied)
        self._unavailable = np.concatenate(unavailable)

    def stats(self, now: float | None = None) -> LiveStats:
        """Statistics of the last complete second before ``now`` (default: the clock)."""
        now = time.monotonic() if now is None else now
        self._ingest()
        keep = self._done >= now - _KEEP_S
        self._done, self._latency, self._failed = (
            self._done[keep],
            self._latency[keep],
            self._failed[keep],
        )
        self._denied, self._unavailable = self._denied[keep], self._unavailable[keep]
        end = now - LAG_S
        start = end - WINDOW_S
        inside = (self._done >= start) & (self._done < end)
        count = int(inside.sum())
        p95 = float(np.percentile(self._latency[inside], 95)) if count else None
        if p95 is not None and not math.isfinite(p95):
            p95 = None
        return LiveStats(
            window_start=start,
            window_end=end,
            requests=count,
            errors=int(self._failed[inside].sum()),
            p95_ms=p95,
            denied=int(self._denied[inside].sum()),
            unavailable=int(self._unavailable[inside].sum()),
        )
