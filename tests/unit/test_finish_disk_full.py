"""A disk that fills while the finish step writes: one line naming the file, exit 5, no debris.

The finish step (``chaos.engine.finish.finish``) writes results.json, buckets.csv,
meta.json, report.html, junit.xml and the history store, in that order. The cases
run it in one child process, each under a file-size limit (``RLIMIT_FSIZE``; Python
ignores SIGXFSZ, so ``write()`` fails with EFBIG) that lets the files before the
chosen one be written and not the chosen one; ``meta.json`` and ``junit.xml`` are no larger
than a file written before them, so their cases make the path a directory instead (the
rename fails). The code treats every
``OSError`` of these writes alike, so a size limit stands for ENOSPC without
mounting a small filesystem. Each case checks the one line, the exit code, that the
files written before are whole, that nothing half-written or temporary is left, and
that a history store that existed is unchanged (its transaction rolled back). The
first files of a run (``experiment.yaml``, ``experiment.effective.yaml``) are written
the same way; their cases run the CLI, which fails before any topology starts.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.errors import InputError, OutputError
from chaos.report.history import HistoryStore
from chaos.testing.synthetic_run import SyntheticRun, write_synthetic_run
from tests.unit.test_cli_hostile_inputs import SCRIPT
from tests.unit.test_engine import experiment_file

ROOT = Path(__file__).resolve().parents[2]

#: The child, for each case: run two windows on the fake platform (the second breaks
#: at start, so results, report and JUnit are all written), record an earlier run into
#: the history if the case wants one, then limit file sizes and call ``finish`` as the
#: CLI does; print what the CLI would print (one line) and the exit code, as JSON.
_CHILD = """
import json, resource, sys
from pathlib import Path
from chaos.engine.run import Engine, RunOptions
from chaos.errors import ChaosError, FaultError
from chaos.engine.finish import finish
from chaos.testing.fake_platform import FakePlatform
from chaos.experiment import load_experiment
from chaos.testing.fake_traffic import FakeTraffic
from tests.unit.test_engine import experiment_file

def second_start_fails(name, starts, revert_fails):
    if name == "start":
        starts.append(name)
        if len(starts) == 2:
            raise FaultError("envoy exited with code 1 before it was ready")
    if name == "clear_http_fault" and revert_fails:
        raise FaultError("the admin API did not answer")

def run(experiment, run_dir, revert_fails=False):
    starts = []
    platform = FakePlatform(on_call=lambda name: second_start_fails(name, starts, revert_fails))
    engine = Engine(experiment, platform, RunOptions(
        run_dir=run_dir, traffic=lambda c: FakeTraffic(c), tick_s=0.01))
    return engine, platform, engine.run()

def finish_run(experiment, engine, platform, records, store):
    return finish(experiment, platform, engine.run_dir, records,
        started_utc="2026-11-29T23:00:00+00:00", aborted_reason=engine.aborted,
        history=store)

