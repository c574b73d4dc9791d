"""Integration fixtures: no ``sidecar-chaos run`` subprocess outlives the test that started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest_faults import end_started


@pytest.fixture(autouse=True)
def end_cli_runs() -> Iterator[None]:
    """End every runner the test started (``CliRun``) and left running, whatever the outcome.

    A runner a failed test left behind would otherwise hold its slot's addresses and, once
    garbage-collected, fail a later test on the same worker with a ResourceWarning.
    """
    yield
    end_started()
