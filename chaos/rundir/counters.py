"""``counters.csv``: proxy counters sampled during each window (``t, proxy, name, value``)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chaos.rundir import COUNTERS_FILE


@dataclass(frozen=True)
class CounterSample:
    """One reading of a cumulative proxy counter (an Envoy stat, or restarts).

    ``name`` is the stat name, full (``cluster.payments.upstream_rq_retry``) or short
    (``upstream_rq_retry``); restarts are a cumulative counter named ``restarts``.
    """

    t: float
    proxy: str
    name: str
    value: float


def append_counters(run_dir: Path, samples: Iterable[CounterSample]) -> None:
    """Append readings to ``counters.csv`` in the run directory."""
    path = run_dir / COUNTERS_FILE
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["t", "proxy", "name", "value"])
        writer.writerows((s.t, s.proxy, s.name, s.value) for s in samples)


def read_counters(run_dir: Path) -> list[CounterSample]:
    """Every reading in ``counters.csv`` (none when the file is missing)."""
    path = run_dir / COUNTERS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            CounterSample(float(row["t"]), row["proxy"], row["name"], float(row["value"]))
            for row in csv.DictReader(handle)
        ]
