"""The bench's retry-overflow, restart-latency and share rows, read from a run directory."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from chaos.analysis import CounterDeltas, write_results
from chaos.bench.resilience import render_resilience, resilience_rows
from chaos.rundir.journal import Journal
from tests.unit.windows import window_result


def _run_dir(tmp_path: Path) -> Path:
    now = time.monotonic()
    with Journal(tmp_path) as journal:
        journal.write("event", event="crashed", subject="payments-0.proxy", event_t=now + 1.0)
        journal.write("event", event="backoff", subject="payments-0.proxy", event_t=now + 1.0)
        journal.write("event", event="restarted", subject="payments-0.proxy", event_t=now + 1.4)
    crash = window_result("mesh", "crash-payments", 0)
    crash = dataclasses.replace(
        crash,
        window=dataclasses.replace(
            crash.window,
            inject_t=now - 1.0,
            revert_t=now + 5.0,
            end_t=now + 10.0,
            warmup_start_t=now - 2.0,
            self_healing=True,
        ),
        counters=CounterDeltas(retry_overflows=7),
    )
    slow = dataclasses.replace(window_result("sidecar", "latency-checkout", 0), affected_share=0.5)
    write_results(tmp_path, [crash, slow], [], [])
    return tmp_path


def test_rows_carry_overflows_restart_latency_and_share(tmp_path: Path) -> None:
    rows = {(r.setup, r.fault): r for r in resilience_rows(_run_dir(tmp_path))}
    crash = rows[("mesh", "crash-payments")]
    assert crash.retry_overflows == 7
    assert crash.restart_s is not None and abs(crash.restart_s - 0.4) < 1e-6
    slow = rows[("sidecar", "latency-checkout")]
    assert slow.restart_s is None and slow.affected_share == 0.5
    text = "\n".join(render_resilience(list(rows.values()), ("sidecar", "mesh")))
    assert "| crash-payments | – | 7 / 0.40 / – |" in text
    assert "| latency-checkout | 0 / – / 50% | – |" in text
