"""The report's timeline marks endpoint removal, restart and certificate issue from the journal."""

from __future__ import annotations

from chaos.platforms.base import EventKind
from chaos.report import charts
from chaos.report.rundata import EVENT_LABELS, _events, _WindowIndex
from chaos.rundir.journal import JournalEntry
from tests.unit.windows import window_result


def _event(kind: EventKind, subject: str, t: float) -> JournalEntry:
    data: dict[str, object] = {"event": kind.value, "subject": subject, "detail": "", "event_t": t}
    return JournalEntry("event", "", t, data)  # type: ignore[arg-type]


def test_crash_restart_cert_issue_and_endpoint_changes_are_placed_on_the_window() -> None:
    run = window_result("mesh", "crash", 0)  # injected at t=100
    entries = [
        _event(EventKind.CRASHED, "frontend-0.proxy", 100.2),
        _event(EventKind.ENDPOINTS_REMOVED, "frontend-0", 100.35),
        _event(EventKind.CERT_ISSUED, "frontend-0", 100.5),
        _event(EventKind.RESTARTED, "frontend-0.proxy", 100.6),
        _event(EventKind.ENDPOINTS_RESTORED, "frontend-0", 100.9),
        _event(EventKind.CONFIG_PUSHED, "frontend-0.proxy", 100.55),  # not a marker
    ]
    placed = _events(entries, _WindowIndex([run]))
    assert [(e.kind, round(e.t_rel, 2)) for e in placed] == [
        ("crashed", 0.2),
        ("endpoints_removed", 0.35),
        ("cert_issued", 0.5),
        ("restarted", 0.6),
        ("endpoints_restored", 0.9),
    ]
    # Each of them has a marker on the chart (injection and revert are the shaded span).
    assert {e.kind for e in placed} <= set(charts._EVENT_MARKERS) <= set(EVENT_LABELS)
