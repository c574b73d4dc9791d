"""How much proxy counters (Envoy admin stats, supervisor restarts) rose during a window.

Counters are cumulative but start again at zero when a proxy restarts (which is
exactly what a crash fault does), so the rise is summed step by step and a drop
counts as a reset: the new value is all rise since the restart (the same rule as
Prometheus' ``increase``). The rise is counted from the last reading at or before
injection to the last reading before the window's end, so its resolution is the
sampling interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from chaos.analysis.model import CounterDeltas, FaultWindow
from chaos.rundir.counters import CounterSample

#: Stat names (suffixes after a dot, or the whole name) counted in each category.
RETRY_STATS: tuple[str, ...] = ("upstream_rq_retry",)
#: Retries not made because the circuit breaker's ``max_retries`` was reached.
RETRY_OVERFLOW_STATS: tuple[str, ...] = ("upstream_rq_retry_overflow",)
TLS_FAILURE_STATS: tuple[str, ...] = (
    "ssl.fail_verify_error",
    "ssl.connection_error",
    "ssl.fail_verify_san",
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_cert_hash",
)
EJECTION_STATS: tuple[str, ...] = ("outlier_detection.ejections_enforced_total",)
CONNECT_FAILURE_STATS: tuple[str, ...] = ("upstream_cx_connect_fail",)
RESTART_STATS: tuple[str, ...] = ("restarts",)

COUNTER_COLUMNS: tuple[str, ...] = ("t", "proxy", "name", "value")


def counter_frame(samples: Sequence[CounterSample]) -> pd.DataFrame:
    """Counter readings as a frame (columns ``t``, ``proxy``, ``name``, ``value``)."""
    return pd.DataFrame(
        {
            "t": np.array([s.t for s in samples], dtype=np.float64),
            "proxy": pd.Series([s.proxy for s in samples], dtype="str"),
            "name": pd.Series([s.name for s in samples], dtype="str"),
            "value": np.array([s.value for s in samples], dtype=np.float64),
        }
    )


def _matches(name: str, stats: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in stats)


def counter_deltas(
    counter_samples: Sequence[CounterSample] | pd.DataFrame, window: FaultWindow
) -> CounterDeltas:
    """The rise of every counter over ``[inject_t, end_t]``, summed into categories.

    Retries are reported as the proxies counted them, next to (never subtracted
    from) the failures clients saw; see ``CounterDeltas``.
    """
    frame = (
        counter_samples
        if isinstance(counter_samples, pd.DataFrame)
        else counter_frame(counter_samples)
    )
    frame = frame[frame["t"] <= window.end_t]
    if frame.empty:
        return CounterDeltas()
    frame = frame.sort_values(["proxy", "name", "t"], kind="stable")
    value = frame["value"].to_numpy(dtype=np.float64)
    group = frame.groupby(["proxy", "name"], sort=False).ngroup().to_numpy()
    step = np.diff(value, prepend=np.nan)
    rise = np.where(step >= 0, step, value)  # a drop is a restart: everything since is new
    first_of_group = np.r_[True, group[1:] != group[:-1]]
    rise[first_of_group] = 0.0
    rise[frame["t"].to_numpy(dtype=np.float64) < window.inject_t] = 0.0
    frame = frame.assign(rise=rise)
    totals = frame.groupby(["proxy", "name"], sort=True)["rise"].sum()
    by_counter: dict[str, int] = {}
    categories = {
        "retries": RETRY_STATS,
        "retry_overflows": RETRY_OVERFLOW_STATS,
        "tls_failures": TLS_FAILURE_STATS,
        "ejections": EJECTION_STATS,
        "connect_failures": CONNECT_FAILURE_STATS,
        "restarts": RESTART_STATS,
    }
    sums = dict.fromkeys(categories, 0)
    for key, total in totals.items():
        proxy, name = str(key[0]), str(key[1])  # type: ignore[index]
        rise_count = round(float(total))
        by_counter[f"{proxy}:{name}"] = rise_count
        for category, stats in categories.items():
            if _matches(name, stats):
                sums[category] += rise_count
    return CounterDeltas(**sums, by_counter=by_counter)
