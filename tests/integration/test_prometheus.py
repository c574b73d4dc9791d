"""Prometheus in and out, against Debian's real ``prometheus`` and ``prometheus-pushgateway``.

Both servers are started on loopback ephemeral ports by fixtures and stopped by
pid. The tests skip (with the reason) only when a binary is missing:
``apt-get install -y prometheus prometheus-pushgateway``.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from chaos.analysis import read_results
from chaos.experiment import Setup
from chaos.platforms.local.admin import ANALYSIS_STATS_FILTER, counters
from chaos.platforms.local.running import LocalRunning
from chaos.platforms.local.scrape import write_scrape_config
from chaos.platforms.local.topology import LocalTopology
from chaos.platforms.shared.layout import build_layout
from chaos.proc import spawn
from chaos.rundir.counters import read_counters
from chaos.rundir.meta import read_meta
from tests.conftest import ProcessTracker, StartTopology
from tests.integration.conftest_faults import (
    applied,
    cli_argv,
    cli_env,
    fault_spec,
    make_fault,
    probe,
    start_run,
    wait_for,
    write_experiment,
)

PROMETHEUS = shutil.which("prometheus")
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="no `prometheus` binary (apt-get install -y prometheus)"
)
needs_pushgateway = pytest.mark.skipif(
    PUSHGATEWAY is None,
    reason="no `prometheus-pushgateway` binary (apt-get install -y prometheus-pushgateway)",
)
SCRAPE_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server process on loopback, ready when ``ready_path`` answers 200; stopped by pid."""

    def __init__(self, argv: list[str], port: int, log: Path, ready_path: str = "/-/ready") -> None:
        self.url = f"http://127.0.0.1:{port}"
        # Its own session, dying with the test process even when pytest itself is killed.
        self.proc = spawn(argv, log_path=log)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{argv[0]} exited:\n{log.read_text()}"
            try:
                if httpx.get(self.url + ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{argv[0]} not ready in 30 s:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Server]:
    if PUSHGATEWAY is None:
        pytest.skip(
            "no `prometheus-pushgateway` binary (apt-get install -y prometheus-pushgateway)"
        )
    port = free_port()
    server = Server(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        port,
        tmp_path / "pushgateway.log",
    )
    yield server
    server.stop()


