"""The ``sidecar-chaos`` command line: parse, call the core, render. No logic lives here."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from chaos.errors import ChaosError, InputError

app = typer.Typer(
    name="sidecar-chaos",
    help="Chaos experiments for service proxies: how fast do we recover, and what did users see?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

SETUP_NAMES = ("sidecar", "mesh", "ambient")


def _fail(exc: ChaosError) -> NoReturn:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _setup(name: str) -> str:
    if name not in SETUP_NAMES:
        raise InputError(f"--setup: unknown setup {name!r} (choose from {', '.join(SETUP_NAMES)})")
    return name


@app.command()
def up(
    setup: Annotated[str, typer.Option(help="sidecar, mesh or ambient")] = "mesh",
    slot: Annotated[int | None, typer.Option(help="third octet of the pod addresses")] = None,
    ingress_port: Annotated[
        int | None, typer.Option(help="ingress port on 127.0.0.1 (0 picks a free one)")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where pod files and logs go")] = None,
) -> None:
    """Bring a local topology up and keep it in the foreground until Ctrl-C or SIGTERM."""
    from chaos.platforms.local.topology import LocalTopology, TopologyOptions

    try:
        options = TopologyOptions.for_setup(
            _setup(setup), run_dir=run_dir, slot=slot, ingress_port=ingress_port
        )
        stopping = _TermAsInterrupt()
        with stopping, LocalTopology(options) as topology:
            out.print(f"{setup} topology ready in {topology.startup_s:.2f} s", highlight=False)
            out.print(f"ingress: {topology.layout.ingress.url}", highlight=False)
            out.print(f"files:   {topology.layout.dir}", highlight=False)
            out.print("Ctrl-C or `sidecar-chaos down` to stop.", highlight=False)
            try:
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                out.print("stopping...", highlight=False)
    except ChaosError as exc:
        _fail(exc)


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
    """Show the running local topologies."""
    from chaos.platforms.local import registry

    try:
        found = [s for s in registry.running() if setup is None or s.setup == _setup(setup)]
    except ChaosError as exc:
        _fail(exc)
    if as_json:
        if setup is not None or len(found) == 1:
            payload: object = found[0].to_json() if found else {}
        else:
            payload = {"topologies": [s.to_json() for s in found]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if not found:
        out.print("no local topology is running")
        return
    for topo in found:
        table = Table(title=f"{topo.setup}  ingress {topo.ingress}  (runner pid {topo.owner_pid})")
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
    from chaos.platforms.local.procutil import pid_alive

    try:
        targets = [s for s in registry.running() if setup is None or s.setup == _setup(setup)]
    except ChaosError as exc:
        _fail(exc)
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
) -> None:
    """Print a valid bearer token from a running topology's identity provider."""
    import httpx

    from chaos.platforms.local import registry

    try:
        found = [s for s in registry.running() if setup is None or s.setup == _setup(setup)]
        if not found:
            raise InputError("no local topology is running (start one with `sidecar-chaos up`)")
        if len(found) > 1:
            names = ", ".join(s.setup for s in found)
            raise InputError(f"several topologies are running ({names}); pick one with --setup")
        try:
            response = httpx.get(f"{found[0].idp_url}/token", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise InputError(f"identity provider at {found[0].idp_url} failed: {exc}") from exc
    except ChaosError as exc:
        _fail(exc)
    sys.stdout.write(response.text.strip() + "\n")


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
