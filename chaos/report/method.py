"""The method section in plain words: how the numbers and the decisions were made."""

from __future__ import annotations

from chaos.analysis.decisions import RANK_MARGIN_S, DecisionSet


def method_paragraphs(decided: DecisionSet | None) -> list[str]:
    """Paragraphs for the report's method section (the decisions part follows the plan used)."""
    out = [
        "Time to recover counts from the revert (from injection for faults that heal by "
        "themselves, such as a crash) until the error rate and p95 stay within the steady "
        "state for the hold period. Medians carry percentile bootstrap 95 % intervals.",
        "Load is open-loop unless the experiment says mode: closed: requests start on "
        "schedule at the configured arrival rate whatever the responses do, and latency "
        "counts from the scheduled start, so a slow system cannot lower the load it is "
        "measured under. A request due while the driver's in-flight cap was full is "
        "counted as not sent, apart from the errors.",
    ]
    if decided is None:
        out.append(
            "Setups are compared with a two-sided Mann-Whitney test on time to recover "
            "(results written before decisions existed)."
        )
        return out
    plan = decided.plan
    what = (
        "Each hypothesis is checked on every fault it names"
        if decided.stated
        else "No hypotheses were stated, so every pair of setups is compared per fault on "
        f"time to recover: one recovers faster, or both are equivalent within "
        f"±{RANK_MARGIN_S:g} s"
    )
    out += [
        f"{what}. One fault window is one measurement: its time to recover, time to impact, "
        "failed requests, error rate, or worst p95/p99 during the fault. Requests are never "
        "pooled across windows, because requests within one window share the same proxy, "
        "connections and moment and are not independent.",
        "A window that did not recover counts as slower than any that did: it enters at the "
        "longest time any compared window could have measured, so such a difference is a "
        "lower bound (marked ≥).",
        "The test is an exact permutation test on the difference of means: every way of "
        "splitting the windows between the two setups is equally likely if the setups do "
        "not differ, and p is the share of splits that look at least as extreme as the one "
        "observed (one-sided, in the stated direction, shifted by the minimal difference). "
        "Equivalence is shown with two one-sided tests (TOST) against the margin. A "
        "hypothesis is refuted when the opposite one-sided test is significant.",
        f"All decisions of the run form one family at a {plan.alpha:g} error rate, controlled "
        "with Holm's procedure: each of the m claims starts with alpha/m, and a decided "
        "claim hands its share on to the undecided ones."
        if plan.family != "in-order" or not decided.stated
        else f"All decisions of the run form one family at a {plan.alpha:g} error rate, "
        "controlled by testing the hypotheses in the order the experiment lists them "
        "(fixed-sequence testing): each is tested at the full alpha, but only once every "
        "hypothesis before it was supported (or shown equivalent); a refuted or undecided "
        "one stops the chain, and the ones after it stay undecided.",
    ]
    if plan.adaptive:
        out.append(
            f"Repetitions were added one round at a time (repetitions: auto, at most "
            f"{plan.max_rounds} rounds). After each round every undecided claim was tested "
            f"again against a threshold from a {plan.spending.replace('-', ' ').title()}-type "
            "alpha-spending function, so looking several times does not raise the error rate: "
            "each look may use only the share of alpha the function releases by then, less "
            "what earlier looks could actually have used. A decided claim stays decided; its "
            "windows are not run again."
            + (f" The run stopped because {decided.stop_reason}." if decided.stop_reason else "")
        )
    out.append(
        "Every decision reports the difference of means with a bootstrap 95 % interval and "
        "the number of repetitions it took. An undecided claim says about how many more "
        "repetitions per setup would decide it: the sample size for 80 % power at the "
        "observed difference and spread, at least what the exact test needs to reach its "
        "level at all."
    )
    return out
