"""The runner's own faults with real Envoy and Locust: the window breaks, is reverted, is named.

Each case breaks something the runner depends on in the middle of a run: Envoy does
not start in a later window, a pod's port is taken by another program, Locust is
killed during the hold, the disk under the samples fills. Each gives one line on
stderr, every fault applied is reverted, ``results.json`` and the report list the
window as broken with its reason, and the run exits 4 (see ``chaos.engine.finish``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.engine.finish import EXIT_BROKEN, finish
from chaos.engine.records import schedule
from chaos.engine.run import Engine, RunOptions, copy_experiment
from chaos.experiment import Setup, load_experiment
from chaos.platforms.local.envoy_process import ENVOY_ENV, envoy_binary
from chaos.platforms.local.platform import LocalPlatform
from chaos.platforms.shared.layout import build_layout
from chaos.rundir import REPORT_FILE, RESULTS_FILE, SAMPLES_DIR, TOPOLOGIES_DIR
from chaos.rundir.journal import read_journal
from chaos.rundir.samples import load_samples
from tests.conftest import lease_slot
from tests.integration.conftest_faults import (
    CliRun,
    assert_nothing_left,
    cli_argv,
    cli_env,
    fault_steps,
    popen_run,
    processes_mentioning,
    wait_for,
    write_experiment,
)

pytestmark = pytest.mark.slow


def _start(
    tmp_path: Path,
    slot: int,
    experiment: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    prelude: str = "",
) -> CliRun:
    run_dir = tmp_path / "run"
    argv = cli_argv(
        "run",
        str(experiment),
        "--out",
        str(run_dir),
        "--set",
        "timeline.warmup=1s",
        "--history",
        str(tmp_path / "history.db"),
        *extra,
        prelude=prelude,
    )
    return popen_run(argv, tmp_path, run_dir, {**cli_env(slot), **(env or {})})


def _broken(run: CliRun) -> list[dict[str, object]]:
    document = json.loads((run.run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    broken: list[dict[str, object]] = document["broken"]
    return broken


def _assert_written_up(run: CliRun, reason: str) -> None:
    """results.json, the report and stderr name the broken window; one line, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("window broken: ")]
    assert len(lines) == 1 and reason in lines[0], run.stderr
    html = (run.run_dir / REPORT_FILE).read_text(encoding="utf-8")
    assert "Broken windows: 1" in html and "windows broken (exit 4)" in html
    meta = json.loads((run.run_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["exit_code"] == EXIT_BROKEN and meta["parameters"]["broken_windows"] == 1


#: How long the broken window's topology waits for readiness (the default, 30 s, would be
#: waited in full: a crash loop never becomes ready). Other windows keep the default, so a
#: slow machine's start-up is not cut short.
BROKEN_READY_S = 3.0

#: Run first in the runner's process: a topology whose directory names ``BROKEN`` waits
#: ``READY_S``.
_SHORT_WAIT_WHEN_BROKEN = """
import dataclasses as _dc
from chaos.platforms.local.topology import LocalTopology as _Topology
_init = _Topology.__init__
def _short_wait_when_broken(self, options):
    if BROKEN in f"{options.run_dir}/":
        options = _dc.replace(options, ready_timeout_s=READY_S)
    _init(self, options)
_Topology.__init__ = _short_wait_when_broken
"""


def test_envoy_that_fails_to_start_in_a_later_window(tmp_path: Path, free_slot: int) -> None:
    """In the second window, the Envoy binary exits at once: that window breaks.

    The wrapper knows the second window by its topology's directory (which its config
    paths name), not by a moment: that window may start during the first one's recovery.
    """
    broken_dir = f"/{TOPOLOGIES_DIR}/sidecar-checkout-500-2/"
    wrapper = tmp_path / "envoy"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"{broken_dir}"*) echo "envoy: cannot start (the test broke it)" >&2; '
        "exit 1;; esac\n"
        f'exec "{envoy_binary()}" "$@"\n'
    )
    wrapper.chmod(0o755)
    experiment = write_experiment(tmp_path, hold="2s")
    prelude = f"BROKEN, READY_S = {broken_dir!r}, {BROKEN_READY_S!r}\n" + _SHORT_WAIT_WHEN_BROKEN
    run = _start(
        tmp_path,
        free_slot,
        experiment,
        "--set",
        "repetitions=2",
        env={ENVOY_ENV: str(wrapper)},
        prelude=prelude,
    )
    code = run.wait(timeout_s=120)

    assert code == EXIT_BROKEN, f"exit code {code}\n{run.stderr}"
    (broken,) = _broken(run)
    assert broken["repetition"] == 1 and broken["phase"] == "start"
    assert broken["injected"] is False
    assert "not ready within" in str(broken["reason"]) and ".proxy (" in str(broken["reason"])
    _assert_written_up(run, "sidecar/checkout-500#2 in start: ")
    # The first window was measured, the second touched nothing.
    runs = json.loads((run.run_dir / RESULTS_FILE).read_text())["runs"]
    assert [r["repetition"] for r in runs] == [0]
    assert list(fault_steps(run.journal()).values()) == [
        ["fault_planned", "fault_applied", "fault_verified", "fault_reverted"]
    ]
    assert_nothing_left(run)


