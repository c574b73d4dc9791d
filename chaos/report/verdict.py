"""One sentence per fault: which setup recovered faster, by how much, and how sure.

Built from the run's decisions (``chaos.analysis.hypotheses``): without stated
hypotheses, every pair of setups per fault is decided on time to recover
(supported: one is faster; equivalent within the margin; undecided, with the
repetitions it would need). With stated hypotheses the fault's card names the
fastest setup and the outcomes of the hypotheses about that fault. Results written
before decisions existed fall back to the pairwise Mann-Whitney comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chaos.analysis import Comparison, Summary
from chaos.analysis.decisions import Decision, DecisionSet

#: How a verdict reads at a glance (the report colours its card by it).
VerdictLevel = Literal[
    "supported", "refuted", "equivalent", "undecided", "no-effect", "single", "none"
]


@dataclass(frozen=True)
class FaultVerdict:
    """The verdict on one fault: the sentence, the best setup, how sure."""

    fault: str
    sentence: str
    level: VerdictLevel
    best: str | None

    @property
    def badge(self) -> str:
        """A few words for the level."""
        return _BADGES[self.level]


_BADGES: dict[str, str] = {
    "supported": "supported",
    "refuted": "refuted",
    "equivalent": "equivalent",
    "undecided": "undecided",
    "no-effect": "no effect",
    "single": "one setup",
    "none": "no hypothesis",
}


def seconds(x: float | None) -> str:
    """``1.23 s``; ``not recovered`` for None."""
    if x is None or not math.isfinite(x):
        return "not recovered"
    return f"{x:.1f} s" if abs(x) >= 10 else f"{x:.2f} s"


def _min_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney test can give with these sizes."""
    return 2.0 / math.comb(n_a + n_b, n_a) if n_a and n_b else 1.0


def _pair(comparisons: Sequence[Comparison], a: str, b: str) -> Comparison | None:
    for c in comparisons:
        if {c.setup_a, c.setup_b} == {a, b}:
            return c
    return None


def _faster_clause(c: Comparison, best: str, other: str) -> str:
    diff = abs(c.difference_s) if c.difference_s is not None else None
    by = (
        f"{seconds(diff)} faster than {other}"
        if diff is not None
        else f"it recovered while {other} did not"
    )
    ratio = f", {c.ratio:.1f}x" if c.ratio is not None else ""
    medians = f"{seconds(_median_of(c, best))} vs {seconds(_median_of(c, other))}"
    return f"{by} ({medians}{ratio}, p = {c.p_value:.2g})"


def _median_of(c: Comparison, setup: str) -> float | None:
    return c.median_a if setup == c.setup_a else c.median_b


def _tail(summaries: Sequence[Summary], abort_cause: str = "by a stop condition") -> str:
    notes = []
    for s in summaries:
        measured = s.repetitions - s.aborted - s.unmeasured
        if measured and s.recovered < measured:
            notes.append(
                f"{s.setup} did not recover within the window in "
                f"{measured - s.recovered} of {measured} repetitions"
            )
        if s.aborted:
            notes.append(f"{s.aborted} {s.setup} repetition(s) were aborted ({abort_cause})")
    return "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


def fault_verdict(
    fault: str,
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    *,
    decided: DecisionSet | None = None,
    abort_cause: str = "by a stop condition",
    alpha: float = 0.05,
) -> FaultVerdict:
    """The verdict on ``fault`` from its summaries (one per setup) and decisions.

    ``abort_cause`` words why aborted repetitions ended, as the journal says it.
    """
    ss = [s for s in summaries if s.fault == fault]
    cs = [c for c in comparisons if c.fault == fault]
    tail = _tail(ss, abort_cause)
    measured = [s for s in ss if s.time_to_recover_s.n > 0]
    if measured and all(s.no_impact == s.time_to_recover_s.n for s in measured):
        return FaultVerdict(
            fault,
            "The fault had no visible effect in any setup: the steady state held throughout "
            "(check that it took effect)." + tail,
            "no-effect",
            None,
        )
    if len(ss) == 1:
        s = ss[0]
        e = s.time_to_recover_s
        return FaultVerdict(
            fault,
            f"{s.setup} recovered in a median of {seconds(e.median)} over {e.n} "
            f"repetition(s); only one setup ran this fault, so there is nothing to compare." + tail,
            "single",
            s.setup,
        )
    ranked = sorted(
        measured,
        key=lambda s: (
            math.inf if s.time_to_recover_s.median is None else s.time_to_recover_s.median
        ),
    )
    if not ranked:
        return FaultVerdict(fault, "No repetition was measured." + tail, "undecided", None)
    best = ranked[0].setup
    others = [s.setup for s in ranked[1:]]
    medians = ", ".join(f"{s.setup} {seconds(s.time_to_recover_s.median)}" for s in ranked)
    if decided is not None:
        mine = [d for d in decided.decisions if d.claim.fault == fault]
        if decided.stated:
            return _stated(fault, best, medians, mine, tail)
        never = {
            s.setup
            for s in ss
            if s.time_to_recover_s.n and s.recovered == 0 and s.no_impact < s.time_to_recover_s.n
        }
        return _ranked(fault, best, others, medians, mine, tail, never)
    pairs = [(o, _pair(cs, best, o)) for o in others]
    won = [(o, c) for o, c in pairs if c is not None and c.supported and c.faster == best]
    if won and len(won) == len(others):
        clauses = " and ".join(_faster_clause(c, best, o) for o, c in won)
        return FaultVerdict(
            fault, f"{best} recovered fastest: {clauses}." + tail, "supported", best
        )
    if won:
        clauses = " and ".join(_faster_clause(c, best, o) for o, c in won)
        rest = ", ".join(o for o in others if o not in {w for w, _ in won})
        return FaultVerdict(
            fault,
            f"{best} recovered {clauses}; against {rest} the difference is not supported "
            f"(medians: {medians})." + tail,
            "supported",
            best,
        )
    sizes = [(c.n_a, c.n_b) for _, c in pairs if c is not None]
    if not sizes or all(_min_p(a, b) >= alpha for a, b in sizes):
        n = sorted({x for ab in sizes for x in ab}) or [0]
        reps = "/".join(map(str, n))
        return FaultVerdict(
            fault,
            f"{best} had the lowest median time to recover ({medians}), but with {reps} "
            f"repetitions per setup there are not enough repetitions to tell "
            f"(no test can reach p < {alpha:g}; run more)." + tail,
            "undecided",
            best,
        )
    ps = [c.p_value for _, c in pairs if c is not None and c.p_value is not None]
    p_text = f"Mann-Whitney p ≥ {min(ps):.2g}" if ps else "no test possible"
    return FaultVerdict(
        fault,
        f"No supported difference between the setups ({medians}; {p_text})." + tail,
        "undecided",
        None,
    )


