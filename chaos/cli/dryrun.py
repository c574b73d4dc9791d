"""The dry-run description of a run: what it will touch, in which order, and how each change is
undone, built from the plans alone (nothing is started or touched).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.experiment import Experiment
    from chaos.platforms.base import FaultOps, Platform


def describe_plan(experiment: Experiment, platform: Platform) -> list[str]:
    """What a run will touch, in which order, and how each change is undone (no side effects)."""
    from chaos.analysis.cost_budget import describe_cost_budget, describe_cost_reserve
    from chaos.engine.preflight import plan_ops
    from chaos.engine.records import schedule
    from chaos.engine.run import traffic_config
    from chaos.experiment import Setup
    from chaos.experiment.cost import cost_setups, describe_cost
    from chaos.experiment.hypotheses import describe_decisions
    from chaos.faults.plans import plan_offline
    from chaos.platforms.base import PlansDataPlane, PlansTraffic

    t = experiment.timeline
    lines = [
        f"experiment {experiment.name}: {len(experiment.setups)} setups x "
        f"{len(experiment.faults)} faults x {experiment.repetitions} repetitions "
        f"(seed {experiment.seed})",
        f"each window: up -> warm-up {t.warmup:g}s -> inject -> hold {t.hold:g}s -> revert -> "
        f"recovery {t.recovery:g}s -> down; traffic {experiment.traffic.rate:g} rps, "
        f"{experiment.traffic.users} users; platform {platform.name}",
        *describe_decisions(
            experiment.hypotheses,
            experiment.repetitions,
            experiment.max_repetitions,
            experiment.budget,
            experiment.planned_repetitions,
            experiment.multiple_testing,
        ),
    ]
    if isinstance(platform, PlansTraffic):
        load = traffic_config(experiment, host="http://127.0.0.1", out_dir=Path("samples"))
        for setup in experiment.setups:
            lines.append(
                f"every {setup} window's load (created as the window starts, deleted as it ends):"
            )
            lines += [f"       {line}" for line in platform.plan_traffic(Setup(setup), load)]
    if isinstance(platform, PlansDataPlane):
        for setup in experiment.setups:
            planned = platform.plan_dataplane(Setup(setup), experiment.dataplane)
            if planned:
                lines.append(f"every {setup} window's data-plane deviations (undone as it ends):")
                lines += [f"       {line}" for line in planned]
    ops: dict[str, FaultOps] = {
        s: plan_ops(platform, experiment, Setup(s)) for s in experiment.setups
    }
    for number, key in enumerate(schedule(experiment), start=1):
        lines.append(f"{number:3d}. {key.label}")
        spec = experiment.faults[key.fault_index]
        plan = plan_offline(spec, ops[key.setup], key, experiment.seed)
        lines += [f"       {line}" for line in plan]
    lines += describe_cost(experiment.cost, experiment.setups, experiment.adaptive)
    cost = experiment.cost
    # With repetitions: auto the fault rounds leave room in the budget for the first cost rounds.
    if cost is not None and experiment.budget is not None and experiment.adaptive:
        lines += describe_cost_reserve(
            cost,
            len(cost_setups(cost, experiment.setups)),
            experiment.budget,
            experiment.fault_round_seconds()[0],
            experiment.planned_repetitions,
        )
    # With repetitions: auto and cost hypotheses the budget bounds the added cost rounds.
    if (
        cost is not None
        and experiment.budget is not None
        and cost.most_rounds(experiment.adaptive) > cost.repetitions
    ):
        lines += describe_cost_budget(
            cost,
            len(cost_setups(cost, experiment.setups)),
            experiment.budget,
            experiment.fault_round_seconds(),
            experiment.planned_repetitions,
        )
    lines.append("nothing was touched (dry run)")
    return lines
