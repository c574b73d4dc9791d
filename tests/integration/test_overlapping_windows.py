"""Two windows of one setup through the real CLI: the second one's topology and Locust start
during the first one's recovery, yet each window has a fresh topology of its own.

Judged from the run's journal (no clock raced): the second window started after the first
one's revert and before its recovery ended, and warmed up only after it; the two
topologies had no process in common (two ledgers, two directories; one slot for both would
not bind, and the second window would break), and every process of both is gone at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from chaos.proc import pid_alive
from tests.integration.conftest_faults import start_run, wait_for_value, write_experiment


def test_the_next_window_starts_during_the_recovery_on_a_fresh_topology(
    tmp_path: Path, free_slot: int
) -> None:
    experiment = write_experiment(tmp_path, hold="1s")
    run = start_run(tmp_path, free_slot, experiment, "--set", "repetitions=2")
    assert run.proc.wait(timeout=180) in (0, 1), run.stderr
    journal = run.journal()
    kinds = [(e.kind, e.get_str("window")) for e in journal]
    first, second = "sidecar-checkout-500-1", "sidecar-checkout-500-2"

    def at(kind: str, window: str) -> int:
        return kinds.index((kind, window))

    reverted = next(i for i, e in enumerate(journal) if e.kind == "fault_reverted")
    assert reverted < at("window_started", second) < at("recovery_ended", first)
    assert at("recovery_ended", first) < at("warmup", second)
    ups = {e.get_str("window"): e.data for e in journal if e.kind == "topology_up"}
    pids = {w: set(named.values()) for w, named in run.window_pids().items()}
    assert set(pids) == {first, second}
    assert pids[first] and pids[second] and not pids[first] & pids[second]
    assert ups[first]["ledger"] != ups[second]["ledger"]
    alive = wait_for_value(lambda: [p for w in pids for p in pids[w] if pid_alive(p)], 10.0)
    assert not alive, alive
    results = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8"))
    assert len(results["runs"]) == 2 and not results.get("broken"), results.get("broken")
    windows = results["overhead"]["windows"]
    assert [w["repetition"] for w in windows] == [0, 1]
    assert results["overhead"]["windows_wall_s"] < sum(w["window_s"] for w in windows)
