"""Hostile and malformed experiment files through the installed CLI, as a terminal runs it.

Every file of the malformed corpus, and inputs that cannot live in the corpus (``/dev/zero``,
a FIFO nobody writes to, a directory, files past the size limit), must end in exit code 2
and one line on stderr, within a second and under 100 MB, never a traceback.

"Within a second" is measured as the child's CPU time (user + system, from ``os.wait4``):
on a shared 2-core machine the wall clock mostly measures the other jobs. The wall clock
only guards against a hang (a blocking read, an expansion that never ends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.experiment.source import MAX_BYTES
from tests.unit.malformed import MalformedCase, cases

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("sidecar-chaos")
CASES = cases()
CPU_LIMIT_S = 1.0
MEMORY_LIMIT_MB = 100.0
#: A hang guard, not the measure: the machine running the tests may be loaded.
WALL_LIMIT_S = 120.0

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")


@dataclass(frozen=True)
class Answer:
    """What one CLI invocation did, with the resources its process used."""

    code: int
    stdout: str
    stderr: str
    cpu_s: float
    wall_s: float
    peak_mb: float

    def assert_refused_in_one_line(self, starts: str = "error: ") -> None:
        assert "Traceback" not in self.stderr, self.stderr
        assert self.code == 2, (self.code, self.stderr)
        assert self.stdout == "", self.stdout
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith(starts), lines[0]
        assert self.cpu_s < CPU_LIMIT_S, f"{self.cpu_s:.2f} s of CPU: {lines[0]}"
        assert self.peak_mb < MEMORY_LIMIT_MB, f"{self.peak_mb:.0f} MB peak: {lines[0]}"
        assert self.wall_s < WALL_LIMIT_S


#: Runs the CLI and writes its rusage as JSON to argv[1]. A child's peak RSS starts at its
#: parent's RSS at fork (Linux copies the high-water mark), so the CLI is started from this
#: small process, not from pytest (which may hold pandas).
_LAUNCHER = """
import json, os, resource, signal, subprocess, sys
report, argv, wall_limit = sys.argv[1], sys.argv[3:], float(sys.argv[2])
child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
resource.prlimit(child.pid, resource.RLIMIT_AS, (4 << 30, 4 << 30))
resource.prlimit(child.pid, resource.RLIMIT_CPU, (20, 20))
signal.signal(signal.SIGALRM, lambda *_: os.kill(child.pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, wall_limit)
_, status, usage = os.wait4(child.pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
with open(report, "w") as f:
    json.dump({"cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def cli(*args: str, cwd: Path = ROOT) -> Answer:
    """Run the console script; once more if it went over the CPU budget, keeping the lower.

    Under heavy load (a load average of 25 on 2 cores was seen) the same work costs more
    CPU time; a second try tells a loaded machine from a real regression.
    """
    answer = _cli_once(*args, cwd=cwd)
    if answer.cpu_s < CPU_LIMIT_S:
        return answer
    again = _cli_once(*args, cwd=cwd)
    return again if again.cpu_s < answer.cpu_s else answer


def _cli_once(*args: str, cwd: Path = ROOT) -> Answer:
    """Run the console script through the launcher; its own CPU time and peak RSS."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage.json"
        answer = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(report), str(WALL_LIMIT_S), str(SCRIPT), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={**os.environ, "COLUMNS": "300"},
            timeout=WALL_LIMIT_S + 30,
            check=False,
        )
        usage = json.loads(report.read_text(encoding="utf-8"))
    return Answer(
        code=answer.returncode,
        stdout=answer.stdout.decode("utf-8", "replace"),
        stderr=answer.stderr.decode("utf-8", "replace"),
        cpu_s=float(usage["cpu"]),
        wall_s=time.monotonic() - started,
        peak_mb=float(usage["maxrss_kib"]) / 1024.0,
    )


def test_every_corpus_file_is_one_line_exit_2_quickly_and_small() -> None:
    """One process per file (the measure is per process), four at a time to save wall time."""

    def check(case: MalformedCase) -> str | None:
        answer = cli("validate", str(case.path))
        expected = f"error: {case.path}" + (f":{case.line}" if case.line is not None else "")
        try:
            answer.assert_refused_in_one_line(starts=expected)
            assert case.says in answer.stderr, answer.stderr
        except AssertionError as exc:
            return f"{case.id}: {exc}"
        return None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(check, CASES) if f is not None]
    assert not failures, "\n".join(failures)


def test_the_corpus_has_forty_hostile_or_malformed_files() -> None:
    assert len(CASES) >= 40


HOSTILE_IDS = (
    "alias-bomb-billion-laughs",
    "alias-recursive-mapping",
    "nesting-deep-sequence",
    "binary-gzip",
    "target-unknown-service",
)


@pytest.mark.parametrize("case_id", HOSTILE_IDS)
def test_run_dry_run_refuses_hostile_files_the_same_way(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    answer = cli("run", str(case.path), "--dry-run", "--out", str(tmp_path / "run"))
    answer.assert_refused_in_one_line(starts=f"error: {case.path}")
    assert not (tmp_path / "run").exists()


def test_dev_zero_is_refused_without_reading_it() -> None:
    answer = cli("validate", "/dev/zero")
    answer.assert_refused_in_one_line(starts="error: /dev/zero: ")
    assert "character device" in answer.stderr


def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "experiment.yaml"
    os.mkfifo(fifo)
    answer = cli("validate", str(fifo))
    answer.assert_refused_in_one_line(starts=f"error: {fifo}: ")
    assert "FIFO" in answer.stderr


def test_a_directory_is_refused(tmp_path: Path) -> None:
    answer = cli("validate", str(tmp_path))
    answer.assert_refused_in_one_line(starts=f"error: {tmp_path}: ")
    assert "directory" in answer.stderr


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "experiment.yaml"
    link.symlink_to("/dev/zero")
    answer = cli("validate", str(link))
    answer.assert_refused_in_one_line(starts=f"error: {link}: ")


@pytest.mark.parametrize("size", [MAX_BYTES + 1, 64 * 1024 * 1024])
def test_a_file_past_the_size_limit_is_refused_unread(tmp_path: Path, size: int) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.write(b"name: huge\n# ")
        f.truncate(size)  # sparse: the size is real, the disk is not used
    answer = cli("validate", str(huge))
    answer.assert_refused_in_one_line(starts=f"error: {huge}: ")
    assert "larger than" in answer.stderr


def test_a_file_just_under_the_limit_is_read_and_judged(tmp_path: Path) -> None:
    """A big file within the limit is parsed, and still answered within the budget."""
    big = tmp_path / "big.yaml"
    wrong = next(c for c in CASES if c.id == "percent-150")
    filler = "# " + "x" * 98 + "\n"
    text = wrong.path.read_text(encoding="utf-8")
    big.write_text(text + filler * ((MAX_BYTES - len(text)) // len(filler)), encoding="utf-8")
    assert MAX_BYTES - len(filler) < big.stat().st_size <= MAX_BYTES
    answer = cli("validate", str(big))
    answer.assert_refused_in_one_line(starts=f"error: {big}:{wrong.line}: {wrong.field}: ")
