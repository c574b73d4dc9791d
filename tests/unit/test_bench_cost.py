"""The cost bench's rows: bounds applied, Istio's figures kept apart from ours."""

from __future__ import annotations

import numpy as np
import pytest

from chaos.bench.cost import CostBench, _pearson, ordering, render


def _bench(node_proxy_cpu: float) -> CostBench:
    return CostBench(
        rate=200.0,
        sampling_core_share=0.004,
        per_window_cpu={
            "sidecar": [2.0, 2.1, 1.9, 2.0, 2.05],
            "ambient": [1.0, 1.5, 1.0, 1.0, 1.0],
        },
        spread={"sidecar": 0.05, "ambient": 0.33},
        raw_spread={"sidecar": 0.15, "ambient": 0.40},
        tick_spread={"sidecar": 0.12, "ambient": 0.40},
        load={"sidecar": (9.5, 11.2), "ambient": (10.0, 12.0)},
        kinds={
            "waypoint (ambient)": (0.30, 25.0),
            "sidecar (sidecar)": (0.20, 24.0),
            "node-proxy (ambient)": (node_proxy_cpu, 25.0),
        },
        added_ms={"sidecar": (2.0, 3.0), "ambient": (1.0, 1.5)},
        offered={"sidecar": True, "ambient": True},
        slice_r={"sidecar": 0.93},
    )


def test_the_istio_ordering_is_recognised_and_a_swap_is_said() -> None:
    assert "(same order)" in ordering(_bench(0.05))[0]
    assert "(not Istio's order)" in ordering(_bench(0.5))[0]
    assert "same order" in ordering(_bench(0.05))[1]  # ambient adds less than sidecars


def test_rows_apply_the_bounds_and_never_call_a_local_proxy_ztunnel() -> None:
    text = "\n".join(render(_bench(0.05)))
    assert "| sampling overhead | 0.40 % of one core | < 1 % | ok |" in text
    assert "repeatability ambient" in text and "OVER" in text
    # Each setup's spread is given with the machine's load average during its windows.
    sidecar = next(line for line in text.splitlines() if "repeatability sidecar" in line)
    assert "max deviation 5.0 %" in sidecar and "in 10 ms ticks 12.0 %" in sidecar
    assert "load average 9.5-11.2" in sidecar and sidecar.endswith("| ok |")
    assert "raw 15.0 %" in sidecar and "r = 0.93" in sidecar
    local = ordering(_bench(0.05))[0].split("; local ", 1)[1]
    assert "ztunnel" not in local and "node proxy (an Envoy)" in local
    assert "Istio's, not ours" in text


def test_slices_correlate_when_the_machine_speed_moves_proxies_and_apps_alike() -> None:
    speed = np.linspace(0.8, 1.4, 8)
    assert _pearson([(2.0 * v, 1.0 * v) for v in speed]) == pytest.approx(1.0)
    assert _pearson([(2.0, 1.0 * v) for v in speed]) is None  # proxies flat: undefined
    assert _pearson([(2.0, 1.0), (2.0, 1.1)]) is None  # too few slices
