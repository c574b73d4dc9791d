"""``sidecar-chaos cluster up|down|status``: a typer sub-app over :mod:`.cluster`.

Wired into the main app with ``app.add_typer(cluster_app, name="cluster")``.
Errors are one line on stderr with the error's exit code (2 for a missing tool).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from chaos.errors import ChaosError

if TYPE_CHECKING:
    # Imported where used: the main CLI mounts this app, and `validate` must stay quick.
    from chaos.platforms.kubernetes.cluster import ClusterSetup, ManifestSink

cluster_app = typer.Typer(
    name="cluster",
    help="A kind cluster with Istio (ambient profile) and the demo in every setup.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StateDir = Annotated[
    Path | None,
    typer.Option(help="where certs, token keys and versions.json live (default: XDG state)"),
]


def _fail(exc: ChaosError) -> NoReturn:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def _connect(context: str) -> ManifestSink:
    from chaos.platforms.kubernetes.api import KubeApi

    return KubeApi.from_kubeconfig(context=context)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _setup(state_dir: Path | None, accept_istio: str | None = None) -> ClusterSetup:
    from chaos.platforms.kubernetes.cluster import ClusterSetup, default_state_dir

    return ClusterSetup(
        state_dir=state_dir or default_state_dir(),
        connect=_connect,
        log=_log,
        accept_istio=accept_istio,
    )


@cluster_app.command()
def up(
    state_dir: StateDir = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the commands and objects; change nothing")
    ] = False,
    accept_istio_version: Annotated[
        str | None,
        typer.Option(
            help="go on with this istioctl version instead of the modelled one "
            "(recorded in versions.json and every run's meta.json as a deviation)"
        ),
    ] = None,
) -> None:
    """Create the kind cluster (if needed), install Istio ambient, deploy the demo per setup."""
    try:
        if dry_run:
            print("\n".join(_setup(state_dir).plan_up()))
            return
        versions = _setup(state_dir, accept_istio_version).up()
    except ChaosError as exc:
        _fail(exc)
    print(json.dumps({"versions": versions}, indent=2))


@cluster_app.command()
def down(state_dir: StateDir = None) -> None:
    """Delete the kind cluster."""
    try:
        deleted = _setup(state_dir).down()
    except ChaosError as exc:
        _fail(exc)
    print("deleted" if deleted else "no cluster to delete")


@cluster_app.command()
def status(state_dir: StateDir = None) -> None:
    """Whether the cluster exists, and the versions `up` recorded (JSON)."""
    try:
        result = _setup(state_dir).status()
    except ChaosError as exc:
        _fail(exc)
    print(json.dumps(result, indent=2))


def main() -> None:  # pragma: no cover - for `python -m chaos.platforms.kubernetes.cli`
    cluster_app()


if __name__ == "__main__":  # pragma: no cover
    main()