StartPrometheus = Callable[[list[dict[str, object]]], Server]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """``start_prometheus(scrape_configs)``: a Prometheus scraping every second."""
    if PROMETHEUS is None:
        pytest.skip("no `prometheus` binary (apt-get install -y prometheus)")
    servers: list[Server] = []

    def start(scrape_configs: list[dict[str, object]]) -> Server:
        config = tmp_path / f"prometheus-{len(servers)}.yml"
        document = {"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs}
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        port = free_port()
        server = Server(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / f'tsdb-{len(servers)}'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            tmp_path / f"prometheus-{len(servers)}.log",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def query(prometheus: Server, promql: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=5.0)
    answer.raise_for_status()
    result: list[dict[str, object]] = answer.json()["data"]["result"]
    return result


def query_until(
    prometheus: Server, promql: str, timeout_s: float = 15.0
) -> list[dict[str, object]]:
    """The first non-empty result of ``promql`` (several scrape intervals may be needed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = query(prometheus, promql)
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{promql}: no result in {timeout_s} s")


def scrape(url: str) -> dict[str, float]:
    """Every sample of a /metrics page, keyed by name and sorted labels."""
    text = httpx.get(url, timeout=5.0).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


@needs_pushgateway
@needs_prometheus
def test_a_run_pushes_is_scraped_live_and_its_time_to_recover_comes_back_through_promql(
    tmp_path: Path, free_slot: int, pushgateway: Server, start_prometheus: StartPrometheus
) -> None:
    live_port = free_port()
    prometheus = start_prometheus(
        [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.url.removeprefix("http://")]}],
            },
            {"job_name": "live", "static_configs": [{"targets": [f"127.0.0.1:{live_port}"]}]},
        ]
    )
    experiment = write_experiment(tmp_path, hold="3s", percent=50)
    run = start_run(
        tmp_path,
        free_slot,
        experiment,
        "--pushgateway",
        pushgateway.url,
        "--metrics-port",
        str(live_port),
    )
    live_url = f"http://127.0.0.1:{live_port}/metrics"
    # Scraped directly while the fault is on: the phase, the fault and the traffic.
    run.wait_for_entry("fault_applied", timeout_s=60)
    seen: dict[str, float] = {}
    assert wait_for(
        lambda: (
            seen.update(scrape(live_url))
            or (
                seen.get("sidecar_chaos_live_faults_active{}") == 1.0
                and seen.get("sidecar_chaos_live_requests_per_second{}", 0.0) > 0
            )
        ),
        timeout_s=5.0,
        interval_s=0.2,
    ), seen
    assert seen["sidecar_chaos_live_phase{phase=hold}"] == 1.0
    assert seen["sidecar_chaos_live_window_info{experiment=tiny,window=sidecar/checkout-500#1}"]
    code = run.wait(timeout_s=90)
    assert code in (0, 1), f"exit code {code}\n{run.stderr}"
    assert "warning" not in run.stderr, run.stderr
    assert f"live metrics: {live_url}" in run.stdout

    # Prometheus scraped the live endpoint during the run ...
    active = query(prometheus, "max_over_time(sidecar_chaos_live_faults_active[5m])")
    assert active and float(active[0]["value"][1]) == 1.0  # type: ignore[index]
    # ... and, from the gateway, the pushed time to recover equals the run's own result.
    summary = read_results(run.run_dir).summaries[0]
    assert summary.time_to_recover_s.median is not None, summary
    run_id = read_meta(run.run_dir).run_id
    found = query_until(
        prometheus,
        'sidecar_chaos_time_to_recover_seconds{experiment="tiny",setup="sidecar",'
        f'fault="checkout-500",estimate="median",run_id="{run_id}"}}',
    )
    assert len(found) == 1, found
    assert float(found[0]["value"][1]) == pytest.approx(summary.time_to_recover_s.median)  # type: ignore[index]
    exit_code = query_until(prometheus, 'sidecar_chaos_run_exit_code{experiment="tiny"}')
    assert float(exit_code[0]["value"][1]) == code  # type: ignore[index]

    # Every query of the shipped Grafana dashboard parses; the nightly ones find the run
    # (the cost panels need a cost step, which this run has not).
    for title, expr in dashboard_queries():
        found = query(prometheus, expr)
        if "live" not in expr and "sidecar_chaos_cost_" not in expr:
            assert found, f"{title}: {expr} found nothing"
    # The README's "time to recover over the last 30 nights" returns this night.
    nights = query(prometheus, readme_thirty_nights())
    assert [n["metric"]["setup"] for n in nights] == ["sidecar"], nights  # type: ignore[index]


@needs_pushgateway
@needs_prometheus
def test_the_dashboards_cost_panels_say_which_memory_and_which_cpu_each_run_measured(
    tmp_path: Path, pushgateway: Server, start_prometheus: StartPrometheus
) -> None:
    from chaos.report.push import push_results
    from chaos.rundir import RESULTS_FILE
    from chaos.testing.synthetic_run import SyntheticRun, write_synthetic_run

    prometheus = start_prometheus(
        [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.url.removeprefix("http://")]}],
            }
        ]
    )
    # One local run (PSS from /proc) and one as a Kubernetes run writes it (the working set).
    for name, memory in (("local-cost", "pss"), ("kube-cost", "working-set")):
        run_dir = write_synthetic_run(tmp_path / name, SyntheticRun(experiment_name=name))
        results = json.loads((run_dir / RESULTS_FILE).read_text())
        mb = {"median": 45.0, "low": 44.0, "high": 46.0, "n": 3}
        setup = {
            "setup": "sidecar",
            "rate": 100.0,
            "offered": True,
            "proxy_pss_mb": mb,
            # At the median machine speed 1.2 CPU-s per 1,000; as read 1.5.
            "proxy_cpu_per_1k": {"median": 1.2, "low": 1.1, "high": 1.3, "n": 3},
            "raw_proxy_cpu_per_1k": {"median": 1.5, "low": 1.0, "high": 2.0, "n": 3},
            "cpu_basis": "speed-adjusted",
        }
        results["cost"] = {"memory": memory, "cpu": "speed-adjusted", "setups": [setup]}
        (run_dir / RESULTS_FILE).write_text(json.dumps(results))
        assert push_results(run_dir, pushgateway.url).warning is None
    ((title, expr),) = [(t, e) for t, e in dashboard_queries() if "proxy_memory" in e]
    assert "PSS" in title and "working set" in title
    query_until(prometheus, f"count({expr}) == 2")  # both groups scraped
    found = query(prometheus, expr)
    measured = {s["metric"]["experiment"]: s["metric"]["measure"] for s in found}  # type: ignore[index]
    assert measured == {"local-cost": "pss", "kube-cost": "working_set"}
    assert {float(s["value"][1]) for s in found} == {45e6}  # type: ignore[index]
    # The CPU panel opens on the speed-adjusted figure; both bases are on the gateway.
    ((title, expr),) = [(t, e) for t, e in dashboard_queries() if "proxy_cpu" in e]
    assert "speed_adjusted" in title
    query_until(prometheus, f"count({expr}) == 2")
    found = query(prometheus, expr)
    assert {s["metric"]["basis"] for s in found} == {"speed_adjusted"}  # type: ignore[index]
    assert {float(s["value"][1]) for s in found} == {1.2}  # type: ignore[index]
    raw = query(prometheus, expr.replace('basis="speed_adjusted"', 'basis="raw"'))
    assert {float(s["value"][1]) for s in raw} == {1.5}  # type: ignore[index]


def readme_thirty_nights() -> str:
    """The README's PromQL example (its ``promql`` block), for the experiment ``tiny``."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```promql\n", 1)[1].split("```", 1)[0]
    assert 'experiment="gameday"' in block, block
    return block.replace('experiment="gameday"', 'experiment="tiny"')


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel of deploy/grafana-dashboard.json."""
    path = Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    # A custom variable (the CPU basis) at the value the dashboard opens with.
    defaults = {
        f"${v['name']}": v["current"]["value"]
        for v in document["templating"]["list"]
        if v["type"] == "custom"
    }

    def at_defaults(expr: str) -> str:
        for name, value in defaults.items():
            expr = expr.replace(name, value)
        return expr.replace("$experiment", ".*")

    return [
        (at_defaults(panel["title"]), at_defaults(target["expr"]))
        for panel in document["panels"]
        for target in panel.get("targets", [])
    ]


class _Answers500(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.send_error(503, "gateway overloaded")

    do_POST = do_PUT

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def failing_gateway() -> Iterator[str]:
    """A real HTTP server on loopback that answers every push with 503."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_gateway_answering_5xx_costs_one_warning_line_not_the_run(
    tmp_path: Path, free_slot: int, failing_gateway: str
) -> None:
    experiment = write_experiment(tmp_path, hold="2s", percent=50)
    run = start_run(tmp_path, free_slot, experiment, "--pushgateway", failing_gateway)
    code = run.wait(timeout_s=90)
    assert code in (0, 1), f"exit code {code}\n{run.stderr}"
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, run.stderr
    assert "503" in warnings[0] and failing_gateway in warnings[0], warnings
    assert "Traceback" not in run.stderr, run.stderr
    assert (run.run_dir / "results.json").is_file()
    assert (run.run_dir / "report.html").is_file()


def _admin_readings(topology: LocalTopology) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for proxy, admin_url in topology.layout.proxy_admins():
        for name, value in counters(admin_url, stats_filter=ANALYSIS_STATS_FILTER).items():
            found[(proxy, name)] = float(value)
    return found


@needs_prometheus
def test_counters_through_prometheus_equal_the_admin_ones_within_a_scrape_interval(
    tmp_path: Path, start_topology: StartTopology, start_prometheus: StartPrometheus
) -> None:
    from chaos.platforms.shared.promql import PrometheusCounters

    started_wall = time.time()
    topology = start_topology(Setup.MESH)
    config = write_scrape_config(tmp_path / "scrape.yml", [topology.layout], SCRAPE_S)
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    prometheus = start_prometheus(document["scrape_configs"])
    source = PrometheusCounters(prometheus.url, {"setup": "mesh"}, since_wall=started_wall)
    through_prometheus = LocalRunning(topology, source)
    through_admin = LocalRunning(topology)

    # One checkout replica's proxy killed: the callers' connections to it fail (Istio's
    # default retries connect failures, not 503), so connect-failure and retry counters rise.
    fault = make_fault(
        topology, fault_spec(type="crash", target={"service": "checkout", "replica": 0})
    )
    with applied(fault):
        probe(topology, 3.0, rate=60.0)
    admin = _admin_readings(topology)
    assert any(v > 0 for v in admin.values()), admin

    def same() -> bool:
        got = {(s.proxy, s.name): s.value for s in through_prometheus.read_counters()}
        want = {(s.proxy, s.name): s.value for s in through_admin.read_counters()}
        same.last = (got, want)  # type: ignore[attr-defined]
        return got == want

    # Traffic has stopped: once it has scraped again, Prometheus holds the admin values
    # exactly (the wait is only a limit: a loaded machine scrapes late, never differently)
    assert wait_for(same, timeout_s=30 * SCRAPE_S, interval_s=0.2), same.last  # type: ignore[attr-defined]
    assert source.last_error is None


@needs_prometheus
def test_up_writes_a_scrape_config_and_a_run_reads_its_counters_through_prometheus(
    tmp_path: Path,
    free_slot: int,
    start_prometheus: StartPrometheus,
    process_tracker: ProcessTracker,
) -> None:
    config = tmp_path / "prometheus.yml"
    up_log = tmp_path / "up.log"
    with up_log.open("wb") as log:
        up = subprocess.Popen(
            [
                *cli_argv("up", "--setup", "sidecar", "--slot", str(free_slot)),
                "--ingress-port",
                "0",
                "--run-dir",
                str(tmp_path / "up"),
                "--prometheus-config",
                str(config),
            ],
            env=cli_env(free_slot),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process_tracker.add(up.pid)
    try:
        assert wait_for(
            lambda: "prometheus config:" in up_log.read_text() or up.poll() is not None, 30.0
        ), up_log.read_text()
    finally:
        up.terminate()  # the run below needs the slot's addresses
        up.wait(timeout=20)
    assert "prometheus config:" in up_log.read_text(), up_log.read_text()
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    (job,) = document["scrape_configs"]
    layout = build_layout(Setup.SIDECAR, tmp_path, slot=free_slot, ingress_port=1)
    assert {t["labels"]["proxy"] for t in job["static_configs"]} == {
        p for p, _ in layout.proxy_admins()
    }
    # Prometheus drops one counter: the run can only lack it if it read through Prometheus.
    job["metric_relabel_configs"] = [
        {
            "source_labels": ["__name__"],
            "regex": "envoy_cluster_upstream_cx_connect_fail",
            "action": "drop",
        }
    ]
    prometheus = start_prometheus(document["scrape_configs"])

    experiment = write_experiment(tmp_path, hold="2s", percent=50)
    run = start_run(tmp_path, free_slot, experiment, "--prometheus", prometheus.url)
    code = run.wait(timeout_s=90)
    assert code in (0, 1), f"exit code {code}\n{run.stderr}"
    names = {s.name for s in read_counters(run.run_dir)}
    assert "cluster.checkout.upstream_rq_retry" in names, names
    assert "restarts" in names
    assert not any(n.endswith("upstream_cx_connect_fail") for n in names), names


def test_a_prometheus_that_does_not_answer_is_an_input_error(
    tmp_path: Path, free_slot: int
) -> None:
    experiment = write_experiment(tmp_path, hold="2s")
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        cli_argv("run", str(experiment), "--prometheus", url, "--out", str(tmp_path / "r")),
        env=cli_env(free_slot),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --prometheus:"), result.stderr
    assert not (tmp_path / "r").exists()


def test_a_taken_metrics_port_is_exit_2_before_anything_is_written(
    tmp_path: Path, free_slot: int
) -> None:
    experiment = write_experiment(tmp_path, hold="2s")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            cli_argv("run", str(experiment), "--metrics-port", port, "--out", str(tmp_path / "r")),
            env=cli_env(free_slot),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --metrics-port: cannot listen"), lines
    assert not (tmp_path / "r").exists()
