"""What a person watching a run sees: a live game-day panel, or plain lines.

On a terminal, a rich ``Live`` panel shows the window, the phase and its
countdown, the last second's throughput, error rate and p95 (with a short
history), and events (crash, restart, cert rotated) as they happen. Anywhere
else (CI logs, pipes) the same information comes as one plain line each.
"""

from __future__ import annotations

from collections import deque
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


class PlainView:
    """One line per tick and per event, for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
        self.console.print(
            f"{window} {phase:<9} {left_s:5.1f}s left | {stats.rps:6.0f} rps | "
            f"errors {stats.error_rate * 100:5.1f}% | p95 {stats.p95_ms or 0:6.0f} ms",
            markup=False,
            highlight=False,
        )

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
        self._errors: deque[float] = deque(maxlen=history)
        self._p95: deque[float] = deque(maxlen=history)
        self._events: deque[str] = deque(maxlen=8)
        self._header = Text("starting...")
        self._stats: LiveStats | None = None
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def phase(self, window: str, phase: str, left_s: float, stats: LiveStats) -> None:
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
