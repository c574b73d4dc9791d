"""Ground truth: faults whose true effect is known by construction, measured end to end.

Real Envoy (a sidecar topology: no retries anywhere, so nothing hides an error),
real Locust through the ingress, and ``chaos.analysis.measure_window`` on the
Locust samples. Each test also runs an independent prober (``prober.py``: its own
thread, client and timestamps) and checks the analysis against both the
construction (D, R, X) and what the prober saw. Tolerances are the issue's:
100 ms for times, 10 % for the added latency.

Times the test takes itself (``inject_t``, ``revert_t``) are ``time.monotonic()``
read just before the admin calls, as the engine reads ``inject_t``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaos.analysis import FaultResult, FaultWindow, SteadyState, measure_window
from chaos.bench.fidelity import switch_frontends
from chaos.bench.prober import Prober
from chaos.experiment import Setup
from chaos.platforms.base import EventKind, HttpFault
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.topology import LocalTopology, TopologyOptions, wait_until
from chaos.traffic import Endpoint, TrafficConfig, TrafficRun
from tests.conftest import ProcessTracker, lease_slot

pytestmark = pytest.mark.timeout(90)

TOLERANCE_S = 0.100
#: The fixed restart delay of the crash test (CrashLoopBackOff pinned to one value).
RESTART_DELAY_S = 1.5
BACKOFF = BackoffPolicy(
    initial_s=RESTART_DELAY_S,
    factor=1.0,
    max_s=RESTART_DELAY_S,
    reset_after_s=600.0,
    first_restart_immediate=False,
)
#: Errors decide these tests, not latency: a loaded 2-core machine has slow moments.
STEADY = SteadyState(max_error_rate=0.01, max_p95_ms=1000.0)
HOLD_S = 1.0
WARMUP_S = 1.5
RATE = 200.0
PROBE_RATE = 100.0


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTopology]:
    """One sidecar topology for the module, with the fixed restart delay."""
    tracker = ProcessTracker()
    with lease_slot() as slot:
        options = TopologyOptions(
            setup=Setup.SIDECAR,
            run_dir=tmp_path_factory.mktemp("fidelity"),
            slot=slot,
            ingress_port=0,
            backoff=BACKOFF,
            publish=False,
        )
        topology = LocalTopology(options)
        tracker.follow(topology)
        with topology:
            yield topology
    tracker.check()


@dataclass
class Run:
    """Locust and the prober running through the ingress; what the test reads after."""

    traffic: TrafficRun
    prober: Prober
    warmup_start_t: float

    def samples(self) -> pd.DataFrame:
        return self.traffic.samples()


@contextlib.contextmanager
def load(
    topo: LocalTopology,
    out_dir: Path,
    *,
    rate: float = RATE,
    users: int = 20,
    path: str = "/",
) -> Iterator[Run]:
    """Locust at ``rate`` and the prober at ``PROBE_RATE``, warmed up for ``WARMUP_S``.

    Both are stopped (Locust cleanly, so every sample reaches the disk) when the
    block ends; Locust's own duration is only a bound.
    """
    assert topo.idp_server is not None
    config = TrafficConfig(
        host=topo.layout.ingress.url,
        out_dir=out_dir,
        duration_s=30.0,
        users=users,
        spawn_rate=200.0,
        rate=rate,
        endpoints=(Endpoint("browse", "GET", path),),
        token_url=topo.idp_server.token_url,
        request_timeout_s=2.0,
    )
    token = topo.idp.token()
    traffic = TrafficRun(config)
    prober = Prober(
        topo.layout.ingress.url + path,
        headers=lambda: {"Authorization": f"Bearer {token}"},
        rate=PROBE_RATE,
        max_s=30.0,
    )
    with traffic:
        traffic.wait_started()
        with prober:
            time.sleep(0.3)  # every user spawned and paced before the baseline starts
            run = Run(traffic, prober, time.monotonic())
            time.sleep(WARMUP_S)
            yield run
        traffic.stop()


def http_fault(ops: LocalFaultOps, fault: HttpFault | None) -> float:
    """Switch ``fault`` on (or off, None) at both frontends' inbound; the time before."""
    frontends = [p for p in ops.workload.pods if p.service == "frontend"]
    assert len(ops.http_fault_sites(frontends, "inbound")) == 2
    return switch_frontends(ops, fault)


def report(name: str, **errors_s: float) -> None:
    """Print the measured errors in ms (``pytest -s`` shows them)."""
    text = ", ".join(f"{k}={v * 1000:+.1f} ms" for k, v in errors_s.items())
    print(f"\n[fidelity] {name}: {text}")


