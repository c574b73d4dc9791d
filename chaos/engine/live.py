"""Live metrics while a run goes on (``--metrics-port``): a RunView that Prometheus scrapes.

:class:`LiveMetrics` is a :class:`~chaos.engine.view.RunView`: the engine reports its
progress to it exactly as to the terminal view (:class:`TeeView` sends each report
to both), and it keeps the latest numbers in its own registry, served on
``http://ADDRESS:PORT/metrics`` (loopback by default) until closed:

=============================================  ==============================================
``sidecar_chaos_live_phase``                   1 for the current phase (``phase="starting|
                                               warm-up|hold|recovery|finished"``), 0 else
``sidecar_chaos_live_window_info``             the current window (``window="mesh/crash#1"``)
``sidecar_chaos_live_windows_started_total``   windows started so far
``sidecar_chaos_live_phase_remaining_seconds`` time left in the phase
``sidecar_chaos_live_requests_per_second``     completed requests per second (last tick)
``sidecar_chaos_live_error_ratio``             errors over requests (last tick)
``sidecar_chaos_live_latency_p95_seconds``     p95 latency (last tick; NaN without requests)
``sidecar_chaos_live_faults_active``           faults injected and not yet reverted
=============================================  ==============================================
"""

from __future__ import annotations

import math
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from chaos.engine.view import RunView
from chaos.errors import InputError
from chaos.report.prometheus import PREFIX
from chaos.traffic import LiveStats

PHASES = ("starting", "warm-up", "hold", "recovery", "finished")
#: The phase in which the fault is applied (between inject and revert).
_FAULT_PHASE = "hold"


class LiveMetrics:
    """A :class:`RunView` that serves the run's progress on ``/metrics`` until closed."""

    def __init__(self, port: int, address: str = "127.0.0.1", experiment: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        live = f"{PREFIX}_live"
        self._phase = Gauge(
            f"{live}_phase", "1 for the run's current phase.", ["phase"], registry=self.registry
        )
        self._window = Gauge(
            f"{live}_window_info",
            "The window the run is in (value 1).",
            ["experiment", "window"],
            registry=self.registry,
        )
        self._windows = Counter(
            f"{live}_windows_started", "Windows started so far.", registry=self.registry
        )
        self._left = Gauge(
            f"{live}_phase_remaining_seconds", "Time left in the phase.", registry=self.registry
        )
        self._rps = Gauge(
            f"{live}_requests_per_second",
            "Completed requests per second over the last tick.",
            registry=self.registry,
        )
        self._errors = Gauge(
            f"{live}_error_ratio", "Errors over requests in the last tick.", registry=self.registry
        )
        self._p95 = Gauge(
            f"{live}_latency_p95_seconds",
            "p95 latency in the last tick (NaN without requests).",
            registry=self.registry,
        )
        self._faults = Gauge(
            f"{live}_faults_active",
            "Faults injected and not yet reverted.",
            registry=self.registry,
        )
        self.experiment = experiment
        self._current: str | None = None
        self._lock = threading.Lock()
        self._set_phase("starting")
        self._p95.set(math.nan)
        try:
            self._server, self._thread = start_http_server(port, address, self.registry)
        except OSError as exc:
            raise InputError(f"--metrics-port: cannot listen on {address}:{port}: {exc}") from exc

    @property
    def server(self) -> WSGIServer:
        """The HTTP server (its ``server_port`` is the port, also when 0 was asked)."""
        return self._server

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/metrics"

    def _set_phase(self, phase: str) -> None:
        for name in PHASES:
            self._phase.labels(name).set(1.0 if name == phase else 0.0)
        self._faults.set(1.0 if phase == _FAULT_PHASE else 0.0)

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
        with self._lock:
            if window != self._current:
                if self._current is not None:
                    self._window.remove(self.experiment, self._current)
                self._window.labels(self.experiment, window).set(1.0)
                self._windows.inc()
                self._current = window
            self._set_phase(phase)
            self._left.set(left_s)
            self._rps.set(stats.rps)
            self._errors.set(stats.error_rate)
            self._p95.set(math.nan if stats.p95_ms is None else stats.p95_ms / 1000.0)

    def say(self, line: str) -> None:
        return None

    def close(self) -> None:
        """Mark the run finished and stop serving."""
        with self._lock:
            self._set_phase("finished")
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class TeeView:
    """Sends every progress report to several views (the terminal and the metrics)."""

    def __init__(self, *views: RunView) -> None:
        self.views = views

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
        for view in self.views:
            view.phase(window, phase, left_s, stats)

    def say(self, line: str) -> None:
        for view in self.views:
            view.say(line)

    def close(self) -> None:
        for view in self.views:
            view.close()


def _implements_run_view(live: LiveMetrics, tee: TeeView) -> tuple[RunView, RunView]:
    """Never called: mypy checks here that both classes are RunViews."""
    return live, tee
