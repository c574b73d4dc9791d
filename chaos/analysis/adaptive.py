"""``repetitions: auto``: after each round, decide whether to run another (pure).

The engine calls ``next_step`` between rounds of repetitions with every window
measured so far; it answers ``Continue`` (with the setup/fault windows the still
undecided claims need: decided ones are not re-run) or ``Stop`` with the reason.
The decisions it looks at use the same sequential plan the final analysis uses,
so a claim decided here is decided the same way in ``results.json``.

``exit_code`` is the part of a run's exit code the hypotheses decide: 1 when one
is refuted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from chaos.analysis.decisions import Claim, Decision, DecisionSet, Family, SequentialPlan
from chaos.analysis.hypotheses import claims_for, decide
from chaos.analysis.model import FaultResult
from chaos.experiment.hypotheses import Hypothesis


@dataclass(frozen=True)
class Budget:
    """What an adaptive run may still spend.

    ``max_rounds``: the most rounds (repetitions per setup) to run, the information
    horizon of the alpha spending. ``seconds``: the time budget (None: none);
    ``elapsed_s``: seconds spent so far, over ``windows_run`` windows; ``reserved_s``:
    seconds of the budget held back for what runs after the fault windows (the cost
    step's first rounds): another round must end that long before the budget does.
    """

    max_rounds: int
    seconds: float | None = None
    elapsed_s: float = 0.0
    windows_run: int = 0
    reserved_s: float = 0.0


@dataclass(frozen=True)
class Continue:
    """Run round ``round`` (0-based repetition number) with these (setup, fault) windows."""

    round: int
    windows: tuple[tuple[str, str], ...]
    reason: str


@dataclass(frozen=True)
class Stop:
    """Stop adding rounds, and why (the report and the console show ``reason``)."""

    reason: str
    decisions: tuple[Decision, ...]


def rounds_done(runs: Sequence[FaultResult]) -> int:
    """Rounds (repetitions per setup) run so far."""
    return max((r.repetition + 1 for r in runs), default=0)


def next_step(
    runs: Sequence[FaultResult],
    claims: Sequence[Claim],
    budget: Budget,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    family: Family = "holm",
) -> Continue | Stop:
    """Whether to run another round, and which windows it needs."""
    done = rounds_done(runs)
    plan = SequentialPlan(
        adaptive=True, max_rounds=budget.max_rounds, final=False, alpha=alpha, family=family
    )
    decisions = decide(runs, claims, plan, seed=seed)
    # a claim after a refuted one (family: in-order) can no longer be decided
    open_ = [
        d for d in decisions if d.outcome == "undecided" and not d.note.startswith("not tested")
    ]
    if done and not open_:
        return Stop(f"every hypothesis was decided after {done} round(s)", tuple(decisions))
    if done >= budget.max_rounds:
        return Stop(
            f"the most rounds ({budget.max_rounds}) were run; {len(open_)} undecided",
            tuple(decisions),
        )
    needed = tuple(
        dict.fromkeys(
            pair
            for d in (open_ if done else decisions)
            for pair in ((d.claim.setup, d.claim.fault), (d.claim.compared_to, d.claim.fault))
        )
    )
    if budget.seconds is not None and budget.windows_run:
        per_window = budget.elapsed_s / budget.windows_run
        if budget.elapsed_s + per_window * len(needed) > budget.seconds - budget.reserved_s:
            held = (
                f", {budget.reserved_s:.0f} s of it held back for the cost step's first rounds"
                if budget.reserved_s
                else ""
            )
            return Stop(
                f"the time budget ({budget.seconds:g} s{held}) would be exceeded by another "
                f"round ({len(needed)} windows of about {per_window:.0f} s after "
                f"{budget.elapsed_s:.0f} s); {len(open_)} undecided",
                tuple(decisions),
            )
    return Continue(done, needed, f"{len(open_)} hypothesis claim(s) undecided")


def exit_code(decisions: Sequence[Decision]) -> int:
    """1 when a stated hypothesis was refuted, else 0 (ranking claims never fail a run)."""
    return 1 if any(d.outcome == "refuted" and not d.claim.implicit for d in decisions) else 0


def refuted_lines(decisions: Sequence[Decision]) -> list[str]:
    """One line per refuted hypothesis (for the failures list next to the exit code)."""
    return [
        f"hypothesis {d.claim.hypothesis} refuted: {d.statement}"
        for d in decisions
        if d.outcome == "refuted" and not d.claim.implicit
    ]


def decisions_for(
    hypotheses: Sequence[Hypothesis],
    runs: Sequence[FaultResult],
    *,
    adaptive: bool = False,
    max_rounds: int = 1,
    seed: int = 0,
    stop_reason: str | None = None,
    family: Family = "holm",
) -> DecisionSet:
    """The final decisions of a run (the ranking when ``hypotheses`` is empty).

    For an experiment: ``decisions_for(e.hypotheses, runs, adaptive=e.adaptive,
    max_rounds=e.planned_repetitions, seed=e.seed)``.
    """
    plan = SequentialPlan(
        adaptive=adaptive, max_rounds=max(1, max_rounds), final=True, family=family
    )
    claims = claims_for(hypotheses, runs)
    decisions = tuple(decide(runs, claims, plan, seed=seed))
    if adaptive and stop_reason is None:
        # what next_step saw after the last round (that look was not yet known to be final)
        interim = decide(runs, claims, replace(plan, final=False), seed=seed)
        stop_reason = _why_stopped(interim, rounds_done(runs), plan.max_rounds)
    return DecisionSet(
        plan=plan, decisions=decisions, stated=bool(hypotheses), stop_reason=stop_reason
    )


def _why_stopped(decisions: Sequence[Decision], done: int, most: int) -> str:
    """Why an adaptive run ran ``done`` rounds (what ``next_step`` would have said)."""
    if all(d.outcome != "undecided" or d.note.startswith("not tested") for d in decisions):
        return f"every hypothesis was decided after {done} round(s)"
    if done >= most:
        return f"the most rounds ({most}) were run"
    return f"another round would not have fitted in the time budget (after {done} round(s))"
