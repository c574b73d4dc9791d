"""The finish step at scale: analysis, results, report, JUnit and history of N samples.

:func:`write_scale_run` writes a run directory as a real run leaves it before its
finish step: sample chunks of 1,000 rows (what the recorder writes), the
experiment file, the journal, the engine's window records in ``scale-records.json``
and the write ids ``payments`` recorded, per window, in ``scale-recorded.npz``.
Traffic is a constant 5,000 requests/s, open loop (each request has a small lag
behind its schedule), as in a soak; the run is two setups times three repetitions
of an abort fault, so N samples means N / 5,000 seconds of windows. A quarter of
the requests are POSTs carrying a write id; a few acknowledged writes are missing
from the record and a few recorded twice, so the write check has work.

:func:`measure_finish` runs :func:`chaos.engine.finish.finish` on such a directory in
a fresh Python process and reports its wall time and the process's peak
resident memory (``ru_maxrss``), with the memory the process held before the
finish step (interpreter and imports) alongside.

Run as ``python -m chaos.bench.finish_scale measure RUN_DIR`` (prints JSON).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from chaos.rundir import EXPERIMENT_FILE, JOURNAL_FILE
from chaos.rundir.samples import samples_dir
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, experiment_yaml

RATE_RPS = 5000.0
SETUPS = ("sidecar", "mesh")
REPETITIONS = 3
FAULT = "abort-checkout"
RECORDS_FILE = "scale-records.json"
RECORDED_FILE = "scale-recorded.npz"
#: Fewest samples whose windows' recovery (half a window) is the 1 s ``recovered_for``.
MIN_SAMPLES = 60_000
CHUNK_ROWS = 1000
#: Seconds from revert until the abort's errors stop, per setup.
RECOVERY_S = {"sidecar": 2.0, "mesh": 0.5}
#: Every how many acknowledged writes one is missing from the record, and one recorded twice.
LOST_EVERY, DUPLICATED_EVERY = 7_919, 7_907
# names[0] must be "": the chunk format's empty string
_NAMES = ["", "/", "/api/pay", "GET", "POST", "http"]
_BROWSE, _PAY, _GET, _POST, _HTTP = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class ScaleWindow:
    """One window as the engine records it (monotonic seconds)."""

    setup: str
    repetition: int
    warmup_start_t: float
    inject_t: float
    revert_t: float
    end_t: float


@dataclass(frozen=True)
class FinishMeasure:
    """Wall time, CPU time and memory of one finish step."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    before_rss_mb: float
    exit_code: int


def _window_plan(samples: int) -> list[ScaleWindow]:
    seconds = samples / RATE_RPS / (len(SETUPS) * REPETITIONS)
    warmup, hold = 0.25 * seconds, 0.25 * seconds
    windows, t = [], 1000.0
    for rep in range(REPETITIONS):
        for setup in SETUPS:
            inject = t + warmup
            windows.append(ScaleWindow(setup, rep, t, inject, inject + hold, t + seconds))
            t += seconds + 1.0
    return windows


