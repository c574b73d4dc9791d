"""The fault windows leave room in the budget for the cost step's first rounds.

With ``repetitions: auto`` and a ``budget`` (the whole run's), the cost step's first
``cost.repetitions`` rounds always run after the fault windows; so the fault windows add
a round only while it ends their planned time before the budget does (warm-up + hold +
``WINDOW_OVERHEAD_S`` a cost window, as ``chaos.analysis.cost_budget`` plans them).
Every clock here is injected: a window moves it on by its planned time.
"""

from __future__ import annotations

from pathlib import Path

from chaos.analysis.adaptive import Budget, Continue, Stop, next_step
from chaos.cli.dryrun import describe_plan
from chaos.cli.platform import platform_for
from chaos.engine.cost import CostKey
from chaos.experiment import Experiment
from chaos.experiment.cost import first_rounds_s
from chaos.experiment.hypotheses import WINDOW_OVERHEAD_S
from chaos.rundir.cost import CostWindowRecord
from tests.unit.test_analysis_adaptive import CERT, CRASH
from tests.unit.test_analysis_adaptive import _rounds as _fault_results
from tests.unit.test_cost_adaptive import _experiment, _Rounds, _runner
from tests.unit.test_engine_rounds import GAMEDAY, Clock, drive

#: The game day's fault window as planned (13 s timeline + 5 s) and its cost window
#: (warm-up 1 s + hold 3 s + 5 s): experiments/gameday.yaml.
FAULT_WINDOW_S = 18.0
COST_WINDOW_S = 9.0


def _fault_rounds(
    experiment: Experiment, clock: Clock, window_s: float = FAULT_WINDOW_S
) -> tuple[int, list[str]]:
    """The fault windows' rounds on ``clock``: how many ran, and what the engine said."""
    records, said = drive(experiment, clock, window_s)
    return len({r.key.repetition for r in records}), said


class _Timed(_Rounds):
    """The cost runner's loop; each window only moves the clock on (no topology)."""

    def _run_keys(self, keys: list[CostKey]) -> list[CostWindowRecord]:
        self.ran.append([(k.setup.value, k.repetition) for k in keys])
        self.now += self.window_s * len(keys)
        return [CostWindowRecord(k.setup.value, k.rate, k.repetition, 0.0, 0.0) for k in keys]


def _first_cost_rounds(experiment: Experiment, run_dir: Path, clock: Clock) -> float:
    """The cost step's first rounds on the same clock, each window as planned: the end."""
    cost = _runner(experiment, run_dir, [], _Timed)
    cost.now, cost.window_s = clock.t, COST_WINDOW_S
    cost.run(started=0.0, clock=cost.clock)
    cost.journal.close()
    assert sum(len(keys) for keys in cost.ran) == 12  # always run, whatever is left
    return cost.now


def test_the_reserve_is_the_cost_steps_first_rounds_as_planned() -> None:
    assert GAMEDAY.cost is not None
    assert GAMEDAY.timeline.total + WINDOW_OVERHEAD_S == FAULT_WINDOW_S
    assert GAMEDAY.cost.warmup + GAMEDAY.cost.hold + WINDOW_OVERHEAD_S == COST_WINDOW_S
    # baseline, sidecar, ambient x 2 rates x 2 repetitions = 12 windows of 9 s.
    assert GAMEDAY.cost_reserve_s == first_rounds_s(GAMEDAY.cost, GAMEDAY.setups) == 108.0
    assert GAMEDAY.model_copy(update={"cost": None}).cost_reserve_s == 0.0
    assert GAMEDAY.model_copy(update={"repetitions": 2}).cost_reserve_s == 0.0  # no budget then


