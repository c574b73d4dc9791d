"""A claim and a decision in words: ``claim_text`` (what is claimed) and ``statement`` (one
plain sentence: the outcome, the effect with its interval, the test).
"""

from __future__ import annotations

from chaos.analysis.decisions import Claim, Decision

_UNITS = {
    "time_to_recover": " s",
    "time_to_impact": " s",
    "failed_requests": "",
    "error_rate": "",
    "p95": " ms",
    "p99": " ms",
}


def _q(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if metric in ("error_rate", "credentials_exposed"):
        return f"{value * 100:.1f} %"
    if metric in ("failed_requests", "served_unauthenticated", "bypass_served"):
        return f"{value:,.1f}"
    unit = _UNITS.get(metric, "")
    return f"{value:.2f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"


def claim_text(claim: Claim) -> str:
    """The claim in words."""
    if claim.text:
        return claim.text
    metric = claim.metric.replace("_", " ")
    if claim.implicit:
        return f"{claim.fault}: {claim.setup} and {claim.compared_to} differ in {metric}"
    if claim.expect == "equivalent":
        how = f"within ±{_q(claim.margin, claim.metric)} of"
    elif claim.min_difference:
        how = f"{claim.expect} by more than {_q(claim.min_difference, claim.metric)} than"
    else:
        how = f"{claim.expect} than"
    verb = "are" if claim.metric == "failed_requests" else "is"
    return f"{claim.fault}: {claim.setup}'s {metric} {verb} {how} {claim.compared_to}'s"


def statement(d: Decision) -> str:
    """One plain sentence: the outcome, the effect with its interval, the test."""
    c = d.claim
    metric = c.metric
    bound = " (a bound: a window that did not recover counts at the longest span)"
    effect = (
        f"mean {_q(d.mean_setup, metric)} ({c.setup}) vs {_q(d.mean_compared, metric)} "
        f"({c.compared_to}), difference {_q(d.difference, metric)} "
        f"[95 % interval {_q(d.low, metric)} to {_q(d.high, metric)}]"
        + (bound if d.censored else "")
    )
    test = (
        f"permutation p = {d.p_value:.3g}, threshold {d.threshold:.3g}"
        if d.p_value is not None
        else "no test possible"
    )
    sizes = f"n = {d.n_setup} and {d.n_compared}"
    if c.implicit:
        if d.outcome == "supported" and d.faster is not None:
            slower = c.compared_to if d.faster == c.setup else c.setup
            head = f"{c.fault}: {d.faster}'s {metric.replace('_', ' ')} is lower than {slower}'s"
        elif d.outcome == "equivalent":
            head = (
                f"{c.fault}: {c.setup} and {c.compared_to} are equivalent within "
                f"±{_q(c.margin, metric)}"
            )
        else:
            head = f"{c.fault}: {c.setup} vs {c.compared_to} undecided"
    else:
        head = f"{claim_text(c)}: {d.outcome}"
    when = f"after {d.repetitions} repetition(s)"
    tail = ""
    if d.note.startswith("not tested"):
        tail = f"; {d.note}"
    elif d.outcome == "undecided":
        tail = (
            f"; would need about {d.more_repetitions} more repetition(s) per setup"
            if d.more_repetitions is not None
            else "; more repetitions are not expected to decide it (no difference in "
            "either direction is visible)"
        ) + (f"; {d.note}" if d.note else "")
    return f"{head} {when} ({effect}; {test}; {sizes}){tail}."
