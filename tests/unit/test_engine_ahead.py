"""Windows that overlap: the next one's start during this one's recovery, its teardown behind.

On the in-memory platform (``FakePlatform(ahead=True)``): every window still gets a
topology of its own, started fresh, and the journal names the window of every step, so
the overhead section and the report's events stay with their window.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from chaos.analysis.overhead import run_overhead
from chaos.engine.records import schedule
from chaos.engine.run import Engine, RunOptions
from chaos.experiment import load_experiment
from chaos.rundir.journal import read_journal
from chaos.testing.fake_platform import FakePlatform
from chaos.testing.fake_traffic import FakeTraffic
from tests.unit.test_engine import experiment_file, run


def test_the_next_window_starts_during_the_recovery_on_a_topology_of_its_own(
    tmp_path: Path,
) -> None:
    experiment = load_experiment(experiment_file(tmp_path, repetitions=2))
    keys = schedule(experiment)
    platform = FakePlatform(ahead=True)
    engine, journal = run(tmp_path, platform, experiment=experiment)

    assert [w.key for w in engine.windows] == keys
    assert all(w.error is None and w.evidence is not None for w in engine.windows)
    # one fresh topology per window, each started once and stopped once
    assert len(platform.topologies) == len(keys)
    assert len({id(t) for t in platform.topologies}) == len(keys)
    calls = [c.name for c in platform.calls if c.name in ("start", "stop")]
    assert calls.count("start") == calls.count("stop") == len(keys)

    def at(kind: str, window: str) -> int:
        return next(
            i for i, e in enumerate(journal) if e.kind == kind and e.get_str("window") == window
        )

    for key, following in itertools.pairwise(keys):
        # brought up after this window's revert, before its recovery ended ...
        reverted = max(
            i
            for i, e in enumerate(journal)
            if e.kind == "fault_reverted" and e.get_str("fault_id") == key.slug
        )
        assert reverted < at("window_started", following.slug) < at("recovery_ended", key.slug)
        # ... warmed up only once this window's phases were over
        assert at("recovery_ended", key.slug) < at("warmup", following.slug)
    # every window's steps found by its name, and the wall time less than their sum
    overhead = run_overhead(journal)
    assert [(w.setup, w.fault, w.repetition) for w in overhead.windows] == [
        (k.setup, k.fault, k.repetition) for k in keys
    ]
    assert all(w.startup_s is not None and w.teardown_s is not None for w in overhead.windows)
    assert overhead.windows_wall_s is not None
    assert overhead.windows_wall_s < sum(w.window_s or 0.0 for w in overhead.windows)


def test_a_run_stopped_early_takes_the_window_started_ahead_down(tmp_path: Path) -> None:
    experiment = load_experiment(experiment_file(tmp_path, repetitions=2))
    first = schedule(experiment)[0]
    platform = FakePlatform(ahead=True)

    class StoppedInTheFirstRecovery(FakeTraffic):
        def check(self) -> None:
            # Ctrl-C once the second window's topology is up, during the first's recovery
            if self.config.out_dir.name == first.slug and len(platform.topologies) == 2:
                raise KeyboardInterrupt
            super().check()

    run_dir = tmp_path / "run"
    engine = Engine(
        experiment,
        platform,
        RunOptions(run_dir=run_dir, traffic=StoppedInTheFirstRecovery, tick_s=0.01),
    )
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    journal = read_journal(run_dir)
    # the window started ahead never ran, and is down: every start has its stop
    assert [w.key for w in engine.windows] == [first]
    assert len(platform.topologies) == 2
    calls = [c.name for c in platform.calls if c.name in ("start", "stop")]
    assert calls == ["start", "start", "stop", "stop"]
    abandoned = [e for e in journal if e.kind == "window_abandoned"]
    assert [e.get_str("window") for e in abandoned] == [schedule(experiment)[1].slug]
    assert [e.kind for e in journal if e.kind == "fault_reverted"] == ["fault_reverted"]
    assert [(w.setup, w.fault) for w in run_overhead(journal).windows] == [
        (first.setup, first.fault)
    ]
