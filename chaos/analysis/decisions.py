"""The typed decisions of a run: what is claimed (``Claim``), how the looks are spaced
(``SequentialPlan``), the outcome of each claim (``Decision``) and a run's set of them
(``DecisionSet``).

Data only: :mod:`chaos.analysis.hypotheses` makes the decisions,
:mod:`chaos.analysis.statements` puts them in words, :mod:`chaos.analysis.decisions_io`
writes and reads them in ``results.json``, and the report reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chaos.analysis.decide import Spending

Outcome = Literal["supported", "refuted", "equivalent", "undecided"]
#: How the family's error rate is controlled: Holm (any order), or in the stated order.
Family = Literal["holm", "in-order"]
Expect = Literal["lower", "higher", "equivalent"]
OUTCOMES: tuple[Outcome, ...] = ("supported", "refuted", "equivalent", "undecided")

#: Family-wise error rate of the decisions.
ALPHA = 0.05
#: Equivalence margin of the ranking (no hypotheses): TTRs within 1 s count as equal.
RANK_MARGIN_S = 1.0


@dataclass(frozen=True)
class Claim:
    """One testable claim: a hypothesis applied to one fault.

    ``implicit`` marks a ranking claim (no hypotheses were given): its direction is
    not stated in advance, so its difference test is two-sided.
    """

    hypothesis: str
    fault: str
    metric: str
    setup: str
    compared_to: str
    expect: Expect
    min_difference: float = 0.0
    margin: float = 0.0
    text: str = ""
    implicit: bool = False

    @property
    def key(self) -> str:
        """``<hypothesis>@<fault>``: unique within a run."""
        return f"{self.hypothesis}@{self.fault}"


@dataclass(frozen=True)
class SequentialPlan:
    """How the looks are spaced: one look (fixed repetitions) or one per round (auto)."""

    adaptive: bool = False
    max_rounds: int = 1
    spending: Spending = "pocock"
    #: Whether the last round seen is the last one (it may spend what is left).
    final: bool = True
    alpha: float = ALPHA
    family: Family = "holm"


@dataclass(frozen=True)
class Decision:
    """The outcome of one claim, with its effect size and the test that decided it.

    ``difference`` is ``mean(setup) - mean(compared_to)`` in the metric's unit, with
    its 95 % bootstrap interval ``low``..``high``; ``censored`` says a window that
    did not recover (or had no impact) entered at the longest measurable span, so
    the difference is a bound. ``repetitions`` is the round at which the claim was
    decided (or the last seen); ``more_repetitions`` how many more per setup would
    probably decide an undecided claim (None: more are not expected to).
    """

    claim: Claim
    outcome: Outcome
    repetitions: int
    n_setup: int
    n_compared: int
    mean_setup: float | None
    mean_compared: float | None
    difference: float | None
    low: float | None
    high: float | None
    censored: bool
    p_value: float | None
    threshold: float
    level: float
    more_repetitions: int | None
    faster: str | None
    statement: str
    #: Why an undecided claim was not tested (``family: in-order``), else "".
    note: str = ""


@dataclass(frozen=True)
class DecisionSet:
    """A run's decisions, how they were made, and why an adaptive run stopped.

    ``stated`` is False when the decisions are the ranking (no hypotheses given).
    """

    plan: SequentialPlan
    decisions: tuple[Decision, ...]
    stated: bool
    stop_reason: str | None = None
