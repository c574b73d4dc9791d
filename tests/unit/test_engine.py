"""The engine on the in-memory platform: window order, revert on every path, the journal.

No process starts here: :class:`FakePlatform` records what the engine and the faults
asked for, :class:`FakeTraffic` reports scripted live statistics. Each test runs a
whole experiment in well under a second.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.engine.preflight import platform_checks
from chaos.engine.records import schedule
from chaos.engine.run import Engine, RunOptions
from chaos.errors import SpecError
from chaos.experiment import Experiment, load_experiment
from chaos.platforms.base import EventKind, Problem
from chaos.rundir.journal import JournalEntry, read_journal
from chaos.testing.fake_platform import FakePlatform
from chaos.testing.fake_traffic import FakeTraffic, Script, healthy
from chaos.traffic.config import TrafficConfig

EXPERIMENT = """\
name: unit
setups: [sidecar, mesh]
repetitions: {repetitions}
seed: 7
traffic:
  users: 1
  spawn_rate: 1
  rate: 10
  endpoints: [{{name: browse, path: /}}]
stop_conditions: [{{type: error_rate, above: 0.5, for: 50ms}}]
timeline: {{warmup: 20ms, hold: {hold}, recovery: 20ms, recovered_for: 10ms}}
faults:
  - type: abort
    name: checkout-503
    target: {{service: {service}, replica: {replica}}}
    percent: 50
