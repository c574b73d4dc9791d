"""A test that fails while its ``sidecar-chaos run`` subprocess runs leaves no runner behind.

The runner is ended (SIGTERM, then SIGKILL to its process group) on leaving the ``with``
block and, for a test that used no block, at teardown (``tests/integration/conftest.py``).
Whether it ended is asked of the OS: the pid names another process, or none, by its start
time (``chaos.proc.start_ticks``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.proc import pid_alive, start_ticks
from tests.integration.conftest_faults import (
    assert_nothing_left,
    end_started,
    start_run,
    write_experiment,
)

pytestmark = pytest.mark.slow


class FailedInside(Exception):
    """What the test raises inside the block, standing for any failed assertion."""


def test_a_runner_is_ended_when_the_test_raises_inside_its_block(
    tmp_path: Path, free_slot: int
) -> None:
    with (
        pytest.raises(FailedInside),
        start_run(tmp_path, free_slot, write_experiment(tmp_path, hold="20s")) as run,
    ):
        run.wait_for_entry("topology_up")
        pid, started = run.proc.pid, start_ticks(run.proc.pid)
        assert started is not None and pid_alive(pid)  # positive control: it was running
        raise FailedInside

    assert start_ticks(pid) != started, f"runner {pid} still running after the block"
    # SIGTERM let it tear down as a user's Ctrl-C would: aborted (3), nothing of it left.
    assert run.proc.returncode == 3, run.stderr
    assert run.kinds()[-1] == "run_finished", run.kinds()
    assert_nothing_left(run)


def test_a_runner_left_running_is_ended_at_teardown(tmp_path: Path, free_slot: int) -> None:
    run = start_run(tmp_path, free_slot, write_experiment(tmp_path, hold="20s"))
    pid, started = run.proc.pid, start_ticks(run.proc.pid)
    assert started is not None and pid_alive(pid)

    end_started()  # what the autouse fixture's teardown calls

    assert start_ticks(pid) != started, f"runner {pid} still running after teardown"
    assert run.proc.returncode is not None
