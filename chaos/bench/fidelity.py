"""Time-to-recover fidelity: the analysis against an independent prober, on faults of known truth.

One sidecar topology (no retries anywhere, so nothing hides an error) with a fixed
restart delay, the tool's own traffic driver through the ingress, and the prober
(:mod:`chaos.bench.prober`: its own threads, client and clock) alongside. Two
faults whose effect is known by construction:

* **abort**: every frontend answers 503 for exactly ``D`` seconds (switched through
  the Envoy admin API); truth: an outage of ``D`` from injection, recovery at the
  revert;
* **crash**: the ingress Envoy is killed and the supervisor restarts it after ``R``
  seconds; truth: an outage of ``R`` plus Envoy's start-up, recovery when it serves.

For each, :func:`chaos.analysis.measure_window` on the driver's samples gives time
to impact, impact duration and time to recover; the prober gives its own outage.
The figure is the differences (the fidelity tests hold them within 100 ms).
Loopback only, bounded in time (about 25 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chaos.analysis import FaultResult, FaultWindow, SteadyState, measure_window
from chaos.bench.prober import Outage, Prober
from chaos.experiment import Setup
from chaos.platforms.base import HttpFault
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.slots import lease_slot
from chaos.platforms.local.topology import LocalTopology, TopologyOptions, wait_until
from chaos.traffic import Endpoint, TrafficConfig, TrafficRun

ABORT_S = 2.0
RESTART_DELAY_S = 1.5
HOLD_S = 1.0
WARMUP_S = 1.5
RATE = 200.0
PROBE_RATE = 100.0
#: Errors decide these windows, not latency: a loaded 2-core machine has slow moments.
STEADY = SteadyState(max_error_rate=0.01, max_p95_ms=1000.0)
_BACKOFF = BackoffPolicy(
    initial_s=RESTART_DELAY_S,
    factor=1.0,
    max_s=RESTART_DELAY_S,
    reset_after_s=600.0,
    first_restart_immediate=False,
)


@dataclass(frozen=True)
class FidelityRow:
    """One fault: the truth, what the analysis measured and what the prober saw (seconds)."""

    fault: str
    truth: str
    true_outage_s: float
    impact_s: float | None
    prober_outage_s: float
    ttr_s: float | None
    prober_ttr_s: float
    tti_s: float | None
    prober_tti_s: float

    @property
    def ttr_error_s(self) -> float | None:
        """The analysis' time to recover minus the prober's."""
        return None if self.ttr_s is None else self.ttr_s - self.prober_ttr_s

    @property
    def tti_error_s(self) -> float | None:
        """The analysis' time to impact minus the prober's."""
        return None if self.tti_s is None else self.tti_s - self.prober_tti_s

    @property
    def impact_error_s(self) -> float | None:
        """The analysis' impact duration minus the outage by construction."""
        return None if self.impact_s is None else self.impact_s - self.true_outage_s


@dataclass
class _Load:
    traffic: TrafficRun
    prober: Prober
    warmup_start_t: float


@contextmanager
def _load(topo: LocalTopology, out_dir: Path) -> Iterator[_Load]:
    """The driver at ``RATE`` and the prober at ``PROBE_RATE``, warmed up for ``WARMUP_S``."""
    if topo.idp_server is None:
        raise RuntimeError("the sidecar topology has no identity provider to get a token from")
    config = TrafficConfig(
        host=topo.layout.ingress.url,
        out_dir=out_dir,
        duration_s=30.0,
        users=20,
        spawn_rate=200.0,
        rate=RATE,
        endpoints=(Endpoint("browse", "GET", "/"),),
        token_url=topo.idp_server.token_url,
        request_timeout_s=2.0,
    )
    token = topo.idp.token()
    prober = Prober(
        topo.layout.ingress.url + "/",
        headers=lambda: {"Authorization": f"Bearer {token}"},
        rate=PROBE_RATE,
        max_s=30.0,
    )
    with TrafficRun(config) as traffic:
        traffic.wait_started()
        with prober:
            time.sleep(0.3)  # every user started before the baseline does
            load = _Load(traffic, prober, time.monotonic())
            time.sleep(WARMUP_S)
            yield load
        traffic.stop()