def check_samples(result: FaultResult, samples: pd.DataFrame) -> None:
    """The run was healthy around the fault, and Locust's sends were spread out in time."""
    assert result.steady_state_before, f"no steady state before: {result}"
    assert result.steady_state_after, f"no steady state after: {result}"
    w = result.window
    t = samples["t"].to_numpy()
    sent = t[(t >= w.warmup_start_t) & (t < w.inject_t)]
    assert len(sent) > 0.8 * PROBE_RATE * (w.inject_t - w.warmup_start_t), len(sent)
    # Users in lockstep send in bursts (all within a millisecond, once a period), and a
    # fault's start or end is then only known to a period; spread out, most gaps are longer.
    bunched = float((np.diff(sent) < 0.001).mean())
    assert bunched < 0.5, f"{bunched:.0%} of Locust's sends came within 1 ms of the previous"


def test_abort_for_exactly_d_seconds_is_measured_as_d(topo: LocalTopology, tmp_path: Path) -> None:
    duration_s = 2.0
    ops = LocalFaultOps.of(topo)
    with load(topo, tmp_path / "traffic") as run:
        try:
            inject_t = http_fault(ops, HttpFault(percent=100, abort_status=503))
            time.sleep(max(0.0, inject_t + duration_s - time.monotonic()))
        finally:
            revert_t = http_fault(ops, None)
        time.sleep(HOLD_S + 1.5)
        end_t = time.monotonic()
        outage = run.prober.outage(inject_t)
    samples = run.samples()

    window = FaultWindow(
        setup="sidecar",
        fault="abort-frontend",
        fault_type="abort",
        repetition=0,
        inject_t=inject_t,
        revert_t=revert_t,
        end_t=end_t,
        self_healing=False,
        warmup_start_t=run.warmup_start_t,
    )
    result = measure_window(samples, window, STEADY, HOLD_S)
    check_samples(result, samples)
    # An abort at 100 %: every probe failed, but for one at each end that can cross the
    # few milliseconds between the two frontends' switches (set one after the other).
    successes = round((1.0 - outage.failed_share) * outage.probes)
    assert successes <= 2 and outage.probes > 100, outage
    assert result.error_rate_during_fault is not None and result.error_rate_during_fault > 0.95
    assert result.time_to_impact_s is not None and result.impact_duration_s is not None
    assert result.time_to_recover_s is not None

    # D as it really was (the engine's own inject and revert instants), not as the test
    # slept it: a loaded machine sleeps longer, and the measurement must follow the record
    true_d = revert_t - inject_t
    assert true_d >= duration_s, f"the test held the fault {true_d:.3f} s"
    errors = {
        "impact_vs_D": result.impact_duration_s - true_d,
        "impact_vs_prober": result.impact_duration_s - outage.duration_s,
        "tti_vs_prober": result.time_to_impact_s - (outage.start_t - inject_t),
        "ttr_vs_prober": result.time_to_recover_s - max(0.0, outage.end_t - revert_t),
        "prober_vs_D": outage.duration_s - true_d,
    }
    report("abort", **errors)
    for name, error in errors.items():
        assert abs(error) <= TOLERANCE_S, f"{name} off by {error * 1000:.0f} ms: {result}"


def event_time(topo: LocalTopology, kind: EventKind, subject: str, after: float) -> float:
    """The time of the first ``kind`` event of ``subject`` after ``after``."""
    times = [e.t for e in topo.events.events(kind) if e.subject == subject and e.t >= after]
    assert times, f"no {kind} event of {subject} after {after:.3f}"
    return min(times)


