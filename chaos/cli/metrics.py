"""Prometheus for ``run`` and ``demo``: check the options, serve live metrics, push at the end.

Light to import: the CLI checks these options before it reads the experiment, and a
hostile file must be refused quickly; what pushes and serves is imported when used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.errors import InputError

if TYPE_CHECKING:
    from chaos.engine.view import RunView


@dataclass(frozen=True)
class Monitoring:
    """The Prometheus options of a run: where to push, where to serve live metrics."""

    pushgateway: str | None = None
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

    def checked(self) -> Monitoring:
        """These options, or an :class:`InputError` naming the bad one (before anything runs)."""
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise InputError(f"--metrics-port: {self.metrics_port} is not a port (0..65535)")
        # An empty value (an unset CI variable) means no push.
        if not self.pushgateway:
            return Monitoring(None, self.metrics_port, self.metrics_address)
        from chaos.report.push import check_gateway_url

        gateway = check_gateway_url(self.pushgateway)
        return Monitoring(gateway, self.metrics_port, self.metrics_address)


def start_live_metrics(
    monitoring: Monitoring, experiment: str, say: Callable[[str], None]
) -> RunView | None:
    """The live ``/metrics`` endpoint when ``--metrics-port`` was given (serving from now on).

    Started before anything is written, so a port that is taken is an input error
    that leaves no run directory behind.
    """
    if monitoring.metrics_port is None:
        return None
    from chaos.engine.live import LiveMetrics

    live = LiveMetrics(monitoring.metrics_port, monitoring.metrics_address, experiment)
    say(f"live metrics: {live.url}")
    return live


def tee(view: RunView, live: RunView | None) -> RunView:
    """``view``, and ``live`` too when there is one (both closed together)."""
    if live is None:
        return view
    from chaos.engine.live import TeeView

    return TeeView(view, live)


def push_after_run(run_dir: Path, monitoring: Monitoring, warn: Callable[[str], None]) -> None:
    """Push the run's results when ``--pushgateway`` was given; a failure is one warning line."""
    if monitoring.pushgateway is None:
        return
    from chaos.report.push import push_results

    outcome = push_results(run_dir, monitoring.pushgateway)
    if outcome.warning is not None:
        warn(f"warning: {outcome.warning}")
