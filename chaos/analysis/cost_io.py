"""The cost figures in ``results.json`` (key ``cost``), written next to the verdicts.

The finish step adds them after ``results.json`` is written, so the results writer does
not change: a run without a cost step has no ``cost`` key.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos.analysis.cost import RAW, SPEED_ADJUSTED, CostAnalysis, analyze_cost, at_median_speed
from chaos.analysis.cost_hypotheses import CostDecision, decide_cost, refuted_cost_lines
from chaos.experiment import Experiment
from chaos.outpaths import replace_file
from chaos.rundir import RESULTS_FILE

#: The key of ``results.json`` that holds the cost figures.
COST_KEY = "cost"


def _clean(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def cost_to_dict(cost: CostAnalysis) -> dict[str, object]:
    """Every figure of the cost step, JSON-ready (infinite or undefined values: null)."""
    data = _clean(asdict(cost))
    assert isinstance(data, dict)
    for window, figures in zip(data["windows"], cost.windows, strict=True):
        window["offered"] = figures.offered
    for setup, summary in zip(data["setups"], cost.setups, strict=True):
        setup["cpu_basis"] = cpu_basis(cost, summary.setup, summary.rate)
    return data


def cpu_basis(cost: CostAnalysis, setup: str, rate: float) -> str:
    """What a setup's CPU at a rate is: ``speed-adjusted``, or ``raw`` (the step's ``cpu``,
    or a setup ``at_median_speed`` left raw: a window without the apps' CPU)."""
    if cost.cpu != SPEED_ADJUSTED:
        return RAW
    windows = [w for w in cost.windows if w.setup == setup and w.rate == rate]
    return RAW if at_median_speed(windows)[1] else SPEED_ADJUSTED


def add_cost_to_results(
    run_dir: Path, cost: CostAnalysis, decisions: list[CostDecision] | None = None
) -> None:
    """Put the cost figures into ``results.json`` (created when the run had no other)."""
    path = run_dir / RESULTS_FILE
    results: dict[str, Any] = {}
    if path.is_file():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            results = loaded
    results[COST_KEY] = cost_to_dict(cost)
    results[COST_KEY]["decisions"] = _clean([asdict(d) for d in decisions or []])
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    replace_file(path, lambda p: p.write_text(text, encoding="utf-8"))


def finish_cost(run_dir: Path, experiment: Experiment) -> tuple[CostAnalysis | None, list[str]]:
    """The finish step's part for cost: figures and decisions into ``results.json``.

    Returns the figures (None without a cost step) and a line per refuted cost hypothesis.
    """
    step = experiment.cost
    cost = analyze_cost(run_dir, seed=experiment.seed, cpu=step.cpu if step else SPEED_ADJUSTED)
    if cost is None or experiment.cost is None:
        return cost, []
    decisions = decide_cost(
        cost,
        experiment.cost,
        seed=experiment.seed,
        most_rounds=experiment.cost.most_rounds(experiment.adaptive),
    )
    add_cost_to_results(run_dir, cost, decisions)
    return cost, refuted_cost_lines(decisions)


def read_cost_results(run_dir: Path) -> dict[str, Any] | None:
    """The ``cost`` object of a run's ``results.json``, or None."""
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text(encoding="utf-8"))
    found = loaded.get(COST_KEY) if isinstance(loaded, dict) else None
    return found if isinstance(found, dict) else None


__all__ = [
    "COST_KEY",
    "add_cost_to_results",
    "cost_to_dict",
    "cpu_basis",
    "finish_cost",
    "read_cost_results",
]