def write_scale_run(run_dir: Path, samples: int, seed: int = 11) -> list[ScaleWindow]:
    """A run directory with about ``samples`` samples, ready for the finish step."""
    from chaos.rundir.chunks import encode_coded_chunk  # not at the top: old trees measure too

    if samples < MIN_SAMPLES:
        raise ValueError(f"samples must be at least {MIN_SAMPLES:,} (a window's recovery >= 1 s)")
    run_dir.mkdir(parents=True, exist_ok=True)
    windows = _window_plan(samples)
    spec = SyntheticRun(
        experiment_name="scale",
        setups=SETUPS,
        faults=(SyntheticFault(FAULT),),
        repetitions=REPETITIONS,
        warmup_s=round(windows[0].inject_t - windows[0].warmup_start_t, 3),
        hold_s=round(windows[0].revert_t - windows[0].inject_t, 3),
        recovery_window_s=round(windows[0].end_t - windows[0].revert_t, 3),
        rate_rps=RATE_RPS,
    )
    (run_dir / EXPERIMENT_FILE).write_text(experiment_yaml(spec), encoding="utf-8")
    rng = np.random.default_rng(seed)
    recorded: list[npt.NDArray[np.int64]] = []  # per window, in the order of ``windows``
    journal: list[str] = []
    path = samples_dir(run_dir) / "samples-0-scale.chs"
    path.parent.mkdir(parents=True, exist_ok=True)
    next_id = 0
    with path.open("wb") as out:
        for w in windows:
            n = int((w.end_t - w.warmup_start_t) * RATE_RPS)
            t = w.warmup_start_t + (np.arange(n) + rng.uniform(0.0, 1.0, n)) / RATE_RPS
            latency = rng.lognormal(np.log(4.0), 0.25, n)
            # open loop (the default): every request carries its lag behind the schedule
            lag = rng.exponential(0.3, n)
            failing = (t >= w.inject_t + 0.05) & (t < w.revert_t + RECOVERY_S[w.setup])
            latency[failing] = 0.5
            status = np.where(failing, 503, 200).astype(np.int32)
            kind = np.where(failing, _HTTP, 0)
            pay = np.arange(n) % 4 == 3
            ids = np.zeros(n, dtype=np.int64)
            ids[pay] = np.arange(next_id, next_id + int(pay.sum())) + 1
            next_id += int(pay.sum())
            acked = ids[pay & ~failing]
            keep = acked[acked % LOST_EVERY != 0]
            again = acked[acked % DUPLICATED_EVERY == 0]
            recorded.append(np.concatenate((keep, again)))
            for lo in range(0, n, CHUNK_ROWS):
                hi = min(n, lo + CHUNK_ROWS)
                part = ids[lo:hi]
                written = np.flatnonzero(part)
                codes = np.zeros(hi - lo, dtype=np.int64)
                codes[written] = len(_NAMES) + np.arange(len(written))
                names = _NAMES + [f"w{i}" for i in part[written]]
                out.write(
                    encode_coded_chunk(
                        t[lo:hi],
                        latency[lo:hi],
                        status[lo:hi],
                        (
                            np.where(pay[lo:hi], _PAY, _BROWSE),
                            np.where(pay[lo:hi], _POST, _GET),
                            kind[lo:hi],
                            codes,
                        ),
                        names,
                        send_lag_ms=lag[lo:hi],
                    )
                )
            ids_ = {"setup": w.setup, "fault": FAULT, "repetition": w.repetition}
            for kind_name, at in (("fault_injected", w.inject_t), ("fault_reverted", w.revert_t)):
                entry = {"kind": "event", "t": at, "event": kind_name, "subject": "checkout-0"}
                journal.append(json.dumps({**entry, "utc": "2026-01-01T00:00:00+00:00", **ids_}))
    (run_dir / JOURNAL_FILE).write_text("".join(j + "\n" for j in journal), encoding="utf-8")
    payload = {"windows": [asdict(w) for w in windows]}
    (run_dir / RECORDS_FILE).write_text(json.dumps(payload), encoding="utf-8")
    ends = np.cumsum([len(r) for r in recorded])
    np.savez(run_dir / RECORDED_FILE, ids=np.concatenate(recorded), ends=ends)
    return windows


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _finish_here(run_dir: Path) -> FinishMeasure:
    """Run the finish step in this process (``measure_finish`` calls this in a fresh one)."""
    from chaos.engine.finish import finish
    from chaos.engine.records import WindowKey, WindowRecord
    from chaos.experiment import load_experiment
    from chaos.rundir.writes import RecordedWrites
    from chaos.testing.fake_platform import FakePlatform

    payload = json.loads((run_dir / RECORDS_FILE).read_text(encoding="utf-8"))
    with np.load(run_dir / RECORDED_FILE) as recorded:
        ids = np.split(recorded["ids"], recorded["ends"][:-1])
        records = [
            WindowRecord(
                key=WindowKey(w["setup"], 0, FAULT, w["repetition"]),
                fault_type="abort",
                warmup_start_t=w["warmup_start_t"],
                inject_t=w["inject_t"],
                revert_t=w["revert_t"],
                end_t=w["end_t"],
                # as the engine holds them (keys, not strings), one window's ids at a time
                recorded_writes=RecordedWrites.from_ids(f"w{i}" for i in window_ids),
            )
            for w, window_ids in zip(payload["windows"], ids, strict=True)
        ]
    del payload, ids
    experiment = load_experiment(run_dir / EXPERIMENT_FILE)
    before = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = finish(
        experiment,
        FakePlatform(),
        run_dir,
        records,
        started_utc="2026-01-01T00:00:00+00:00",
        aborted_reason=None,
        history=run_dir / "history.sqlite",
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return FinishMeasure(
        round(seconds, 3), round(cpu, 3), round(_rss_mb(), 1), round(before, 1), outcome.exit_code
    )


def measure_finish(
    run_dir: Path, python: str = sys.executable, timeout_s: float = 300.0
) -> FinishMeasure:
    """Time the finish step on ``run_dir`` in a fresh process (so its peak memory is its own)."""
    done = subprocess.run(
        [python, "-m", "chaos.bench.finish_scale", "measure", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the finish step failed on {run_dir}: {tail}")
    return FinishMeasure(**json.loads(done.stdout))


def main(argv: list[str]) -> int:
    """``measure RUN_DIR``: finish step on RUN_DIR, JSON on stdout; ``write RUN_DIR N``."""
    if len(argv) == 2 and argv[0] == "measure":
        print(json.dumps(asdict(_finish_here(Path(argv[1])))))
        return 0
    if len(argv) == 3 and argv[0] == "write":
        write_scale_run(Path(argv[1]), int(argv[2]))
        return 0
    print(
        "usage: python -m chaos.bench.finish_scale measure RUN_DIR | write RUN_DIR N",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
