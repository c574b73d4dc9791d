"""``repetitions: auto`` in the engine's order of windows: round by round, decided ones dropped."""

from __future__ import annotations

from pathlib import Path

from chaos.analysis import FaultResult
from chaos.engine.records import WindowKey, WindowRecord
from chaos.engine.rounds import rounds
from chaos.experiment import Experiment, load_experiment
from tests.unit.windows import window_result

ROOT = Path(__file__).resolve().parents[2]
GAMEDAY = load_experiment(ROOT / "experiments" / "gameday.yaml")


def _value(key: WindowKey) -> FaultResult:
    """What the game day's claims expect, cleanly separated, with a little spread."""
    rep, setup, fault = key.repetition, key.setup, key.fault
    if fault == "checkout-cert-expired":
        return window_result(setup, fault, rep, ttr=None if setup == "sidecar" else 0.4 + rep / 50)
    failed = {"mesh": 2, "sidecar": 120, "ambient": 400}[setup] + (rep * 7) % 5
    return window_result(setup, fault, rep, failed=failed)


def _fake_measure(_e: Experiment, _d: Path, records: list[WindowRecord]) -> list[FaultResult]:
    return [_value(r.key) for r in records]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drive(
    experiment: Experiment, clock: Clock, seconds_per_window: float
) -> tuple[list[WindowRecord], list[str]]:
    """The windows ``rounds`` yields, each moving ``clock`` on; and what it said."""
    records: list[WindowRecord] = []
    said: list[str] = []
    for key in rounds(
        experiment,
        records,
        Path("/nonexistent"),
        clock=clock,
        measure=_fake_measure,
        say=said.append,
    ):
        records.append(WindowRecord(key=key, fault_type="x"))
        clock.t += seconds_per_window
    return records, said


def _run(experiment: Experiment, seconds_per_window: float = 18.0) -> list[list[WindowKey]]:
    records, said = drive(experiment, Clock(), seconds_per_window)
    by_round: dict[int, list[WindowKey]] = {}
    for r in records:
        by_round.setdefault(r.key.repetition, []).append(r.key)
    assert said and said[-1].startswith("repetitions: auto: stop, ")
    return [by_round[k] for k in sorted(by_round)]


def test_gameday_runs_every_window_once_then_only_what_is_undecided() -> None:
    runs = _run(GAMEDAY)
    assert len(runs[0]) == 12
    assert all(len(r) == 5 for r in runs[1:])
    assert {(k.setup, k.fault) for k in runs[1]} == {
        ("mesh", "checkout-cert-expired"),
        ("sidecar", "checkout-cert-expired"),
        ("mesh", "payments-proxy-killed"),
        ("sidecar", "payments-proxy-killed"),
        ("ambient", "payments-proxy-killed"),
    }
    # three clean separations are decided after 4 rounds (4 vs 4: p = 1/70): the run stops
    assert len(runs) == 4
    total = 12 * 18 + 3 * 5 * 18
    assert total + GAMEDAY.cost_reserve_s <= GAMEDAY.budget  # with its cost step, in its budget


def test_the_time_budget_stops_adding_rounds() -> None:
    slow = GAMEDAY.model_copy(update={"budget": 300.0})
    # the first round takes 9 x 30 s = 270 s; another 5 windows would end at 420 s
    assert len(_run(slow, seconds_per_window=30.0)) == 1


def test_fixed_repetitions_run_the_schedule_unchanged() -> None:
    fixed = GAMEDAY.model_copy(update={"repetitions": 2})
    runs = _run_fixed(fixed)
    assert [len(r) for r in runs] == [12, 12]


def _run_fixed(experiment: Experiment) -> list[list[WindowKey]]:
    records: list[WindowRecord] = []
    for key in rounds(experiment, records, Path("/nonexistent"), measure=_fake_measure):
        records.append(WindowRecord(key=key, fault_type="x"))
    return [
        [r.key for r in records if r.key.repetition == n]
        for n in sorted({r.key.repetition for r in records})
    ]
