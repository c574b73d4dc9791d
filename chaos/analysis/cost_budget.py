"""The experiment's time ``budget`` and the cost step's adaptive rounds (pure).

``budget`` bounds the whole run, not only its fault windows: with ``repetitions: auto``
the fault windows stop adding rounds by it (``chaos.engine.rounds``), early enough that
the cost step's first ``cost.repetitions`` rounds (the step as declared: the fewest
windows per setup and rate that give an interval; they always run) still fit: their
planned time (``chaos.experiment.cost.first_rounds_s``, the per-window estimate below)
is held back from the fault windows' share (``Experiment.cost_reserve_s``). The cost
step then runs another round only if it fits in what is left. The time spent counts
from the run's start: fault windows and cost rounds.

A round is estimated per window (one setup at one rate) as the step's warm-up and hold
plus ``WINDOW_OVERHEAD_S``, the start-up and stop the fault windows are planned with;
when the cost windows run so far took longer on average (a cluster whose topologies
take longer to start), that average instead, as the fault windows' own check does.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.experiment.cost import CostStep, planned_window_s
from chaos.experiment.hypotheses import WINDOW_OVERHEAD_S


@dataclass(frozen=True)
class Spent:
    """Where the run's time went so far.

    ``run_s``: seconds since the run started (fault windows and cost rounds);
    ``cost_s``: of which the cost step's, over ``cost_windows`` windows.
    """

    run_s: float
    cost_s: float = 0.0
    cost_windows: int = 0


def round_estimate_s(cost: CostStep, setups: int, spent: Spent | None = None) -> float:
    """What a round of ``setups`` setups (every rate each) is expected to take."""
    per_window = planned_window_s(cost)
    if spent is not None and spent.cost_windows:
        per_window = max(per_window, spent.cost_s / spent.cost_windows)
    return per_window * setups * len(cost.rates)


def over_budget(
    budget_s: float | None, cost: CostStep, setups: int, spent: Spent | None
) -> str | None:
    """Why another round of ``setups`` setups does not fit in the budget (None: it fits)."""
    if budget_s is None or spent is None:
        return None
    need = round_estimate_s(cost, setups, spent)
    left = budget_s - spent.run_s
    if need <= left:
        return None
    return (
        f"the time budget ({budget_s:g} s) would be exceeded by another round "
        f"({setups * len(cost.rates)} windows of about {need / (setups * len(cost.rates)):.0f} s; "
        f"{max(0.0, left):.0f} s left of it after {spent.run_s:.0f} s)"
    )


def describe_cost_budget(
    cost: CostStep,
    setups: int,
    budget_s: float,
    fault_rounds_s: tuple[float, float],
    fault_rounds: int,
) -> list[str]:
    """Dry-run lines: how the budget bounds the cost step's added rounds, by the plan.

    ``fault_rounds_s``: the planned seconds of the first round of fault windows and of a
    later one; ``fault_rounds``: the most rounds they may run. The fault windows stop
    adding rounds once their hypotheses are decided, so what is left for the cost step
    lies between after all of them and after the first only.
    """
    first_fault, later_fault = fault_rounds_s
    most_fault = first_fault + later_fault * max(0, fault_rounds - 1)
    full = round_estimate_s(cost, setups)
    first_cost = cost.repetitions * full
    allowed = cost.most_rounds(True) - cost.repetitions

    def room(fault_s: float) -> int:
        left = budget_s - fault_s - first_cost
        return min(allowed, max(0, int(left // full))) if left > 0 else 0

    return [
        f"  budget {budget_s:g}s for the whole run: the cost step runs its first "
        f"{cost.repetitions} rounds (about {first_cost:.0f} s), then another only if it fits "
        f"in what is left (about {full:.0f} s a round of every setup: "
        f"{setups * len(cost.rates)} windows of warm-up {cost.warmup:g}s + hold "
        f"{cost.hold:g}s + {WINDOW_OVERHEAD_S:g}s start-up)",
        f"  budget: room for {room(most_fault)} more cost round(s) if the fault windows run "
        f"all {fault_rounds} rounds (about {most_fault:.0f} s), {room(first_fault)} if they "
        f"stop after the first (about {first_fault:.0f} s); at most {allowed} may be added",
    ]


def describe_cost_reserve(
    cost: CostStep, setups: int, budget_s: float, first_fault_s: float, planned: int
) -> list[str]:
    """Dry-run line: the budget held back for the cost step's first rounds, by the plan.

    ``first_fault_s``: the planned seconds of the first round of fault windows (which
    always runs); ``planned``: the most fault rounds the rest of the budget plans.
    """
    windows = setups * len(cost.rates) * cost.repetitions
    reserve = windows * planned_window_s(cost)
    left = budget_s - reserve
    line = (
        f"  budget: {reserve:.0f} s of the {budget_s:g}s held back for the cost step's first "
        f"{cost.repetitions} rounds ({windows} windows of about {planned_window_s(cost):.0f} s, "
        f"which always run): the fault windows add a round only while it ends within "
        f"{max(0.0, left):.0f} s of the run's start (at most {planned} rounds planned)"
    )
    if left < first_fault_s:
        line += (
            f"; their first round alone (about {first_fault_s:.0f} s) does not fit in it: "
            "no round will be added, and the run will exceed the budget"
        )
    return [line]


__all__ = [
    "Spent",
    "describe_cost_budget",
    "describe_cost_reserve",
    "over_budget",
    "planned_window_s",
    "round_estimate_s",
]