def test_a_port_taken_in_the_middle_of_a_run(tmp_path: Path, free_slot: int) -> None:
    """Another program holds a pod's port of the setup that runs second: that window breaks
    at its start, the first one runs. The port is taken before the run starts (the next
    window's topology may come up during the first one's recovery, so taking it later
    would race that start); the run's own seeded schedule says which setup is second."""
    experiment = write_experiment(tmp_path, hold="2s")
    overrides = ("setups=[sidecar, mesh]",)
    first, later = (k.setup for k in schedule(load_experiment(experiment, overrides)))
    with lease_slot() as second_slot:
        slot = second_slot if later is Setup.MESH else free_slot
        pod = build_layout(later, tmp_path, slot=slot, ingress_port=1).pods[-1]
        port = pod.ports["app"] if "app" in pod.ports else next(iter(pod.ports.values()))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind((pod.address, port))
            taken.listen()
            run = _start(
                tmp_path,
                free_slot,
                experiment,
                "--set",
                overrides[0],
                "--slot",
                f"mesh={second_slot}",
            )
            code = run.wait(timeout_s=120)

    assert code == EXIT_BROKEN, f"exit code {code}\n{run.stderr}"
    (broken,) = _broken(run)
    assert broken["setup"] == later.value and broken["phase"] == "start"
    assert f"{pod.address}:{port}" in str(broken["reason"]), broken
    _assert_written_up(run, f"{later.value}/checkout-500#1 in start: ")
    runs = json.loads((run.run_dir / RESULTS_FILE).read_text())["runs"]
    assert [r["setup"] for r in runs] == [first.value]
    assert_nothing_left(run)


def test_locust_killed_during_the_hold(tmp_path: Path, free_slot: int) -> None:
    experiment = write_experiment(tmp_path, hold="8s")
    run = _start(tmp_path, free_slot, experiment)
    run.wait_for_entry("fault_applied", timeout_s=60)
    locust = [p for p in processes_mentioning(str(run.run_dir)) if b"-m\0locust\0" in _cmdline(p)]
    assert len(locust) == 1, locust
    os.kill(locust[0], signal.SIGKILL)
    killed_t = time.monotonic()
    code = run.wait(timeout_s=60)

    assert code == EXIT_BROKEN, f"exit code {code}\n{run.stderr}"
    (broken,) = _broken(run)
    assert broken["phase"] == "hold" and broken["injected"] is True
    reason = f"Locust main (pid {locust[0]}) was killed by signal 9"
    assert reason in str(broken["reason"])
    _assert_written_up(run, reason)
    entries = run.journal()
    # Reverted within about a tick of the kill, not at the end of the 8 s hold.
    assert list(fault_steps(entries).values()) == [
        ["fault_planned", "fault_applied", "fault_reverted"]
    ]
    reverted = next(e for e in entries if e.kind == "fault_reverted")
    applied = next(e for e in entries if e.kind == "fault_applied")
    assert reverted.t - applied.t < 6.0, reverted.t - applied.t
    assert time.monotonic() - killed_t < 60
    assert_nothing_left(run)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``path`` for the block (skips when mount is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _fill(directory: Path) -> int:
    """Write zeros into ``directory`` until the disk is full; the bytes written."""
    written = 0
    with (directory / "filler").open("wb", buffering=0) as f:
        block = b"\0" * 4096
        while True:
            try:
                written += f.write(block) or 0
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written


def test_the_samples_disk_fills_during_the_hold(tmp_path: Path, free_slot: int) -> None:
    """Locust ends with 64 + ENOSPC, the window breaks, the fault is reverted, samples readable."""
    experiment = load_experiment(write_experiment(tmp_path, hold="8s"), ["timeline.warmup=1s"])
    run_dir = tmp_path / "run"
    copy_experiment(tmp_path / "tiny.yaml", run_dir)
    platform = LocalPlatform(slots={"sidecar": free_slot})
    engine = Engine(experiment, platform, RunOptions(run_dir=run_dir, tick_s=0.2))
    window_dir = run_dir / SAMPLES_DIR / "sidecar-checkout-500-1"
    with _tmpfs(window_dir, "2m"):
        filled: list[int] = []

        def fill_once_injected() -> None:
            if wait_for(
                lambda: any(e.kind == "fault_applied" for e in read_journal(run_dir)), 60.0
            ):
                filled.append(_fill(window_dir))

        filler = threading.Thread(target=fill_once_injected, daemon=True)
        filler.start()
        records = engine.run()
        filler.join(timeout=5)
        outcome = finish(
            experiment,
            platform,
            run_dir,
            records,
            started_utc="2026-11-29T23:00:00+00:00",
            aborted_reason=engine.aborted,
            history=None,
        )
        samples = load_samples(run_dir)  # every complete chunk, no torn one in the way

    assert filled, "the disk was not filled"
    assert engine.aborted is None
    (record,) = records
    assert record.phase == "hold", record
    assert record.error is not None
    assert "could not write its samples: No space left on device (errno 28)" in record.error
    steps = [e.kind for e in read_journal(run_dir) if e.kind.startswith("fault_")]
    assert steps == ["fault_planned", "fault_applied", "fault_reverted"]
    assert outcome.exit_code == EXIT_BROKEN
    assert [b.reason for b in outcome.broken] == [record.error]
    assert len(samples) > 0
    assert (run_dir / REPORT_FILE).is_file()
