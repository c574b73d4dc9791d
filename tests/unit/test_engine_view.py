"""The progress view: numbers labelled with the phase they belong to; one line each in logs."""

from __future__ import annotations

import io

from rich.console import Console

from chaos.engine.view import PhaseClock, PlainView
from chaos.traffic import LiveStats


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def stats(end: float, errors: int = 0) -> LiveStats:
    # the second of completions ending 0.25 s before "now" (as chaos.traffic.live reads it)
    return LiveStats(end - 1.0, end, 80, errors, 12.0)


def test_the_second_after_the_revert_still_belongs_to_the_hold() -> None:
    clock = Clock()
    phases = PhaseClock(clock)
    phases.mark("mesh/crash#1", "hold")  # hold starts at 100
    clock.t = 104.1
    phases.mark("mesh/crash#1", "recovery")  # recovery starts at 104.1
    # at 104.2 the last complete second is 103.0..104.0 (hold), at 105.5 it is 104.2..105.2
    assert phases.label("mesh/crash#1", stats(104.0)) == "hold"
    assert phases.label("mesh/crash#1", stats(105.25)) == "recovery"
    assert phases.label("sidecar/crash#1", stats(105.25)) == "mesh/crash#1 recovery"
    assert PhaseClock(clock).label("x", stats(1.0)) == "before"


def test_plain_progress_is_one_line_whatever_the_width() -> None:
    out = io.StringIO()
    clock = Clock()
    view = PlainView(Console(file=out, width=80, force_terminal=False), clock)
    view.phase("ambient/checkout-cert-expired#12", "hold", 3.9, stats(99.0, errors=8))
    clock.t = 104.1
    view.phase("ambient/checkout-cert-expired#12", "recovery", 6.9, stats(103.85, errors=80))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(len(line) > 80 for line in lines)
    assert "ambient/checkout-cert-expired#12 recovery" in lines[1]
    # the errors shown at the start of recovery are labelled as the hold's
    assert "last second (hold):     80 rps, errors 100.0%" in lines[1]
