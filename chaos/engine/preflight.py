"""Checks of an experiment against the platform it will run on, before anything starts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from chaos.experiment import Experiment, Setup
from chaos.experiment.models import start_extra
from chaos.faults.base import target_problems
from chaos.platforms.base import FaultOps, Platform, Problem
from chaos.platforms.usage import PlatformMeasuresUsage


@runtime_checkable
class PlansWithOptions(Protocol):
    """A platform whose dry run needs what a window's start is told (an existing workload)."""

    def plan_ops_for(self, setup: Setup, extra: Mapping[str, str]) -> FaultOps: ...


def plan_ops(platform: Platform, experiment: Experiment, setup: Setup) -> FaultOps:
    """The dry run's fault mechanisms of ``setup``, told what a window's start is told."""
    extra = start_extra(experiment, experiment.faults[0])
    if extra and isinstance(platform, PlansWithOptions):
        return platform.plan_ops_for(setup, extra)
    return platform.plan_ops(setup)


def platform_checks(platform: Platform) -> Callable[[Experiment], Sequence[Problem]]:
    """The check ``load_experiment`` runs: the platform's own, then every fault target.

    An unknown service, replica or node is reported at its field (exit 2), not found
    after a topology is up.
    """

    def check(experiment: Experiment) -> Sequence[Problem]:
        problems = list(platform.validate(experiment))
        for index, setup in enumerate(experiment.setups):
            if setup not in platform.setups:
                names = ", ".join(platform.setups)
                problems.append(
                    Problem(("setups", index), f"{setup}: not offered by {platform.name} ({names})")
                )
        no_cost = not (isinstance(platform, PlatformMeasuresUsage) and platform.measures_usage)
        if experiment.cost is not None and no_cost:
            problems.append(
                Problem(
                    ("cost",),
                    f"{platform.name} cannot read its proxies' CPU and memory: "
                    "no cost step on this platform",
                )
            )
        # No cost step at all: its setups (baseline, say) are not a second problem; and
        # the platform's own reason at a cost setup's line comes first.
        said = {p.at for p in problems}
        cost_setups = experiment.cost.setups if experiment.cost and not no_cost else None
        for index, setup in enumerate(cost_setups or ()):
            if (
                setup not in platform.setups
                and setup not in experiment.setups
                and ("cost", "setups", index) not in said
            ):
                names = ", ".join(platform.setups)
                problems.append(
                    Problem(
                        ("cost", "setups", index),
                        f"{setup}: not offered by {platform.name} ({names})",
                    )
                )
        offered = [s for s in experiment.setups if s in platform.setups]
        if offered:
            narrowed = experiment.model_copy(update={"setups": tuple(offered)})
            problems += target_problems(narrowed, lambda s: platform.workload(Setup(s)))
        return problems

    return check
