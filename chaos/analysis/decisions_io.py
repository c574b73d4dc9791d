"""The ``decisions`` object of ``results.json``: a ``DecisionSet`` to JSON and back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, cast

from chaos.analysis.decisions import OUTCOMES, Claim, Decision, DecisionSet, Expect, SequentialPlan


def decision_set_to_dict(s: DecisionSet) -> dict[str, object]:
    """The ``decisions`` object of ``results.json``."""
    return {
        "plan": asdict(s.plan),
        "stated": s.stated,
        "stop_reason": s.stop_reason,
        "decisions": [asdict(d) for d in s.decisions],
    }


def _opt(v: object) -> float | None:
    return None if v is None else float(str(v))


def decision_set_from_dict(d: Mapping[str, Any]) -> DecisionSet:
    """Inverse of ``decision_set_to_dict``."""
    p = d["plan"]
    plan = SequentialPlan(
        adaptive=bool(p["adaptive"]),
        max_rounds=int(p["max_rounds"]),
        spending="obrien-fleming" if p["spending"] == "obrien-fleming" else "pocock",
        final=bool(p["final"]),
        alpha=float(p["alpha"]),
        family="in-order" if p.get("family") == "in-order" else "holm",
    )
    decisions = []
    for e in d["decisions"]:
        c = e["claim"]
        expect = str(c["expect"])
        if expect not in ("lower", "higher", "equivalent"):
            raise ValueError(f"unknown expect {expect!r}")
        outcome = str(e["outcome"])
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        decisions.append(
            Decision(
                claim=Claim(
                    hypothesis=str(c["hypothesis"]),
                    fault=str(c["fault"]),
                    metric=str(c["metric"]),
                    setup=str(c["setup"]),
                    compared_to=str(c["compared_to"]),
                    expect=cast(Expect, expect),
                    min_difference=float(c["min_difference"]),
                    margin=float(c["margin"]),
                    text=str(c["text"]),
                    implicit=bool(c["implicit"]),
                ),
                outcome=outcome,
                repetitions=int(e["repetitions"]),
                n_setup=int(e["n_setup"]),
                n_compared=int(e["n_compared"]),
                mean_setup=_opt(e["mean_setup"]),
                mean_compared=_opt(e["mean_compared"]),
                difference=_opt(e["difference"]),
                low=_opt(e["low"]),
                high=_opt(e["high"]),
                censored=bool(e["censored"]),
                p_value=_opt(e["p_value"]),
                threshold=float(e["threshold"]),
                level=float(e["level"]),
                more_repetitions=None
                if e["more_repetitions"] is None
                else int(e["more_repetitions"]),
                faster=None if e["faster"] is None else str(e["faster"]),
                statement=str(e["statement"]),
                note=str(e.get("note", "")),
            )
        )
    return DecisionSet(
        plan=plan,
        decisions=tuple(decisions),
        stated=bool(d["stated"]),
        stop_reason=None if d.get("stop_reason") is None else str(d["stop_reason"]),
    )
