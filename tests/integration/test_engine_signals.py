"""Revert is guaranteed: on SIGINT, SIGTERM, a second SIGINT, an exception, and via ``clean``.

The runner is the real CLI in a subprocess (``sidecar-chaos run`` on a one-window
experiment with a 20 s hold), interrupted in the middle of the hold. Afterwards the
journal must show the fault planned, applied and reverted, the exit code must be 3,
and no process of the topology (pids from the journal) or of the traffic may remain.
The exception case runs the engine in-process with a hold that raises.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chaos.engine.clean import clean_run
from chaos.engine.records import WindowKey
from chaos.engine.run import Engine, RunOptions
from chaos.experiment import load_experiment
from chaos.platforms.local import registry
from chaos.platforms.local.platform import LocalPlatform
from chaos.proc import RUN_MARKER_ENV, pid_alive, start_ticks
from chaos.rundir.journal import Journal, read_journal
from chaos.traffic import TrafficRun
from tests.conftest import TEST_BACKOFF
from tests.integration.conftest_faults import (
    CliRun,
    assert_nothing_left,
    cli_argv,
    cli_env,
    fault_steps,
    processes_mentioning,
    start_run,
    write_experiment,
)

#: Into the hold before the signal comes (the fault is on, traffic is flowing).
INTO_HOLD_S = 1.0
#: The one window of ``write_experiment``'s run (setup, fault name, repetition).
ONLY_WINDOW = "sidecar-checkout-500-1"


def _interrupt(run: CliRun, *signals: signal.Signals) -> float:
    """Wait for the fault to be applied, then send ``signals`` 0.2 s apart; when the first went."""
    run.wait_for_entry("fault_applied")
    time.sleep(INTO_HOLD_S)
    # Positive control: the checks that nothing is left can see the run's processes.
    pids = run.topology_pids(ONLY_WINDOW)
    assert all(pid_alive(p) for p in pids.values())
    assert len(processes_mentioning(str(run.run_dir))) > len(pids) // 2
    sent = time.monotonic()
    for n, sig in enumerate(signals):
        if n:
            time.sleep(0.2)
        run.proc.send_signal(sig)
    return sent


def _assert_reverted_and_aborted(run: CliRun, code: int) -> None:
    assert code == 3, f"exit code {code}\n{run.stderr}"
    entries = run.journal()
    steps = fault_steps(entries)
    assert len(steps) == 1, steps
    kinds = next(iter(steps.values()))
    assert kinds[0] == "fault_planned", kinds
    assert kinds.index("fault_applied") < kinds.index("fault_reverted"), kinds
    assert kinds.count("fault_reverted") == 1, kinds
    kinds_all = [e.kind for e in entries]
    assert "run_aborted" in kinds_all and kinds_all[-1] == "run_finished", kinds_all
    # Reverted before the topology went down (the revert ran on a live topology).
    assert kinds_all.index("fault_reverted") < kinds_all.index("topology_down"), kinds_all
    assert "Traceback" not in run.stderr, run.stderr
    assert_nothing_left(run)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_hold_reverts_and_exits_3(
    sig: signal.Signals, tmp_path: Path, free_slot: int
) -> None:
    run = start_run(tmp_path, free_slot, write_experiment(tmp_path, hold="20s"))
    _interrupt(run, sig)
    code = run.wait()
    _assert_reverted_and_aborted(run, code)
    # the journal's record: the signal cut the 20 s hold short (it did not run out first)
    entries = {e.kind: e.t for e in reversed(run.journal())}
    left_s = entries["fault_applied"] + 20.0 - entries["fault_reverted"]
    assert left_s > 0, f"the hold ran out before the revert after {sig.name}"
    assert f"{sig.name}: stopping the run; reverting" in run.stderr, run.stderr
    assert "interrupted by" in run.stderr, run.stderr


def test_a_second_sigint_does_not_skip_the_revert(tmp_path: Path, free_slot: int) -> None:
    run = start_run(tmp_path, free_slot, write_experiment(tmp_path, hold="20s"))
    _interrupt(run, signal.SIGINT, signal.SIGINT)
    code = run.wait()
    _assert_reverted_and_aborted(run, code)
    assert "SIGINT again: still reverting" in run.stderr, run.stderr


def test_clean_after_sigkill_reverts_and_leaves_nothing(
    tmp_path: Path, free_slot: int, chaos_state_dir: Path
) -> None:
    run = start_run(tmp_path, free_slot, write_experiment(tmp_path, hold="20s"))
    applied = run.wait_for_entry("fault_applied")
    run.proc.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    fault_id = applied.get_str("fault_id")
    assert "fault_reverted" not in fault_steps(run.journal())[fault_id]
    # The killed runner could not withdraw its topology's record: it is stale.
    stale = list((chaos_state_dir / registry.RUNS_DIR).glob("*.json"))
    assert [p.name.split("-")[:2] for p in stale] == [[str(free_slot), str(run.proc.pid)]]

    cleaned = subprocess.run(
        cli_argv("clean", str(run.run_dir)),
        cwd=tmp_path,
        env=cli_env(free_slot),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"reverted {fault_id}" in cleaned.stdout, cleaned.stdout
    reverted = [e for e in run.journal() if e.kind == "fault_reverted"]
    assert [(e.get_str("fault_id"), e.get_str("by")) for e in reverted] == [(fault_id, "clean")]
    assert_nothing_left(run)

    again = subprocess.run(
        cli_argv("clean", str(run.run_dir)),
        cwd=tmp_path,
        env=cli_env(free_slot),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to clean" in again.stdout, again.stdout
    # Never shown as running (and removed by the reader that found it stale).
    assert registry.every_topology() == [] and not stale[0].exists()


def test_clean_of_a_directory_without_journal_is_exit_2(tmp_path: Path, free_slot: int) -> None:
    answer = subprocess.run(
        cli_argv("clean", str(tmp_path)),
        env=cli_env(free_slot),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 2, answer
    assert answer.stderr.startswith("error: ") and answer.stderr.count("\n") == 1, answer.stderr


class HoldFailed(RuntimeError):
    """Raised by the patched hold, after the fault is on."""


def test_an_exception_in_the_hold_still_reverts(
    tmp_path: Path, free_slot: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = load_experiment(write_experiment(tmp_path, hold="5s"), ["timeline.warmup=1s"], [])
    real_hold = Engine._hold

    def hold(self: Engine, key: WindowKey, phase: str, seconds: float, traffic: TrafficRun) -> None:
        if phase == "hold":
            real_hold(self, key, phase, 0.5, traffic)
            raise HoldFailed("the hold broke")
        real_hold(self, key, phase, seconds, traffic)

    monkeypatch.setattr(Engine, "_hold", hold)
    run_dir = tmp_path / "run"
    engine = Engine(
        experiment,
        LocalPlatform(slots={"sidecar": free_slot}, backoff=TEST_BACKOFF),
        RunOptions(run_dir=run_dir),
    )
    with pytest.raises(HoldFailed):
        engine.run()

    entries = read_journal(run_dir)
    kinds = [e.kind for e in entries]
    steps = fault_steps(entries)
    assert list(steps.values()) == [["fault_planned", "fault_applied", "fault_reverted"]], steps
    assert (
        kinds.index("fault_reverted") < kinds.index("topology_down") < kinds.index("run_finished")
    ), kinds
    pids = {
        name: pid
        for e in entries
        if e.kind == "topology_up" and isinstance(e.data.get("pids"), dict)
        for name, pid in e.data["pids"].items()  # type: ignore[union-attr]
        if isinstance(pid, int)
    }
    assert pids
    deadline = time.monotonic() + 5.0
    while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [n for n, p in pids.items() if pid_alive(p)]
    window = engine.windows[0]
    assert window.inject_t is not None and window.revert_t is not None


def _sleeper(cwd: Path, marker: str | None) -> subprocess.Popen[bytes]:
    env = {"PATH": "/usr/bin:/bin"}
    if marker is not None:
        env[RUN_MARKER_ENV] = marker
    return subprocess.Popen(["sleep", "30"], cwd=cwd, env=env, start_new_session=True)


def test_clean_kills_only_processes_proven_to_be_the_runs(tmp_path: Path) -> None:
    """Identity is pid + start time + the run's marker; look-alikes are left alone.

    Planted: the run's own process (all three match); a stranger with the same command
    line and working directory but no marker; a process with the run's marker whose
    start time does not match the ledger (the pid was reused); a process carrying
    another run's marker; and a process started as ``RUN_DIR/../..`` + sleep, whose
    command line mentions the run directory (what the old substring test killed).
    """
    run_dir = tmp_path / "run"
    topo_dir = run_dir / "topologies" / "sidecar-abort-1" / "sidecar"
    elsewhere = tmp_path / "elsewhere"
    topo_dir.mkdir(parents=True)
    elsewhere.mkdir()
    marker, other = "a" * 32, "b" * 32
    ours = _sleeper(topo_dir, marker)
    stranger = _sleeper(topo_dir, None)
    reused = _sleeper(elsewhere, marker)
    foreign = _sleeper(elsewhere, other)
    sneaky_path = f"{run_dir}/../../../../../../usr/bin/sleep"
    sneaky = subprocess.Popen(
        [sneaky_path, "30"], cwd=elsewhere, start_new_session=True, env={"PATH": "/usr/bin"}
    )
    locust = _sleeper(elsewhere, marker)
    locust_reused = _sleeper(elsewhere, marker)
    procs = (ours, stranger, reused, foreign, sneaky, locust, locust_reused)
    try:
        ledger = topo_dir / "processes.jsonl"
        rows = [
            ("checkout-0.proxy", ours.pid, start_ticks(ours.pid)),
            ("checkout-0.app", stranger.pid, start_ticks(stranger.pid)),
            ("checkout-1.proxy", reused.pid, (start_ticks(reused.pid) or 0) - 100),
            ("payments-0.proxy", foreign.pid, start_ticks(foreign.pid)),
            ("payments-1.proxy", sneaky.pid, start_ticks(sneaky.pid)),
        ]
        ledger.write_text(
            "".join(
                json.dumps({"name": n, "pid": p, "start_ticks": t, "marker": marker}) + "\n"
                for n, p, t in rows
            )
        )
        with Journal(run_dir) as journal:
            journal.write("run_started", platform="local", marker=marker)
            journal.write(
                "topology_up",
                pids={n: p for n, p, _ in rows},
                ledger=str(ledger),
                marker=marker,
            )
            journal.write(
                "traffic_started",
                processes=[
                    [locust.pid, start_ticks(locust.pid)],
                    [locust_reused.pid, (start_ticks(locust_reused.pid) or 0) + 7],
                ],
            )
            journal.write("fault_planned", fault_id="f1")
            journal.write("fault_applied", fault_id="f1")
        lines = clean_run(run_dir)
        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert locust.wait(timeout=5) == -signal.SIGKILL
        time.sleep(0.2)
        for survivor in (stranger, reused, foreign, sneaky, locust_reused):
            assert survivor.poll() is None, f"clean killed {survivor.args}, not the run's"
        assert f"killed leftover process checkout-0.proxy (pid {ours.pid})" in lines
        assert f"killed leftover traffic process (pid {locust.pid})" in lines
        assert sum("killed" in line for line in lines) == 2, lines
        reverted = [e for e in read_journal(run_dir) if e.kind == "fault_reverted"]
        assert [e.get_str("by") for e in reverted] == ["clean"]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("where", ["/", "~"])
def test_clean_refuses_root_and_home(where: str) -> None:
    from chaos.errors import InputError

    with pytest.raises(InputError, match="refusing"):
        clean_run(Path(where).expanduser())
