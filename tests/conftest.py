"""Shared fixtures: free slots, a private registry per test, running topologies, no leftovers.

* ``SIDECAR_CHAOS_STATE_DIR`` points at a fresh directory in every test (autouse), so no
  test reads or writes the registry of a person's real topologies, and subprocesses
  (the CLI) inherit it.
* ``free_slot`` leases a random slot (third octet 100..250) whose addresses are free.
  Other test runs and the benchmarks on the same machine pick slots the same way
  (``chaos.platforms.local.slots.lease_slot``); a lock file per slot keeps two of
  ours from leasing the same one at once.
* ``process_tracker`` (autouse) collects the pid of every process a test's topologies
  start (restarts included) and fails the test if any is still alive after teardown.
* ``running_topology`` is one topology per setup, shared by the read-only tests of one
  test class (class scope, so that it is gone before the next class starts its own:
  each mesh topology holds about 58 of the 128 inotify instances a user may have);
  ``start_topology`` starts a private one that a test may break.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from chaos.experiment import ALL_SETUPS, Setup
from chaos.platforms.base import Event, EventKind
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.slots import lease_slot
from chaos.platforms.local.topology import LocalTopology, TopologyOptions
from chaos.proc import pid_alive

#: The short CrashLoopBackOff tests use: 0.3 s doubling to 2 s, reset after 5 s.
TEST_BACKOFF = BackoffPolicy(
    initial_s=0.3, factor=2.0, max_s=2.0, reset_after_s=5.0, first_restart_immediate=False
)
#: How long teardown may take before a surviving pid counts as a leak.
LEAK_TIMEOUT_S = 5.0

_PID = re.compile(r"\bpid=(\d+)\b")


# -- slots --------------------------------------------------------------------------------


@pytest.fixture
def free_slot() -> Iterator[int]:
    """A slot whose addresses are free, leased for this test."""
    with lease_slot() as slot:
        yield slot


# -- registry ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def chaos_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private registry directory for this test (and the subprocesses it starts)."""
    path = tmp_path / "state"
    monkeypatch.setenv("SIDECAR_CHAOS_STATE_DIR", str(path))
    return path


# -- leftover processes -----------------------------------------------------------------------


@dataclass
class ProcessTracker:
    """Every pid a test's topologies started; asserts none survives teardown."""

    pids: set[int] = field(default_factory=set)
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    def add(self, *pids: int | None) -> None:
        self.pids.update(p for p in pids if p is not None)

    def follow(self, topology: LocalTopology) -> None:
        """Record the pid of every start and restart of ``topology`` (call before entering)."""

        def on_event(event: Event) -> None:
            if event.kind in (EventKind.STARTED, EventKind.RESTARTED):
                found = _PID.search(event.detail)
                if found:
                    self.pids.add(int(found.group(1)))

        self._unsubscribe.append(topology.events.subscribe(on_event))

    def add_status(self, status: dict[str, object]) -> None:
        """Record the pids of a ``status --json`` object (a topology, not the list)."""
        pods = status.get("pods", [])
        assert isinstance(pods, list)
        for pod in pods:
            self.add(*(pid for pid in pod["pids"].values() if isinstance(pid, int)))

    def survivors(self, timeout_s: float = LEAK_TIMEOUT_S) -> list[int]:
        """The recorded pids still alive after waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            alive = sorted(p for p in self.pids if pid_alive(p))
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.05)

    def check(self) -> None:
        """Fail if a recorded process outlived teardown (and kill it, so it leaks no further)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        alive = self.survivors()
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not alive, f"processes survived teardown: {alive}"


@pytest.fixture(autouse=True)
def process_tracker() -> Iterator[ProcessTracker]:
    """Fails the test if any process it started (as recorded here) is alive after teardown."""
    tracker = ProcessTracker()
    yield tracker
    tracker.check()


# -- topologies --------------------------------------------------------------------------------


def topology_options(setup: Setup, run_dir: Path, slot: int) -> TopologyOptions:
    """Options for a test topology: free ingress port, short backoff, not published."""
    return TopologyOptions(
        setup=setup,
        run_dir=run_dir,
        slot=slot,
        ingress_port=0,
        backoff=TEST_BACKOFF,
        publish=False,
    )


@pytest.fixture(scope="class", params=list(ALL_SETUPS), ids=[s.value for s in ALL_SETUPS])
def running_topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTopology]:
    """One topology per setup for a test class whose tests do not break it."""
    setup: Setup = request.param
    tracker = ProcessTracker()
    with lease_slot() as slot:
        run_dir = tmp_path_factory.mktemp(f"topology-{setup.value}")
        topology = LocalTopology(topology_options(setup, run_dir, slot))
        tracker.follow(topology)
        with topology:
            yield topology
    tracker.check()


StartTopology = Callable[..., LocalTopology]


@pytest.fixture
def start_topology(tmp_path: Path, process_tracker: ProcessTracker) -> Iterator[StartTopology]:
    """Start a private topology: ``start_topology(setup, **TopologyOptions overrides)``.

    It is torn down at the end of the test (if the test did not already), before
    ``process_tracker`` checks that nothing survived.
    """
    with contextlib.ExitStack() as stack:

        def start(setup: Setup, **overrides: object) -> LocalTopology:
            slot = stack.enter_context(lease_slot())
            run_dir = tmp_path / f"run-{setup.value}-{slot}"
            options = replace(topology_options(setup, run_dir, slot), **overrides)
            topology = LocalTopology(options)
            process_tracker.follow(topology)
            return stack.enter_context(topology)

        yield start
