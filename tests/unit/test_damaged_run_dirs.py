"""Damaged run directories, history stores and output paths through the installed CLI.

Each is exit 2 and one line, within a second of CPU and under 100 MB (see
``test_cli_hostile_inputs`` for how that is measured), and leaves no output file,
partial or temporary, behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.rundir import BUCKETS_FILE, JOURNAL_FILE, META_FILE, RESULTS_FILE
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run
from tests.unit.test_cli_hostile_inputs import SCRIPT, cli

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("good") / "run"
    return write_synthetic_run(
        run, SyntheticRun(faults=(SyntheticFault("abort-checkout"),), repetitions=1)
    )


def _append(name: str, text: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        with (run / name).open("a", encoding="utf-8") as f:
            f.write(text)

    return damage


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return damage


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "journal-t-string": (_append(JOURNAL_FILE, '{"kind": "event", "t": "soon"}\n'), "t must be"),
    "journal-t-null": (_append(JOURNAL_FILE, '{"kind": "event", "t": null}\n'), "t must be"),
    "journal-t-list": (_append(JOURNAL_FILE, '{"kind": "event", "t": [1]}\n'), "t must be"),
    "buckets-empty": (_write(BUCKETS_FILE, ""), BUCKETS_FILE),
    "buckets-garbage": (_write(BUCKETS_FILE, "lorem ipsum\ndolor,sit\n"), BUCKETS_FILE),
    "buckets-binary": (_write(BUCKETS_FILE, b"\x89PNG\x00\xff\xfe"), BUCKETS_FILE),
    "buckets-word-for-number": (
        _append(BUCKETS_FILE, "sidecar,abort-checkout,0" + ",x" * 40 + "\n"),
        BUCKETS_FILE,
    ),
    "results-empty-object": (_write(RESULTS_FILE, "{}"), "runs is not a list"),
    "results-not-json": (_write(RESULTS_FILE, "{'runs': "), RESULTS_FILE),
    "results-empty-file": (_write(RESULTS_FILE, ""), RESULTS_FILE),
    "results-nested-deep": (_write(RESULTS_FILE, "[" * 100_000 + "]" * 100_000), RESULTS_FILE),
    "results-runs-of-numbers": (
        _write(RESULTS_FILE, '{"runs": [1], "summary": [], "comparisons": []}'),
        "not an object",
    ),
    "meta-empty-object": (_write(META_FILE, "{}"), "tool_version is missing"),
    "meta-a-list": (_write(META_FILE, "[]"), "not a JSON object"),
    "meta-not-utf8": (_write(META_FILE, b"\xff\xfe{"), META_FILE),
}


@pytest.mark.parametrize("damage_id", sorted(DAMAGES))
def test_report_refuses_a_damaged_run_directory(
    damage_id: str, good_run: Path, tmp_path: Path
) -> None:
    damage, says = DAMAGES[damage_id]
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    damage(run)
    out = tmp_path / "out" / "report.html"
    answer = cli("report", str(run), "-o", str(out))
    answer.assert_refused_in_one_line(starts=f"error: {run}")
    assert says in answer.stderr
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_report_output_that_is_a_directory(good_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    answer = cli("report", str(good_run), "-o", str(out))
    answer.assert_refused_in_one_line(starts="error: --output: ")
    assert "is a directory" in answer.stderr
    assert _leftovers(out) == [] and _leftovers(tmp_path) == ["out"]


def test_report_output_under_a_file(good_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    answer = cli("report", str(good_run), "-o", str(blocker / "report.html"))
    answer.assert_refused_in_one_line(starts="error: --output: ")
    assert "not a directory" in answer.stderr
    assert _leftovers(tmp_path) == ["file"]


def test_report_output_in_proc(good_run: Path) -> None:
    answer = cli("report", str(good_run), "-o", "/proc/report.html")
    answer.assert_refused_in_one_line(starts="error: --output: ")
    assert not Path("/proc/report.html").exists()


# -- history store and trend ---------------------------------------------------------------------


def test_trend_on_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    history.write_bytes(b"not a database at all\n" * 100)
    before = history.read_bytes()
    out = tmp_path / "trend.html"
    answer = cli("trend", "--history", str(history), "-o", str(out))
    answer.assert_refused_in_one_line(starts=f"error: {history}: ")
    assert history.read_bytes() == before and not out.exists()


@pytest.mark.parametrize("kind", ["empty", "foreign"])
def test_a_foreign_or_empty_database_is_refused_and_left_untouched(
    kind: str, tmp_path: Path, good_run: Path
) -> None:
    history = tmp_path / "history.db"
    if kind == "empty":
        history.touch()
    else:
        with sqlite3.connect(history) as db:
            db.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
            db.execute("INSERT INTO invoices VALUES (1, 9.5)")
        db.close()
    before = history.read_bytes()
    answer = cli("trend", "--history", str(history), "-o", str(tmp_path / "t.html"))
    answer.assert_refused_in_one_line(starts=f"error: {history}: ")
    assert "not a sidecar-chaos history store" in answer.stderr
    from chaos.errors import InputError
    from chaos.report import HistoryStore

    with pytest.raises(InputError, match="not a sidecar-chaos history store"):
        HistoryStore(history).record(good_run)
    assert history.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]


def _recorded(tmp_path: Path, good_run: Path) -> Path:
    from chaos.report import HistoryStore

    history = tmp_path / "history.db"
    HistoryStore(history).record(good_run)
    return history


@pytest.mark.parametrize(
    ("column", "value"),
    [("meta_json", "{not json"), ("meta_json", "[]"), ("started_ts", "yesterday")],
)
def test_trend_on_a_crafted_row(tmp_path: Path, good_run: Path, column: str, value: str) -> None:
    history = _recorded(tmp_path, good_run)
    with sqlite3.connect(history) as db:
        db.execute(f"UPDATE runs SET {column} = ?", (value,))
    db.close()
    out = tmp_path / "trend.html"
    answer = cli("trend", "--history", str(history), "-o", str(out), "--since", "36500d")
    answer.assert_refused_in_one_line(starts=f"error: {history}: ")
    assert "damaged" in answer.stderr and not out.exists()


def test_trend_on_a_crafted_result_row(tmp_path: Path, good_run: Path) -> None:
    history = _recorded(tmp_path, good_run)
    with sqlite3.connect(history) as db:
        db.execute("UPDATE results SET ttr_s = 'fast', repetition = 'first'")
    db.close()
    answer = cli("trend", "--history", str(history), "-o", str(tmp_path / "t.html"))
    answer.assert_refused_in_one_line(starts=f"error: {history}: ")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--since", "99999999999999d", "100 years"),
        ("--window", "0", "--window"),
        ("--window", "-5", "--window"),
    ],
)
def test_trend_option_out_of_range(
    tmp_path: Path, good_run: Path, option: str, value: str, says: str
) -> None:
    history = _recorded(tmp_path, good_run)
    answer = cli("trend", "--history", str(history), "-o", str(tmp_path / "t.html"), option, value)
    answer.assert_refused_in_one_line(starts=f"error: {option}: ")
    assert says in answer.stderr


def test_trend_history_that_is_a_directory(tmp_path: Path) -> None:
    answer = cli("trend", "--history", str(tmp_path), "-o", str(tmp_path / "t.html"))
    answer.assert_refused_in_one_line(starts="error: --history: ")
    assert "is a directory" in answer.stderr


# -- run: every option checked before anything starts ---------------------------------------------

LATENCY = Path(__file__).resolve().parents[2] / "experiments" / "latency.yaml"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--slot", "mesh=999", "--dry-run"], "--slot"),
        (["--slot", "istio=12", "--dry-run"], "--setup"),
        (["--workers", "-1", "--dry-run"], "--workers"),
    ],
)
def test_run_options_are_checked_on_the_dry_run_path(args: list[str], says: str) -> None:
    answer = cli("run", str(LATENCY), *args)
    answer.assert_refused_in_one_line(starts="error: ")
    assert says in answer.stderr


def test_run_out_naming_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x", encoding="utf-8")
    answer = cli("run", str(LATENCY), "--out", str(target), "--no-history")
    answer.assert_refused_in_one_line(starts="error: --out: ")
    assert "not a directory" in answer.stderr
    assert target.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize("where", ["/proc/chaos-run", "UNDER_FILE"])
def test_run_out_in_an_unwritable_place(tmp_path: Path, where: str) -> None:
    if where == "UNDER_FILE":
        (tmp_path / "file").write_text("x", encoding="utf-8")
        where = str(tmp_path / "file" / "run")
    answer = cli("run", str(LATENCY), "--out", where, "--no-history", "--dry-run")
    answer.assert_refused_in_one_line(starts="error: --out: ")
    assert not Path(where).exists()


def test_run_history_that_is_foreign_is_refused_before_starting(tmp_path: Path) -> None:
    history = tmp_path / "h.db"
    history.write_bytes(b"garbage" * 10)
    answer = cli(
        "run", str(LATENCY), "--out", str(tmp_path / "run"), "--history", str(history), "--dry-run"
    )
    answer.assert_refused_in_one_line(starts=f"error: {history}: ")
    assert not (tmp_path / "run").exists()


# -- clean -----------------------------------------------------------------------------------------


def test_clean_on_a_journal_with_bad_times_still_reverts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / JOURNAL_FILE).write_text(
        '{"kind": "run_started", "t": "later", "platform": "local"}\n'
        '{"kind": "fault_planned", "t": null, "fault_id": "latency-1"}\n'
        '{"kind": "fault_applied", "t": [], "fault_id": "latency-1"}\n',
        encoding="utf-8",
    )
    answer = cli("clean", str(run))
    assert "Traceback" not in answer.stderr, answer.stderr
    assert answer.code == 0, answer.stderr
    assert "reverted latency-1" in answer.stdout
    assert '"fault_reverted"' in (run / JOURNAL_FILE).read_text(encoding="utf-8")
