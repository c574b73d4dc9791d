"""The cost figures where users read them: the report's section and the pushed metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_io import add_cost_to_results
from chaos.report.cost import cost_view, notes_for
from chaos.report.prometheus_cost import cost_metrics
from chaos.rundir import RESULTS_FILE
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
        'sidecar_chaos_cost_kind_cpu_seconds_per_1k_requests{estimate="median",kind="sidecar",'
        f'rate="{rate}",setup="sidecar"}} 1.0'
    ) in text
    assert f'sidecar_chaos_cost_rate_offered{{rate="{rate}",setup="baseline"}} 0.0' in text
    # The totals: ingress 0.1 + sidecar 0.4 CPU-s over 400 requests; 20 + 25 MB in bytes.
    key = f'{{estimate="median",rate="{rate}",setup="sidecar"}}'
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
