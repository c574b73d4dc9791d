"""A disk that fills at the very end of a real run: one line naming the file, exit 5.

``sidecar-chaos run`` with real Envoy and Locust, under a file-size limit
(``RLIMIT_FSIZE``, inherited by every process of the run; Python ignores SIGXFSZ, so
``write()`` fails with EFBIG as it would with ENOSPC). The limit is above everything
the windows write (the journal, samples, counters: under 70 KB here) and below the
report (about 150 KB), so the run goes through and the finish step fails at
``report.html``. The unit tests (tests/unit/test_finish_disk_full.py) fail each file
in turn; this one proves the CLI's side: one line, exit 5, faults reverted, nothing
running, nothing half-written.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from chaos.rundir import JOURNAL_FILE, REPORT_FILE, RESULTS_FILE
from chaos.rundir.journal import read_journal
from tests.integration.conftest_faults import (
    assert_nothing_left,
    cli_argv,
    cli_env,
    fault_steps,
    popen_run,
    write_experiment,
)

pytestmark = pytest.mark.slow

LIMIT_BYTES = 110_000


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))


def test_a_full_disk_at_the_report_is_one_line_and_exit_5(tmp_path: Path, free_slot: int) -> None:
    experiment = write_experiment(tmp_path, hold="1s")
    run_dir = tmp_path / "run"
    argv = cli_argv(
        "run",
        str(experiment),
        "--out",
        str(run_dir),
        "--set",
        "timeline.warmup=1s",
        "--set",
        "timeline.recovery=1s",
        "--history",
        str(tmp_path / "history.db"),
    )
    run = popen_run(argv, tmp_path, run_dir, cli_env(free_slot), preexec_fn=_limit_file_size)
    code = run.wait(timeout_s=120)

    largest = max((p.stat().st_size, str(p)) for p in run_dir.rglob("*") if p.is_file())
    assert largest[0] <= LIMIT_BYTES, largest  # the windows' files all fitted
    assert code == 5, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [run.stderr.strip().splitlines()[-1]], run.stderr
    assert errors[0].startswith(f"error: cannot write {run_dir / REPORT_FILE}: "), errors
    assert errors[0].endswith("written whole before it: results.json, buckets.csv, meta.json")
    # the windows had ended: the fault reverted, the topology down, no process left
    (steps,) = fault_steps(read_journal(run_dir)).values()
    assert steps[-1] == "fault_reverted" and "fault_applied" in steps, steps
    assert [e.kind for e in read_journal(run_dir)][-1] == "run_finished"
    assert_nothing_left(run)
    # what was written is whole, nothing half-written or temporary is left
    json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    assert not (run_dir / REPORT_FILE).exists()
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    assert (run_dir / JOURNAL_FILE).is_file()
    assert not (tmp_path / "history.db").exists()
