"""What one bench run measured: plain data that :mod:`.main` fills and :mod:`.render` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chaos.bench.driverruns import Lateness, WorkersRow
from chaos.bench.fidelity import FidelityRow
from chaos.bench.finish_scale import FinishMeasure
from chaos.bench.loadgen import LoadGenRow
from chaos.bench.realrun import RealRun
from chaos.bench.startup import SetupResult


@dataclass
class Machine:
    """Where the numbers come from."""

    cores: int
    cpu: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchResults:
    """Everything one bench run measured (None: not measured; ``errors`` says why)."""

    command: str
    started_utc: str
    machine: Machine
    short: bool = False
    startup: list[SetupResult] = field(default_factory=list)
    loadgen: list[LoadGenRow] = field(default_factory=list)
    lateness: Lateness | None = None
    workers: list[WorkersRow] = field(default_factory=list)
    fidelity: list[FidelityRow] = field(default_factory=list)
    realrun: RealRun | None = None
    finish: list[tuple[int, FinishMeasure]] = field(default_factory=list)
    #: The cost measurement's rows, rendered (``chaos.bench.cost``).
    cost: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: Figure -> seconds it took.
    took: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    out: Path | None = None
