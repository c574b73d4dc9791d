"""What the engine records of each window, and the order of windows: plain data.

:class:`WindowKey` names a window, :class:`WindowRecord` is what the engine saw in it
(times on the monotonic clock), :func:`schedule` is a fixed run's order of windows, and
:func:`windows_for_analysis` / :func:`broken_windows` / :func:`recorded_writes_of` turn
records into what the analysis reads. The run loop (:mod:`.run`), the adaptive rounds
(:mod:`.rounds`) and the finish step (:mod:`.finish`) all import this module and not each
other, so no two of them import one another.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from chaos.analysis import BrokenWindow, FaultWindow
from chaos.experiment import Experiment
from chaos.faults.base import Evidence
from chaos.rundir.writes import RecordedWrites


@dataclass(frozen=True)
class WindowKey:
    """One fault window: a setup, a fault (by position and name), a repetition."""

    setup: str
    fault_index: int
    fault: str
    repetition: int

    @property
    def label(self) -> str:
        return f"{self.setup}/{self.fault}#{self.repetition + 1}"

    @property
    def slug(self) -> str:
        return f"{self.setup}-{self.fault}-{self.repetition + 1}"


@dataclass
class WindowRecord:
    """What the engine saw in one window (times on the monotonic clock)."""

    key: WindowKey
    fault_type: str
    self_healing: bool = False
    warmup_start_t: float = 0.0
    inject_t: float | None = None
    revert_t: float | None = None
    end_t: float | None = None
    evidence: Evidence | None = None
    aborted: bool = False
    #: Why the runner could not measure this window (it broke); None when it ran through.
    error: str | None = None
    #: The step the window was in; a broken window names the step it broke in.
    phase: str = "start"
    #: The write ids ``payments`` recorded, as keys (compact: millions in a soak).
    recorded_writes: RecordedWrites = field(default_factory=RecordedWrites.empty)
    #: The platform could not read the recorded writes: the run's writes are not checked.
    writes_unreadable: bool = False
    #: The counters that give the fault's affected share (``FaultWindow.share_counters``).
    share_counters: tuple[str, ...] = ()
    client_counter: str = ""


def schedule(experiment: Experiment) -> list[WindowKey]:
    """Every window, repetitions outermost, setups interleaved in a seeded order."""
    rng = random.Random(experiment.seed)
    names = experiment.fault_names()
    keys: list[WindowKey] = []
    for repetition in range(experiment.planned_repetitions):
        for index, fault in enumerate(experiment.faults):
            setups = [
                s
                for s in experiment.setups
                if fault.target.setups is None or s in fault.target.setups
            ]
            rng.shuffle(setups)
            keys += [WindowKey(s, index, names[index], repetition) for s in setups]
    return keys


def recorded_writes_of(records: Sequence[WindowRecord]) -> RecordedWrites | None:
    """Every window's recorded writes; None (not checked) when a window could not read them."""
    if any(r.writes_unreadable for r in records):
        return None
    return RecordedWrites.concat(r.recorded_writes for r in records)


def windows_for_analysis(records: list[WindowRecord]) -> list[FaultWindow]:
    """The windows that got as far as an injection and did not break."""
    found = []
    for r in records:
        if r.error is not None or r.inject_t is None or r.revert_t is None or r.end_t is None:
            continue
        found.append(
            FaultWindow(
                setup=r.key.setup,
                fault=r.key.fault,
                fault_type=r.fault_type,
                repetition=r.key.repetition,
                inject_t=r.inject_t,
                revert_t=max(r.revert_t, r.inject_t),
                end_t=max(r.end_t, r.revert_t, r.inject_t),
                self_healing=r.self_healing,
                warmup_start_t=min(r.warmup_start_t or r.inject_t, r.inject_t),
                aborted=r.aborted,
                share_counters=r.share_counters,
                client_counter=r.client_counter,
            )
        )
    return found


def broken_windows(records: list[WindowRecord]) -> list[BrokenWindow]:
    """The windows the runner could not measure, each with its reason and step."""
    return [
        BrokenWindow(
            setup=r.key.setup,
            fault=r.key.fault,
            repetition=r.key.repetition,
            phase=r.phase,
            reason=r.error,
            injected=r.inject_t is not None,
        )
        for r in records
        if r.error is not None
    ]
