"""A run directory looked over before it is read for real: cheap, and one line per problem.

``report`` (and anything else reading a run directory a user points at) calls
``check_readable`` first: it imports nothing heavy (no pandas, no matplotlib), so a
damaged directory is refused within a fraction of a second and small memory, with
the file and, where there is one, the line. What it lets through is still checked
in full by the readers (``chaos.analysis.read_results``, ``read_meta``, the journal).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from chaos.errors import InputError
from chaos.rundir import BUCKETS_FILE, META_FILE, RESULTS_FILE
from chaos.rundir.journal import read_journal
from chaos.rundir.meta import read_meta

#: Columns of ``buckets.csv`` that name a window; every other column holds numbers.
_BUCKET_LABELS = ("setup", "fault", "repetition")
_RESULTS_LISTS = ("runs", "summary", "comparisons")


def check_readable(run_dir: Path) -> None:
    """``InputError`` (one line, file and line) if ``run_dir`` is not a readable run directory."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory")
    results = run_dir / RESULTS_FILE
    if not results.is_file():
        raise InputError(f"{run_dir}: not a run directory with results (no {RESULTS_FILE})")
    _check_results(results)
    if (run_dir / META_FILE).exists():
        read_meta(run_dir)
    buckets = run_dir / BUCKETS_FILE
    if buckets.exists():
        _check_buckets(buckets)
    read_journal(run_dir, strict=True)


def _check_results(path: Path) -> None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable results file: {why}") from exc
    if not isinstance(document, dict):
        raise InputError(f"{path}: not a results file (not a JSON object)")
    for key in _RESULTS_LISTS:
        items = document.get(key)
        if not isinstance(items, list):
            raise InputError(f"{path}: not a results file ({key} is not a list)")
        if not all(isinstance(item, dict) for item in items):
            raise InputError(f"{path}: not a results file ({key} holds something not an object)")


def _check_buckets(path: Path) -> None:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            if not header:
                raise InputError(f"{path}: empty; a buckets file has a header line")
            missing = [c for c in _BUCKET_LABELS if c not in header]
            if missing:
                raise InputError(f"{path}:1: not a buckets file (no column {', '.join(missing)})")
            numeric = [i for i, name in enumerate(header) if name not in ("setup", "fault")]
            for number, row in enumerate(rows, start=2):
                if len(row) != len(header):
                    raise InputError(
                        f"{path}:{number}: {len(row)} fields where the header has {len(header)}"
                    )
                for i in numeric:
                    if row[i] and not _is_number(row[i]):
                        raise InputError(f"{path}:{number}: {header[i]} is not a number")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable buckets file: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
