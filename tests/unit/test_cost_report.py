"""The cost figures where users read them: the report's section and the pushed metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_io import add_cost_to_results
from chaos.report.cost import cost_view, notes_for
from chaos.report.prometheus import RunResults
from chaos.report.prometheus_cost import cost_metrics
from chaos.rundir import RESULTS_FILE
from chaos.testing.synthetic_run import SyntheticRun, write_synthetic_run
from tests.unit.test_cost_analysis import RATE, _window


class _Cost(Collector):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def collect(self) -> Iterator[Metric]:
        return cost_metrics(self.run_dir)


def _run(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for repetition in (1, 2):
        _window(tmp_path, "baseline", repetition, 0.0, dropped=40)
        _window(tmp_path, "sidecar", repetition, 3.0)
    cost = analyze_cost(tmp_path)
    assert cost is not None
    add_cost_to_results(tmp_path, cost)
    return tmp_path


def test_the_section_names_each_setup_and_a_rate_not_offered(tmp_path: Path) -> None:
    view = cost_view(_run(tmp_path))
    assert view is not None
    rows = {r.setup: r for r in view.rows}
    assert rows["baseline"].offered == "NOT OFFERED"  # 10 % of the schedule never sent
    assert rows["sidecar"].offered == "yes"
    assert rows["sidecar"].added_p99.startswith("+3.")
    assert "sidecar 1.000" in rows["sidecar"].per_kind_cpu
    assert len(view.charts) == 2 and "<svg" in view.charts[0]
    assert any("not ours" in note for note in view.notes)  # Istio's figures are Istio's
    assert any("ztunnel" in note for note in view.notes)


def test_no_cost_step_no_section(tmp_path: Path) -> None:
    assert cost_view(tmp_path) is None


def test_pushed_metrics_carry_the_figures(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Cost(_run(tmp_path)))
    text = generate_latest(registry).decode()
    rate = f"{RATE:g}"
    assert (
        'sidecar_chaos_cost_kind_cpu_seconds_per_1k_requests{basis="speed_adjusted",'
        f'estimate="median",kind="sidecar",rate="{rate}",setup="sidecar"}} 1.0'
    ) in text
    assert f'sidecar_chaos_cost_rate_offered{{rate="{rate}",setup="baseline"}} 0.0' in text
    # The totals: ingress 0.1 + sidecar 0.4 CPU-s over 400 requests; 20 + 25 MB in bytes.
    for basis in ("raw", "speed_adjusted"):  # an even machine: the two agree
        key = f'{{basis="{basis}",estimate="median",rate="{rate}",setup="sidecar"}}'
        assert f"sidecar_chaos_cost_proxy_cpu_seconds_per_1k_requests{key} 1.25" in text
    memory = f'{{estimate="median",measure="pss",rate="{rate}",setup="sidecar"}}'
    assert f"sidecar_chaos_cost_proxy_memory_bytes{memory} 4.5e+07" in text


def _exposition(run_dir: Path) -> str:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Cost(run_dir))
    return generate_latest(registry).decode()


def _as_kubernetes(run_dir: Path) -> Path:
    """The run as a Kubernetes run writes it: the kubelet's working set, not PSS."""
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    assert results["cost"]["memory"] == "pss"  # the local run's, from /proc
    results["cost"]["memory"] = "working-set"
    (run_dir / RESULTS_FILE).write_text(json.dumps(results))
    return run_dir


def test_every_memory_heading_says_which_memory_the_run_measured(tmp_path: Path) -> None:
    local = cost_view(_run(tmp_path / "local"))
    assert local is not None
    assert "proxy memory (PSS, MB) projected to N pods" in local.growth_chart
    assert "(PSS MB)" in local.charts[1]
    kube = cost_view(_as_kubernetes(_run(tmp_path / "kube")))
    assert kube is not None and kube.memory == "working set"
    assert "proxy memory (working set, MB) projected to N pods" in kube.growth_chart
    assert "(working set MB)" in kube.charts[1]
    assert not any("PSS" in chart for chart in (kube.growth_chart, *kube.charts))


