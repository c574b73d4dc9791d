"""One sentence per fault: which setup recovered faster, by how much, and how sure.

Built from the analysis' summaries and pairwise comparisons; "faster" is said
only where ``chaos.analysis.compare`` found the difference supported. When no
comparison can reach significance with the repetitions at hand (3 against 3
cannot reach p < 0.05 with Mann-Whitney), the sentence says so plainly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chaos.analysis import Comparison, Summary

#: How a verdict reads at a glance (the report colours its card by it).
VerdictLevel = Literal["supported", "unsupported", "insufficient", "no-effect", "single"]


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
    "supported": "supported difference",
    "unsupported": "no supported difference",
    "insufficient": "not enough repetitions",
    "no-effect": "no effect",
    "single": "one setup",
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


def _tail(summaries: Sequence[Summary]) -> str:
    notes = []
    for s in summaries:
        measured = s.repetitions - s.aborted - s.unmeasured
        if measured and s.recovered < measured:
            notes.append(
                f"{s.setup} did not recover within the window in "
                f"{measured - s.recovered} of {measured} repetitions"
            )
        if s.aborted:
            notes.append(f"{s.aborted} {s.setup} repetition(s) were aborted by a stop condition")
    return "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


def fault_verdict(
    fault: str,
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    *,
    alpha: float = 0.05,
) -> FaultVerdict:
    """The verdict on ``fault`` from its summaries (one per setup) and comparisons."""
    ss = [s for s in summaries if s.fault == fault]
    cs = [c for c in comparisons if c.fault == fault]
    tail = _tail(ss)
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
        return FaultVerdict(fault, "No repetition was measured." + tail, "insufficient", None)
    best = ranked[0].setup
    others = [s.setup for s in ranked[1:]]
    pairs = [(o, _pair(cs, best, o)) for o in others]
    won = [(o, c) for o, c in pairs if c is not None and c.supported and c.faster == best]
    medians = ", ".join(f"{s.setup} {seconds(s.time_to_recover_s.median)}" for s in ranked)
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
            "insufficient",
            best,
        )
    ps = [c.p_value for _, c in pairs if c is not None and c.p_value is not None]
    p_text = f"Mann-Whitney p ≥ {min(ps):.2g}" if ps else "no test possible"
    return FaultVerdict(
        fault,
        f"No supported difference between the setups ({medians}; {p_text})." + tail,
        "unsupported",
        None,
    )
