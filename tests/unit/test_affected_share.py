"""The affected share of a fault, from the proxies' own counters (chaos.analysis.shares)."""

from __future__ import annotations

import dataclasses

from chaos.analysis.counters import counter_frame
from chaos.analysis.model import FaultWindow
from chaos.analysis.results_io import run_from_dict, run_to_dict
from chaos.analysis.shares import affected_share
from chaos.rundir.counters import CounterSample
from tests.unit.windows import window_result

_CLIENT = "ingress:http.ingress.downstream_rq_total"
_SITE = "checkout-0.proxy:http.inbound.downstream_rq_total"


def _window(**kw: object) -> FaultWindow:
    base: dict[str, object] = {
        "setup": "sidecar",
        "fault": "checkout-slow",
        "fault_type": "latency",
        "repetition": 0,
        "inject_t": 10.0,
        "revert_t": 20.0,
        "end_t": 30.0,
        "self_healing": False,
        "warmup_start_t": 0.0,
        "share_counters": (_SITE,),
        "client_counter": _CLIENT,
    }
    return FaultWindow(**(base | kw))  # type: ignore[arg-type]


def _samples() -> list[CounterSample]:
    # The ingress counts 10 requests a second; checkout-0 sees 4 of them until the
    # revert at t=20, then every one (what a share over the whole window would blur).
    found = []
    for t in range(0, 31):
        site = 4 * t if t <= 20 else 80 + 10 * (t - 20)
        found += [
            CounterSample(float(t), "ingress", "http.ingress.downstream_rq_total", 10.0 * t),
            CounterSample(float(t), "checkout-0.proxy", "http.inbound.downstream_rq_total", site),
        ]
    return found


def test_share_is_the_faulted_proxys_requests_over_the_ingress_between_inject_and_revert() -> None:
    share = affected_share(counter_frame(_samples()), _window())
    assert share is not None and abs(share - 0.4) < 1e-9


def test_a_proxy_restart_does_not_make_the_share_negative() -> None:
    samples = [s for s in _samples() if not (s.proxy == "checkout-0.proxy" and s.t == 15.0)]
    # The site's proxy restarted at t=15: its counter starts again from 0.
    samples = [
        CounterSample(s.t, s.proxy, s.name, s.value - 60.0)
        if s.proxy == "checkout-0.proxy" and s.t > 15
        else s
        for s in samples
    ]
    share = affected_share(counter_frame(samples), _window())
    assert share is not None and 0.0 < share <= 1.0


def test_no_share_without_counters_or_client_traffic() -> None:
    frame = counter_frame(_samples())
    assert affected_share(frame, _window(share_counters=())) is None
    assert affected_share(frame, _window(client_counter="ingress:missing")) is None
    assert affected_share(None, _window()) is None


def test_share_and_its_counters_round_trip_through_results_json() -> None:
    result = dataclasses.replace(
        window_result("sidecar", "checkout-slow", 0), window=_window(), affected_share=0.4
    )
    back = run_from_dict(run_to_dict(result))
    assert back.affected_share == 0.4
    assert back.window.share_counters == (_SITE,)
    assert back.window.client_counter == _CLIENT
    assert run_to_dict(result)["affected_share_source"]