def _pair_decision(ds: Sequence[Decision], a: str, b: str) -> Decision | None:
    for d in ds:
        if {d.claim.setup, d.claim.compared_to} == {a, b}:
            return d
    return None


def _more(d: Decision) -> str:
    if d.more_repetitions is None:
        return "more repetitions are not expected to decide it"
    return f"would need about {d.more_repetitions} more repetition(s) per setup"


def _evidence(d: Decision) -> str:
    """``mean difference 1.50 s [95 % interval 1.20–1.80], p = 0.004, 5 repetitions``."""
    diff = "–" if d.difference is None else f"{abs(d.difference):.2f} s"
    ci = ""
    if d.low is not None and d.high is not None:
        lo, hi = sorted((abs(d.low), abs(d.high))) if d.low * d.high > 0 else (d.low, d.high)
        ci = f" [95 % interval {lo:.2f}–{hi:.2f}]"
    bound = " at least" if d.censored else ""
    p = "" if d.p_value is None else f", p = {d.p_value:.2g}"
    return f"mean difference{bound} {diff}{ci}{p}, {d.repetitions} repetitions"


def _ranked(
    fault: str,
    best: str,
    others: list[str],
    medians: str,
    ds: Sequence[Decision],
    tail: str,
    never: set[str],
) -> FaultVerdict:
    """The verdict from the ranking decisions; ``never``: setups that never recovered."""
    pairs = [(o, _pair_decision(ds, best, o)) for o in others]
    won = [(o, d) for o, d in pairs if d and d.outcome == "supported" and d.faster == best]
    same = [(o, d) for o, d in pairs if d and d.outcome == "equivalent"]
    open_ = [(o, d) for o, d in pairs if (o, d) not in won and (o, d) not in same]

    def beat(o: str, d: Decision) -> str:
        if o in never:
            return f"it recovered while {o} did not ({_evidence(d)})"
        return f"{abs(d.difference or 0.0):.2f} s faster than {o} ({_evidence(d)})"

    def rest(items: list[tuple[str, Decision | None]]) -> str:
        words = []
        for o, d in items:
            if d is None:
                words.append(f"{o}: not compared")
            elif d.outcome == "equivalent":
                words.append(f"{o}: equivalent within ±{d.claim.margin:g} s")
            else:
                words.append(f"{o}: undecided, {_more(d)}")
        return "; ".join(words)

    if won and len(won) == len(others):
        clauses = " and ".join(beat(o, d) for o, d in won)
        return FaultVerdict(
            fault, f"{best} recovered fastest: {clauses}." + tail, "supported", best
        )
    if won:
        clauses = " and ".join(beat(o, d) for o, d in won)
        return FaultVerdict(
            fault,
            f"{best} recovered {clauses}; against {rest([*same, *open_])} "
            f"(medians: {medians})." + tail,
            "supported",
            best,
        )
    if same and len(same) == len(others):
        margin = same[0][1].claim.margin
        return FaultVerdict(
            fault,
            f"The setups recover equally fast, within ±{margin:g} s ({medians})." + tail,
            "equivalent",
            None,
        )
    return FaultVerdict(
        fault,
        f"{best} had the lowest median time to recover ({medians}), but the difference is "
        f"undecided: {rest([*same, *open_])}." + tail,
        "undecided",
        best,
    )


def _stated(fault: str, best: str, medians: str, ds: Sequence[Decision], tail: str) -> FaultVerdict:
    head = f"{best} had the lowest median time to recover ({medians})."
    if not ds:
        return FaultVerdict(
            fault, head + " No hypothesis is about this fault." + tail, "none", best
        )
    outcomes = [d.outcome for d in ds]
    level: VerdictLevel = (
        "refuted"
        if "refuted" in outcomes
        else "undecided"
        if "undecided" in outcomes
        else "equivalent"
        if all(o == "equivalent" for o in outcomes)
        else "supported"
    )
    said = " ".join(f"Hypothesis {d.claim.hypothesis}: {d.outcome}." for d in ds)
    return FaultVerdict(fault, f"{head} {said}" + tail, level, best)
