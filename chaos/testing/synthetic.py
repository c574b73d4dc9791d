"""Synthetic samples whose truth is known by construction, for tests and benchmarks.

The shipped fake of the traffic recorder: requests at a steady rate with
log-normal latency, plus outages (every request sent inside fails), slowdowns
(every request sent inside takes longer) and hangs (requests sent inside wait
for a timeout, and nobody sends until it fires, as closed-loop users do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Outage:
    """Every request sent in ``[start, stop)`` fails fast with ``error_kind``."""

    start: float
    stop: float
    error_kind: str = "http"
    status: int = 503
    latency_ms: float = 0.5


@dataclass(frozen=True)
class Slowdown:
    """Every request sent in ``[start, stop)`` takes ``added_ms`` longer."""

    start: float
    stop: float
    added_ms: float


@dataclass(frozen=True)
class Hang:
    """Nothing is sent in ``[start, stop)`` but requests at ``start`` that time out at ``stop``."""

    start: float
    stop: float
    users: int = 20


def synthetic_samples(
    start: float,
    stop: float,
    rate_rps: float,
    *,
    seed: int = 0,
    median_latency_ms: float = 4.0,
    background_error_rate: float = 0.0,
    outages: Sequence[Outage] = (),
    slowdowns: Sequence[Slowdown] = (),
    hangs: Sequence[Hang] = (),
    write_every: int = 0,
    endpoint: str = "/api/orders",
) -> pd.DataFrame:
    """Samples sent over ``[start, stop)`` at ``rate_rps`` (jittered within each slot).

    Every ``write_every``-th request (0: none) is a POST to ``/payments`` with a
    write id ``w<i>``.
    """
    rng = np.random.default_rng(seed)
    n = math.floor((stop - start) * rate_rps + 1e-9)
    t = start + (np.arange(n) + rng.uniform(0.0, 1.0, n)) / rate_rps
    latency = rng.lognormal(np.log(median_latency_ms), 0.25, n)
    kind = np.where(rng.random(n) < background_error_rate, "http", "").astype(object)
    status = np.where(kind == "http", 500, 200)
    for s in slowdowns:
        inside = (t >= s.start) & (t < s.stop)
        latency[inside] += s.added_ms
    for o in outages:
        inside = (t >= o.start) & (t < o.stop)
        latency[inside] = o.latency_ms
        kind[inside] = o.error_kind
        status[inside] = o.status
    keep = np.ones(n, dtype=bool)
    for h in hangs:
        keep &= ~((t >= h.start) & (t < h.stop))
    t, latency, kind, status = t[keep], latency[keep], kind[keep], status[keep]
    writes = np.zeros(len(t), dtype=bool)
    if write_every:
        writes[::write_every] = True
    write_id = np.where(writes, [f"w{i}" for i in range(len(t))], "")
    frame = pd.DataFrame(
        {
            "t": t,
            "endpoint": np.where(writes, "/payments", endpoint),
            "method": np.where(writes, "POST", "GET"),
            "latency_ms": latency,
            "status": status.astype(np.int64),
            "error_kind": pd.Series(kind, dtype="str"),
            "write_id": write_id,
        }
    )
    stuck = [
        pd.DataFrame(
            {
                "t": np.full(h.users, h.start),
                "endpoint": endpoint,
                "method": "GET",
                "latency_ms": np.full(h.users, (h.stop - h.start) * 1000.0),
                "status": np.zeros(h.users, dtype=np.int64),
                "error_kind": "timeout",
                "write_id": "",
            }
        )
        for h in hangs
    ]
    frame = pd.concat([frame, *stuck], ignore_index=True) if stuck else frame
    return frame.sort_values("t", kind="stable").reset_index(drop=True)
