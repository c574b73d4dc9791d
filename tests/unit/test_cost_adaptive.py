"""``repetitions: auto`` for the cost step: more rounds until its hypotheses are decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.analysis.cost import analyze_cost
from chaos.analysis.cost_budget import Spent
from chaos.analysis.cost_hypotheses import ALPHA, look_threshold
from chaos.cli.dryrun import describe_plan
from chaos.cli.platform import platform_for
from chaos.engine.cost import CostKey, CostRunner, cost_round, next_cost_round
from chaos.errors import SpecError
from chaos.experiment import Experiment, Setup, load_experiment
from chaos.experiment.cost import describe_cost
from chaos.experiment.hypotheses import WINDOW_OVERHEAD_S
from chaos.rundir.cost import CostWindowRecord
from chaos.rundir.journal import Journal
from tests.unit.test_cost_analysis import RATE, _window

_FILE = """\
name: cost-auto
setups: [sidecar]
repetitions: {repetitions}
max_repetitions: 3
{budget}traffic: {{users: 5, spawn_rate: 5, rate: 20, endpoints: [{{name: r, path: /}}]}}
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
    tmp_path: Path,
    most: int = 6,
    repetitions: str = "auto",
    first: int = 2,
    budget: str | None = None,
) -> Experiment:
    path = tmp_path / "cost-auto.yaml"
    text = _FILE.format(
        repetitions=repetitions,
        rate=RATE,
        most=most,
        first=first,
        budget=f"budget: {budget}\n" if budget else "",
    )
    path.write_text(text)
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
    """The runner's loop, its windows written as the analysis reads them (no topology).

    ``now``: a clock each window moves on by ``window_s`` (no sleeping).
    """

    ran: list[list[tuple[str, int]]]
    now: float = 0.0
    window_s: float = 0.0

    def _run_keys(self, keys: list[CostKey]) -> list[CostWindowRecord]:
        self.ran.append([(k.setup.value, k.repetition) for k in keys])
        records = []
        for k in keys:
            _window(
                self.run_dir,
                k.setup.value,
                k.repetition,
                0.0 if k.setup.value == "baseline" else 3.0,
            )
            self.now += self.window_s
            records.append(CostWindowRecord(k.setup.value, k.rate, k.repetition, 0.0, 0.0))
        return records

    def clock(self) -> float:
        return self.now


def _runner(
    experiment: Experiment, run_dir: Path, said: list[str], kind: type[_Rounds] = _Rounds
) -> _Rounds:
    runner = kind(
        experiment,
        platform=None,  # type: ignore[arg-type]  # never reached: no topology starts
        run_dir=run_dir,
        journal=Journal(run_dir),
        marker="m",
        traffic=None,  # type: ignore[arg-type]
        traffic_config=None,  # type: ignore[arg-type]
        say=said.append,
    )
    runner.ran = []
    return runner


def _stopped(runner: _Rounds) -> dict[str, object]:
    runner.journal.close()
    entries = [json.loads(line) for line in runner.journal.path.read_text().splitlines()]
    (stopped,) = [e for e in entries if e["kind"] == "cost_rounds_stopped"]
    return stopped


def test_the_runner_adds_rounds_until_decided_and_journals_why_it_stopped(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, most=6)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    said: list[str] = []
    runner = _runner(experiment, run_dir, said)
    runner.run()
    # Two first rounds, then one at a time until 4 windows a side decide it.
    assert [sorted({r for _, r in keys}) for keys in runner.ran] == [[1], [2], [3], [4]]
    assert (
        said[-1]
        == "cost: repetitions: auto: stop, every cost hypothesis was decided after 4 round(s)"
    )
    assert _stopped(runner)["rounds"] == 4


# A round here: 2 setups x 1 rate; planned per window warm-up 2 s + hold 4 s + 5 s start-up.
PLANNED_ROUND_S = 2 * (2.0 + 4.0 + WINDOW_OVERHEAD_S)


