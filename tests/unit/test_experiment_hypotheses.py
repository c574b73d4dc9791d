"""The ``hypotheses:`` section and ``repetitions: auto``: quantities, scope, budget, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.analysis.hypotheses import claims_for
from chaos.cli.dryrun import describe_plan
from chaos.cli.platform import platform_for
from chaos.experiment import Experiment, experiment_json_schema, load_experiment
from tests.unit.windows import window_result

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
name: small
setups: [sidecar, mesh, ambient]
traffic:
  users: 2
  spawn_rate: 2
  rate: 10
  endpoints:
    - {name: browse, path: /}
timeline: {warmup: 1s, hold: 2s, recovery: 3s}
faults:
  - {type: latency, name: slow, target: {service: checkout, replica: 0}, delay: 200ms}
  - {type: crash, name: boom, target: {service: payments, setups: [mesh, ambient]}}
"""


def load_experiment_with(tmp_path: Path, extra: str) -> Experiment:
    path = tmp_path / "e.yaml"
    path.write_text(BASE + extra)
    return load_experiment(path)


def test_quantities_are_in_the_metric_unit(tmp_path: Path) -> None:
    e = load_experiment_with(
        tmp_path,
        """\
hypotheses:
  - {metric: p95, setup: mesh, compared_to: sidecar, expect: equivalent, margin: 50ms}
  - {metric: p99, setup: mesh, compared_to: sidecar, expect: lower, min_difference: 20}
  - {metric: time_to_recover, setup: mesh, compared_to: sidecar, expect: lower,
     min_difference: 1m}
  - {metric: error_rate, setup: ambient, compared_to: mesh, expect: higher,
     min_difference: 0.05}
""",
    )
    p95, p99, ttr, rate = e.hypotheses
    assert p95.margin_value == pytest.approx(50.0)  # ms
    assert p99.min_difference_value == 20.0
    assert ttr.min_difference_value == 60.0  # s
    assert rate.min_difference_value == 0.05
    assert p95.label(0) == "hypothesis-1"
    assert "within ±50 ms of sidecar's" in p95.describe()


def test_a_hypothesis_for_all_faults_expands_to_the_faults_both_setups_run(
    tmp_path: Path,
) -> None:
    e = load_experiment_with(
        tmp_path,
        "hypotheses:\n  - {metric: failed_requests, setup: ambient, compared_to: mesh, "
        "expect: higher}\n  - {metric: p95, fault: slow, setup: sidecar, compared_to: mesh, "
        "expect: lower}\n",
    )
    runs = [window_result(s, f, 0) for f, setups in e.setups_of_faults().items() for s in setups]
    claims = claims_for(e.hypotheses, runs)
    assert [(c.hypothesis, c.fault) for c in claims] == [
        ("hypothesis-1", "slow"),
        ("hypothesis-1", "boom"),
        ("hypothesis-2", "slow"),
    ]


def test_a_fault_not_run_in_both_setups_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"boom does not run in sidecar"):
        load_experiment_with(
            tmp_path,
            "hypotheses:\n  - {metric: p95, fault: boom, setup: sidecar, compared_to: mesh, "
            "expect: lower}\n",
        )


def test_hypothesis_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r'hypothesis name "x" is used twice'):
        load_experiment_with(
            tmp_path,
            "hypotheses:\n"
            "  - {name: x, metric: p95, setup: sidecar, compared_to: mesh, expect: lower}\n"
            "  - {name: x, metric: p99, setup: sidecar, compared_to: mesh, expect: lower}\n",
        )


def test_auto_plans_rounds_from_the_budget(tmp_path: Path) -> None:
    # a window costs 6 s of timeline + 5 s overhead = 11 s; 5 windows in all
    e = load_experiment_with(
        tmp_path,
        "repetitions: auto\nbudget: 2m\nhypotheses:\n"
        "  - {metric: p95, fault: boom, setup: ambient, compared_to: mesh, expect: lower}\n",
    )
    assert e.adaptive
    # first round 55 s, then 2 windows (22 s) a round: 1 + (120 - 55) // 22 = 3
    assert e.planned_repetitions == 3
    capped = load_experiment_with(tmp_path, "repetitions: auto\nmax_repetitions: 4\n")
    assert capped.planned_repetitions == 4
    fixed = load_experiment_with(tmp_path, "repetitions: 2\n")
    assert fixed.planned_repetitions == 2 and not fixed.adaptive


def test_schema_shows_the_section() -> None:
    schema = experiment_json_schema()
    props = schema["properties"]
    assert {"hypotheses", "max_repetitions", "budget"} <= set(props)
    assert {"const": "auto"} in props["repetitions"]["anyOf"]
    hypothesis = schema["$defs"]["Hypothesis"]["properties"]
    assert set(hypothesis["metric"]["enum"]) == {
        "time_to_recover",
        "time_to_impact",
        "failed_requests",
        "error_rate",
        "p95",
        "p99",
        "served_unauthenticated",
        "credentials_exposed",
        "bypass_served",
    }


def test_dry_run_mentions_the_hypotheses() -> None:
    game = load_experiment(ROOT / "experiments" / "gameday.yaml")
    out = "\n".join(describe_plan(game, platform_for(game.platform)))
    assert "repetitions: auto" in out
    assert "5 hypotheses (tested in the order listed, each at alpha 0.05 (fixed sequence)):" in out
    assert "mesh-heals-cert-expiry: mesh's time to recover is lower than sidecar's" in out


def test_dry_run_says_a_fixed_repetitions_override_drops_the_limits() -> None:
    game = load_experiment(ROOT / "experiments" / "gameday.yaml", ["repetitions=2"])
    out = "\n".join(describe_plan(game, platform_for(game.platform)))
    assert "repetitions: auto" not in out
    assert "repetitions: 2, fixed: " in out and "do not apply" in out


def test_setup_narrowing_leaves_out_hypotheses_about_dropped_setups() -> None:
    game = ROOT / "experiments" / "gameday.yaml"
    alone = load_experiment(game, setups=["sidecar"])
    assert alone.hypotheses == ()
    assert alone.planned_repetitions >= 2  # no division by an empty set of windows
    pair = load_experiment(game, setups=["sidecar", "mesh"])
    assert [h.name for h in pair.hypotheses] == [
        "mesh-retries-hide-crash",
        "mesh-heals-cert-expiry",
        "mesh-closes-bypass",
        "mesh-strips-credentials",
    ]
    assert "4 hypotheses" in "\n".join(describe_plan(pair, platform_for(pair.platform)))
