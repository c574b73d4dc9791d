"""The soak, 2 minutes long: the runner's memory over the hold, every request recorded, a report.

``make soak`` runs the same for 30 minutes (``chaos.bench.soak``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.bench.soak import SoakPlan, run_soak, slope_mb_per_hour

pytestmark = pytest.mark.slow

#: A 2-minute hold is too short to tell a slow leak from the runner's warm-up: this bound
#: catches a fast one (10 MB or more over the measured 85 s); the 30-minute soak uses
#: 10 MB/h. Measured here with ``python -m chaos.bench.soak --minutes 2 --interval 30``: the
#: runner grows by about 2.9 MB over that window (+120 MB/h), with the same figure on the
#: code of the previous release, while 30 minutes gave +7.9 MB/h: warm-up, not a leak.
MAX_SLOPE_MB_PER_HOUR = 400.0


def test_a_two_minute_soak_loses_nothing_and_keeps_memory_flat(
    tmp_path: Path, free_slot: int
) -> None:
    plan = SoakPlan(minutes=2.0, rate=50.0, interval_s=30.0)
    assert plan.crashes == 4
    result = run_soak(plan, tmp_path / "soak", slot=free_slot, max_slope=MAX_SLOPE_MB_PER_HOUR)
    summary = "\n".join(result.lines())
    assert result.exit_code in (0, 1), summary
    assert result.sent > 50 * 90, summary  # the steady rate held through the crashes
    assert result.lost == 0, summary
    assert result.report, summary
    assert result.rss_points >= 60, summary
    assert result.slope_mb_per_hour is not None, summary
    assert result.ok, summary
    document = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert document["lost"] == 0 and document["ok"] is True


def test_the_slope_of_a_line_and_of_noise() -> None:
    line = [(float(t), 100.0 + t / 60.0) for t in range(120)]  # 1 MB a minute
    assert slope_mb_per_hour(line) == pytest.approx(60.0)
    flat = [(float(t), 100.0 + (0.5 if t % 2 else -0.5)) for t in range(120)]
    slope = slope_mb_per_hour(flat)
    assert slope is not None and abs(slope) < 1.0
    assert slope_mb_per_hour(line[:5]) is None
