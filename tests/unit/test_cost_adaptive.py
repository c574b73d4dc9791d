"""``repetitions: auto`` for the cost step: more rounds until its hypotheses are decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_hypotheses import ALPHA, look_threshold
from chaos.engine.cost import CostKey, CostRunner, cost_round, next_cost_round
from chaos.errors import SpecError
from chaos.experiment import Experiment, Setup, load_experiment
from chaos.experiment.cost import describe_cost
from chaos.rundir.cost import CostWindowRecord
from chaos.rundir.journal import Journal
from tests.unit.test_cost_analysis import RATE, _window

_FILE = """\
name: cost-auto
setups: [sidecar]
repetitions: {repetitions}
max_repetitions: 3
traffic: {{users: 5, spawn_rate: 5, rate: 20, endpoints: [{{name: r, path: /}}]}}
timeline: {{warmup: 1s, hold: 1s, recovery: 1s}}
faults:
  - {{type: crash, target: {{service: payments, replica: 0}}}}
cost:
  setups: [baseline, sidecar]
  rates: [{rate}]
  hold: 4s
  repetitions: {first}
  max_repetitions: {most}
  hypotheses:
    - {{metric: proxy_memory, setup: sidecar, compared_to: baseline, expect: higher}}
"""


def _experiment(
    tmp_path: Path, most: int = 6, repetitions: str = "auto", first: int = 2
) -> Experiment:
    path = tmp_path / "cost-auto.yaml"
    path.write_text(_FILE.format(repetitions=repetitions, rate=RATE, most=most, first=first))
    return load_experiment(path)


def _rounds(run_dir: Path, rounds: range) -> None:
    for repetition in rounds:
        _window(run_dir, "baseline", repetition, 0.0)
        _window(run_dir, "sidecar", repetition, 3.0)


def test_more_rounds_of_the_compared_setups_until_the_hypothesis_is_decided(
    tmp_path: Path,
) -> None:
    experiment = _experiment(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Before and during the first `repetitions` rounds: every setup of the step.
    assert next_cost_round(experiment, run_dir, 0)[0] == {"baseline", "sidecar"}
    _rounds(run_dir, range(1, 3))
    # Two windows a side cannot decide (an exact test's smallest p is 1/6): another round.
    needed, why = next_cost_round(experiment, run_dir, 2)
    assert needed == {"baseline", "sidecar"} and "undecided" in why
    _rounds(run_dir, range(3, 5))
    # Four a side: the sidecar's 25 MB more memory is decided, the step stops.
    needed, why = next_cost_round(experiment, run_dir, 4)
    assert needed == set() and "decided after 4 round(s)" in why


def test_the_rounds_are_bounded_by_max_repetitions(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, most=3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _rounds(run_dir, range(1, 3))
    # Round 3's baseline window broke: 3 windows against 2 cannot decide (p >= 1/10).
    _window(run_dir, "baseline", 3, 0.0, broken="ingress exited mid-measurement")
    _window(run_dir, "sidecar", 3, 3.0)
    needed, why = next_cost_round(experiment, run_dir, 3)
    assert needed == set() and "the most rounds (3)" in why


def test_a_later_round_measures_only_the_setups_asked_for(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    keys = cost_round(experiment, 3, {"sidecar"})
    assert [(k.setup, k.rate, k.repetition) for k in keys] == [(Setup.SIDECAR, RATE, 3)]
    # A whole round rotates the setups so that the machine's drift weighs on each alike.
    assert [k.setup for k in cost_round(experiment, 2)] == [Setup.SIDECAR, Setup.BASELINE]


def test_each_look_spends_a_share_of_alpha_and_the_last_spends_what_is_left(
    tmp_path: Path,
) -> None:
    experiment = _experiment(tmp_path, most=8)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _rounds(run_dir, range(1, 5))
    cost = analyze_cost(run_dir)
    assert cost is not None and experiment.cost is not None
    (h,) = experiment.cost.hypotheses
    interim = look_threshold(cost, experiment.cost, h, ALPHA, 8, final=False)
    last = look_threshold(cost, experiment.cost, h, ALPHA, 8, final=True)
    # Looking after every round must not give more than alpha of false decisions.
    assert 0 < interim < last <= ALPHA


def test_max_repetitions_below_repetitions_is_refused_at_its_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"cost\.max_repetitions.*below repetitions"):
        _experiment(tmp_path, most=2, first=3)


def test_without_auto_the_step_runs_its_repetitions(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, repetitions="1")
    assert experiment.cost is not None
    assert experiment.cost.most_rounds(experiment.adaptive) == 2


def test_the_dry_run_says_the_step_adds_rounds(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, most=5)
    lines = describe_cost(experiment.cost, experiment.setups, experiment.adaptive)
    assert any("until each is decided, at most 5 rounds" in line for line in lines)


class _Rounds(CostRunner):
    """The runner's loop, its windows written as the analysis reads them (no topology)."""

    ran: list[list[tuple[str, int]]]

    def _run_keys(self, keys: list[CostKey]) -> list[CostWindowRecord]:
        self.ran.append([(k.setup.value, k.repetition) for k in keys])
        for k in keys:
            _window(
                self.run_dir,
                k.setup.value,
                k.repetition,
                0.0 if k.setup.value == "baseline" else 3.0,
            )
        return []


def test_the_runner_adds_rounds_until_decided_and_journals_why_it_stopped(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, most=6)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    journal = Journal(run_dir)
    said: list[str] = []
    runner = _Rounds(
        experiment,
        platform=None,  # type: ignore[arg-type]  # never reached: no topology starts
        run_dir=run_dir,
        journal=journal,
        marker="m",
        traffic=None,  # type: ignore[arg-type]
        traffic_config=None,  # type: ignore[arg-type]
        say=said.append,
    )
    runner.ran = []
    runner.run()
    journal.close()
    # Two first rounds, then one at a time until 4 windows a side decide it.
    assert [sorted({r for _, r in keys}) for keys in runner.ran] == [[1], [2], [3], [4]]
    assert (
        said[-1]
        == "cost: repetitions: auto: stop, every cost hypothesis was decided after 4 round(s)"
    )
    stopped = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert stopped[-1]["kind"] == "cost_rounds_stopped" and stopped[-1]["rounds"] == 4
