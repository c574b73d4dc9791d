"""``clean RUN_DIR``: undo what a dead runner's journal shows as still applied or running.

The journal names the platform the run used (``run_started``); that platform's
``clean`` undoes the mechanism (the local platform kills the run's surviving
processes, proven by pid, start time and the run's marker; a cluster platform
restores the objects the journal recorded). Every fault the journal shows as
applied and not reverted is then recorded as reverted by ``clean``.
"""

from __future__ import annotations

import signal
from pathlib import Path

from chaos.errors import InputError
from chaos.platforms import platform_factory
from chaos.proc import is_same_process, kill_group
from chaos.rundir import JOURNAL_FILE
from chaos.rundir.journal import Journal, JournalEntry, read_journal, unreverted_plans


def _refuse_unsafe(run_dir: Path) -> None:
    """A run directory is never ``/`` or a home directory, and holds a journal."""
    resolved = run_dir.resolve()
    homes = {Path.home().resolve(), Path("/root"), Path("/home")}
    if resolved == Path("/") or resolved in homes or resolved.parent == Path("/home"):
        raise InputError(f"{run_dir}: refusing to clean {resolved}: not a run directory")
    if not (run_dir / JOURNAL_FILE).is_file():
        raise InputError(f"{run_dir}: no journal here ({JOURNAL_FILE}); is it a run directory?")


def _platform_name(entries: list[JournalEntry]) -> str:
    for entry in entries:
        if entry.kind == "run_started":
            return entry.get_str("platform", "local") or "local"
    return "local"


def _traffic_leftovers(entries: list[JournalEntry]) -> list[str]:
    """Kill the run's Locust processes still alive, proven by pid, start time and marker."""
    marker = next((e.get_str("marker") for e in entries if e.kind == "run_started"), "")
    lines: list[str] = []
    for entry in entries:
        processes = entry.data.get("processes")
        if entry.kind != "traffic_started" or not isinstance(processes, list):
            continue
        for item in processes:
            if not (isinstance(item, list) and len(item) == 2):
                continue
            pid, ticks = item
            if not (isinstance(pid, int) and isinstance(ticks, int)):
                continue
            if is_same_process(pid, ticks, marker) and kill_group(pid, signal.SIGKILL):
                lines.append(f"killed leftover traffic process (pid {pid})")
    return lines


def clean_run(run_dir: Path) -> list[str]:
    """Undo every applied-but-not-reverted fault of ``run_dir``; lines saying what was done."""
    _refuse_unsafe(run_dir)
    entries = read_journal(run_dir)
    if not entries:
        raise InputError(f"{run_dir}: the journal has no entries; is it a run directory?")
    platform = platform_factory(_platform_name(entries))()
    lines = platform.clean(run_dir, entries) + _traffic_leftovers(entries)
    pending = unreverted_plans(entries)
    with Journal(run_dir) as journal:
        for entry in pending:
            fault_id = entry.get_str("fault_id")
            journal.write("fault_reverted", fault_id=fault_id, by="clean")
            lines.append(f"reverted {fault_id}")
    if not lines:
        lines.append("nothing to clean: every applied fault was reverted, no process is left")
    return lines