for case in json.loads(sys.argv[1]):
    work = Path(case["dir"])
    work.mkdir()
    experiment = load_experiment(experiment_file(work, hold="100ms"))
    store = Path(case["history"])
    if case["earlier"]:  # an earlier run, recorded without a limit
        finish_run(experiment, *run(experiment, work / "earlier"), store)
    engine, platform, records = run(experiment, work / "run", case["revert_fails"])
    calls = platform.log.names()
    if case["in_the_way"]:  # a directory where the file goes: its rename fails
        (work / "run" / case["in_the_way"]).mkdir()
    resource.setrlimit(resource.RLIMIT_FSIZE, (case["limit"], resource.RLIM_INFINITY))
    try:
        code, line = finish_run(experiment, engine, platform, records, store).exit_code, ""
    except ChaosError as exc:
        code, line = exc.exit_code, f"error: {str(exc).splitlines()[0]}"
    except BaseException as exc:
        import traceback
        code, line = -1, "Traceback: " + "".join(traceback.format_exception(exc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print(json.dumps({"name": case["name"], "code": code, "stderr": line,
                      "applied": calls.count("set_http_fault"),
                      "reverted": calls.count("clear_http_fault")}), flush=True)
"""

NO_LIMIT = 1 << 40
#: name -> (file-size limit, history store name, the run file made a directory, if any)
CASES = {
    # the first window's revert fails (the admin API is gone): the line says so
    "unreverted": (200, "history.db", None),
    # results.json is about 900 bytes, meta.json 700 (no size sits between them: meta.json
    # is made a directory), report.html 7,500, a store 28,000
    "results.json": (200, "history.db", None),
    "meta.json": (NO_LIMIT, "history.db", "meta.json"),
    "report.html": (2000, "history.db", None),
    "junit.xml": (NO_LIMIT, "history.db", "junit.xml"),
    # 16 KB fits every run file but neither a new store nor a transaction's journal
    "new.db": (16_000, "new.db", None),
    "existing.db": (16_000, "existing.db", None),
    "no limit": (NO_LIMIT, "existing.db", None),
}


@dataclass(frozen=True)
class Finished:
    """One case: its directory, the exit code and what the CLI would print on stderr."""

    work: Path
    code: int
    stderr: str
    applied: int
    reverted: int


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Every case, in one child process (its imports take most of the time)."""
    root = tmp_path_factory.mktemp("finish")
    cases = [
        {
            "name": name,
            "dir": str(root / f"case{i}"),
            "limit": limit,
            "history": str(root / f"case{i}" / store),
            "earlier": store == "existing.db",
            "in_the_way": in_the_way,
            "revert_fails": name == "unreverted",
        }
        for i, (name, (limit, store, in_the_way)) in enumerate(CASES.items())
    ]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = {}
    for line in done.stdout.splitlines():
        d = json.loads(line)
        work = Path(next(c["dir"] for c in cases if c["name"] == d["name"]))
        found[d["name"]] = Finished(work, d["code"], d["stderr"], d["applied"], d["reverted"])
    return found


def _assert_whole(run_dir: Path) -> None:
    """Every output present parses completely; no temporary file is left."""
    names = sorted(p.name for p in run_dir.iterdir())
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    if (run_dir / "results.json").is_file():
        json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    if (run_dir / "meta.json").is_file():
        json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    if (run_dir / "buckets.csv").is_file():
        assert (run_dir / "buckets.csv").read_text(encoding="utf-8").startswith("setup,")
    if (run_dir / "report.html").is_file():
        assert (run_dir / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    if (run_dir / "junit.xml").is_file():
        ET.parse(run_dir / "junit.xml")


def _runs_in(store: Path) -> int:
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    db.close()
    return count


@pytest.mark.parametrize(
    ("failing", "written"),
    [
        ("results.json", "none of results, meta, report, junit"),
        ("meta.json", "results.json, buckets.csv"),
        ("report.html", "results.json, buckets.csv, meta.json"),
        ("junit.xml", "results.json, buckets.csv, meta.json, report.html"),
    ],
)
def test_a_run_file_that_cannot_be_written_is_one_line_and_exit_5(
    finished: dict[str, Finished], failing: str, written: str
) -> None:
    case = finished[failing]
    run_dir = case.work / "run"
    assert case.code == OutputError.exit_code == 5, case.stderr
    assert len(case.stderr.splitlines()) == 1, case.stderr
    assert case.stderr.startswith(f"error: cannot write {run_dir / failing}: "), case.stderr
    assert case.stderr.endswith(f"written whole before it: {written}"), case.stderr
    assert "every fault was reverted" in case.stderr
    assert case.applied == case.reverted == 1  # reverted before finish started
    _assert_whole(run_dir)
    # the history comes last: never recorded when a run file failed
    assert sorted(p.name for p in case.work.iterdir()) == ["run", "unit.yaml"]


@pytest.mark.parametrize("store_name", ["new.db", "existing.db"])
def test_a_history_store_that_cannot_be_written_is_left_as_it_was(
    finished: dict[str, Finished], store_name: str
) -> None:
    case = finished[store_name]
    store = case.work / store_name
    assert case.code == 5, case.stderr
    assert len(case.stderr.splitlines()) == 1, case.stderr
    assert case.stderr.startswith(f"error: cannot write {store}: "), case.stderr
    assert case.stderr.endswith(
        "written whole before it: results.json, buckets.csv, meta.json, report.html, junit.xml"
    )
    _assert_whole(case.work / "run")
    left = sorted(p.name for p in case.work.iterdir())
    if store_name == "new.db":
        assert left == ["run", "unit.yaml"]  # no store, no temporary store
    else:
        assert left == ["earlier", "existing.db", "run", "unit.yaml"]  # no -journal left
        assert _runs_in(store) == 1  # the earlier run only: the transaction rolled back


def test_without_a_limit_the_same_child_writes_everything(finished: dict[str, Finished]) -> None:
    """The cases above fail because of the limit, not because the child cannot finish."""
    case = finished["no limit"]
    assert case.code == 4, case.stderr  # the broken second window
    run_dir = case.work / "run"
    for name in ("results.json", "buckets.csv", "meta.json", "report.html", "junit.xml"):
        assert (run_dir / name).is_file(), name
    _assert_whole(run_dir)
    assert _runs_in(case.work / "existing.db") == 2


def _limit_to(limit: int) -> Callable[[], None]:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limit_file_size


@pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")
@pytest.mark.parametrize(
    ("limit", "failing"), [(100, "experiment.yaml"), (500, "experiment.effective.yaml")]
)
def test_a_full_disk_at_the_start_of_a_run_is_one_line_and_exit_5(
    tmp_path: Path, limit: int, failing: str
) -> None:
    """The run directory's first files; nothing has started (the local platform, real CLI)."""
    experiment = experiment_file(tmp_path)
    assert 100 < experiment.stat().st_size < 500  # and the effective file is longer
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [str(SCRIPT), "run", str(experiment), "--out", str(run_dir), "--no-history"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_to(limit),
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot write {run_dir / failing}: File too large"
    ], done.stderr
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


def test_a_fault_the_journal_shows_unreverted_is_named_with_clean(
    finished: dict[str, Finished],
) -> None:
    case = finished["unreverted"]
    run_dir = case.work / "run"
    assert case.code == 5, case.stderr
    assert case.stderr.startswith(f"error: cannot write {run_dir / 'results.json'}: "), case.stderr
    assert f"1 fault(s) not reverted, see `sidecar-chaos clean {run_dir}`" in case.stderr
    assert "every fault was reverted" not in case.stderr


@pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")
def test_report_on_a_full_disk_is_one_line_and_exit_5(tmp_path: Path) -> None:
    """``report -o``: the place is fine (no input error), the write fails; nothing is left."""
    run = write_synthetic_run(tmp_path / "run", SyntheticRun(repetitions=1))
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    done = subprocess.run(
        [str(SCRIPT), "report", str(run), "-o", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_to(20_000),  # the report is far larger
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.splitlines() == [f"error: cannot write {out}: File too large"]
    assert list(out.parent.iterdir()) == []


def test_a_history_path_that_cannot_be_created_is_refused_before_the_run(tmp_path: Path) -> None:
    """Not found at the very end: ``check`` (called before a run starts) refuses it."""
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match=r"^--history: cannot create .*: .* is not a directory"):
        HistoryStore(blocker / "history.db").check()
    with pytest.raises(InputError, match=r"^--history: cannot create .*: /proc is not a place"):
        HistoryStore(Path("/proc/history.db")).check()
    HistoryStore(tmp_path / "new" / "history.db").check()  # creatable: fine, nothing created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
