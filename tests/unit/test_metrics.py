"""Prometheus metrics without the Prometheus servers: names, values, the live endpoint, push errors.

The results collector reads a synthetic run directory (known outcome); the live
metrics are served by the real prometheus_client HTTP server on a loopback
ephemeral port; a push goes to a loopback port nothing listens on.
"""

from __future__ import annotations

import math
import re
import socket
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chaos.analysis import read_results
from chaos.cli.metrics import Monitoring
from chaos.engine.live import LiveMetrics, TeeView
from chaos.errors import InputError
from chaos.experiment import Setup
from chaos.platforms.local.scrape import scrape_config
from chaos.platforms.shared.layout import build_layout
from chaos.platforms.shared.promql import COUNTER_STATS, admin_name, counters_query, prometheus_name
from chaos.report.prometheus import RunResults
from chaos.report.push import check_gateway_url, push_results
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run
from chaos.traffic import LiveStats

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_results_follow_the_conventions_and_equal_the_run_directory(tmp_path: Path) -> None:
    run_dir = write_synthetic_run(tmp_path / "run")
    results = RunResults(run_dir)
    text = generate_latest(results.registry()).decode()
    samples = _samples(text)
    analysis = read_results(run_dir)

    for name, _ in samples:
        assert re.fullmatch(r"sidecar_chaos_[a-z0-9_]+", name), name
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    counters = [n for n, t in types.items() if t == "counter"]
    assert counters and all(n.endswith("_total") for n in counters)
    assert {n for n, _ in samples if n.endswith("_total")} == set(counters)
    assert not any(n.endswith("_created") for n, _ in samples)

    for summary in analysis.summaries:
        key = {"setup": summary.setup, "fault": summary.fault}
        assert summary.time_to_recover_s.median is not None
        assert _get(
            samples, "sidecar_chaos_time_to_recover_seconds", **key, estimate="median"
        ) == pytest.approx(summary.time_to_recover_s.median)
        assert _get(samples, "sidecar_chaos_repetitions", **key) == summary.repetitions
        runs = [r for r in analysis.runs if (r.setup, r.fault) == (summary.setup, summary.fault)]
        assert _get(samples, "sidecar_chaos_failed_requests_total", **key) == sum(
            r.failed_requests for r in runs
        )
        assert _get(samples, "sidecar_chaos_hypothesis", **key, outcome="held") == 1.0
        assert _get(samples, "sidecar_chaos_hypothesis", **key, outcome="failed") == 0.0
        p95 = _get(samples, "sidecar_chaos_fault_latency_seconds", **key, percentile="p95")
        assert 0 < p95 < 10  # seconds, not milliseconds
        low = _get(samples, "sidecar_chaos_time_to_impact_seconds", **key, estimate="low")
        high = _get(samples, "sidecar_chaos_time_to_impact_seconds", **key, estimate="high")
        assert 0 <= low <= high < 5
    # The synthetic mesh recovers in about 0.5 s, the sidecar in about 2 s.
    mesh = _get(
        samples,
        "sidecar_chaos_time_to_recover_seconds",
        setup="mesh",
        fault="abort-checkout",
        estimate="median",
    )
    sidecar = _get(
        samples,
        "sidecar_chaos_time_to_recover_seconds",
        setup="sidecar",
        fault="abort-checkout",
        estimate="median",
    )
    assert mesh < 1.0 < sidecar < 3.0
    assert _get(samples, "sidecar_chaos_run_exit_code") == 0
    for c in analysis.comparisons:
        pair = {"fault": c.fault, "setup_a": c.setup_a, "setup_b": c.setup_b}
        assert _get(samples, "sidecar_chaos_comparison_supported", **pair) == float(c.supported)
        assert c.difference_s is not None
        assert _get(
            samples, "sidecar_chaos_comparison_difference_seconds", **pair
        ) == pytest.approx(c.difference_s)
    assert analysis.comparisons
    assert analysis.decided is not None and analysis.decided.decisions
    for d in analysis.decided.decisions:
        c = d.claim
        claim = {
            "hypothesis": c.hypothesis,
            "fault": c.fault,
            "setup": c.setup,
            "compared_to": c.compared_to,
            "metric": c.metric,
        }
        assert _get(samples, "sidecar_chaos_claim", **claim, outcome=d.outcome) == 1
        others = [o for o in ("supported", "refuted", "equivalent", "undecided") if o != d.outcome]
        assert all(_get(samples, "sidecar_chaos_claim", **claim, outcome=o) == 0 for o in others)
    assert results.identity.grouping_key() == {
        "experiment": "synthetic",
        "run_id": "synthetic@2025-01-01T02:00:00+00:00",
    }


def test_a_fault_without_effect_is_a_failed_hypothesis_and_never_recovered_is_inf(
    tmp_path: Path,
) -> None:
    spec = SyntheticRun(
        setups=("sidecar",),
        faults=(SyntheticFault("quiet"), SyntheticFault("slow", type="abort")),
        no_effect=(("sidecar", "quiet"),),
        recovery_s={"sidecar": 60.0},  # longer than the recovery window: never recovered
        exit_code=1,
    )
    samples = _samples(
        generate_latest(RunResults(write_synthetic_run(tmp_path, spec)).registry()).decode()
    )
    assert (
        _get(samples, "sidecar_chaos_hypothesis", setup="sidecar", fault="quiet", outcome="failed")
        == 1
    )
    ttr = _get(
        samples,
        "sidecar_chaos_time_to_recover_seconds",
        setup="sidecar",
        fault="slow",
        estimate="median",
    )
    assert math.isinf(ttr)
    assert _get(samples, "sidecar_chaos_repetitions_recovered", setup="sidecar", fault="slow") == 0
    assert _get(samples, "sidecar_chaos_run_exit_code") == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_a_gateway_that_is_down_is_a_warning_not_an_error(tmp_path: Path) -> None:
    run_dir = write_synthetic_run(tmp_path / "run")
    gateway = f"http://127.0.0.1:{_closed_port()}"
    outcome = push_results(run_dir, gateway, timeout_s=1.0, wait_s=0.0)
    assert outcome.warning is not None
    assert gateway in outcome.warning and "3 attempts" in outcome.warning
    assert str(run_dir) in outcome.warning
    assert "\n" not in outcome.warning


