"""An independent prober: a view of an outage that shares nothing with the tool's own.

The fidelity tests and ``make bench`` check the analysis' times against it. It
shares nothing with the traffic or analysis packages: its own threads, the
standard library's ``http.client`` on a kept-alive connection per thread, its own
timestamps (``time.monotonic()`` just before the request is written). A few
threads take turns on a fixed schedule, so a slow answer on one does not delay
the others; a thread that falls behind skips the slots it missed rather than
sending late under an early timestamp. Probes are bounded in number and time.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

#: Status recorded for a probe that got no HTTP answer (refused, reset, timeout).
NO_ANSWER = 0


class ProbeError(RuntimeError):
    """The prober did not stop, or saw no complete outage where one was expected."""


@dataclass(frozen=True)
class ProbeResult:
    """One probe: when it was sent, what came back, how long it took."""

    t: float
    status: int
    ms: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Outage:
    """What the prober saw of one outage (times on ``time.monotonic()``).

    ``start_t`` is the send time of the first failed probe at or after the reference;
    ``end_t`` that of the first successful probe after which every probe succeeded.
    ``failed_share`` is the share of failed probes in ``[start_t, end_t)``: close to
    1 for a total outage.
    """

    start_t: float
    end_t: float
    failed_share: float
    probes: int

    @property
    def duration_s(self) -> float:
        """How long requests failed, as the prober saw it."""
        return self.end_t - self.start_t


@dataclass
class Prober:
    """GET ``url`` at ``rate`` per second from ``threads`` background threads; a context manager.

    ``headers`` gives the headers per probe (a bearer token, say). The prober stops
    at ``stop()``, or by itself after ``max_s`` seconds.
    """

    url: str
    headers: Callable[[], dict[str, str]] = dict
    rate: float = 100.0
    threads: int = 4
    max_s: float = 30.0
    timeout_s: float = 1.0
    results: list[ProbeResult] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Prober:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start probing in the background."""
        start = time.monotonic()
        for k in range(self.threads):
            worker = threading.Thread(target=self._run, args=(start, k), daemon=True)
            self._workers.append(worker)
            worker.start()

    def stop(self) -> None:
        """Stop sending and wait for the probes under way (at most ``timeout_s`` more)."""
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout_s + 5.0)
            if worker.is_alive():
                raise ProbeError("the prober did not stop")

    def snapshot(self) -> list[ProbeResult]:
        """The probes answered so far, in send order."""
        with self._lock:
            return sorted(self.results, key=lambda r: r.t)

    def _run(self, start: float, k: int) -> None:
        """Thread ``k`` takes slots k, k + threads, k + 2 * threads, ... of the schedule."""
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path or "/"
        conn: http.client.HTTPConnection | None = None
        period = self.threads / self.rate
        end = start + self.max_s
        due = start + k / self.rate
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now > due:  # fell behind: the next slot still ahead, never a late send
                    due += period * (int((now - due) / period) + 1)
                if due >= end:
                    return
                if self._stop.wait(due - time.monotonic()):
                    return
                headers = self.headers()
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
                sent = time.monotonic()
                try:
                    conn.request("GET", path, headers=headers)
                    answer = conn.getresponse()
                    answer.read()
                    status = answer.status
                except (OSError, http.client.HTTPException):
                    status = NO_ANSWER
                    conn.close()
                    conn = None
                result = ProbeResult(sent, status, (time.monotonic() - sent) * 1000.0)
                with self._lock:
                    self.results.append(result)
                due += period
        finally:
            if conn is not None:
                conn.close()

    def outage(self, after_t: float) -> Outage:
        """The outage that began at or after ``after_t``; ``ProbeError`` if none or not over."""
        probes = [r for r in self.snapshot() if r.t >= after_t]
        first = next((i for i, r in enumerate(probes) if not r.ok), None)
        if first is None:
            raise ProbeError(f"the prober saw no failure after t={after_t:.3f}")
        last_failure = max(i for i, r in enumerate(probes) if not r.ok)
        if last_failure + 1 >= len(probes):
            raise ProbeError("the prober never saw a success after the outage")
        during = probes[first : last_failure + 1]
        return Outage(
            start_t=probes[first].t,
            end_t=probes[last_failure + 1].t,
            failed_share=sum(1 for r in during if not r.ok) / len(during),
            probes=len(during),
        )
