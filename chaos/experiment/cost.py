"""The cost step of an experiment file: steady-state load steps, no fault.

::

    cost:
      rates: [100, 500]     # requests/s, open loop; each rate is its own window
      hold: 10s             # measured per window (after warmup)
      warmup: 2s
      repetitions: 3        # windows per setup and rate (windows are the unit of the CI)
      setups: [baseline, sidecar, ambient]   # default: the experiment's setups

Per setup and rate it measures client-observed latency (and the difference to
``baseline`` when the step includes it) and the CPU-seconds per 1,000 requests and
memory of every proxy the topology started, from the processes' own accounting.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from chaos.experiment._base import Int, Number, Setup, SetupName, SpecModel, field_error
from chaos.experiment.durations import Duration, NonNegativeDuration

#: Windows per (setup, rate) unless the file says: the fewest that give an interval.
DEFAULT_COST_REPETITIONS = 3


class CostStep(SpecModel):
    """Load steps run per setup in steady state (no fault), open loop like every window."""

    rates: Annotated[
        tuple[Annotated[Number, Field(gt=0, le=100_000)], ...], Field(min_length=1, max_length=20)
    ]
    hold: Duration = 10.0
    warmup: NonNegativeDuration = 2.0
    repetitions: Annotated[Int, Field(ge=2, le=100)] = DEFAULT_COST_REPETITIONS
    setups: Annotated[tuple[SetupName, ...], Field(min_length=1)] | None = None

    @field_validator("rates")
    @classmethod
    def _increasing(cls, rates: tuple[float, ...]) -> tuple[float, ...]:
        for i in range(1, len(rates)):
            if rates[i] <= rates[i - 1]:
                raise field_error(str(i), f"{rates[i]:g} must be above {rates[i - 1]:g} (rising)")
        return rates

    @field_validator("setups")
    @classmethod
    def _unique(cls, setups: tuple[Setup, ...] | None) -> tuple[Setup, ...] | None:
        for i, setup in enumerate(setups or ()):
            if setup in (setups or ())[:i]:
                raise field_error(str(i), f"lists {setup} twice")
        return setups

    @property
    def windows_per_setup(self) -> int:
        """Windows one setup runs for the step."""
        return len(self.rates) * self.repetitions


def check_cost(
    cost: CostStep | None, setups: tuple[Setup, ...], faulted: dict[str, tuple[str, ...]]
) -> None:
    """The step's setups are the experiment's; baseline is measured only in a cost step."""
    if cost is not None and cost.setups is not None:
        for i, setup in enumerate(cost.setups):
            if setup not in setups:
                raise field_error(
                    f"cost.setups.{i}",
                    f"{setup} is not one of the experiment's setups ({', '.join(setups)})",
                )
    measured = set(setups if cost is None or cost.setups is None else cost.setups)
    if cost is None:
        measured = set()
    for i, setup in enumerate(setups):
        has_fault = any(setup in of for of in faulted.values())
        if setup is Setup.BASELINE and setup not in measured:
            raise field_error(
                f"setups.{i}", "baseline has no proxy to fault: it runs only in a cost step (cost:)"
            )
        if not has_fault and setup not in measured:
            raise field_error("setups", f"no fault applies to {setup} (see target.setups)")


def cost_setups(cost: CostStep, setups: tuple[Setup, ...]) -> tuple[Setup, ...]:
    """The setups the step measures, in the experiment's order."""
    return tuple(s for s in setups if cost.setups is None or s in cost.setups)


__all__ = ["DEFAULT_COST_REPETITIONS", "CostStep", "check_cost", "cost_setups"]
