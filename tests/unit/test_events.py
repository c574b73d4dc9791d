"""The event log: filters, subscribers, the JSON-lines sink, thread safety."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from chaos.platforms.base import Event, EventKind
from chaos.platforms.local.events import EventLog


def test_events_are_stamped_and_filtered() -> None:
    log = EventLog()
    before = time.monotonic()
    log.append(EventKind.STARTED, "a", "pid=1")
    log.append("crashed", "a", "signal=SIGKILL")
    log.append(EventKind.STARTED, "b")
    assert [e.kind for e in log.events()] == [
        EventKind.STARTED,
        EventKind.CRASHED,
        EventKind.STARTED,
    ]
    assert [e.subject for e in log.events(kind="started")] == ["a", "b"]
    assert [e.kind for e in log.events(subject="a")] == [EventKind.STARTED, EventKind.CRASHED]
    assert log.events(kind=EventKind.CRASHED, subject="b") == []
    first = log.events()[0]
    assert before <= first.t <= time.monotonic()
    assert first.utc.endswith("+00:00")
    assert len(log) == 3


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        EventLog().append("exploded", "a")


def test_subscribers_see_every_event_and_a_failing_one_breaks_nothing() -> None:
    log = EventLog()
    seen: list[str] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("subscriber bug")

    log.subscribe(broken)
    unsubscribe = log.subscribe(lambda e: seen.append(f"{e.kind}:{e.subject}"))
    log.append(EventKind.READY, "x")
    log.append(EventKind.UNREADY, "x")
    unsubscribe()
    log.append(EventKind.STOPPED, "x")
    assert seen == ["ready:x", "unready:x"]
    assert len(log.events()) == 3


def test_a_subscriber_may_read_the_log() -> None:
    log = EventLog()
    counts: list[int] = []
    log.subscribe(lambda _e: counts.append(len(log.events())))
    log.append(EventKind.STARTED, "a")
    log.append(EventKind.READY, "a")
    assert counts == [1, 2]


def test_the_sink_holds_each_event_as_soon_as_it_is_appended(tmp_path: Path) -> None:
    sink = tmp_path / "sub" / "events.jsonl"
    with EventLog(sink) as log:
        log.append(EventKind.CERT_ISSUED, "checkout-0", "ttl_s=60")
        # Read while the log is still open: flushed per event.
        lines = sink.read_text().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert record["kind"] == "cert_issued"
        assert record["subject"] == "checkout-0"
        assert record["detail"] == "ttl_s=60"
        assert isinstance(record["t"], float)
        log.append(EventKind.CERT_ROTATED, "checkout-0")
    assert [json.loads(x)["kind"] for x in sink.read_text().splitlines()] == [
        "cert_issued",
        "cert_rotated",
    ]


def test_to_json_round_trips() -> None:
    log = EventLog()
    log.append(EventKind.FAULT_INJECTED, "payments-0.proxy", "crash")
    log.append(EventKind.FAULT_REVERTED, "payments-0.proxy")
    data = json.loads(log.to_json())
    assert [d["kind"] for d in data] == ["fault_injected", "fault_reverted"]
    assert data[0] == log.events()[0].to_dict()


def test_concurrent_appends_lose_nothing() -> None:
    log = EventLog()
    received: list[Event] = []
    log.subscribe(received.append)

    def worker(i: int) -> None:
        for _ in range(200):
            log.append(EventKind.CONFIG_PUSHED, f"proxy-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == 1600
    assert len(received) == 1600
    assert all(len(log.events(subject=f"proxy-{i}")) == 200 for i in range(8))


def test_wait_for_returns_an_event_appended_by_another_thread() -> None:
    log = EventLog()
    mark = time.monotonic()
    timer = threading.Timer(0.1, lambda: log.append(EventKind.RESTARTED, "a"))
    timer.start()
    event = log.wait_for(EventKind.RESTARTED, "a", after=mark, timeout_s=5)
    timer.join()
    assert event is not None and event.t > mark
    assert log.wait_for(EventKind.CRASHED, timeout_s=0.05) is None
