"""One run directory read into typed pieces the report, JUnit and history share.

Reads ``meta.json``, ``results.json``/``buckets.csv``, the journal (events and the
fault plans' blast radius) and ``experiment.yaml``. Journal entries are matched to
a fault window by their ``setup``/``fault``/``repetition`` keys when they carry
them, else by time (windows of one run never overlap).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaos.analysis import FaultResult, RunAnalysis, read_results
from chaos.errors import ChaosError
from chaos.rundir import EFFECTIVE_FILE, EXPERIMENT_FILE, META_FILE
from chaos.rundir.journal import JournalEntry, read_journal
from chaos.rundir.meta import RunMeta, read_meta

#: Journal ``event`` kinds drawn on timelines, with a short label.
EVENT_LABELS: dict[str, str] = {
    "fault_injected": "injected",
    "fault_reverted": "reverted",
    "crashed": "crash",
    "restarted": "restart",
    "cert_rotated": "cert rotation",
    "cert_expired": "cert expired",
    "cert_issued": "cert issued",
    "endpoints_removed": "endpoints removed",
    "endpoints_restored": "endpoints restored",
}

WindowTriple = tuple[str, str, int]


@dataclass(frozen=True)
class RunEvent:
    """A journal event placed in its fault window; ``t_rel`` is seconds since injection."""

    setup: str
    fault: str
    repetition: int
    kind: str
    t_rel: float
    subject: str
    detail: str


@dataclass(frozen=True)
class RunData:
    """Everything the report needs from one run directory (samples are read on demand)."""

    run_dir: Path
    meta: RunMeta | None
    analysis: RunAnalysis
    events: list[RunEvent]
    #: Pods the fault plan touched, per (setup, fault, repetition).
    blast_radius: dict[WindowTriple, tuple[str, ...]]
    experiment_text: str
    description: str
    fault_summaries: dict[str, str] = field(default_factory=dict)
    #: Why the run ended early, as the journal says it (``run_aborted``); None if it did not.
    abort_reason: str | None = None
    #: ``experiment.effective.yaml`` (the experiment after overrides), "" when absent.
    effective_text: str = ""

    @property
    def abort_cause(self) -> str:
        """How aborted repetitions ended, for a sentence: ``interrupted by SIGINT; ...``."""
        return self.abort_reason or "by a stop condition"

    @property
    def label(self) -> str:
        """``<experiment> · <started UTC>`` or the directory name when meta is missing."""
        if self.meta is None:
            return self.run_dir.name
        started = self.meta.started_utc.replace("T", " ")[:19]
        return f"{self.meta.experiment_name} · {started} UTC"

    @property
    def runs(self) -> list[FaultResult]:
        """The per-window results."""
        return self.analysis.runs

    def setups(self) -> list[str]:
        """Setups in order of first appearance."""
        return list(dict.fromkeys(r.setup for r in self.runs))

    def faults(self) -> list[str]:
        """Faults in order of first appearance."""
        return list(dict.fromkeys(r.fault for r in self.runs))


class _WindowIndex:
    """Finds the fault window a journal time falls in."""

    def __init__(self, runs: Sequence[FaultResult]) -> None:
        ordered = sorted(runs, key=lambda r: r.window.warmup_start_t)
        self._starts = [r.window.warmup_start_t for r in ordered]
        self._runs = ordered
        self._by_key = {(r.setup, r.fault, r.repetition): r for r in runs}

    def find(self, entry: JournalEntry) -> FaultResult | None:
        setup, fault = entry.get_str("setup"), entry.get_str("fault")
        rep = entry.data.get("repetition")
        if setup and fault and isinstance(rep, int):
            found = self._by_key.get((setup, fault, rep))
            if found is not None:
                return found
        i = bisect.bisect_right(self._starts, entry.t) - 1
        if i >= 0 and entry.t <= self._runs[i].window.end_t:
            return self._runs[i]
        return None


def _events(entries: Sequence[JournalEntry], index: _WindowIndex) -> list[RunEvent]:
    events = []
    for e in entries:
        kind = e.get_str("event") if e.kind == "event" else ""
        if kind not in EVENT_LABELS:
            continue
        r = index.find(e)
        if r is None:
            continue
        events.append(
            RunEvent(
                setup=r.setup,
                fault=r.fault,
                repetition=r.repetition,
                kind=kind,
                t_rel=e.t - r.window.inject_t,
                subject=e.get_str("subject"),
                detail=e.get_str("detail"),
            )
        )
    return events


def _blast_radius(
    entries: Sequence[JournalEntry], index: _WindowIndex
) -> dict[WindowTriple, tuple[str, ...]]:
    radius: dict[WindowTriple, tuple[str, ...]] = {}
    for e in entries:
        pods = e.data.get("blast_radius")
        if e.kind != "fault_planned" or not isinstance(pods, list):
            continue
        r = index.find(e)
        if r is not None:
            key = (r.setup, r.fault, r.repetition)
            radius[key] = tuple(dict.fromkeys([*radius.get(key, ()), *map(str, pods)]))
    return radius


def _experiment(run_dir: Path) -> tuple[str, str, dict[str, str]]:
    path = run_dir / EXPERIMENT_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", "", {}
    from chaos.experiment import load_experiment

    try:
        experiment = load_experiment(path)
    except ChaosError:
        return text, "", {}  # the exact file is still shown; only its summary is lost
    summaries = {
        name: f.summary()
        for name, f in zip(experiment.fault_names(), experiment.faults, strict=True)
    }
    return text, experiment.description, summaries


def abort_reason(entries: Sequence[JournalEntry]) -> str | None:
    """The reason of the journal's ``run_aborted`` entry (SIGINT, stop condition...), if any."""
    for e in entries:
        if e.kind == "run_aborted":
            return e.get_str("reason") or "aborted"
    return None


def load_run(run_dir: Path | str) -> RunData:
    """Read a run directory; ``InputError`` when it has no readable ``results.json``."""
    directory = Path(run_dir)
    analysis = read_results(directory)
    meta = read_meta(directory) if (directory / META_FILE).exists() else None
    entries = read_journal(directory, strict=True)
    index = _WindowIndex(analysis.runs)
    text, description, summaries = _experiment(directory)
    return RunData(
        run_dir=directory,
        meta=meta,
        analysis=analysis,
        events=_events(entries, index),
        blast_radius=_blast_radius(entries, index),
        experiment_text=text,
        description=description,
        fault_summaries=summaries,
        abort_reason=abort_reason(entries),
        effective_text=_read(directory / EFFECTIVE_FILE),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
