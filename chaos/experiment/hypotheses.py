"""The ``hypotheses:`` section and ``repetitions: auto``: what a team expects, across setups.

A hypothesis compares one metric of one setup with another setup's, for one fault
(``fault: NAME``) or for every fault both setups run (``fault`` left out, or ``all``)::

    hypotheses:
      - name: mesh-heals-expiry
        fault: checkout-cert-expired
        metric: time_to_recover
        setup: mesh
        compared_to: sidecar
        expect: lower            # lower | higher | equivalent
        min_difference: 1s       # optional: smaller differences do not matter
      - metric: p95
        setup: sidecar
        compared_to: mesh
        expect: equivalent
        margin: 50ms             # required for equivalent

Quantities are in the metric's unit: durations (``1s``, ``250ms``, or seconds) for
the times, durations or milliseconds for p95/p99, a count for ``failed_requests``
and a share (0..1) for ``error_rate``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, Strict, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from chaos.experiment._base import SetupName, Slug, SpecModel, field_error
from chaos.experiment.durations import format_duration, parse_duration

#: What a hypothesis measures (one value per fault window).
Metric = Literal[
    "time_to_recover",
    "time_to_impact",
    "failed_requests",
    "error_rate",
    "p95",
    "p99",
    "served_unauthenticated",
    "credentials_exposed",
    "bypass_served",
]
METRICS: tuple[Metric, ...] = (
    "time_to_recover",
    "time_to_impact",
    "failed_requests",
    "error_rate",
    "p95",
    "p99",
    "served_unauthenticated",
    "credentials_exposed",
    "bypass_served",
)
#: Metrics that are a share of requests (0..1).
SHARE_METRICS: tuple[str, ...] = ("error_rate", "credentials_exposed")
#: The unit each metric's values and quantities are in.
UNITS: dict[str, str] = {
    "time_to_recover": "s",
    "time_to_impact": "s",
    "failed_requests": "requests",
    "error_rate": "share",
    "p95": "ms",
    "p99": "ms",
    # what a window let through (chaos.analysis.security)
    "served_unauthenticated": "requests",
    "credentials_exposed": "share",
    "bypass_served": "requests",
}
Expect = Literal["lower", "higher", "equivalent"]

#: A number, or a duration string for time and latency metrics.
Quantity = Annotated[
    Annotated[float, Strict()] | Annotated[str, Strict(), Field(max_length=32)],
    Field(
        json_schema_extra={
            "description": "in the metric's unit: a duration (1s, 50ms) for times and "
            "p95/p99, a count for failed_requests, a share (0..1) for error_rate"
        }
    ),
]


def quantity(metric: str, value: float | str, at: str) -> float:
    """``value`` in ``metric``'s unit (seconds, milliseconds, requests or a share)."""
    if isinstance(value, str):
        if metric not in ("time_to_recover", "time_to_impact", "p95", "p99"):
            raise field_error(at, f"must be a number for {metric} (got {value!r})")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise field_error(at, str(exc)) from None
        number = seconds * 1000.0 if metric in ("p95", "p99") else seconds
    else:
        number = float(value)
    if number < 0:
        raise field_error(at, f"must not be negative (got {value!r})")
    if metric in SHARE_METRICS and number > 1:
        raise field_error(at, f"is a share of requests, at most 1 (got {value!r})")
    return number


class Hypothesis(SpecModel):
    """One comparative claim: ``setup``'s ``metric`` is lower/higher than, or equivalent to,
    ``compared_to``'s, for one fault or all."""

    name: Slug | None = None
    #: A fault name; left out (or ``all``): every fault both setups run.
    fault: Slug | None = None
    metric: Metric
    setup: SetupName
    compared_to: SetupName
    expect: Expect
    #: The smallest difference that matters (for lower/higher).
    min_difference: Quantity | None = None
    #: The equivalence margin (for equivalent): differences within ±margin count as none.
    margin: Quantity | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Hypothesis:
        if self.setup == self.compared_to:
            raise field_error("compared_to", f"compares {self.setup} with itself")
        if self.expect == "equivalent":
            if self.margin is None:
                raise field_error("margin", "expect: equivalent needs a margin")
            if self.min_difference is not None:
                raise field_error(
                    "min_difference", "belongs to lower/higher; equivalent uses margin"
                )
            if quantity(self.metric, self.margin, "margin") <= 0:
                raise field_error("margin", "must be greater than 0")
        else:
            if self.margin is not None:
                raise field_error("margin", f"belongs to expect: equivalent, not {self.expect}")
            if self.min_difference is not None:
                quantity(self.metric, self.min_difference, "min_difference")
        return self

    @property
    def all_faults(self) -> bool:
        """Whether the hypothesis is about every fault both setups run."""
        return self.fault is None or self.fault == "all"

    @property
    def min_difference_value(self) -> float:
        """The minimal difference in the metric's unit (0 when none is given)."""
        if self.min_difference is None:
            return 0.0
        return quantity(self.metric, self.min_difference, "min_difference")

    @property
    def margin_value(self) -> float:
        """The equivalence margin in the metric's unit (0 for lower/higher)."""
        if self.margin is None:
            return 0.0
        return quantity(self.metric, self.margin, "margin")

    def label(self, index: int) -> str:
        """Its name, else ``hypothesis-<position from 1>``."""
        return self.name or f"hypothesis-{index + 1}"

    def describe(self) -> str:
        """The claim in words: ``mesh's time to recover is lower than sidecar's``."""
        metric = self.metric.replace("_", " ")
        unit = UNITS[self.metric]
        if self.expect == "equivalent":
            claim = f"within ±{self.margin_value:g} {unit} of"
        else:
            claim = f"{self.expect} than"
            if self.min_difference_value:
                claim = f"{self.expect} by at least {self.min_difference_value:g} {unit} than"
        where = "every fault" if self.all_faults else self.fault
        verb = "are" if self.metric == "failed_requests" else "is"
        return f"{self.setup}'s {metric} {verb} {claim} {self.compared_to}'s ({where})"


