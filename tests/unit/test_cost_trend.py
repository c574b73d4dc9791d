"""``trend`` flags a cost regression like a recovery one (same rule, cost's own floors)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaos.report import HistoryStore, render_trend
from chaos.report.history import RecordedRun
from chaos.report.trend_cost import cost_blocks, cost_regressions, cost_series
from chaos.rundir import RESULTS_FILE
from chaos.rundir.meta import RunMeta
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run


def _setup(setup: str, cpu: float, *, offered: bool = True, mb: float = 160.0) -> dict[str, object]:
    return {
        "setup": setup,
        "rate": 100.0,
        "offered": offered,
        "proxy_cpu_per_1k": {"median": cpu, "low": cpu, "high": cpu, "n": 3},
        "proxy_pss_mb": {"median": mb, "low": mb - 1, "high": mb + 1, "n": 3},
        "added_ms": {},
    }


def _run(
    tmp_path: Path,
    night: int,
    cpu: float,
    *,
    offered: bool = True,
    mb: float = 160.0,
    memory: str = "pss",
) -> RecordedRun:
    run_dir = tmp_path / f"night-{night}"
    run_dir.mkdir()
    setup = _setup("sidecar", cpu, offered=offered, mb=mb)
    cost = {"memory": memory, "setups": [setup]}
    (run_dir / RESULTS_FILE).write_text(json.dumps({"cost": cost}))
    meta = RunMeta("0", "1", "2", "3", 0, "nightly", "")
    started = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=night)
    return RecordedRun(f"run-{night}", str(run_dir), "nightly", started, 0, meta)


def test_a_cpu_jump_is_flagged_and_steady_memory_is_not(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, cpu) for n, cpu in enumerate([1.0, 1.02, 0.98, 1.01, 1.6])]
    (regression,) = cost_regressions(runs)
    assert (regression.setup, regression.fault, regression.metric) == (
        "sidecar",
        "cost@100rps",
        "proxy_cpu_per_1k_requests_proc",
    )
    assert regression.run_id == "run-4"
    assert "proxy CPU per 1,000 requests (/proc) 1.6 CPU-s vs recent median 1" in (
        regression.message
    )


def test_noise_and_a_rate_not_offered_are_not_regressions(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, cpu) for n, cpu in enumerate([1.0, 1.02, 0.98, 1.01, 1.1])]
    assert cost_regressions(runs) == []
    runs.append(_run(tmp_path, 9, 5.0, offered=False))
    assert cost_regressions(runs) == []


def test_a_switch_from_pss_to_the_working_set_is_a_new_series_not_a_regression(
    tmp_path: Path,
) -> None:
    # Four local nights (PSS 160 MB), then the same experiment on a cluster: the kubelet's
    # working set counts the shared Envoy pages in every container, 900 MB for the same proxies.
    runs = [_run(tmp_path, n, 1.0) for n in range(4)]
    runs.append(_run(tmp_path, 4, 1.0, mb=900.0, memory="working-set"))
    assert cost_regressions(runs) == []
    series = {s.metric: s for s in cost_series(runs) if s.metric.startswith("proxy_memory")}
    assert set(series) == {"proxy_memory_pss_mb", "proxy_memory_working_set_mb"}
    assert series["proxy_memory_pss_mb"].values == (160.0,) * 4
    assert series["proxy_memory_working_set_mb"].values == (900.0,)
    assert series["proxy_memory_working_set_mb"].check.threshold is None  # no history yet
    (block,) = cost_blocks(runs)
    assert "PSS MB latest" in block.headers and "working set MB latest" in block.headers
    assert len(block.headers) == len(block.rows[0])
    (row,) = block.rows
    pss, working_set = (block.headers.index(h) for h in ("PSS MB latest", "working set MB latest"))
    assert (row[pss], row[pss + 2]) == ("160", "–")  # its last point; no verdict: not this run's
    assert (row[working_set], row[working_set + 2]) == ("900", "–")  # no history yet
    assert row[-1] != "regression"
    # Working-set nights after it are judged against working-set nights only.
    more = [_run(tmp_path, n, 1.0, mb=900.0, memory="working-set") for n in range(5, 8)]
    jump = _run(tmp_path, 8, 1.0, mb=1400.0, memory="working-set")
    (regression,) = cost_regressions([*runs, *more, jump])
    assert regression.metric == "proxy_memory_working_set_mb"
    assert (regression.latest, regression.baseline) == (1400.0, 900.0)


def test_the_trend_page_shows_cost_series_per_setup_and_flags_a_cost_regression(
    tmp_path: Path,
) -> None:
    store = HistoryStore(tmp_path / "history.db")
    now = datetime.now(UTC)
    for night, cpu in enumerate([1.0, 1.02, 0.98, 1.01, 1.6]):
        spec = SyntheticRun(
            faults=(SyntheticFault("abort-checkout"),),
            repetitions=2,
            seed=night,
            started_utc=(now - timedelta(days=5 - night)).isoformat(timespec="seconds"),
        )
        run_dir = write_synthetic_run(tmp_path / f"night{night}", spec)
        results = json.loads((run_dir / RESULTS_FILE).read_text())
        results["cost"] = {
            "setups": [
                _setup("sidecar", cpu),
                _setup("ambient", 0.5),  # steady: no flag
            ]
        }
        (run_dir / RESULTS_FILE).write_text(json.dumps(results))
        store.record(run_dir)
    result = render_trend(store, timedelta(days=30), tmp_path / "trend.html", blocks=cost_blocks)
    flagged = [r for r in result.regressions if r.fault == "cost@100rps"]
    assert [(r.setup, r.metric) for r in flagged] == [("sidecar", "proxy_cpu_per_1k_requests_proc")]
    html = result.out.read_text()
    assert "synthetic / cost at 100rps" in html
    assert flagged[0].message in html  # in the page's regression list, as the CLI prints it
    rows = html.split("synthetic / cost at 100rps", 1)[1]
    sidecar = rows.split("<td>sidecar</td>", 1)[1].split("</tr>", 1)[0]
    ambient = rows.split("<td>ambient</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>1.6</td>" in sidecar and "regression" in sidecar
    assert "<td>0.5</td>" in ambient and "regression" not in ambient
    assert rows.count('<img class="chart"') == 2  # CPU and memory (no baseline: no p99 added)


def test_a_switch_from_local_to_kubernetes_cpu_is_a_new_series_not_a_regression(
    tmp_path: Path,
) -> None:
    # Four local nights at 1.0 CPU-s per 1,000 (/proc, the local Envoys), then the same
    # experiment on a cluster at 3.0 (the kubelet's CPU of Istio's proxies): not comparable.
    runs = [_run(tmp_path, n, 1.0) for n in range(4)]
    runs.append(_run(tmp_path, 4, 3.0, memory="working-set"))
    assert cost_regressions(runs) == []
    series = {s.metric: s for s in cost_series(runs) if s.metric.startswith("proxy_cpu")}
    assert set(series) == {"proxy_cpu_per_1k_requests_proc", "proxy_cpu_per_1k_requests_kubelet"}
    assert series["proxy_cpu_per_1k_requests_proc"].values == (1.0,) * 4
    assert series["proxy_cpu_per_1k_requests_kubelet"].values == (3.0,)
    assert series["proxy_cpu_per_1k_requests_kubelet"].check.threshold is None  # no history
    (block,) = cost_blocks(runs)
    local, kube = "CPU-s per 1,000 (/proc) latest", "CPU-s per 1,000 (kubelet) latest"
    assert len(block.headers) == len(block.rows[0])
    (row,) = block.rows
    assert (row[block.headers.index(local)], row[block.headers.index(kube)]) == ("1", "3")
    assert row[-1] != "regression"
    assert len(block.charts) == 4  # CPU and memory, each once per platform's measure
    # Cluster nights after it are judged against cluster nights only: a jump is flagged,
    # and the local nights' lower figures do not make a steady cluster look like one.
    more = [_run(tmp_path, n, 3.0, memory="working-set") for n in range(5, 8)]
    assert cost_regressions([*runs, *more]) == []
    jump = _run(tmp_path, 8, 4.5, memory="working-set")
    (regression,) = cost_regressions([*runs, *more, jump])
    assert regression.metric == "proxy_cpu_per_1k_requests_kubelet"
    assert (regression.latest, regression.baseline) == (4.5, 3.0)
    assert "(kubelet)" in regression.message


def test_a_local_only_history_has_only_the_proc_cpu_columns(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, cpu) for n, cpu in enumerate([1.0, 1.02, 0.98])]
    (block,) = cost_blocks(runs)
    assert "CPU-s per 1,000 (/proc) latest" in block.headers
    assert not any("kubelet" in h for h in block.headers)
    assert len(block.charts) == 2  # CPU and memory (PSS); no baseline: no p99 added
