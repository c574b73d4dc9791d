"""Where a run's time went outside its windows' planned phases, from the journal's own clock.

Each window pays for bringing its topology up (``window_started`` -> ``topology_up``),
starting Locust (-> ``traffic_started``), then after its recovery phase
(``recovery_ended``) stopping Locust, collecting what the topology recorded and stopping
it (-> ``topology_stopped``). Where the platform allows it the next window's start runs
during this one's recovery and this one's teardown during the next one's warm-up, so the
windows' figures overlap and ``windows_wall_s`` is less than their sum. The planned phases
(warm-up, hold, recovery) run from ``warmup`` to ``recovery_ended``. Every figure is a
difference of two journal entries' monotonic timestamps: nothing here is measured anew.
A window broken before a step has None for that step's figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from chaos.rundir.journal import JournalEntry

#: The entries that bound one window's steps, in the order the engine writes them.
STEPS = (
    "window_started",
    "topology_up",
    "traffic_started",
    "warmup",
    "recovery_ended",
    "topology_stopped",
)


@dataclass(frozen=True)
class WindowOverhead:
    """One window's time outside its planned phases, in seconds (None: never got there)."""

    setup: str
    fault: str
    repetition: int
    #: window_started -> topology_up: the platform brought the topology up.
    startup_s: float | None
    #: topology_up -> traffic_started: Locust started and its first users ran.
    traffic_start_s: float | None
    #: warmup -> recovery_ended: the planned phases (what the experiment asked for).
    phases_s: float | None
    #: recovery_ended -> topology_stopped: Locust stopped, records collected, topology down.
    teardown_s: float | None
    #: window_started -> topology_stopped: the whole window, wall time.
    window_s: float | None


@dataclass(frozen=True)
class RunOverhead:
    """Every window's overhead and the run's totals."""

    windows: tuple[WindowOverhead, ...]
    #: run_started -> the last window's topology_stopped.
    windows_wall_s: float | None

    @property
    def startup_total_s(self) -> float:
        return sum(w.startup_s or 0.0 for w in self.windows)

    @property
    def teardown_total_s(self) -> float:
        return sum(w.teardown_s or 0.0 for w in self.windows)

    def to_dict(self) -> dict[str, object]:
        """The ``overhead`` section of ``results.json``."""
        return {
            "windows": [asdict(w) for w in self.windows],
            "windows_wall_s": self.windows_wall_s,
            "startup_total_s": round(self.startup_total_s, 3),
            "teardown_total_s": round(self.teardown_total_s, 3),
        }


def _span(marks: dict[str, float], start: str, end: str) -> float | None:
    if start in marks and end in marks:
        return round(marks[end] - marks[start], 3)
    return None


def _window(first: JournalEntry, marks: dict[str, float]) -> WindowOverhead:
    repetition = first.data.get("repetition", 0)
    return WindowOverhead(
        setup=first.get_str("setup"),
        fault=first.get_str("fault"),
        repetition=repetition if isinstance(repetition, int) else 0,
        startup_s=_span(marks, "window_started", "topology_up"),
        traffic_start_s=_span(marks, "topology_up", "traffic_started"),
        phases_s=_span(marks, "warmup", "recovery_ended"),
        teardown_s=_span(marks, "recovery_ended", "topology_stopped"),
        window_s=_span(marks, "window_started", "topology_stopped"),
    )


def run_overhead(entries: Sequence[JournalEntry]) -> RunOverhead:
    """Each window's steps; a window abandoned before its turn (the run ended) is left out.

    Entries naming their window (``window``: the engine writes it since windows may overlap,
    the next one starting during this one's recovery) are grouped by it; older journals are
    read in order (a window ends at the next one's start).
    """
    firsts: dict[str, JournalEntry] = {}
    marks: dict[str, dict[str, float]] = {}
    abandoned: set[str] = set()
    current = ""
    run_started: float | None = None
    last_stop: float | None = None
    for number, entry in enumerate(entries):
        if entry.kind == "run_started" and run_started is None:
            run_started = entry.t
        named = entry.get_str("window")
        if entry.kind == "window_started":
            current = named or f"#{number}"
            firsts[current] = entry
            marks[current] = {}
        window = named or current
        if entry.kind == "window_abandoned":
            abandoned.add(window)
        if window in marks and entry.kind in STEPS:
            marks[window].setdefault(entry.kind, entry.t)
        if entry.kind == "topology_stopped" and window not in abandoned:
            last_stop = entry.t if last_stop is None else max(last_stop, entry.t)
    windows = [_window(first, marks[w]) for w, first in firsts.items() if w not in abandoned]
    wall = (
        round(last_stop - run_started, 3)
        if run_started is not None and last_stop is not None
        else None
    )
    return RunOverhead(tuple(windows), wall)
