"""The event log of a local topology: what happened to which process, and when.

Every event carries two clocks: ``t`` on ``time.monotonic()`` (for measuring
delays, comparable across the processes of one machine) and ``utc`` (ISO-8601
wall time, for the journal and for people). The log is thread-safe: the
supervisor's watcher thread, the cert agent and the engine all append to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from chaos.platforms.base import Event, EventCallback, EventKind

_log = logging.getLogger(__name__)


class EventLog:
    """A thread-safe, append-only list of events with subscribers and an optional file sink.

    Subscribers are called synchronously, in order, for each new event, on the
    thread that appended it; keep them quick. A subscriber that raises is
    logged and otherwise ignored, so it cannot break the log or the appender.
    With ``sink``, each event is also written to that file as one JSON line and
    flushed at once, so a killed runner still leaves its events behind.
    """

    def __init__(self, sink: Path | None = None) -> None:
        # Reentrant so that a subscriber may read the log while being called.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._events: list[Event] = []
        self._subscribers: list[EventCallback] = []
        self._sink: IO[str] | None = None
        if sink is not None:
            sink.parent.mkdir(parents=True, exist_ok=True)
            self._sink = sink.open("a", encoding="utf-8")

    def append(self, kind: EventKind | str, subject: str, detail: str = "") -> Event:
        """Record a new event stamped now and return it."""
        event = Event.now(kind, subject, detail)
        self.record(event)
        return event

    def record(self, event: Event) -> None:
        """Record an event built elsewhere."""
        with self._lock:
            self._events.append(event)
            if self._sink is not None and not self._sink.closed:
                self._sink.write(json.dumps(event.to_dict()) + "\n")
                self._sink.flush()
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:
                    _log.exception("event subscriber %r failed on %s", callback, event.kind)
            self._changed.notify_all()

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` for every new event; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def events(
        self, kind: EventKind | str | None = None, subject: str | None = None
    ) -> list[Event]:
        """The events so far, oldest first, optionally only of one kind and/or subject."""
        wanted = EventKind(kind) if kind is not None else None
        with self._lock:
            return [
                e
                for e in self._events
                if (wanted is None or e.kind is wanted)
                and (subject is None or e.subject == subject)
            ]

    def wait_for(
        self,
        kind: EventKind | str,
        subject: str | None = None,
        *,
        after: float | None = None,
        timeout_s: float = 5.0,
    ) -> Event | None:
        """Block until an event of ``kind`` (and ``subject``) with ``t > after`` exists.

        Returns the first such event, or None when ``timeout_s`` passes first.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events(kind, subject):
                    if after is None or event.t > after:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def to_json(self) -> str:
        """All events as a JSON array."""
        with self._lock:
            return json.dumps([e.to_dict() for e in self._events])

    def close(self) -> None:
        """Close the file sink (the in-memory log stays readable)."""
        with self._lock:
            if self._sink is not None:
                self._sink.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
