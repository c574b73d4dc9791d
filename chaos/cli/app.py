"""The ``sidecar-chaos`` command line: parse, call the core, render. No logic lives here.

The commands are here; what they share is in their own modules: ``chaos.cli.console`` (printing),
``chaos.cli.platform`` (the platform and the experiment loaded against it),
``chaos.cli.monitoring`` (the monitoring options), ``chaos.cli.run`` (a run's execution) and
``chaos.cli.dryrun`` (the ``--dry-run`` description).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from chaos.cli.console import err, fail_with, out, say
from chaos.cli.dryrun import describe_plan
from chaos.cli.monitoring import (
    MetricsAddressOption,
    MetricsPortOption,
    PrometheusOption,
    PushgatewayOption,
)
from chaos.cli.platform import (
    PlatformOptions,
    parse_slots,
    platform_for,
    read_experiment,
    setup_for,
)
from chaos.cli.run import check_outputs, execute, run_dir_for
from chaos.errors import ChaosError, InputError

app = typer.Typer(
    name="sidecar-chaos",
    help="Chaos experiments for service proxies: how fast do we recover, and what did users see?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _mount_cluster_app() -> None:
    from chaos.platforms.kubernetes.cli import cluster_app

    app.add_typer(cluster_app, name="cluster")


_mount_cluster_app()


@app.command()
def up(
    setup: Annotated[str, typer.Option(help="sidecar, mesh or ambient")] = "mesh",
    slot: Annotated[int | None, typer.Option(help="third octet of the pod addresses")] = None,
    ingress_port: Annotated[
        int | None, typer.Option(help="ingress port on 127.0.0.1 (0 picks a free one)")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where pod files and logs go")] = None,
    prometheus_config: Annotated[
        Path | None,
        typer.Option(help="write a Prometheus config scraping every proxy's /stats/prometheus"),
    ] = None,
) -> None:
    """Bring a local topology up and keep it in the foreground until Ctrl-C or SIGTERM."""
    from chaos.platforms.local.topology import LocalTopology, TopologyOptions

    try:
        if prometheus_config is not None and prometheus_config.is_dir():
            raise InputError(f"--prometheus-config: {prometheus_config} is a directory")
        options = TopologyOptions.for_setup(
            setup_for(setup), run_dir=run_dir, slot=slot, ingress_port=ingress_port
        )
        stopping = _TermAsInterrupt()
        with stopping, LocalTopology(options) as topology:
            out.print(f"{setup} topology ready in {topology.startup_s:.2f} s", highlight=False)
            out.print(f"ingress: {topology.layout.ingress.url}", highlight=False)
            out.print(f"files:   {topology.layout.dir}", highlight=False)
            if prometheus_config is not None:
                from chaos.platforms.local.scrape import write_scrape_config

                path = write_scrape_config(prometheus_config, [topology.layout])
                out.print(f"prometheus config: {path}", highlight=False)
            out.print("Ctrl-C or `sidecar-chaos down` to stop.", highlight=False)
            try:
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                out.print("stopping...", highlight=False)
    except ChaosError as exc:
        fail_with(exc)


class _TermAsInterrupt:
    """Turn SIGTERM into KeyboardInterrupt so teardown runs the same way for both."""

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    @staticmethod
    def _handle(signum: int, frame: object) -> None:
        raise KeyboardInterrupt


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    setup: Annotated[str | None, typer.Option(help="only this setup")] = None,
) -> None:
    """Show the running local topologies: `up`'s and those of every running `run`."""
    from chaos.platforms.local import registry

    try:
        wanted = setup_for(setup) if setup is not None else None
        found = [s for s in registry.every_topology() if wanted is None or s.setup == wanted]
    except ChaosError as exc:
        fail_with(exc)
    if as_json:
        if len(found) == 1 or (setup is not None and not found):
            payload: object = found[0].to_json() if found else {}
        else:
            payload = {"topologies": [s.to_json() for s in found]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if not found:
        out.print("no local topology is running")
        return
    for topo in found:
        say(registry.headline(topo))
        table = Table()
        for column in ("pod", "service", "node", "address", "ready", "restarts", "pids"):
            table.add_column(column)
        for pod in topo.pods:
            pids = " ".join(f"{k}={v}" for k, v in pod.pids.items())
            table.add_row(
                pod.name,
                pod.service,
                pod.node,
                pod.address,
                "yes" if pod.ready else "no",
                str(pod.restarts),
                pids,
            )
        out.print(table)


@app.command()
def down(
    setup: Annotated[str | None, typer.Option(help="only this setup (default: all)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for teardown")] = 20.0,
) -> None:
    """Stop running local topologies (their runners tear them down)."""
    from chaos.platforms.local import registry
    from chaos.proc import pid_alive

    try:
        wanted = setup_for(setup) if setup is not None else None
        targets = [s for s in registry.running() if wanted is None or s.setup == wanted]
    except ChaosError as exc:
        fail_with(exc)
    if not targets:
        out.print("nothing to stop")
        return
    for topo in targets:
        registry.signal_owner(topo)
    deadline = time.monotonic() + timeout
    for topo in targets:
        while pid_alive(topo.owner_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(topo.owner_pid):
            registry.signal_owner(topo, signal.SIGKILL)
            out.print(f"{topo.setup}: runner did not stop in time; killed pid {topo.owner_pid}")
        else:
            out.print(f"{topo.setup}: stopped")


@app.command()
def token(
    setup: Annotated[str | None, typer.Option(help="the topology whose identity provider")] = None,
    run: Annotated[
        str | None, typer.Option(help="a run's topology: the run id (its directory's name)")
    ] = None,
    slot: Annotated[int | None, typer.Option(help="the topology in this slot")] = None,
) -> None:
    """Print a valid bearer token from a running topology's identity provider."""
    import httpx

    from chaos.platforms.local import registry

    try:
        wanted = setup_for(setup) if setup is not None else None
        chosen = registry.select(registry.every_topology(), setup=wanted, run=run, slot=slot)
        try:
            response = httpx.get(chosen.mint_url, timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise InputError(f"identity provider at {chosen.idp_url} failed: {exc}") from exc
    except ChaosError as exc:
        fail_with(exc)
    sys.stdout.write(response.text.strip() + "\n")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="experiment files")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override path=value")] = None,
) -> None:
    """Check experiment files; every problem is reported with its field and line."""
    failed: ChaosError | None = None
    for path in files:
        try:
            experiment = read_experiment(path, set_ or [], [])
        except ChaosError as exc:
            for line in str(exc).splitlines():
                err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
            failed = exc
            continue
        say(
            f"{path}: ok ({experiment.name}: {len(experiment.faults)} faults, "
            f"setups {', '.join(experiment.setups)})"
        )
    if failed is not None:
        raise typer.Exit(failed.exit_code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of experiment files (for editors)."""
    from chaos.experiment import experiment_json_schema

    sys.stdout.write(json.dumps(experiment_json_schema(), indent=2) + "\n")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="the experiment file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override path=value")] = None,
    setup: Annotated[list[str] | None, typer.Option("--setup", help="only these setups")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="the run directory")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan only")] = False,
    workers: Annotated[int, typer.Option(help="Locust worker processes (0: one process)")] = 0,
    history: Annotated[Path, typer.Option(help="history store (SQLite)")] = Path(
        "reports/history.db"
    ),
    no_history: Annotated[bool, typer.Option("--no-history", help="record nothing")] = False,
    slot: Annotated[
        list[str] | None,
        typer.Option(help="SETUP=N: third octet of that setup's pod addresses (127.0.N.x)"),
    ] = None,
    pushgateway: PushgatewayOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_address: MetricsAddressOption = "127.0.0.1",
    prometheus: PrometheusOption = None,
    platform_name: Annotated[
        str | None, typer.Option("--platform", help="local or kubernetes (default: the file's)")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubernetes: the kubeconfig")] = None,
    kube_context: Annotated[
        str | None, typer.Option(help="kubernetes: the context (default: the current one)")
    ] = None,
    allow_context: Annotated[
        str | None, typer.Option(help="kubernetes: allow this context that is not a kind cluster")
    ] = None,
) -> None:
    """Run an experiment: every setup, fault and repetition, then the report."""
    from chaos.cli.metrics import Monitoring
    from chaos.platforms.shared.promql import check_prometheus

    try:
        if workers < 0:
            raise InputError(f"--workers: {workers} is not a number of worker processes (>= 0)")
        check_outputs(out_dir, None if no_history else history)
        monitoring = Monitoring(pushgateway, metrics_port, metrics_address).checked()
        options = PlatformOptions(parse_slots(slot or []), kubeconfig, kube_context, allow_context)
        if platform_name is not None:
            set_ = [*(set_ or []), f"platform={platform_name}"]
        experiment = read_experiment(file, set_ or [], setup or [], options)
        prometheus = prometheus or None  # an empty value (an unset CI variable): admin API
        if prometheus is not None and not dry_run:
            prometheus = check_prometheus(prometheus)
        platform = platform_for(experiment.platform, replace(options, prometheus=prometheus))
        if dry_run:
            for line in describe_plan(experiment, platform):
                say(line)
            return
        code = execute(
            experiment,
            platform,
            file,
            run_dir_for(out_dir, experiment.name),
            workers,
            None if no_history else history,
            monitoring,
            overrides=(set_ or [], setup or []),
        )
    except ChaosError as exc:
        fail_with(exc)
    raise typer.Exit(code)


@app.command()
def demo(
    out_dir: Annotated[Path | None, typer.Option("--out", help="the run directory")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override path=value")] = None,
    pushgateway: PushgatewayOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_address: MetricsAddressOption = "127.0.0.1",
) -> None:
    """The local game day: experiments/gameday.yaml against sidecar, mesh and ambient."""
    from chaos.cli.metrics import Monitoring

    try:
        monitoring = Monitoring(pushgateway, metrics_port, metrics_address).checked()
        file = Path("experiments/gameday.yaml")
        if not file.is_file():
            raise InputError(f"{file} not found: run `demo` from the project directory")
        experiment = read_experiment(file, set_ or [], [])
        code = execute(
            experiment,
            platform_for(experiment.platform),
            file,
            run_dir_for(out_dir, experiment.name),
            0,
            Path("reports/history.db"),
            monitoring,
            overrides=(set_ or [], []),
        )
    except ChaosError as exc:
        fail_with(exc)
    # A game day's broken hypotheses are findings shown in the report, not a failed
    # demo; only an aborted run makes `make demo` fail.
    raise typer.Exit(code if code == 3 else 0)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories to compare")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML file")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML report comparing run directories."""
    from chaos.outpaths import check_output_file
    from chaos.rundir.check import check_readable

    try:
        check_output_file(output, "--output")
        for d in run_dirs:
            check_readable(d)  # cheap: a damaged directory is refused before the heavy imports
        from chaos.report import render_report

        path = render_report(run_dirs, output)
    except ChaosError as exc:
        fail_with(exc)
    say(f"report: {path}")


_MAX_SINCE_S = 100 * 366 * 86400


@app.command()
def trend(
    since: Annotated[str, typer.Option(help="how far back, e.g. 30d, 12h")] = "30d",
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("trend.html"),
    history: Annotated[Path, typer.Option(help="history store")] = Path("reports/history.db"),
    window: Annotated[int, typer.Option(help="previous runs a regression is judged against")] = 5,
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression")] = False,
) -> None:
    """Recovery time and error rate across runs, with regressions flagged."""
    from datetime import timedelta

    from chaos.outpaths import check_output_file
    from chaos.report.history import HistoryStore

    try:
        units = {"d": 86400, "h": 3600, "m": 60}
        if len(since) < 2 or since[-1] not in units or not since[:-1].isdigit():
            raise InputError(f"--since: {since!r} is not like 30d, 12h or 90m")
        seconds = int(since[:-1]) * units[since[-1]]
        if seconds > _MAX_SINCE_S:
            raise InputError(f"--since: {since} is more than 100 years back")
        if window < 1:
            raise InputError(f"--window: {window} is not a number of previous runs (>= 1)")
        if history.is_dir():
            raise InputError(f"--history: {history} is a directory, not a history store")
        if not history.is_file():
            raise InputError(f"--history: {history} does not exist (no run recorded yet)")
        check_output_file(output, "--output")
        store = HistoryStore(history)
        # cheap: a foreign or damaged store is refused before the heavy imports
        store.results([run.run_id for run in store.runs()])
        from chaos.report import render_trend
        from chaos.report.trend_cost import cost_blocks

        result = render_trend(
            store, timedelta(seconds=seconds), output, window_n=window, blocks=cost_blocks
        )
        regressions = result.regressions  # recovery's and cost's
    except ChaosError as exc:
        fail_with(exc)
    say(f"trend: {result.out}")
    for regression in regressions:
        err.print(f"regression: {regression.message}", markup=False, highlight=False)
    if fail_on_regression and regressions:
        raise typer.Exit(1)


@app.command()
def clean(
    run_dir: Annotated[Path, typer.Argument(help="the run directory of a stopped run")],
) -> None:
    """Undo whatever the journal shows as applied and not reverted."""
    from chaos.engine.clean import clean_run

    try:
        for line in clean_run(run_dir):
            say(line)
    except ChaosError as exc:
        fail_with(exc)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ChaosError as exc:  # raised outside a command's own handler
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