MAX_REPETITIONS = 1000


def _repetitions(value: object) -> object:
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if not isinstance(value, str) else f'"{value}"'
        raise PydanticCustomError("repetitions", f"must be a valid integer or auto (got {shown})")
    if not 1 <= value <= MAX_REPETITIONS:
        raise PydanticCustomError(
            "repetitions",
            f"must be greater than or equal to 1 and less than or equal to {MAX_REPETITIONS} "
            f"(got {value})",
        )
    return value


#: ``repetitions``: 1..1000, or ``auto``.
Repetitions = Annotated[
    int | Literal["auto"],
    BeforeValidator(_repetitions),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_REPETITIONS},
                {"const": "auto"},
            ],
            "description": "how many times each window runs, or auto (see hypotheses)",
        }
    ),
]

#: Seconds a window costs beyond its timeline (topology and Locust start and stop),
#: measured on the 2-core machine with the game day (about 5 s).
WINDOW_OVERHEAD_S = 5.0


def check_hypotheses(
    hypotheses: tuple[Hypothesis, ...],
    setups: tuple[str, ...],
    fault_names: list[str],
    setups_of_fault: dict[str, tuple[str, ...]],
) -> None:
    """Raise a located error for a hypothesis that names what the experiment does not run."""
    labels = [h.label(i) for i, h in enumerate(hypotheses)]
    for i, h in enumerate(hypotheses):
        at = f"hypotheses.{i}"
        if labels[i] in labels[:i]:
            raise field_error(f"{at}.name", f'hypothesis name "{labels[i]}" is used twice')
        for key, setup in (("setup", h.setup), ("compared_to", h.compared_to)):
            if setup not in setups:
                raise field_error(
                    f"{at}.{key}",
                    f"{setup} is not one of the experiment's setups ({', '.join(setups)})",
                )
        pair = {h.setup, h.compared_to}
        if h.all_faults:
            if not any(pair <= set(setups_of_fault[f]) for f in fault_names):
                raise field_error(
                    f"{at}.fault", f"no fault runs in both {h.setup} and {h.compared_to}"
                )
            continue
        if h.fault not in fault_names:
            raise field_error(
                f"{at}.fault", f'no fault is named "{h.fault}" ({", ".join(fault_names)})'
            )
        missing = sorted(pair - set(setups_of_fault[str(h.fault)]))
        if missing:
            raise field_error(
                f"{at}.fault", f"{h.fault} does not run in {', '.join(missing)} (see target.setups)"
            )


def check_repetitions(
    repetitions: int | str, max_repetitions: int | None, budget: float | None
) -> None:
    """``repetitions: auto`` needs ``max_repetitions`` or ``budget`` to stop.

    With a number of repetitions both are ignored, so ``--set repetitions=1`` works on
    a file written for ``auto``.
    """
    if repetitions == "auto" and max_repetitions is None and budget is None:
        raise field_error("repetitions", "auto needs max_repetitions or budget (or both) to stop")


def hypothesis_windows(
    hypotheses: tuple[Hypothesis, ...], setups_of_fault: dict[str, tuple[str, ...]]
) -> set[tuple[str, str]]:
    """The (setup, fault) windows the hypotheses compare (all of them when there are none)."""
    every = {(s, f) for f, setups in setups_of_fault.items() for s in setups}
    if not hypotheses:
        return every
    found: set[tuple[str, str]] = set()
    for h in hypotheses:
        for fault, setups in setups_of_fault.items():
            if (h.all_faults or h.fault == fault) and {h.setup, h.compared_to} <= set(setups):
                found |= {(h.setup, fault), (h.compared_to, fault)}
    return found


def describe_decisions(
    hypotheses: tuple[Hypothesis, ...],
    repetitions: int | str,
    max_repetitions: int | None,
    budget: float | None,
    planned: int,
    multiple_testing: str = "holm",
) -> list[str]:
    """Lines for ``--dry-run``: how repetitions are chosen and what will be decided."""
    if repetitions == "auto":
        limits = [f"at most {max_repetitions} rounds" if max_repetitions else ""]
        limits.append(f"within {format_duration(budget)}" if budget else "")
        lines = [
            "repetitions: auto: rounds are added until every hypothesis is decided "
            f"({', '.join(x for x in limits if x)}; at most {planned} rounds planned; "
            "rounds after the first run only the windows undecided hypotheses compare)"
        ]
    elif max_repetitions is not None or budget is not None:
        ignored = " and ".join(
            n
            for n, v in (("max_repetitions", max_repetitions), ("budget", budget))
            if v is not None
        )
        lines = [f"repetitions: {repetitions}, fixed: {ignored} do not apply"]
    else:
        lines = []
    if not hypotheses:
        lines.append(
            "no hypotheses: setups are ranked per fault on time to recover "
            "(supported / equivalent / undecided)"
        )
        return lines
    family = (
        "tested in the order listed, each at alpha 0.05 (fixed sequence)"
        if multiple_testing == "in-order"
        else "Holm family, alpha 0.05"
    )
    lines.append(f"{len(hypotheses)} hypotheses ({family}):")
    lines += [f"  {h.label(i)}: {h.describe()}" for i, h in enumerate(hypotheses)]
    return lines
