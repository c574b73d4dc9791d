"""Loading experiment files: the examples, overrides, setup narrowing, several errors at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.errors import SpecError
from chaos.experiment import (
    CertExpiryFault,
    CrashFault,
    Experiment,
    LatencyFault,
    SpecErrorGroup,
    load_experiment,
)
from chaos.experiment.hypotheses import hypothesis_windows

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))

MINIMAL = """\
name: small
traffic:
  users: 2
  spawn_rate: 2
  rate: 10
  endpoints:
    - {name: browse, path: /}
    - {name: pay, method: POST, path: /api/pay, weight: 2}
faults:
  - type: latency
    target: {service: checkout, replica: 0}
    delay: 200ms
  - type: crash
    target: {service: payments, setups: [ambient]}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_examples_are_all_there() -> None:
    names = {p.stem for p in EXAMPLES}
    assert names >= {
        "latency",
        "crash",
        "cert-expiry",
        "policy-desync",
        "control-plane-outage",
        "gameday",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads_and_is_commented(path: Path) -> None:
    experiment = load_experiment(path)
    assert experiment.name == path.stem
    assert path.read_text(encoding="utf-8").lstrip().startswith("#")
    for fault in experiment.faults:
        assert fault.summary()


def test_gameday_fits_in_ten_minutes() -> None:
    game = load_experiment(ROOT / "experiments" / "gameday.yaml")
    assert set(game.setups) == {"sidecar", "mesh", "ambient"}
    assert [f.type for f in game.faults] == ["latency", "crash", "cert-expiry", "policy-mismatch"]
    assert game.repetitions == "auto" and game.budget is not None
    assert game.budget <= 10 * 60  # the whole run's: the cost step's first rounds too
    startup = 5.0  # seconds per window to start and stop a topology and Locust, measured
    per_window = game.timeline.total + startup
    # the first round runs every window, later rounds only the hypotheses' windows
    first = len(game.setups) * len(game.faults) * per_window
    later = len(hypothesis_windows(game.hypotheses, game.setups_of_faults())) * per_window
    # cert expiry: mesh, sidecar; crash: all three (bypass served compares mesh, sidecar too)
    assert later == 5 * per_window
    # the cost step after them: 3 setups x 2 rates x 2 repetitions of warm-up 1 s + hold 3 s
    assert game.cost is not None and game.cost_reserve_s == 12 * (1.0 + 3.0 + startup)
    assert first + (game.planned_repetitions - 1) * later + game.cost_reserve_s <= game.budget
    # enough rounds for an exact test with 3 hypotheses to decide a clear difference
    assert game.planned_repetitions >= 4
    assert [h.name for h in game.hypotheses] == [
        "mesh-retries-hide-crash",
        "mesh-heals-cert-expiry",
        "mesh-closes-bypass",
        "mesh-strips-credentials",
        "ambient-crash-wider-blast",
    ]
    assert game.security is not None and game.security.bypass is not None
    expiry = game.faults[2]
    assert isinstance(expiry, CertExpiryFault)
    assert expiry.ttl < game.timeline.hold  # the cert does expire within the hold


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, MINIMAL))
    assert isinstance(exp, Experiment)
    assert exp.setups == ("sidecar", "mesh", "ambient")
    assert exp.platform == "local" and exp.repetitions == 1
    assert exp.timeline.recovered_for == 1.0
    latency = exp.faults[0]
    assert isinstance(latency, LatencyFault)
    assert (latency.delay, latency.percent, latency.direction) == (0.2, 100.0, "inbound")
    assert exp.fault_names() == ["latency-1", "crash-2"]
    assert exp.faults_for("sidecar") == [latency]
    assert [f.type for f in exp.faults_for("ambient")] == ["latency", "crash"]


