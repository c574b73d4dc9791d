"""The cost step of an experiment file: steady-state load steps, no fault.

::

    cost:
      rates: [100, 500]     # requests/s, open loop; each rate is its own window
      hold: 10s             # measured per window (after warmup)
      warmup: 2s
      repetitions: 3        # windows per setup and rate (windows are the unit of the CI)
      max_repetitions: 8    # with the experiment's `repetitions: auto`: add rounds until
                            # every cost hypothesis is decided, at most this many
      setups: [baseline, sidecar, ambient]   # default: the experiment's setups;
                                             # baseline may be named here only
      cpu: speed-adjusted   # or raw: each window's proxy CPU at the setup's median
                            # machine speed (told by the apps' CPU per request)

Per setup and rate it measures client-observed latency (and the difference to
``baseline`` when the step includes it) and the CPU-seconds per 1,000 requests and
memory of every proxy the topology started, from the processes' own accounting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from chaos.experiment._base import Int, Number, Setup, SetupName, Slug, SpecModel, field_error
from chaos.experiment.durations import Duration, NonNegativeDuration
from chaos.experiment.hypotheses import WINDOW_OVERHEAD_S

#: Windows per (setup, rate) unless the file says: the fewest that give an interval.
DEFAULT_COST_REPETITIONS = 3
#: With ``repetitions: auto``: the most rounds of the cost step unless the file says.
DEFAULT_COST_MAX_REPETITIONS = 8


#: What a cost hypothesis compares (one value per cost window).
CostMetric = Literal["added_latency_p99", "proxy_cpu_per_1k_requests", "proxy_memory"]
#: The unit of each cost metric's values, margins and minimal differences.
COST_UNITS: dict[str, str] = {
    "added_latency_p99": "ms",
    "proxy_cpu_per_1k_requests": "CPU-s",
    "proxy_memory": "MB",
}


class CostHypothesis(SpecModel):
    """``setup``'s cost is lower/higher than, or equivalent to, ``compared_to``'s.

    Values are per cost window at ``rate`` (default: the step's highest rate):
    ``added_latency_p99`` the window's client p99 in ms (baseline's is subtracted on
    both sides, so it compares the latency added), ``proxy_cpu_per_1k_requests`` the
    CPU-seconds of every proxy per 1,000 requests (as the step's ``cpu`` says: by default
    at the setup's median machine speed), ``proxy_memory`` the PSS of every
    proxy together in MB. ``margin`` / ``min_difference`` are numbers in that unit.
    """

    name: Slug | None = None
    metric: CostMetric
    setup: SetupName
    compared_to: SetupName
    expect: Literal["lower", "higher", "equivalent"]
    rate: Annotated[Number, Field(gt=0, le=100_000)] | None = None
    min_difference: Annotated[Number, Field(ge=0)] = 0.0
    margin: Annotated[Number, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> CostHypothesis:
        if self.setup == self.compared_to:
            raise field_error("compared_to", f"compares {self.setup} with itself")
        if self.expect == "equivalent" and self.margin is None:
            raise field_error("margin", "expect: equivalent needs a margin")
        if self.expect != "equivalent" and self.margin is not None:
            raise field_error("margin", f"belongs to expect: equivalent, not {self.expect}")
        return self

    def label(self, index: int) -> str:
        return self.name or f"cost-hypothesis-{index + 1}"

    def describe(self, rate: float) -> str:
        unit = COST_UNITS[self.metric]
        what = self.metric.replace("_", " ").replace("1k", "1,000")
        if self.expect == "equivalent":
            claim = f"within ±{self.margin:g} {unit} of"
        elif self.min_difference:
            claim = f"{self.expect} by at least {self.min_difference:g} {unit} than"
        else:
            claim = f"{self.expect} than"
        return f"{self.setup}'s {what} is {claim} {self.compared_to}'s (at {rate:g} rps)"


class CostStep(SpecModel):
    """Load steps run per setup in steady state (no fault), open loop like every window."""

    rates: Annotated[
        tuple[Annotated[Number, Field(gt=0, le=100_000)], ...], Field(min_length=1, max_length=20)
    ]
    hold: Duration = 10.0
    warmup: NonNegativeDuration = 2.0
    repetitions: Annotated[Int, Field(ge=2, le=100)] = DEFAULT_COST_REPETITIONS
    #: With the experiment's ``repetitions: auto`` and cost hypotheses: ``repetitions``
    #: rounds first, then one more at a time until every cost hypothesis is decided,
    #: at most this many (default ``DEFAULT_COST_MAX_REPETITIONS``, at least ``repetitions``).
    max_repetitions: Annotated[Int, Field(ge=2, le=100)] | None = None
    setups: Annotated[tuple[SetupName, ...], Field(min_length=1)] | None = None
    hypotheses: Annotated[tuple[CostHypothesis, ...], Field(max_length=50)] = ()
    #: ``speed-adjusted`` (default): each window's proxy CPU at the setup's median
    #: machine speed, told by the demo apps' CPU per request (fixed work per request);
    #: ``raw``: as the processes' accounting says. The report gives both.
    cpu: Literal["speed-adjusted", "raw"] = "speed-adjusted"

    @model_validator(mode="after")
    def _hypotheses_measured(self) -> CostStep:
        for i, h in enumerate(self.hypotheses):
            if h.rate is not None and h.rate not in self.rates:
                raise field_error(f"hypotheses.{i}.rate", f"{h.rate:g} is not one of the rates")
            if self.setups is not None:
                for key, setup in (("setup", h.setup), ("compared_to", h.compared_to)):
                    if setup not in self.setups:
                        raise field_error(
                            f"hypotheses.{i}.{key}", f"{setup} is not measured (cost.setups)"
                        )
        return self

    @model_validator(mode="after")
    def _max_above_first(self) -> CostStep:
        if self.max_repetitions is not None and self.max_repetitions < self.repetitions:
            raise field_error(
                "max_repetitions",
                f"{self.max_repetitions} is below repetitions ({self.repetitions})",
            )
        return self

    def most_rounds(self, adaptive: bool) -> int:
        """The most rounds the step may run: ``repetitions``, or with ``auto`` its bound."""
        if not adaptive or not self.hypotheses:
            return self.repetitions
        if self.max_repetitions is not None:
            return self.max_repetitions
        return max(self.repetitions, DEFAULT_COST_MAX_REPETITIONS)

    def rate_of(self, hypothesis: CostHypothesis) -> float:
        """The rate a hypothesis is decided at."""
        return hypothesis.rate if hypothesis.rate is not None else self.rates[-1]

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
            if setup not in setups and setup is not Setup.BASELINE:
                raise field_error(
                    f"cost.setups.{i}",
                    f"{setup} is not one of the experiment's setups ({', '.join(setups)})",
                )
    if cost is not None and cost.setups is None:
        for i, h in enumerate(cost.hypotheses):
            for key, setup in (("setup", h.setup), ("compared_to", h.compared_to)):
                if setup not in setups:
                    raise field_error(
                        f"cost.hypotheses.{i}.{key}", f"{setup} is not measured (cost.setups)"
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


def describe_cost(
    cost: CostStep | None, setups: tuple[Setup, ...], adaptive: bool = False
) -> list[str]:
    """Lines for ``--dry-run``: the cost step's windows and hypotheses (none without one)."""
    if cost is None:
        return []
    measured = cost_setups(cost, setups)
    rates = ", ".join(f"{r:g}" for r in cost.rates)
    lines = [
        f"then the cost step: {', '.join(measured)} x rates {rates} rps x {cost.repetitions} "
        f"repetitions = {len(measured) * cost.windows_per_setup} windows (one topology per "
        f"setup and repetition; per rate warm-up {cost.warmup:g}s, measured {cost.hold:g}s, "
        "no fault; CPU and memory of every process the topology started)"
    ]
    most = cost.most_rounds(adaptive)
    if most > cost.repetitions:
        lines.append(
            f"  repetitions: auto: then one more round at a time of the setups its undecided "
            f"hypotheses compare, until each is decided, at most {most} rounds"
        )
    lines += [
        f"  {h.label(i)}: {h.describe(cost.rate_of(h))}" for i, h in enumerate(cost.hypotheses)
    ]
    return lines


def cost_setups(cost: CostStep, setups: tuple[Setup, ...]) -> tuple[Setup, ...]:
    """The setups the step measures: its own list, else the experiment's."""
    return cost.setups if cost.setups is not None else setups


def planned_window_s(cost: CostStep) -> float:
    """What one cost window (a setup at a rate) is planned to take: its warm-up and hold
    plus ``WINDOW_OVERHEAD_S``, the start-up and stop the fault windows are planned with."""
    return cost.warmup + cost.hold + WINDOW_OVERHEAD_S


def first_rounds_s(cost: CostStep, setups: tuple[Setup, ...]) -> float:
    """The planned seconds of the step's first ``repetitions`` rounds, which always run:
    every measured setup at every rate, ``planned_window_s`` a window."""
    windows = len(cost_setups(cost, setups)) * len(cost.rates) * cost.repetitions
    return windows * planned_window_s(cost)


__all__ = [
    "COST_UNITS",
    "DEFAULT_COST_MAX_REPETITIONS",
    "DEFAULT_COST_REPETITIONS",
    "CostHypothesis",
    "CostMetric",
    "CostStep",
    "check_cost",
    "cost_setups",
    "describe_cost",
    "first_rounds_s",
    "planned_window_s",
]
