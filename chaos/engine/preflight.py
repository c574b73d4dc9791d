"""Checks of an experiment against the platform it will run on, before anything starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chaos.faults.base import target_problems
from chaos.platforms.base import Platform, Problem
from chaos.spec import Experiment, Setup


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
        offered = [s for s in experiment.setups if s in platform.setups]
        if offered:
            narrowed = experiment.model_copy(update={"setups": tuple(offered)})
            problems += target_problems(narrowed, lambda s: platform.workload(Setup(s)))
        return problems

    return check