@pytest.mark.parametrize(
    ("override", "read"),
    [
        ("timeline.hold=5s", lambda e: e.timeline.hold == 5.0),
        ("repetitions=1", lambda e: e.repetitions == 1),
        ("repetitions=4", lambda e: e.repetitions == 4),
        ("faults.0.percent=50", lambda e: e.faults[0].percent == 50.0),
        ("traffic.endpoints.1.weight=3", lambda e: e.traffic.endpoints[1].weight == 3.0),
        ("steady_state.max_p95_ms=250", lambda e: e.steady_state.max_p95_ms == 250.0),
        ("setups=[sidecar, ambient]", lambda e: e.setups == ("sidecar", "ambient")),
        ("description=a b = c", lambda e: e.description == "a b = c"),
        ("faults.1.target.setups=[mesh]", lambda e: e.faults[1].target.setups == ("mesh",)),
    ],
)
def test_override_sets_the_field(tmp_path: Path, override: str, read: object) -> None:
    exp = load_experiment(write(tmp_path, MINIMAL), overrides=[override])
    assert callable(read) and read(exp)


def test_later_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    exp = load_experiment(path, overrides=["timeline.hold=5s", "timeline.hold=7s"])
    assert exp.timeline.hold == 7.0


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("timeline.hold", "expected path=value"),
        ("=5s", "expected path=value"),
        ("timeline..hold=5s", "not a field path"),
        ("faults.5.percent=50", "faults has 2 items; there is no faults.5"),
        ("faults.first.percent=50", "faults is a list; faults.first needs an index"),
        ("traffic.users.x=1", "traffic.users is a single value"),
        ("timeline.hold=[5s", "not valid YAML"),
    ],
)
def test_malformed_override_is_a_spec_error(tmp_path: Path, override: str, says: str) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, MINIMAL), overrides=[override])
    assert f"--set {override}" in str(info.value)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "field", "says"),
    [
        ("timeline.hodl=5s", "timeline.hodl", 'did you mean "hold"'),
        ("timelin.hold=5s", "timelin", "unknown field"),
        ("faults.0.percentage=5", "faults.0.percentage", "unknown field"),
        ("timeline.hold=fast", "timeline.hold", "must be a duration"),
        ("repetitions=0", "repetitions", "greater than or equal to 1"),
    ],
)
def test_invalid_override_value_names_the_override(
    tmp_path: Path, override: str, field: str, says: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, MINIMAL), overrides=[override])
    error = info.value
    assert error.field == field
    assert error.line is None  # the value did not come from a line of the file
    assert says in error.message and f"(from --set {override})" in error.message


def test_override_cannot_fix_what_it_did_not_touch(tmp_path: Path) -> None:
    broken = MINIMAL.replace("rate: 10", "rate: -1")
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, broken), overrides=["repetitions=2"])
    assert (info.value.field, info.value.line) == ("traffic.rate", 5)


def test_narrowing_setups_keeps_file_order(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, MINIMAL), setups=["ambient", "sidecar"])
    assert exp.setups == ("sidecar", "ambient")


def test_narrowing_to_an_unknown_setup_fails(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--setup istio: not a setup"):
        load_experiment(write(tmp_path, MINIMAL), setups=["istio"])


def test_narrowing_to_a_setup_not_in_the_file_fails_at_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("name: small\n", "name: small\nsetups: [sidecar, mesh]\n")
    text = text.replace("setups: [ambient]", "setups: [mesh]")
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, text), setups=["ambient"])
    assert (info.value.field, info.value.line) == ("setups", 2)
    assert "compares only sidecar, mesh" in info.value.message


def test_several_errors_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("users: 2", "users: many")
        .replace("delay: 200ms", "delay: fast")
        .replace("name: small\n", "name: small\nbogus: 1\n")
    )
    with pytest.raises(SpecErrorGroup) as info:
        load_experiment(write(tmp_path, text))
    group = info.value
    assert [(e.field, e.line) for e in group.errors] == [
        ("bogus", 2),
        ("traffic.users", 4),
        ("faults.0.delay", 13),
    ]
    assert (group.field, group.line) == ("bogus", 2)
    lines = str(group).splitlines()
    assert len(lines) == 3 and all(line.startswith(str(tmp_path)) for line in lines)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_experiment(tmp_path)


