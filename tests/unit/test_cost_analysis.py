"""The cost figures from cost windows: per window first, then over windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_hypotheses import decide_cost, refuted_cost_lines
from chaos.analysis.cost_io import add_cost_to_results, read_cost_results
from chaos.experiment import Setup
from chaos.experiment.cost import CostHypothesis, CostStep
from chaos.rundir import SAMPLES_DIR
from chaos.rundir.chunks import encode_chunk
from chaos.rundir.cost import CostWindowRecord, ProcessCost, ProxyKind, append_cost
from chaos.rundir.samples import DROPPED

RATE = 100.0
HOLD = 4.0


def _proc(name: str, kind: ProxyKind, cpu_s: float, pss_mb: float, pod: str = "") -> ProcessCost:
    return ProcessCost(
        name, kind, pod, "node-1", 10, 1, cpu_s, int(pss_mb * 1e6), int(2 * pss_mb * 1e6)
    )


def _window(
    run_dir: Path,
    setup: str,
    repetition: int,
    extra_ms: float,
    *,
    dropped: int = 0,
    broken: str = "",
    slow: float = 1.0,
    app_cpu_s: float = 0.2,
) -> None:
    start = 1000.0 * repetition + (0 if setup == "baseline" else 100)
    record = CostWindowRecord(
        setup,
        RATE,
        repetition,
        start,
        start + HOLD,
        processes=(
            _proc("frontend-0.app", ProxyKind.APP, app_cpu_s * slow, 30, pod="frontend-0"),
            _proc("ingress", ProxyKind.INGRESS, 0.1 * slow, 20),
            *(
                ()
                if setup == "baseline"
                else (
                    _proc("frontend-0.proxy", ProxyKind.SIDECAR, 0.4 * slow, 25, pod="frontend-0"),
                )
            ),
        ),
        broken=broken,
        pods=1,
        nodes=1,
        services=1,
        sampling_cpu_s=0.004,
    )
    append_cost(run_dir, record)
    n = int(RATE * HOLD)
    t = start + np.arange(n) / RATE
    rng = np.random.default_rng(repetition)
    latency = 5.0 + extra_ms + rng.uniform(0, 1, n)
    kinds = [DROPPED if i < dropped else "" for i in range(n)]
    path = run_dir / SAMPLES_DIR / record.slug / "samples-1-x.chs"
    path.parent.mkdir(parents=True)
    strings = {
        "endpoint": ["root"] * n,
        "method": ["GET"] * n,
        "error_kind": kinds,
        "write_id": [""] * n,
    }
    path.write_bytes(encode_chunk(t.tolist(), latency.tolist(), [200] * n, strings))


def test_latency_added_cpu_per_1k_and_memory(tmp_path: Path) -> None:
    for repetition in (1, 2, 3):
        _window(tmp_path, "baseline", repetition, 0.0)
        _window(tmp_path, "sidecar", repetition, 3.0)
    _window(tmp_path, "sidecar", 4, 50.0, broken="ingress restarted mid-measurement")
    cost = analyze_cost(tmp_path)
    assert cost is not None
    sidecar = cost.of("sidecar", RATE)
    assert sidecar is not None
    assert (sidecar.windows, sidecar.broken, sidecar.offered) == (3, 1, True)
    added = sidecar.added_ms["p50"]
    assert added.mean == pytest.approx(3.0, abs=0.3)
    assert added.low is not None and added.high is not None and added.low <= 3.0 <= added.high + 0.3
    # 400 requests sent: 0.4 CPU-s for the sidecar is 1 CPU-s per 1,000 requests.
    assert sidecar.cpu_per_1k[ProxyKind.SIDECAR.value].median == pytest.approx(1.0)
    assert sidecar.proxy_cpu_per_1k.median == pytest.approx(1.25)  # sidecar + ingress
    assert sidecar.pss_mb[ProxyKind.SIDECAR.value].median == pytest.approx(25.0)
    assert sidecar.pod_pss_mb.median == pytest.approx(55.0)  # app + its sidecar
    growth = {g.setup: g for g in cost.growth}["sidecar"]
    assert growth.per_pod_mb == pytest.approx(25.0)
    assert dict(growth.projection)[500] == pytest.approx(20.0 + 500 * 25.0)
    assert cost.sampling_core_share == pytest.approx(0.001)
    add_cost_to_results(tmp_path, cost)
    stored = read_cost_results(tmp_path)
    assert stored is not None and len(stored["setups"]) == 2


def test_a_window_where_the_machine_ran_slower_is_taken_at_the_median_speed(
    tmp_path: Path,
) -> None:
    # Window 2: every process, the app too, used 40 % more CPU for the same requests
    # (what a slower machine does); window 3 ran 10 % faster.
    for repetition, slow in ((1, 1.0), (2, 1.4), (3, 0.9)):
        _window(tmp_path, "sidecar", repetition, 0.0, slow=slow)
    adjusted = analyze_cost(tmp_path)
    raw = analyze_cost(tmp_path, cpu="raw")
    assert adjusted is not None and raw is not None
    assert (adjusted.cpu, raw.cpu, adjusted.cpu_notes) == ("speed-adjusted", "raw", ())
    # 400 requests: sidecar 0.4 CPU-s and ingress 0.1 CPU-s are 1.25 CPU-s per 1,000.
    per_window = [sum(v for k, v in w.cpu_per_1k.items() if k != "app") for w in adjusted.windows]
    assert per_window == pytest.approx([1.25, 1.25, 1.25])
    assert [w.speed for w in adjusted.windows] == pytest.approx([1.0, 1.4, 0.9])
    raw_window = [sum(v for k, v in w.cpu_per_1k.items() if k != "app") for w in raw.windows]
    assert raw_window == pytest.approx([1.25, 1.75, 1.125])
    sidecar, as_read = adjusted.of("sidecar", RATE), raw.of("sidecar", RATE)
    assert sidecar is not None and as_read is not None
    assert sidecar.proxy_cpu_per_1k.median == pytest.approx(1.25)
    assert sidecar.raw_proxy_cpu_per_1k.median == pytest.approx(1.25)  # the median stays
    assert sidecar.proxy_cpu_per_1k.high - sidecar.proxy_cpu_per_1k.low == pytest.approx(0.0)
    assert as_read.proxy_cpu_per_1k.high - as_read.proxy_cpu_per_1k.low > 0.5


def test_windows_without_the_apps_cpu_stay_raw_and_say_so(tmp_path: Path) -> None:
    for repetition, slow in ((1, 1.0), (2, 1.4)):
        _window(tmp_path, "sidecar", repetition, 0.0, slow=slow, app_cpu_s=repetition - 1)
    cost = analyze_cost(tmp_path)
    assert cost is not None
    per_window = [sum(v for k, v in w.cpu_per_1k.items() if k != "app") for w in cost.windows]
    assert per_window == pytest.approx([1.25, 1.75])
    assert cost.cpu_notes == (
        "sidecar at 100 rps: raw CPU (window 1 shows no CPU of the apps to tell the "
        "machine's speed by)",
    )


def test_a_rate_the_driver_could_not_offer_is_marked_not_lowered(tmp_path: Path) -> None:
    for repetition in (1, 2):
        _window(tmp_path, "baseline", repetition, 0.0, dropped=40)  # 10 % never sent
    cost = analyze_cost(tmp_path)
    assert cost is not None
    baseline = cost.of("baseline", RATE)
    assert baseline is not None
    assert baseline.offered is False
    assert baseline.rate == RATE  # the figure stays at the rate asked for
    assert baseline.achieved_rps == pytest.approx(90.0)


def test_no_cost_step_no_figures(tmp_path: Path) -> None:
    assert analyze_cost(tmp_path) is None


def test_cost_hypotheses_are_decided_over_windows(tmp_path: Path) -> None:
    for repetition in (1, 2, 3, 4):
        _window(tmp_path, "baseline", repetition, 0.0)
        _window(tmp_path, "sidecar", repetition, 3.0 + 0.1 * repetition)
    cost = analyze_cost(tmp_path)
    assert cost is not None
    step = CostStep(
        rates=(RATE,),
        repetitions=4,
        hypotheses=(
            CostHypothesis(
                metric="proxy_memory",
                setup=Setup.SIDECAR,
                compared_to=Setup.BASELINE,
                expect="higher",
            ),
            CostHypothesis(
                metric="added_latency_p99",
                setup=Setup.SIDECAR,
                compared_to=Setup.BASELINE,
                expect="lower",
            ),
            CostHypothesis(
                metric="proxy_cpu_per_1k_requests",
                setup=Setup.SIDECAR,
                compared_to=Setup.BASELINE,
                expect="equivalent",
                margin=5.0,  # CPU-s per 1,000 requests: the 1.0 added is within it
            ),
        ),
    )
    decisions = decide_cost(cost, step)
    assert [d.outcome for d in decisions] == ["supported", "refuted", "equivalent"]
    memory = decisions[0]
    assert memory.difference == pytest.approx(25.0)  # the sidecar's PSS, all else alike
    assert (memory.n_setup, memory.n_compared, memory.unit) == (4, 4, "MB")
    assert refuted_cost_lines(decisions)[0].startswith("cost-hypothesis-2: ")
