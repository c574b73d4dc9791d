"""``sidecar-chaos validate`` and ``schema``: exit codes and the one-line messages users see.

Every malformed corpus file goes through the command (typer's runner on the real app);
a few also through the installed console script, to see what a terminal would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chaos.cli.app import app
from tests.unit.malformed import MalformedCase, cases

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))
CASES = cases()
SCRIPT = Path(sys.executable).with_name("sidecar-chaos")
#: A few kinds (broken YAML, a whole-file problem, a wrong value, an unknown key) for the
#: slower subprocess checks.
CASES_SAMPLE_IDS = ("broken-yaml-tab", "empty-file", "percent-150", "unknown-key-top")


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"uncaught {result.exception!r}"
    return result.exit_code, result.stdout, result.stderr


def _expected_start(case: MalformedCase) -> str:
    where = f"error: {case.path}" + (f":{case.line}" if case.line is not None else "") + ": "
    return where + (f"{case.field}: " if case.field else "")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_malformed_file_exits_2_with_one_line(case: MalformedCase) -> None:
    code, out, err = _invoke("validate", str(case.path))
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(_expected_start(case)), lines[0]
    assert case.says in lines[0]
    assert "Traceback" not in err


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_validates(example: Path) -> None:
    code, out, err = _invoke("validate", str(example))
    assert (code, err) == (0, ""), err
    assert out.startswith(f"{example}: ok ("), out


def test_several_files_report_each_and_fail_if_any_fails() -> None:
    bad = [c for c in CASES if c.id in ("empty-file", "unknown-setup")]
    code, out, err = _invoke("validate", str(EXAMPLES[0]), *(str(c.path) for c in bad))
    assert code == 2
    assert out.count(": ok (") == 1
    assert [line.split(":")[0] for line in err.splitlines()] == ["error"] * len(bad)


def test_an_override_is_validated_like_the_file() -> None:
    latency = ROOT / "experiments" / "latency.yaml"
    code, _, err = _invoke("validate", str(latency), "--set", "timeline.hold=-1s")
    assert code == 2
    assert err.count("\n") == 1 and "timeline.hold" in err, err
    code, out, _ = _invoke("validate", str(latency), "--set", "timeline.hold=5s")
    assert code == 0, out


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = _invoke("validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_run_rejects_a_malformed_file_before_touching_anything(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "unknown-fault-type")
    out_dir = tmp_path / "run"
    code, _, err = _invoke("run", str(case.path), "--out", str(out_dir))
    assert code == 2, err
    assert err.startswith(_expected_start(case)), err
    assert not out_dir.exists()


def test_schema_prints_json_schema_of_an_experiment() -> None:
    code, out, _ = _invoke("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert {"name", "traffic", "faults", "timeline", "setups"} <= set(schema["properties"])
    assert {"name", "traffic", "faults"} <= set(schema["required"])
    text = json.dumps(schema)
    for fault_type in ("latency", "abort", "crash", "cert-expiry", "policy-desync"):
        assert f'"{fault_type}"' in text


# -- through the installed console script, as a terminal would run it -----------------------------


@pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")
@pytest.mark.parametrize("case_id", CASES_SAMPLE_IDS)
def test_console_script_prints_one_line_and_exits_2(case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    answer = subprocess.run(
        [str(SCRIPT), "validate", str(case.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 2, answer
    assert answer.stdout == ""
    assert answer.stderr.count("\n") == 1, answer.stderr
    assert answer.stderr.startswith(_expected_start(case)), answer.stderr


@pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")
def test_console_script_validates_the_examples() -> None:
    answer = subprocess.run(
        [str(SCRIPT), "validate", *map(str, EXAMPLES)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.count(": ok (") == len(EXAMPLES)


# -- targets the platform's workload does not have: exit 2 before anything starts -------------

_UNKNOWN_TARGETS = [
    (
        "target: {service: checkout, replica: 0}",
        "target: {service: inventory}",
        "service",
        "no service 'inventory' (services: frontend, checkout, payments)",
    ),
    (
        "target: {service: checkout, replica: 0}",
        "target: {service: checkout, replica: 5}",
        "replica",
        "no replica 5 (replicas: 0, 1)",
    ),
    (
        "target: {service: checkout, replica: 0}",
        "target: {node: node-7}",
        "node",
        "no pod on node 'node-7' (nodes: node-1, node-2)",
    ),
]


@pytest.mark.parametrize(("old", "new", "field", "says"), _UNKNOWN_TARGETS)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_unknown_target_is_exit_2_with_file_and_line(
    tmp_path: Path, command: str, old: str, new: str, field: str, says: str
) -> None:
    text = (ROOT / "experiments" / "latency.yaml").read_text()
    assert old in text
    path = tmp_path / "target.yaml"
    path.write_text(text.replace(old, new))
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if new in t)
    args = [command, str(path)] + (["--out", str(tmp_path / "run")] if command == "run" else [])
    code, out, err = _invoke(*args)
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:{line}: faults.0.target.{field}: {says} in the ")
    assert not (tmp_path / "run").exists(), "run started something before refusing the target"