def test_relative_locustfile_resolves_against_the_experiment(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    locustfile = tmp_path / "sub" / "mine.py"
    locustfile.write_text("# a locustfile\n", encoding="utf-8")
    text = MINIMAL.replace(
        "  endpoints:\n    - {name: browse, path: /}\n"
        "    - {name: pay, method: POST, path: /api/pay, weight: 2}\n",
        "  locustfile: sub/mine.py\n",
    )
    exp = load_experiment(write(tmp_path, text))
    assert exp.traffic.locustfile == locustfile.resolve()
    assert exp.traffic.endpoints is None


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "faults:\n",
        "x-target: &checkout {service: checkout}\nfaults:\n",
    )
    with pytest.raises(SpecError, match="unknown field"):
        load_experiment(write(tmp_path, text))  # extension keys are not allowed
    text = MINIMAL.replace(
        "  - type: crash\n    target: {service: payments, setups: [ambient]}\n",
        "  - type: crash\n    target: &t {service: payments}\n"
        "  - type: abort\n    target: {<<: *t, replica: 1}\n",
    )
    exp = load_experiment(write(tmp_path, text))
    assert exp.faults[2].target.service == "payments" and exp.faults[2].target.replica == 1


def test_crash_loop_with_interval(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    target: {service: payments, setups: [ambient]}\n",
        "    target: {node: node-1}\n    times: 3\n    interval: 1m30s\n",
    )
    crash = load_experiment(write(tmp_path, text)).faults[1]
    assert isinstance(crash, CrashFault)
    assert (crash.times, crash.interval) == (3, 90.0)
    assert crash.summary() == "crash (SIGKILL) the proxy of every pod on node-1 3 times, every 90s"


def test_fault_names_must_be_unique(tmp_path: Path) -> None:
    text = MINIMAL.replace("  - type: crash\n", "  - type: crash\n    name: latency-1\n")
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, text))
    assert (info.value.field, info.value.line) == ("faults.1.name", 14)


def test_a_setup_without_any_fault_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    target: {service: checkout, replica: 0}\n",
        "    target: {service: checkout, replica: 0, setups: [sidecar]}\n",
    )
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, text))
    assert info.value.field == "setups"
    assert "no fault applies to mesh" in info.value.message


def test_every_problem_is_reported_most_specific_first(tmp_path: Path) -> None:
    """A misspelt key is the defect; the missing field it leaves behind comes after it."""
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\n"
        "trafic:\n"
        "  users: 2\n"
        "  rate: 10\n"
        "faults:\n"
        "  - type: latency\n"
        "    target: {service: checkout}\n"
        "    delay: 200ms\n"
        "    percent: 150\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecErrorGroup) as info:
        load_experiment(path)
    fields = [e.field for e in info.value.errors]
    assert fields == ["trafic", "faults.0.percent", "traffic"], str(info.value)
    assert 'did you mean "traffic"' in info.value.errors[0].message
    assert str(info.value).count("\n") == len(fields) - 1  # one line per problem


def test_every_duplicate_key_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\nname: b\nseed: 1\nseed: 2\n", encoding="utf-8")
    with pytest.raises(SpecErrorGroup) as info:
        load_experiment(path)
    assert [(e.field, e.line) for e in info.value.errors] == [("name", 2), ("seed", 4)]


@pytest.mark.parametrize(
    ("value", "says"),
    [("&a [*a]", "recursive alias"), ("[" * 3000 + "]" * 3000, "nest")],
)
def test_a_set_value_is_bounded_like_a_file(value: str, says: str) -> None:
    latency = Path(__file__).resolve().parents[2] / "experiments" / "latency.yaml"
    with pytest.raises(SpecError) as info:
        load_experiment(latency, [f"traffic.endpoints={value}"])
    assert says in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 400