def test_the_memory_metric_says_it_is_the_working_set_on_kubernetes(tmp_path: Path) -> None:
    text = _exposition(_as_kubernetes(_run(tmp_path)))
    rate = f"{RATE:g}"
    memory = f'{{estimate="median",measure="working_set",rate="{rate}",setup="sidecar"}}'
    assert f"sidecar_chaos_cost_proxy_memory_bytes{memory} 4.5e+07" in text
    assert 'measure="pss"' not in text and "memory_pss" not in text


def test_the_notes_say_what_the_memory_is_and_the_machines_load() -> None:
    local = notes_for({"memory": "pss", "load_avg": [3.2, 11.5]})
    assert any("PSS" in n for n in local)
    assert any("3.2 to 11.5" in n for n in local)
    kube = notes_for({"memory": "working-set", "load_avg": [0.0, 0.0]})
    assert any("working set" in n and "not PSS" in n for n in kube)
    assert not any("ztunnel, a Rust" in n for n in kube)  # the local caveats are not a cluster's


def test_the_dashboard_and_readme_name_only_cost_metrics_that_are_pushed(tmp_path: Path) -> None:
    # Names as the real client writes them (# TYPE lines), not as this test guesses them.
    text = _exposition(_run(tmp_path))
    pushed = set(re.findall(r"^# TYPE (sidecar_chaos_cost_\w+) gauge$", text, re.MULTILINE))
    assert "sidecar_chaos_cost_proxy_memory_bytes" in pushed
    root = Path(__file__).parents[2]
    dashboard = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []))
    queried = set(re.findall(r"sidecar_chaos_cost_\w+", exprs))
    listed = set(re.findall(r"sidecar_chaos_cost_[a-z0-9_]+", (root / "README.md").read_text()))
    assert queried and queried <= pushed, queried - pushed
    assert listed - {"sidecar_chaos_cost_"} <= pushed, listed - pushed
    assert listed >= pushed, pushed - listed  # every pushed family is in the README's list
    memory = next(p for p in dashboard["panels"] if "proxy_memory" in str(p.get("targets")))
    assert "{{measure}}" in memory["targets"][0]["legendFormat"]


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of one family as the Prometheus parser reads the exposition."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_promtool_accepts_the_whole_cost_exposition_and_the_runs(tmp_path: Path) -> None:
    """``promtool check metrics`` (Debian's ``prometheus`` package) lints what is pushed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")

    def check(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )

    # The check is live: this promtool refuses a gauge with a quantile label.
    bad = '# HELP x_seconds x.\n# TYPE x_seconds gauge\nx_seconds{quantile="0.99"} 1.0\n'
    refused = check(bad)
    assert refused.returncode != 0 and "quantile" in refused.stdout + refused.stderr
    for run_dir in (_run(tmp_path / "local"), _as_kubernetes(_run(tmp_path / "kube"))):
        text = _exposition(run_dir)
        assert "sidecar_chaos_cost_latency_seconds" in text
        result = check(text)
        assert result.returncode == 0, result.stdout + result.stderr
    # Everything a run pushes: its fault windows' results, its run metrics, its cost step.
    run_dir = write_synthetic_run(tmp_path / "run", SyntheticRun())
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    results["cost"] = json.loads((tmp_path / "local" / RESULTS_FILE).read_text())["cost"]
    (run_dir / RESULTS_FILE).write_text(json.dumps(results))
    text = generate_latest(RunResults(run_dir).registry()).decode()
    assert "sidecar_chaos_fault_latency_seconds" in text and "sidecar_chaos_cost_" in text
    result = check(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_latency_metric_names_its_percentile_not_a_quantile(tmp_path: Path) -> None:
    latency = _samples(_exposition(_run(tmp_path)), "sidecar_chaos_cost_latency_seconds")
    assert {dict(k)["percentile"] for k in latency} == {"p50", "p90", "p99"}
    assert not any("quantile" in dict(k) for k in latency)
    p99 = latency[
        (("estimate", "median"), ("percentile", "p99"), ("rate", f"{RATE:g}"), ("setup", "sidecar"))
    ]
    assert 0.008 < p99 < 0.010  # 5 ms + 3 ms added + up to 1 ms of jitter, in seconds


def _cpu(text: str, setup: str, basis: str, estimate: str) -> float | None:
    key = (("basis", basis), ("estimate", estimate), ("rate", f"{RATE:g}"), ("setup", setup))
    return _samples(text, "sidecar_chaos_cost_proxy_cpu_seconds_per_1k_requests").get(key)


def test_the_cpu_metric_carries_the_speed_adjusted_and_the_raw_figure(tmp_path: Path) -> None:
    # The machine ran the second sidecar window at half speed (apps and proxies alike):
    # raw, the two windows read 1.25 and 2.5 CPU-s per 1,000; at the median speed both 1.875.
    run_dir = tmp_path
    for repetition, slow in ((1, 1.0), (2, 2.0)):
        _window(run_dir, "sidecar", repetition, 3.0, slow=slow)
    cost = analyze_cost(run_dir)
    assert cost is not None
    add_cost_to_results(run_dir, cost)
    text = _exposition(run_dir)
    assert _cpu(text, "sidecar", "raw", "low") == pytest.approx(1.25)
    assert _cpu(text, "sidecar", "raw", "high") == pytest.approx(2.5)
    for estimate in ("low", "median", "high"):
        assert _cpu(text, "sidecar", "speed_adjusted", estimate) == pytest.approx(1.875)
    kinds = _samples(text, "sidecar_chaos_cost_kind_cpu_seconds_per_1k_requests")
    assert {dict(k)["basis"] for k in kinds} == {"speed_adjusted"}


def test_a_setup_left_raw_has_no_speed_adjusted_series(tmp_path: Path) -> None:
    # One window shows no CPU of the apps: the speed cannot be told, the figures stay raw.
    run_dir = tmp_path / "left-raw"
    run_dir.mkdir()
    _window(run_dir, "sidecar", 1, 3.0)
    _window(run_dir, "sidecar", 2, 3.0, app_cpu_s=0.0)
    cost = analyze_cost(run_dir)
    assert cost is not None and cost.cpu_notes
    add_cost_to_results(run_dir, cost)
    assert json.loads((run_dir / RESULTS_FILE).read_text())["cost"]["setups"][0]["cpu_basis"] == (
        "raw"
    )
    text = _exposition(run_dir)
    assert _cpu(text, "sidecar", "raw", "median") == pytest.approx(1.25)
    assert _cpu(text, "sidecar", "speed_adjusted", "median") is None
    kinds = _samples(text, "sidecar_chaos_cost_kind_cpu_seconds_per_1k_requests")
    assert kinds and {dict(k)["basis"] for k in kinds} == {"raw"}
    # A step declared raw: the raw series only, whatever the machine did.
    declared = tmp_path / "declared-raw"
    declared.mkdir()
    for repetition, slow in ((1, 1.0), (2, 2.0)):
        _window(declared, "sidecar", repetition, 3.0, slow=slow)
    raw = analyze_cost(declared, cpu="raw")
    assert raw is not None
    add_cost_to_results(declared, raw)
    text = _exposition(declared)
    assert _cpu(text, "sidecar", "raw", "high") == pytest.approx(2.5)
    assert 'basis="speed_adjusted"' not in text


def test_a_run_from_before_the_cpu_basis_exports_its_cpu_as_raw(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    for key in ("cpu", "cpu_notes"):
        del results["cost"][key]
    for s in results["cost"]["setups"]:
        del s["raw_proxy_cpu_per_1k"], s["cpu_basis"]
    (run_dir / RESULTS_FILE).write_text(json.dumps(results))
    text = _exposition(run_dir)
    assert _cpu(text, "sidecar", "raw", "median") == pytest.approx(1.25)
    assert 'basis="speed_adjusted"' not in text


def test_the_dashboard_shows_the_speed_adjusted_cpu_unless_told_otherwise(tmp_path: Path) -> None:
    root = Path(__file__).parents[2]
    dashboard = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "cpu_basis"]
    assert variable["current"]["value"] == "speed_adjusted"
    pushed = {
        dict(k)["basis"]
        for k in _samples(
            _exposition(_run(tmp_path)), "sidecar_chaos_cost_proxy_cpu_seconds_per_1k_requests"
        )
    }
    assert {o["value"] for o in variable["options"]} == pushed == {"speed_adjusted", "raw"}
    (panel,) = [p for p in dashboard["panels"] if "proxy_cpu" in str(p.get("targets"))]
    assert 'basis="$cpu_basis"' in panel["targets"][0]["expr"]
    assert "$cpu_basis" in panel["title"]