def switch_frontends(ops: LocalFaultOps, fault: HttpFault | None) -> float:
    """Set (or clear, None) ``fault`` at every frontend's inbound; the time just before."""
    frontends = [p for p in ops.workload.pods if p.service == "frontend"]
    sites = ops.http_fault_sites(frontends, "inbound")
    t = time.monotonic()
    for site in sites:
        if fault is None:
            ops.clear_http_fault(site)
        else:
            ops.set_http_fault(site, fault)
    return t


def _measure(load: _Load, name: str, kind: str, times: tuple[float, float, float]) -> FaultResult:
    inject_t, revert_t, end_t = times
    window = FaultWindow(
        setup="sidecar",
        fault=name,
        fault_type=kind,
        repetition=0,
        inject_t=inject_t,
        revert_t=revert_t,
        end_t=end_t,
        self_healing=kind == "crash",
        warmup_start_t=load.warmup_start_t,
    )
    return measure_window(load.traffic.samples(), window, STEADY, HOLD_S)


def _abort(topo: LocalTopology, work: Path) -> FidelityRow:
    ops = LocalFaultOps.of(topo)
    with _load(topo, work / "abort") as load:
        try:
            inject_t = switch_frontends(ops, HttpFault(percent=100, abort_status=503))
            time.sleep(max(0.0, inject_t + ABORT_S - time.monotonic()))
        finally:
            revert_t = switch_frontends(ops, None)
        time.sleep(HOLD_S + 1.5)
        end_t = time.monotonic()
        outage = load.prober.outage(inject_t)
    result = _measure(load, "abort-frontend", "abort", (inject_t, revert_t, end_t))
    return _row("abort-frontend", f"503 for D = {ABORT_S:g} s", revert_t - inject_t, result,
                outage, inject_t, revert_t)  # fmt: skip


def _crash(topo: LocalTopology, work: Path) -> FidelityRow:
    supervisor = topo.supervisor
    with _load(topo, work / "crash") as load:
        restarts = supervisor.restarts("ingress")
        inject_t = time.monotonic()
        supervisor.kill("ingress")
        if not wait_until(lambda: supervisor.restarts("ingress") > restarts, RESTART_DELAY_S + 5):
            raise RuntimeError("the supervisor did not restart the ingress")
        supervisor.wait_ready(["ingress"], timeout_s=10.0)
        time.sleep(HOLD_S + 1.5)
        end_t = time.monotonic()
        outage = load.prober.outage(inject_t)
    result = _measure(load, "crash-ingress", "crash", (inject_t, inject_t, end_t))
    # the true outage is R plus Envoy's start-up (about 0.1 s when the machine is quiet)
    return _row("crash-ingress", f"restart after R = {RESTART_DELAY_S:g} s, + start-up",
                RESTART_DELAY_S, result, outage, inject_t, inject_t)  # fmt: skip


def _row(
    fault: str,
    truth: str,
    true_outage_s: float,
    result: FaultResult,
    outage: Outage,
    inject_t: float,
    revert_t: float,
) -> FidelityRow:
    return FidelityRow(
        fault=fault,
        truth=truth,
        true_outage_s=true_outage_s,
        impact_s=result.impact_duration_s,
        prober_outage_s=outage.duration_s,
        ttr_s=result.time_to_recover_s,
        prober_ttr_s=max(0.0, outage.end_t - revert_t),
        tti_s=result.time_to_impact_s,
        prober_tti_s=outage.start_t - inject_t,
    )


def measure_fidelity(work: Path, faults: tuple[str, ...] = ("abort", "crash")) -> list[FidelityRow]:
    """Each of ``faults`` ("abort", "crash") once on one sidecar topology."""
    steps: dict[str, Callable[[LocalTopology, Path], FidelityRow]] = {
        "abort": _abort,
        "crash": _crash,
    }
    with lease_slot() as slot:  # the lock the tests take: never the slot of a test
        options = TopologyOptions(
            setup=Setup.SIDECAR,
            run_dir=work / "topology",
            slot=slot,
            ingress_port=0,
            backoff=_BACKOFF,
            publish=False,
        )
        with LocalTopology(options) as topo:
            return [steps[name](topo, work) for name in faults]