"""


def experiment_file(
    tmp_path: Path,
    *,
    repetitions: int = 1,
    hold: str = "50ms",
    service: str = "checkout",
    replica: int = 0,
) -> Path:
    path = tmp_path / "unit.yaml"
    path.write_text(
        EXPERIMENT.format(repetitions=repetitions, hold=hold, service=service, replica=replica)
    )
    return path


def run(
    tmp_path: Path,
    platform: FakePlatform,
    *,
    script: Script = healthy,
    experiment: Experiment | None = None,
) -> tuple[Engine, list[JournalEntry]]:
    experiment = experiment or load_experiment(experiment_file(tmp_path))

    def traffic(config: TrafficConfig) -> FakeTraffic:
        return FakeTraffic(config, script)

    run_dir = tmp_path / "run"
    engine = Engine(experiment, platform, RunOptions(run_dir=run_dir, traffic=traffic, tick_s=0.01))
    engine.run()
    return engine, read_journal(run_dir)


def kinds(entries: list[JournalEntry]) -> list[str]:
    return [e.kind for e in entries]


def test_every_window_runs_in_order_and_reverts(tmp_path: Path) -> None:
    platform = FakePlatform()
    engine, entries = run(tmp_path, platform)

    experiment = load_experiment(experiment_file(tmp_path))
    assert [w.key for w in engine.windows] == schedule(experiment)
    per_window = [
        "window_started",
        "topology_up",
        "traffic_started",
        "warmup",
        "fault_planned",
        "fault_applied",
        "fault_verified",
        "fault_reverted",
        "recovery_ended",
        "topology_down",
        "topology_stopped",
    ]
    assert kinds(entries) == ["run_started", *per_window * 2, "run_finished"]
    # The platform saw: start, switch on, switch off, stop; per window, nothing else.
    setups = [k.setup for k in schedule(experiment)]
    assert platform.log.names() == [
        "start",
        "set_http_fault",
        "clear_http_fault",
        "stop",
    ] * len(setups)
    assert [c.args[0] for c in platform.calls if c.name == "start"] == setups
    for window in engine.windows:
        assert window.inject_t is not None and window.revert_t is not None
        assert window.evidence is not None and window.evidence.took_effect
        assert window.inject_t <= window.revert_t <= (window.end_t or 0)
    # the journal's own clock: each fault was held at least its planned 50 ms (a busy
    # machine can only make it longer), and the next window began after the last ended
    applied = [e.t for e in entries if e.kind == "fault_applied"]
    reverted = [e.t for e in entries if e.kind == "fault_reverted"]
    assert all(r - a >= 0.05 for a, r in zip(applied, reverted, strict=True))
    downs = [e.t for e in entries if e.kind == "topology_stopped"]
    starts = [e.t for e in entries if e.kind == "window_started"]
    assert downs[0] <= starts[1]


def test_the_journal_records_plan_platform_and_marker(tmp_path: Path) -> None:
    engine, entries = run(tmp_path, FakePlatform())
    started = entries[0]
    assert started.get_str("platform") == "fake"
    assert started.get_str("marker") == engine.marker and len(engine.marker) == 32
    planned = next(e for e in entries if e.kind == "fault_planned")
    assert planned.data["blast_radius"] == ["checkout-0"]
    changes = planned.data["changes"]
    assert isinstance(changes, list) and len(changes) == 1
    assert str(changes[0]).startswith("- checkout-0.proxy: inbound fault on: abort")
    assert str(changes[0]).endswith("via fake switch; undo: fake off")
    up = next(e for e in entries if e.kind == "topology_up")
    assert up.data["fake"] is True  # the platform's own record, for clean
    verified = next(e for e in entries if e.kind == "fault_verified")
    assert verified.data["took_effect"] is True


def test_a_failing_apply_is_reverted_and_the_window_marked_failed(tmp_path: Path) -> None:
    platform = FakePlatform(fail_on=["set_http_fault"])
    engine, entries = run(tmp_path, platform)
    names = platform.log.names()
    # Revert was registered before apply: the half-applied fault is switched off.
    assert names.count("clear_http_fault") == names.count("set_http_fault") == 2
    assert names.count("stop") == 2
    assert all(w.error and "set_http_fault failed" in w.error for w in engine.windows)
    assert kinds(entries).count("window_failed") == 2
    assert engine.aborted is None


def test_a_platform_that_does_not_start_fails_the_window_and_touches_nothing(
    tmp_path: Path,
) -> None:
    platform = FakePlatform(fail_on=["start"])
    engine, entries = run(tmp_path, platform)
    assert "fault_planned" not in kinds(entries)
    assert set(platform.log.names()) == {"start"}
    assert all(w.error and "did not start" in w.error for w in engine.windows)


def test_a_stop_condition_aborts_the_run_and_still_reverts(tmp_path: Path) -> None:
    def failing(now: float) -> tuple[int, int, float | None]:
        return (100, 90, 20.0)

    platform = FakePlatform()
    experiment = load_experiment(experiment_file(tmp_path), ["timeline.warmup=60s"])
    engine, entries = run(tmp_path, platform, script=failing, experiment=experiment)
    # the journal's record: the window left its warm-up before the planned 60 s were up
    # (no machine is that slow; without the stop condition the warm-up runs them all)
    warmup = next(e for e in entries if e.kind == "warmup")
    down = next(e for e in entries if e.kind == "topology_down")
    assert warmup.data["seconds"] == 60.0
    assert down.t < warmup.t + 60.0, "the stop condition did not end the warm-up"
    assert engine.aborted is not None and "stop condition" in engine.aborted
    assert "run_aborted" in kinds(entries)
    assert platform.log.names() == ["start", "stop"]  # aborted in the warm-up, no fault yet
    assert len(engine.windows) == 1 and engine.windows[0].aborted


def test_a_stop_condition_during_the_hold_reverts_the_fault(tmp_path: Path) -> None:
    hold_started: list[float] = []

    def fails_once_injected(now: float) -> tuple[int, int, float | None]:
        return (100, 90, 20.0) if hold_started and now > hold_started[0] else (100, 0, 20.0)

    def on_call(name: str) -> None:
        if name == "set_http_fault":
            hold_started.append(time.monotonic())

    platform = FakePlatform(on_call=on_call)
    experiment = load_experiment(experiment_file(tmp_path, hold="2s"))
    engine, entries = run(tmp_path, platform, script=fails_once_injected, experiment=experiment)
    assert engine.aborted is not None
    steps = [e.kind for e in entries if e.kind.startswith("fault_")]
    assert steps == ["fault_planned", "fault_applied", "fault_reverted"]


def test_an_exception_in_the_hold_still_reverts(tmp_path: Path) -> None:
    class Broken(RuntimeError):
        pass

    armed: list[bool] = []

    def script(now: float) -> tuple[int, int, float | None]:
        if armed:
            raise Broken("the traffic driver broke")
        return (100, 0, 20.0)

    def arm_on_apply(name: str) -> None:
        if name == "set_http_fault":
            armed.append(True)

    platform = FakePlatform(on_call=arm_on_apply)
    experiment = load_experiment(experiment_file(tmp_path, hold="200ms"))
    with pytest.raises(Broken):
        run(tmp_path, platform, script=script, experiment=experiment)
    assert platform.log.names() == ["start", "set_http_fault", "clear_http_fault", "stop"]
    entries = read_journal(tmp_path / "run")
    assert kinds(entries)[-1] == "run_finished"
    assert [e.kind for e in entries if e.kind.startswith("fault_")][-1] == "fault_reverted"


def test_sigint_in_the_hold_reverts_and_aborts(tmp_path: Path) -> None:
    sent: list[bool] = []

    def script(now: float) -> tuple[int, int, float | None]:
        if platform.topologies and platform.topologies[-1].ops.http_faults and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return (100, 0, 20.0)

    platform = FakePlatform()
    experiment = load_experiment(experiment_file(tmp_path, hold="2s"))
    engine, entries = run(tmp_path, platform, script=script, experiment=experiment)
    assert engine.aborted is not None and "SIGINT" in engine.aborted
    assert platform.log.names() == ["start", "set_http_fault", "clear_http_fault", "stop"]
    assert "run_aborted" in kinds(entries)


def test_events_and_writes_reach_the_journal_and_the_window(tmp_path: Path) -> None:
    def crash_on_apply(name: str) -> None:
        if name == "set_http_fault":
            platform.topologies[-1].emit(EventKind.CRASHED, "checkout-0.proxy", "signal 9")

    platform = FakePlatform(on_call=crash_on_apply, writes=["w-1", "w-2"])
    engine, entries = run(tmp_path, platform)
    events = [e for e in entries if e.kind == "event"]
    assert [(e.get_str("event"), e.get_str("subject")) for e in events] == [
        ("crashed", "checkout-0.proxy")
    ] * 2
    assert all(
        len(w.recorded_writes) == 2 and w.recorded_writes.count("w-1") == 1 for w in engine.windows
    )


def test_a_fault_without_effect_is_recorded_as_such(tmp_path: Path) -> None:
    engine, entries = run(tmp_path, FakePlatform(no_effect=True))
    verified = [e for e in entries if e.kind == "fault_verified"]
    assert [e.data["took_effect"] for e in verified] == [False, False]
    assert all(w.evidence is not None and not w.evidence.took_effect for w in engine.windows)


# -- preflight: targets against the platform's workload ----------------------------------------


def _check(platform: FakePlatform) -> Callable[[Experiment], list[Problem]]:
    return lambda e: list(platform_checks(platform)(e))


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"service": "inventory"}, "faults.0.target.service", "services: frontend, checkout"),
        ({"replica": 7}, "faults.0.target.replica", "no replica 7 (replicas: 0, 1)"),
    ],
)
def test_an_unknown_target_is_a_spec_error_at_its_line(
    tmp_path: Path, fields: dict[str, object], field: str, says: str
) -> None:
    path = experiment_file(tmp_path, **fields)  # type: ignore[arg-type]
    with pytest.raises(SpecError) as info:
        load_experiment(path, check=_check(FakePlatform()))
    error = info.value
    assert error.field == field and error.exit_code == 2
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "target:" in text)
    assert error.line == line
    assert says in str(error) and str(path) in str(error)


def test_an_unknown_node_names_the_nodes(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    text = experiment_file(tmp_path).read_text()
    path.write_text(text.replace("target: {service: checkout, replica: 0}", "target: {node: n9}"))
    with pytest.raises(SpecError, match=r"no pod on node 'n9' \(nodes: node-1, node-2\)"):
        load_experiment(path, check=_check(FakePlatform()))


def test_platform_problems_are_reported_at_their_field(tmp_path: Path) -> None:
    platform = FakePlatform(problems=[Problem(("traffic", "rate"), "too fast for this platform")])
    path = experiment_file(tmp_path)
    with pytest.raises(SpecError, match="too fast") as info:
        load_experiment(path, check=_check(platform))
    assert info.value.field == "traffic.rate"
    assert info.value.line == textwrap.dedent(path.read_text()).splitlines().index("  rate: 10") + 1


@pytest.mark.parametrize(
    ("extra", "mode", "cap"),
    [
        ("", "open", None),
        ("  mode: closed\n", "closed", None),
        ("  max_in_flight: 40\n", "open", 40),
    ],
)
def test_the_traffic_mode_and_cap_reach_the_driver(
    tmp_path: Path, extra: str, mode: str, cap: int | None
) -> None:
    path = experiment_file(tmp_path)
    path.write_text(path.read_text().replace("  rate: 10\n", "  rate: 10\n" + extra))
    seen: list[TrafficConfig] = []

    def traffic(config: TrafficConfig) -> FakeTraffic:
        seen.append(config)
        return FakeTraffic(config)

    options = RunOptions(run_dir=tmp_path / "run", traffic=traffic, tick_s=0.01)
    Engine(load_experiment(path), FakePlatform(), options).run()
    assert seen and {(c.mode, c.max_in_flight) for c in seen} == {(mode, cap)}