def test_the_plan_leaves_room_for_the_first_cost_rounds(tmp_path: Path) -> None:
    # Budget 510 s. Fault rounds as planned end at 216, 306, 396, 486 s (12 windows, then
    # 5 a round); the fourth would end within 510 s, but not within 510 - 108 = 402 s.
    tight = GAMEDAY.model_copy(update={"budget": 510.0})
    assert tight.planned_repetitions == 3  # 1 + (402 - 216) // 90
    clock = Clock()
    ran, said = _fault_rounds(tight, clock)
    assert (ran, clock.t) == (3, 396.0)
    assert said[-1] == "repetitions: auto: stop, the most rounds (3) were run"
    assert _first_cost_rounds(tight, tmp_path, clock) == 504.0  # within 510 s
    # Without a cost step the same budget has room for a fourth round.
    alone = tight.model_copy(update={"cost": None})
    assert alone.planned_repetitions == 4
    clock = Clock()
    ran, said = _fault_rounds(alone, clock)
    assert (ran, clock.t) == (4, 486.0)
    assert said[-1] == "repetitions: auto: stop, the most rounds (4) were run"


def test_slower_fault_windows_stop_early_enough_for_the_first_cost_rounds(
    tmp_path: Path,
) -> None:
    # Windows of 20 s, not the planned 18: rounds end at 240, 340 s; a third would end at
    # 440 s, within 510 s (so without the reserve it would run, and the cost step end at
    # 548 s) but not within 402 s.
    tight = GAMEDAY.model_copy(update={"budget": 510.0})
    clock = Clock()
    ran, said = _fault_rounds(tight, clock, window_s=20.0)
    assert (ran, clock.t) == (2, 340.0)
    assert said[-1].startswith(
        "repetitions: auto: stop, the time budget (510 s, 108 s of it held back for the cost "
        "step's first rounds) would be exceeded by another round (5 windows of about 20 s "
        "after 340 s); "
    ), said[-1]
    assert _first_cost_rounds(tight, tmp_path, clock) == 448.0  # within 510 s


def test_the_game_day_keeps_its_four_rounds_and_its_cost_step_within_its_budget() -> None:
    clock = Clock()
    ran, _ = _fault_rounds(GAMEDAY, clock)
    assert ran == 4 and GAMEDAY.budget is not None
    assert clock.t + GAMEDAY.cost_reserve_s <= GAMEDAY.budget  # 486 + 108 <= 600


def test_next_step_holds_the_reserve_back() -> None:
    # 12 windows took 240 s (20 s each); another round of 4 windows ends at 320 s.
    results = _fault_results(3)
    free = next_step(results, [CERT, CRASH], Budget(6, seconds=330, elapsed_s=240, windows_run=12))
    assert isinstance(free, Continue)
    held = Budget(6, seconds=330, elapsed_s=240, windows_run=12, reserved_s=20)
    step = next_step(results, [CERT, CRASH], held)
    assert isinstance(step, Stop)
    assert "time budget (330 s, 20 s of it held back for the cost step's first rounds)" in (
        step.reason
    )
    edge = Budget(6, seconds=330, elapsed_s=240, windows_run=12, reserved_s=10)
    assert isinstance(next_step(results, [CERT, CRASH], edge), Continue)  # ends at 320 exactly


def test_the_dry_run_says_what_the_budget_holds_back(tmp_path: Path) -> None:
    out = "\n".join(describe_plan(GAMEDAY, platform_for(GAMEDAY.platform)))
    assert (
        "budget: 108 s of the 600s held back for the cost step's first 2 rounds (12 windows of "
        "about 9 s, which always run): the fault windows add a round only while it ends within "
        "492 s of the run's start (at most 4 rounds planned)"
    ) in out
    # A budget the cost step's first rounds alone nearly fill: the plan says it will overrun.
    # (cost-auto: 2 rounds x 2 setups x 1 rate of 11 s = 44 s; the fault round 8 s.)
    small = _experiment(tmp_path, most=6, budget="50s")
    out = "\n".join(describe_plan(small, platform_for(small.platform)))
    assert "budget: 44 s of the 50s held back" in out
    assert (
        "their first round alone (about 8 s) does not fit in it: no round will be added, "
        "and the run will exceed the budget"
    ) in out
    fixed = _experiment(tmp_path, most=6, repetitions="2", budget="50s")
    out = "\n".join(describe_plan(fixed, platform_for(fixed.platform)))
    assert "held back" not in out  # fixed repetitions: the budget does not apply
