"""The driver-cost measurement runs end to end (real Envoy, real Locust) and loses nothing.

Numbers are the bench's business (``python -m chaos.bench.driver``); this only checks
that the measurement works and that every request Envoy answered is a sample.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from chaos.bench.driver import DriverSpec, measure_driver_cost, render, to_json
from chaos.bench.target import process_cpu_s

pytestmark = pytest.mark.timeout(240)


def test_process_cpu_counts_this_process() -> None:
    before = process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert process_cpu_s(os.getpid()) > before


def test_plain_and_driver_are_measured_side_by_side(tmp_path: Path) -> None:
    drivers = (
        DriverSpec("plain", "plain", users=5, rate=200.0),
        DriverSpec("plain open", "plain-open", users=5, rate=200.0),
        DriverSpec(
            "driver", "driver", users=5, rate=200.0, baseline="plain open", reference="plain"
        ),
        DriverSpec("driver off", "driver", users=5, rate=200.0, baseline="plain", record=False),
    )
    report = measure_driver_cost(1.0, 2, drivers=drivers, work_dir=tmp_path)
    assert [c.name for c in report.generators] == ["plain", "plain open", "driver", "driver off"]
    for cost in report.generators:
        assert [r.round for r in cost.runs] == [0, 1]
        for run in cost.runs:
            assert run.requests > 50, run  # about 200 in the second
            assert run.cpu_s > 0 and math.isfinite(cost.cpu_us_per_request)
    plain, plain_open, driver, off = report.generators
    assert off.samples_recorded is None and off.samples_lost is None
    assert len(report.round_ratios("driver")) == 2
    assert plain.samples_lost is None and report.ratio("plain") is None
    assert driver.samples_lost == 0, driver.runs  # every request Envoy answered is a sample
    assert driver.samples_recorded == driver.requests_sent > 0
    ratio = report.ratio("driver")
    assert ratio == driver.cpu_us_per_request / plain_open.cpu_us_per_request
    reference = report.reference_ratio("driver")
    assert reference == driver.cpu_us_per_request / plain.cpu_us_per_request
    assert report.samples_lost == 0
    table = render(report)
    assert "driver vs plain:" in table and "load average" in table
    assert to_json(report)["generators"][2]["samples_lost"] == 0  # type: ignore[index]
    assert "taking turns" in table
