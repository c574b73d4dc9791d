"""The parts of a window the engine builds from the experiment: its load's configuration,
its stop conditions' watches, and the run directory's copy of the experiment file and its
one-line I/O error."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from chaos.errors import RunDirectoryError
from chaos.experiment import CertExpiryFault, Experiment, PolicyDesyncFault, StopCondition
from chaos.experiment import Fault as FaultSpec
from chaos.experiment.models import start_extra
from chaos.experiment.security import security_extra
from chaos.outpaths import replace_file
from chaos.platforms.appports import ExposesAppPorts, RunsAnonymousStream, RunsBypassProbe
from chaos.platforms.base import RunningTopology, StartOptions
from chaos.proc import RUN_MARKER_ENV
from chaos.rundir import EXPERIMENT_FILE
from chaos.rundir.journal import Journal
from chaos.traffic import Endpoint, LiveStats, TrafficConfig
from chaos.traffic.bypass import BypassProbe, anonymous_stream
from chaos.traffic.config import LOOPBACK

#: Locust's own run time past the timeline. The engine stops traffic itself at the end of
#: each window; this is a backstop, long enough that a slow start-up or a loaded machine
#: never lets Locust end first (that would break the window: see ``Traffic.check``).
TRAFFIC_SLACK_S = 60.0

#: A client renews its bearer token this often (policy-desync shows through it).
TOKEN_REFRESH_S = 1.0


def traffic_config(
    experiment: Experiment,
    *,
    host: str,
    out_dir: Path,
    token_url: str | None = None,
    workers: int = 0,
    marker: str = "",
    network: str = LOOPBACK,
) -> TrafficConfig:
    """The load of one window of ``experiment`` (the dry run describes it too)."""
    traffic = experiment.traffic
    timeline = experiment.timeline
    return TrafficConfig(
        host=host,
        out_dir=out_dir,
        duration_s=timeline.warmup + timeline.hold + timeline.recovery + TRAFFIC_SLACK_S,
        users=traffic.users,
        spawn_rate=traffic.spawn_rate,
        rate=traffic.rate,
        endpoints=tuple(
            Endpoint(e.name, e.method, e.path, e.weight) for e in traffic.endpoints or ()
        ),
        locustfile=traffic.locustfile,
        token_url=token_url,
        token_refresh_s=TOKEN_REFRESH_S,
        workers=workers,
        mode=traffic.mode,
        max_in_flight=traffic.max_in_flight,
        extra_env=((RUN_MARKER_ENV, marker),),
        network=network,
    )


class ConditionWatch:
    """How long a stop condition has held without a break."""

    def __init__(self, condition: StopCondition) -> None:
        self.condition = condition
        self.since: float | None = None

    def describe(self) -> str:
        c = self.condition
        if c.type == "error_rate":
            return f"error rate above {c.above:.0%} for {c.for_:g} s"
        return f"p95 above {c.above_ms:g} ms for {c.for_:g} s"

    def violated_for(self, stats: LiveStats, now: float) -> bool:
        c = self.condition
        if c.type == "error_rate":
            bad = stats.requests > 0 and stats.error_rate > c.above
        else:
            bad = stats.p95_ms is not None and stats.p95_ms > c.above_ms
        if not bad:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= c.for_


def run_directory_error(run_dir: Path, exc: OSError) -> RunDirectoryError:
    """One line for an I/O error under the run directory (a full disk, mostly)."""
    where = exc.filename or run_dir
    return RunDirectoryError(f"{where}: cannot write the run directory: {exc.strerror or exc}")


def copy_experiment(source: Path, run_dir: Path) -> None:
    """Keep the exact experiment file with the run (the report shows it; ``OutputError``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    replace_file(run_dir / EXPERIMENT_FILE, lambda p: shutil.copyfile(source, p))


def start_options(
    experiment: Experiment, spec: FaultSpec, window_dir: Path, marker: str, journal: Journal
) -> StartOptions:
    """What the platform is asked for one window's topology."""
    lifetime = None
    if isinstance(spec, CertExpiryFault) and spec.connection_lifetime is not None:
        # It decides how fast an expiry shows: the fault sets it for its windows.
        lifetime = spec.connection_lifetime
    # A policy-desync fault's refresh is the control plane's key-set refresh there.
    refresh = spec.refresh if isinstance(spec, PolicyDesyncFault) else None
    return StartOptions(
        run_dir=window_dir,
        connection_lifetime_s=lifetime,
        jwks_refresh_s=refresh,
        dataplane=experiment.dataplane,
        run_marker=marker,
        record=journal.write,
        extra={**start_extra(experiment, spec), **security_extra(experiment.security)},
    )


def start_bypass(
    stack: contextlib.ExitStack, experiment: Experiment, topology: RunningTopology, out: Path
) -> None:
    """The window's bypass probe (``out``.jsonl), where the platform lists app ports or
    runs the probe itself, and its anonymous stream through the ingress
    (``security.anonymous``, ``out``.anonymous.jsonl)."""
    security = experiment.security
    if security is not None and security.anonymous is not None:
        anon, anon_out = security.anonymous, out.with_name(f"{out.name}.anonymous.jsonl")
        if isinstance(topology, RunsAnonymousStream):
            span = experiment.timeline.total
            stack.enter_context(
                topology.anonymous_stream(anon.rate, anon.max_requests, span, anon_out)
            )
        else:
            stack.enter_context(anonymous_stream(topology.ingress_url, anon, anon_out))
    if security is None or security.bypass is None:
        return
    bp = security.bypass
    probe_out = out.with_name(f"{out.name}.jsonl")
    if isinstance(topology, RunsBypassProbe):
        span = experiment.timeline.total
        stack.enter_context(topology.bypass_probe(bp.rate, bp.max_requests, span, probe_out))
        return
    if not isinstance(topology, ExposesAppPorts):
        return  # validation keeps the probe to platforms that have it
    stack.enter_context(BypassProbe(topology.app_ports(), bp.rate, bp.max_requests, probe_out))


__all__ = [
    "TRAFFIC_SLACK_S",
    "ConditionWatch",
    "copy_experiment",
    "run_directory_error",
    "start_bypass",
    "start_options",
    "traffic_config",
]