@pytest.mark.parametrize("url", ["gateway:9091", "ftp://x", "http://", "http://h:99999"])
def test_a_bad_gateway_url_is_an_input_error(url: str) -> None:
    with pytest.raises(InputError, match="--pushgateway"):
        check_gateway_url(url)


def test_a_bad_metrics_port_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--metrics-port"):
        Monitoring(metrics_port=70000).checked()


def test_live_metrics_follow_the_phases_on_a_loopback_port() -> None:
    live = LiveMetrics(0, experiment="gameday")
    try:
        assert live.url.startswith("http://127.0.0.1:")
        first = _samples(httpx.get(live.url, timeout=5).text)
        assert _get(first, "sidecar_chaos_live_phase", phase="starting") == 1
        assert math.isnan(_get(first, "sidecar_chaos_live_latency_p95_seconds"))

        view = TeeView(live)
        view.phase("mesh/crash#1", "hold", 3.5, LiveStats(0.0, 2.0, 200, 50, 250.0))
        hold = _samples(httpx.get(live.url, timeout=5).text)
        assert _get(hold, "sidecar_chaos_live_phase", phase="hold") == 1
        assert _get(hold, "sidecar_chaos_live_phase", phase="starting") == 0
        assert _get(hold, "sidecar_chaos_live_faults_active") == 1
        assert _get(hold, "sidecar_chaos_live_requests_per_second") == 100
        assert _get(hold, "sidecar_chaos_live_error_ratio") == 0.25
        assert _get(hold, "sidecar_chaos_live_latency_p95_seconds") == 0.25
        assert _get(hold, "sidecar_chaos_live_phase_remaining_seconds") == 3.5
        info = {"experiment": "gameday", "window": "mesh/crash#1"}
        assert _get(hold, "sidecar_chaos_live_window_info", **info) == 1

        view.phase("sidecar/crash#1", "recovery", 1.0, LiveStats(0.0, 1.0, 10, 0, None))
        after = _samples(httpx.get(live.url, timeout=5).text)
        assert _get(after, "sidecar_chaos_live_faults_active") == 0
        assert _get(after, "sidecar_chaos_live_windows_started_total") == 2
        assert ("sidecar_chaos_live_window_info", frozenset(info.items())) not in after
    finally:
        live.close()
    with pytest.raises(httpx.HTTPError):
        httpx.get(live.url, timeout=1)


def test_a_taken_metrics_port_is_an_input_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InputError, match="--metrics-port: cannot listen"):
            LiveMetrics(taken.getsockname()[1])


def test_envoy_prometheus_names_map_back_to_admin_names() -> None:
    for stat in COUNTER_STATS:
        metric = prometheus_name("cluster", stat)
        assert admin_name(metric, {"envoy_cluster_name": "payments"}) == f"cluster.payments.{stat}"
    assert (
        admin_name(
            "envoy_listener_ssl_connection_error", {"envoy_listener_address": "0.0.0.0_15006"}
        )
        == "listener.0.0.0.0_15006.ssl.connection_error"
    )
    assert (
        admin_name("envoy_cluster_upstream_rq_retry_success", {"envoy_cluster_name": "x"}) is None
    )
    query = counters_query({"setup": 'me"sh'}, 5.0)
    assert 'setup="me\\"sh"' in query and query.endswith("[5000ms]")
    assert "envoy_cluster_outlier_detection_ejections_enforced_total" in query


def test_the_scrape_config_has_every_proxy_of_the_topology(tmp_path: Path) -> None:
    layout = build_layout(Setup.MESH, tmp_path, slot=42, ingress_port=18042)
    document = yaml.safe_load(scrape_config([layout], scrape_interval_s=2.0))
    (job,) = document["scrape_configs"]
    assert job["metrics_path"] == "/stats/prometheus"
    assert job["scrape_interval"] == "2000ms"
    targets = {t["labels"]["proxy"]: t["targets"][0] for t in job["static_configs"]}
    assert set(targets) == {proxy for proxy, _ in layout.proxy_admins()}
    assert all(t["labels"]["setup"] == "mesh" for t in job["static_configs"])
    assert targets["ingress"].endswith(":" + layout.ingress.admin_url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["demo", "--pushgateway", "ftp://x"], {}, "error: --pushgateway: 'ftp://x'"),
        (["run", "x.yaml"], {"SIDECAR_CHAOS_PUSHGATEWAY": "gw:9091"}, "error: --pushgateway"),
        (["run", "x.yaml", "--metrics-port", "70000"], {}, "error: --metrics-port: 70000"),
        (["demo", "--metrics-port", "-1"], {}, "error: --metrics-port: -1"),
    ],
)
def test_bad_prometheus_options_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    from typer.testing import CliRunner

    from chaos.cli.app import app

    result = CliRunner(env=env).invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(needle), lines
