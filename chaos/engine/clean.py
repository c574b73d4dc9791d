"""``clean RUN_DIR``: undo what the journal shows as applied and not reverted.

On the local platform every fault lives in the topology's processes and files
(runtime keys, pushed config, certificates, the identity provider's key), and
those processes die with their runner (process groups and a parent-death
signal). So after a runner was SIGKILLed, undoing a fault means making sure
no process of its topology survived, then recording the revert in the journal.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from chaos.engine.journal import Journal, read_journal, unreverted_plans
from chaos.errors import InputError
from chaos.platforms.local.procutil import kill_group, pid_alive


def _belongs_to(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` still is one of this run's processes, not a stranger that reused it.

    A journal's pids can be days old; every process of a local topology works in (or
    names in its command line) a directory under the run directory.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no way to tell here; the pid is alive and was ours
    root = str(run_dir.resolve())
    try:
        cwd = os.readlink(proc / str(pid) / "cwd")
        cmdline = (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return cwd == root or cwd.startswith(root + os.sep) or root in cmdline


def clean_run(run_dir: Path) -> list[str]:
    """Revert every applied-but-not-reverted fault of ``run_dir``; lines saying what was done."""
    entries = read_journal(run_dir)
    if not entries:
        raise InputError(f"{run_dir}: no journal here (journal.jsonl); is it a run directory?")
    lines: list[str] = []
    survivors = []
    for entry in entries:
        if entry.kind != "topology_up":
            continue
        pids = entry.data.get("pids")
        if isinstance(pids, dict):
            survivors += [
                (name, pid)
                for name, pid in pids.items()
                if isinstance(pid, int) and pid_alive(pid) and _belongs_to(pid, run_dir)
            ]
    for name, pid in survivors:
        kill_group(pid, signal.SIGKILL)
        lines.append(f"killed leftover process {name} (pid {pid})")
    pending = unreverted_plans(entries)
    with Journal(run_dir) as journal:
        for entry in pending:
            fault_id = entry.get_str("fault_id")
            journal.write("fault_reverted", fault_id=fault_id, by="clean")
            lines.append(f"reverted {fault_id}: its topology is gone, and the fault with it")
    if not pending and not survivors:
        lines.append("nothing to clean: every applied fault was reverted")
    return lines
