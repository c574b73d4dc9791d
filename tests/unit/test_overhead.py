"""Each window's start-up and teardown, read from the journal's own timestamps."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.analysis import read_results
from chaos.analysis.overhead import STEPS, run_overhead
from chaos.errors import FaultError
from chaos.rundir import RESULTS_FILE
from chaos.rundir.journal import JournalEntry, read_journal
from chaos.testing.fake_platform import FakePlatform
from tests.unit.test_broken_windows import _engine, _finish


def entry(kind: str, t: float, **data: object) -> JournalEntry:
    return JournalEntry(kind=kind, utc="", t=t, data=dict(data))  # type: ignore[arg-type]


def test_each_window_is_split_into_its_steps() -> None:
    key = {"setup": "mesh", "fault": "abort", "repetition": 1}
    entries = [
        entry("run_started", 10.0),
        entry("window_started", 10.5, **key),
        entry("topology_up", 11.25, setup="mesh"),
        entry("traffic_started", 11.5, setup="mesh"),
        entry("warmup", 11.5, setup="mesh"),
        entry("event", 12.0),
        entry("recovery_ended", 21.5, setup="mesh"),
        entry("topology_down", 21.75, setup="mesh"),
        entry("topology_stopped", 22.0, setup="mesh"),
        # the next window broke while its topology came up
        entry("window_started", 22.0, setup="sidecar", fault="abort", repetition=0),
        entry("window_failed", 22.5),
        entry("topology_stopped", 22.75, setup="sidecar"),
        entry("run_finished", 23.0),
    ]
    overhead = run_overhead(entries)
    first, broken = overhead.windows
    assert (first.setup, first.fault, first.repetition) == ("mesh", "abort", 1)
    assert first.startup_s == 0.75 and first.traffic_start_s == 0.25
    assert first.phases_s == 10.0 and first.teardown_s == 0.5 and first.window_s == 11.5
    assert broken.startup_s is None and broken.teardown_s is None and broken.window_s == 0.75
    assert overhead.windows_wall_s == 12.75
    assert overhead.startup_total_s == 0.75 and overhead.teardown_total_s == 0.5


def test_results_json_has_the_overhead_of_every_window(tmp_path: Path) -> None:
    starts: list[str] = []

    def second_start_fails(name: str) -> None:
        if name == "start":
            starts.append(name)
            if len(starts) == 2:
                raise FaultError("envoy exited with code 1 before it was ready")

    platform = FakePlatform(on_call=second_start_fails)
    engine, experiment = _engine(tmp_path, platform)
    _finish(engine, experiment, platform)
    document = json.loads((engine.run_dir / RESULTS_FILE).read_text())
    first, second = document["overhead"]["windows"]
    assert [(w["setup"], w["fault"]) for w in (first, second)] == [
        (w.key.setup, w.key.fault) for w in engine.windows
    ]
    journal = read_journal(engine.run_dir)
    t = {kind: [e.t for e in journal if e.kind == kind] for kind in STEPS}
    # the journal's own timestamps, nothing measured anew
    assert first["startup_s"] == round(t["topology_up"][0] - t["window_started"][0], 3)
    assert first["teardown_s"] == round(t["topology_stopped"][0] - t["recovery_ended"][0], 3)
    assert first["phases_s"] >= 0.02 + 0.1 + 0.02  # warm-up, hold, recovery as planned
    # the window whose topology did not come up: no start-up figure, but its time is there
    assert second["startup_s"] is None and second["teardown_s"] is None
    assert second["window_s"] == round(t["topology_stopped"][1] - t["window_started"][1], 3)
    assert document["overhead"]["startup_total_s"] == first["startup_s"]
    read_results(engine.run_dir)  # the reader still takes the document
