"""What a person watching a run sees: a live game-day panel, or plain lines.

On a terminal, a rich ``Live`` panel shows the window, the phase and its
countdown, the last second's throughput, error rate and p95 (with a short
history), and events (crash, restart, cert rotated) as they happen. Anywhere
else (CI logs, pipes) the same information comes as one plain line each, never
wrapped (a log line is one line whatever the width).

The numbers are those of the last *complete* second of request completions,
which ends a quarter of a second ago (``chaos.traffic.live``): at the start of
recovery they still describe the end of the hold. Both views therefore label
the numbers with the phase their second belongs to (``PhaseClock``), not the
phase that is running now.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chaos.traffic import LiveStats

_SPARK = "▁▂▃▄▅▆▇█"


class RunView(Protocol):
    """Where the engine reports progress."""

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None: ...

    def say(self, line: str) -> None: ...

    def close(self) -> None: ...


class PhaseClock:
    """When each (window, phase) began, to tell which phase a second of numbers belongs to.

    A phase is marked the first time the engine reports it (within a tick of its
    start); a second of statistics belongs to the phase its midpoint falls in.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._starts: list[float] = []
        self._labels: list[tuple[str, str]] = []

    def mark(self, window: str, phase: str) -> None:
        """Note that ``phase`` of ``window`` is running (the first call marks its start)."""
        if self._labels and self._labels[-1] == (window, phase):
            return
        self._starts.append(self._clock())
        self._labels.append((window, phase))
        if len(self._starts) > 64:
            del self._starts[:32], self._labels[:32]

    def phase_of(self, stats: LiveStats) -> tuple[str, str] | None:
        """The (window, phase) the middle of ``stats``' second fell in; None before any."""
        middle = (stats.window_start + stats.window_end) / 2.0
        i = bisect_right(self._starts, middle) - 1
        return self._labels[i] if i >= 0 else None

    def label(self, window: str, stats: LiveStats) -> str:
        """``hold`` (same window) or ``mesh/crash#1 recovery``; ``before`` when none matched."""
        found = self.phase_of(stats)
        if found is None:
            return "before"
        return found[1] if found[0] == window else f"{found[0]} {found[1]}"


def progress_line(window: str, phase: str, left_s: float, stats: LiveStats, of: str) -> str:
    """One progress line: now running, then the last complete second and its phase."""
    return (
        f"{window} {phase:<9} {left_s:5.1f}s left | last second ({of}): "
        f"{stats.rps:6.0f} rps, errors {stats.error_rate * 100:5.1f}%, "
        f"p95 {stats.p95_ms or 0:6.0f} ms"
    )


class PlainView:
    """One line per tick and per event, for logs and pipes (never wrapped)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = PhaseClock(clock)

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
        self.clock.mark(window, phase)
        line = progress_line(window, phase, left_s, stats, self.clock.label(window, stats))
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        return None


def sparkline(values: list[float], top: float | None = None) -> str:
    """A one-line chart of ``values`` (scaled to ``top`` or their maximum)."""
    if not values:
        return ""
    peak = top if top is not None else max(values)
    if peak <= 0:
        return _SPARK[0] * len(values)
    steps = len(_SPARK) - 1
    return "".join(_SPARK[min(steps, round(v / peak * steps))] for v in values)


class LiveView:
    """A rich panel redrawn in place; events scroll below the numbers."""

    def __init__(self, console: Console, history: int = 40) -> None:
        self.console = console
        self.clock = PhaseClock()
        self._of = ""
        self._errors: deque[float] = deque(maxlen=history)
        self._p95: deque[float] = deque(maxlen=history)
        self._events: deque[str] = deque(maxlen=8)
        self._header = Text("starting...")
        self._stats: LiveStats | None = None
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
        self.clock.mark(window, phase)
        self._of = self.clock.label(window, stats)
        self._header = Text.assemble(
            (window, "bold"), "  ", (phase, "cyan"), f"  {left_s:4.1f} s left"
        )
        self._stats = stats
        self._errors.append(stats.error_rate)
        self._p95.append(stats.p95_ms or 0.0)
        self._live.update(self._render())

    def say(self, line: str) -> None:
        self._events.append(line)
        self._live.update(self._render())

    def close(self) -> None:
        self._live.stop()

    def _render(self) -> Panel:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="dim")
        table.add_column()
        stats = self._stats
        if stats is not None:
            rate = stats.error_rate * 100
            colour = "red" if rate > 1 else "green"
            table.add_row("last second", Text(f"during {self._of}", style="cyan"))
            table.add_row("throughput", f"{stats.rps:.0f} requests/s")
            table.add_row(
                "errors",
                Text.assemble((f"{rate:5.1f} %", colour), "  ", sparkline(list(self._errors), 1.0)),
            )
            table.add_row("p95", f"{stats.p95_ms or 0:6.0f} ms  {sparkline(list(self._p95))}")
        events = Text("\n".join(self._events) or "no events yet", style="yellow")
        return Panel(Group(self._header, table, Text(""), events), title="sidecar-chaos game day")


def make_view(console: Console) -> RunView:
    """The live panel on a terminal, plain lines elsewhere."""
    if console.is_terminal:
        return LiveView(console)
    return PlainView(console)
