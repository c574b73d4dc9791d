"""``repetitions: auto``: when to add a round, the windows it needs, exit code, summary."""

from __future__ import annotations

from chaos.analysis.adaptive import (
    Budget,
    Continue,
    Stop,
    decisions_for,
    exit_code,
    next_step,
    refuted_lines,
)
from chaos.analysis.decisions import Claim
from chaos.report.summary import summary_lines
from tests.unit.windows import window_result

CERT = Claim("mesh-heals", "cert", "time_to_recover", "mesh", "sidecar", "lower")
CRASH = Claim("ambient-wider", "crash", "failed_requests", "ambient", "sidecar", "higher")


def _rounds(n: int, *, crash_gap: int = 0) -> list:
    runs = []
    for rep in range(n):
        runs += [
            window_result("mesh", "cert", rep, ttr=0.5 + 0.05 * rep),
            window_result("sidecar", "cert", rep, ttr=None),  # never recovers
            window_result("ambient", "crash", rep, failed=100 + crash_gap + rep),
            window_result("sidecar", "crash", rep, failed=100 + (rep * 7) % 5),
        ]
    return runs


def test_first_round_always_runs_every_claims_windows() -> None:
    step = next_step([], [CERT, CRASH], Budget(max_rounds=5))
    assert isinstance(step, Continue) and step.round == 0
    assert set(step.windows) == {
        ("mesh", "cert"),
        ("sidecar", "cert"),
        ("ambient", "crash"),
        ("sidecar", "crash"),
    }


def test_decided_claims_drop_out_of_the_next_round() -> None:
    # after 4 rounds the cert claim is decided (1/70 < its threshold); crash is not
    step = next_step(_rounds(4), [CERT, CRASH], Budget(max_rounds=6))
    assert isinstance(step, Continue) and step.round == 4
    assert set(step.windows) == {("ambient", "crash"), ("sidecar", "crash")}


def test_stop_when_everything_is_decided() -> None:
    step = next_step(_rounds(5, crash_gap=50), [CERT, CRASH], Budget(max_rounds=6))
    assert isinstance(step, Stop)
    assert "every hypothesis was decided" in step.reason
    assert [d.outcome for d in step.decisions] == ["supported", "supported"]


def test_stop_at_the_most_rounds() -> None:
    step = next_step(_rounds(3), [CERT, CRASH], Budget(max_rounds=3))
    assert isinstance(step, Stop) and "the most rounds (3)" in step.reason


def test_stop_before_the_time_budget_would_be_exceeded() -> None:
    # 12 windows took 240 s (20 s each); another round of 4 windows needs 80 s more
    within = next_step(
        _rounds(3), [CERT, CRASH], Budget(6, seconds=330, elapsed_s=240, windows_run=12)
    )
    assert isinstance(within, Continue)
    over = next_step(
        _rounds(3), [CERT, CRASH], Budget(6, seconds=300, elapsed_s=240, windows_run=12)
    )
    assert isinstance(over, Stop) and "time budget" in over.reason


def test_a_refuted_hypothesis_makes_exit_code_one() -> None:
    wrong = Claim("mesh-slower", "cert", "time_to_recover", "mesh", "sidecar", "higher")
    decided = decisions_for([], _rounds(4))  # ranking only: never fails a run
    assert exit_code(decided.decisions) == 0
    from chaos.analysis.decisions import SequentialPlan
    from chaos.analysis.hypotheses import decide

    decisions = decide(_rounds(4), [wrong], SequentialPlan())
    assert decisions[0].outcome == "refuted"
    assert exit_code(decisions) == 1
    assert refuted_lines(decisions)[0].startswith("hypothesis mesh-slower refuted: ")


def test_summary_lines_end_with_exit_meaning_and_report() -> None:
    from chaos.analysis.decisions import DecisionSet, SequentialPlan
    from chaos.analysis.hypotheses import decide

    plan = SequentialPlan(adaptive=True, max_rounds=6)
    decisions = tuple(decide(_rounds(4), [CERT, CRASH], plan))
    decided = DecisionSet(plan, decisions, stated=True, stop_reason="the time budget ran out")
    lines = summary_lines(decided, [], 0, "reports/x/report.html")
    assert lines[0] == "hypotheses:"
    assert lines[1].startswith("  SUPPORTED  mesh-heals: cert: mesh's time to recover is lower")
    assert "UNDECIDED" in lines[2] and "more repetition(s) per setup would decide it" in lines[2]
    assert lines[-3] == "repetitions: auto stopped: the time budget ran out"
    assert lines[-2] == "exit code 0: every hypothesis held"
    assert lines[-1] == "report: reports/x/report.html"