def test_crash_with_fixed_restart_delay_is_measured_as_the_outage(
    topo: LocalTopology, tmp_path: Path
) -> None:
    # The ingress is the one process every request crosses, so killing it is a clean,
    # total outage with one restart: connections are refused until it is back. Killing
    # both frontend proxies would restart them one after the other (two kills, two
    # backoffs), a 50 % error rate in between, and no single instant of recovery.
    with load(topo, tmp_path / "traffic") as run:
        # The ingress is no pod's proxy, so it is not a crash target of the port: the
        # supervisor kills it directly, as the crash fault's mechanism does for proxies.
        supervisor = topo.supervisor
        restarts = supervisor.restarts("ingress")
        inject_t = time.monotonic()
        supervisor.kill("ingress")
        # the supervisor notices the exit within its poll; wait for the restart, then ready
        assert wait_until(lambda: supervisor.restarts("ingress") > restarts, RESTART_DELAY_S + 5.0)
        topo.supervisor.wait_ready(["ingress"], timeout_s=10.0)
        time.sleep(HOLD_S + 1.5)
        end_t = time.monotonic()
        outage = run.prober.outage(inject_t)
    samples = run.samples()
    backoff_t = event_time(topo, EventKind.BACKOFF, "ingress", inject_t)
    restarted_t = event_time(topo, EventKind.RESTARTED, "ingress", inject_t)
    ready_t = event_time(topo, EventKind.READY, "ingress", restarted_t)

    window = FaultWindow(
        setup="sidecar",
        fault="crash-ingress",
        fault_type="crash",
        repetition=0,
        inject_t=inject_t,
        revert_t=inject_t,  # nothing to undo: the supervisor heals it
        end_t=end_t,
        self_healing=True,
        warmup_start_t=run.warmup_start_t,
    )
    result = measure_window(samples, window, STEADY, HOLD_S)
    check_samples(result, samples)
    assert outage.failed_share == 1.0, outage  # nothing got through while it was down
    ttr = result.time_to_recover_s
    assert ttr is not None, result
    assert result.time_to_impact_s is not None

    startup_s = ttr - RESTART_DELAY_S
    errors = {
        "ttr_vs_prober_outage": ttr - outage.duration_s,
        "ttr_vs_prober_end": ttr - (outage.end_t - inject_t),
        "tti_vs_prober": result.time_to_impact_s - (outage.start_t - inject_t),
    }
    report(
        "crash",
        **errors,
        exit_seen=backoff_t - inject_t,
        restart_after_R=(restarted_t - inject_t) - RESTART_DELAY_S,
        serving_after_R=startup_s,
        ready_event_vs_ttr=(ready_t - inject_t) - ttr,
    )
    for name, error in errors.items():
        assert abs(error) <= TOLERANCE_S, f"{name} off by {error * 1000:.0f} ms: {result}"
    # Recovery is R plus the proxy's start-up: not before the supervisor restarted it,
    # and no later than its readiness probe (every 50 ms while starting) saw it ready.
    assert restarted_t - inject_t <= ttr <= ready_t - inject_t + TOLERANCE_S, (
        f"ttr {ttr:.3f} s, restart at {restarted_t - inject_t:.3f} s, "
        f"ready at {ready_t - inject_t:.3f} s"
    )
    # The supervisor waits R from the exit it saw, then spawns Envoy; it serves after that,
    # never before (how long after is Envoy's start-up on this machine: the ready event
    # bounds it above, from the supervisor's record).
    assert startup_s > 0.0, f"served {startup_s:.3f} s after R"


def test_latency_fault_adds_its_delay_to_p50(topo: LocalTopology, tmp_path: Path) -> None:
    delay_ms = 100
    ops = LocalFaultOps.of(topo)
    # 20 users at 100 rps: each sends every 200 ms, so a 100 ms delay does not cut
    # the rate (fewer requests would also mean less queueing, a smaller p50); half the
    # rate of the other tests keeps the 2-core machine out of its own queueing.
    with load(topo, tmp_path / "traffic", rate=100.0, users=20, path="/healthz") as run:
        try:
            inject_t = http_fault(ops, HttpFault(percent=100, delay_ms=delay_ms))
            time.sleep(2.0)
        finally:
            revert_t = http_fault(ops, None)
        time.sleep(HOLD_S + 0.5)
        end_t = time.monotonic()
        probes = run.prober.snapshot()
    samples = run.samples()
    before = [r.ms for r in probes if run.warmup_start_t <= r.t < inject_t and r.ok]
    during = [r.ms for r in probes if inject_t <= r.t < revert_t and r.ok]
    prober_added_ms = float(np.median(during) - np.median(before))

    window = FaultWindow(
        setup="sidecar",
        fault="latency-frontend",
        fault_type="latency",
        repetition=0,
        inject_t=inject_t,
        revert_t=revert_t,
        end_t=end_t,
        self_healing=False,
        warmup_start_t=run.warmup_start_t,
    )
    result = measure_window(samples, window, STEADY, HOLD_S)
    check_samples(result, samples)
    assert result.p50_ms_during_fault is not None and result.baseline_p50_ms is not None
    added_ms = result.p50_ms_during_fault - result.baseline_p50_ms
    print(
        f"\n[fidelity] latency: baseline p50 {result.baseline_p50_ms:.1f} ms, during "
        f"{result.p50_ms_during_fault:.1f} ms, added {added_ms:.1f} ms "
        f"(error {added_ms - delay_ms:+.1f} ms); the prober saw {prober_added_ms:.1f} ms added"
    )
    assert result.failed_requests == 0, result.errors_by_kind
    assert abs(added_ms - delay_ms) <= 0.10 * delay_ms, f"added {added_ms:.1f} ms"