@pytest.mark.parametrize(
    ("budget_s", "window_s", "rounds"),
    [
        # The fault windows took 100 s, each cost window 11 s as planned: rounds 1 and 2 end
        # at 144 s; round 3 (22 s) fits in 166 s exactly, round 4 would not.
        (166.0, 11.0, 3),
        # Cost windows of 15 s, slower than planned: the measured mean is the estimate.
        # Rounds 1 and 2 end at 160 s; 30 s more do not fit in 185 s (22 s would have).
        (185.0, 15.0, 2),
        # A budget the fault windows already spent: the first rounds still run (the
        # step as declared, the fewest windows that give an interval), no round is added.
        (90.0, 11.0, 2),
    ],
)
def test_added_cost_rounds_run_only_while_one_fits_in_the_budget(
    tmp_path: Path, budget_s: float, window_s: float, rounds: int
) -> None:
    experiment = _experiment(tmp_path, most=6, budget=f"{budget_s:g}s")
    assert experiment.cost is not None
    assert experiment.cost.warmup + experiment.cost.hold + WINDOW_OVERHEAD_S == PLANNED_ROUND_S / 2
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    said: list[str] = []
    runner = _runner(experiment, run_dir, said)
    runner.now, runner.window_s = 100.0, window_s  # the run started at 0 on this clock
    runner.run(started=0.0, clock=runner.clock)
    assert len(runner.ran) == rounds  # without a budget: 4 (test above)
    stopped = _stopped(runner)
    spent = 100.0 + rounds * 2 * window_s
    assert (stopped["rounds"], stopped["spent_s"], stopped["budget_s"]) == (
        rounds,
        spent,
        budget_s,
    )
    reason = str(stopped["reason"])
    assert reason.startswith(f"the time budget ({budget_s:g} s) would be exceeded"), reason
    assert f"{max(0.0, budget_s - spent):.0f} s left of it after {spent:.0f} s" in reason
    assert reason.endswith("1 cost hypothesis(es) undecided")
    assert said[-1] == f"cost: repetitions: auto: stop, {reason}"


def test_without_a_clock_reading_the_budget_does_not_stop_a_round(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, budget="1s")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _rounds(run_dir, range(1, 3))
    needed, _ = next_cost_round(experiment, run_dir, 2)
    assert needed == {"baseline", "sidecar"}
    needed, why = next_cost_round(experiment, run_dir, 2, Spent(run_s=0.5))
    assert needed == set() and "time budget (1 s)" in why


def test_the_dry_run_says_how_the_budget_bounds_the_added_rounds(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, most=6, budget="150s")
    out = "\n".join(describe_plan(experiment, platform_for(experiment.platform)))
    # Fault windows: 1 crash x 1 setup, 3 s timeline + 5 s start-up = 8 s a round.
    assert experiment.fault_round_seconds() == (8.0, 8.0)
    rounds = experiment.planned_repetitions
    first_cost = 2 * PLANNED_ROUND_S  # 44 s
    assert (
        "budget 150s for the whole run: the cost step runs its first 2 rounds (about 44 s), "
        "then another only if it fits in what is left (about 22 s a round of every setup: "
        "2 windows of warm-up 2s + hold 4s + 5s start-up)"
    ) in out
    most_fault = 8.0 * rounds
    room_most = max(0, int((150 - most_fault - first_cost) // PLANNED_ROUND_S))
    room_first = min(4, int((150 - 8.0 - first_cost) // PLANNED_ROUND_S))
    assert (
        f"room for {room_most} more cost round(s) if the fault windows run all {rounds} rounds "
        f"(about {most_fault:.0f} s), {room_first} if they stop after the first (about 8 s); "
        "at most 4 may be added"
    ) in out
    assert room_first == 4  # 150 - 8 - 44 = 98 s: 4 rounds of 22 s (the most allowed)


def test_the_engine_counts_the_budget_from_the_runs_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaos.engine.run import Engine, RunOptions
    from chaos.rundir.journal import read_journal
    from chaos.testing.fake_platform import FakePlatform
    from chaos.testing.fake_traffic import FakeTraffic, healthy

    seen: list[float | None] = []

    def run(self: CostRunner, *, started: float | None = None) -> list[CostWindowRecord]:
        seen.append(started)
        return []

    monkeypatch.setattr(CostRunner, "run", run)
    experiment = _experiment(tmp_path, budget="10m")
    run_dir = tmp_path / "run"
    engine = Engine(
        experiment,
        FakePlatform(),
        RunOptions(run_dir=run_dir, traffic=lambda c: FakeTraffic(c, healthy), tick_s=0.01),
    )
    engine.run()
    journal = read_journal(run_dir)
    # The cost step is told when the run started: before the journal's first entry (whose
    # monotonic time is the run's), so the fault windows' time counts against the budget.
    (started,) = seen
    first = journal[0]
    assert first.kind == "run_started" and started is not None
    window = next(e for e in journal if e.kind == "window_started")
    assert started <= first.t <= window.t
