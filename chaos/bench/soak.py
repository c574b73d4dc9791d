"""``make soak``: one long run with a crash every minute; the runner's memory and its record.

It writes a one-window experiment (sidecar, a steady ``--rate``, the proxy of
payments-0 killed every ``--interval``), runs ``sidecar-chaos run`` on it as a
subprocess for ``--minutes``, and samples that process's resident memory (VmRSS)
every second. Then it checks three things and prints them:

- **memory**: the least-squares slope of the runner's RSS over the hold (after the
  first crash, before the revert; start-up and the final analysis are left out),
  in MB per hour; flat means under ``--max-slope``;
- **record**: every request Locust's own statistics counted (``locust-sent.json``,
  written by each local Locust process at its end) is a sample row the analysis
  loads: ``lost = sent - recorded`` must be 0;
- **report**: the run wrote ``report.html``, and exited 0 or 1 (a hypothesis may
  fail under a crash every minute; 2, 3 and 4 are soak failures).

Run as ``python -m chaos.bench.soak [--minutes 30] [--out DIR] [--slot N]``; exit 0 when
all three hold, 1 when one does not, 2 on bad options. The result is also written
to ``DIR/soak.json``. The test suite runs a 2-minute version.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.rundir import REPORT_FILE, SAMPLES_DIR
from chaos.rundir.journal import read_journal
from chaos.rundir.samples import DROPPED, load_samples
from chaos.traffic.config import SENT_FILE

#: The experiment the soak runs; ``{...}`` are filled from the options.
SOAK_EXPERIMENT = """\
name: soak
description: a steady load for {minutes:g} minutes, the proxy of payments-0 killed every \
{interval:g} s
setups: [sidecar]
repetitions: 1
seed: 1
traffic:
  users: {users}
  spawn_rate: {users}
  rate: {rate:g}
  endpoints:
    - {{name: browse, path: /}}
steady_state:
  max_error_rate: 0.05
  max_p95_ms: 1000
timeline:
  warmup: {warmup:g}s
  hold: {hold:g}s
  recovery: {recovery:g}s
  recovered_for: 2s
faults:
  - type: crash
    name: crash-every-minute
    target: {{service: payments, replica: 0}}
    times: {times}
    interval: {interval:g}s
"""
WARMUP_S = 5.0
RECOVERY_S = 20.0
#: Seconds after the first crash before the memory slope is taken (caches fill, Locust ramps).
SETTLE_S = 10.0
RSS_INTERVAL_S = 1.0
#: Past the planned length, how long the run may take (start-up, teardown, analysis, the
#: report): on a loaded 2-core machine a 30-minute run needed about 4 minutes more
#: (interpreter start 47 s, analysis and report of 81,000 samples 80 s, exit).
GRACE_S = 300.0
#: ... and this share of the planned length on top (the analysis grows with the samples).
GRACE_SHARE = 0.2


@dataclass(frozen=True)
class SoakPlan:
    """How long and how hard; every number the experiment file gets."""

    minutes: float
    rate: float = 50.0
    users: int = 10
    interval_s: float = 60.0

    @property
    def hold_s(self) -> float:
        return max(self.minutes * 60.0 - WARMUP_S - RECOVERY_S, self.interval_s / 2)

    @property
    def crashes(self) -> int:
        """Kills in the hold: one at injection, then one per interval."""
        return min(100, math.floor((self.hold_s - 1e-9) / self.interval_s) + 1)

    def experiment(self) -> str:
        return SOAK_EXPERIMENT.format(
            minutes=self.minutes,
            interval=self.interval_s,
            users=self.users,
            rate=self.rate,
            warmup=WARMUP_S,
            hold=self.hold_s,
            recovery=RECOVERY_S,
            times=self.crashes,
        )


@dataclass
class RssSampler:
    """Samples one process's VmRSS (MB) on the monotonic clock, from its own thread."""

    pid: int
    interval_s: float = RSS_INTERVAL_S
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = read_rss_mb(self.pid)
            if rss is None:
                return
            self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval_s)


def read_rss_mb(pid: int) -> float | None:
    """The resident set of ``pid`` in MB (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return None


def slope_mb_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, MB) in MB per hour; None with fewer than 10 points."""
    if len(samples) < 10:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 3600.0


@dataclass(frozen=True)
class SoakResult:
    """What the soak measured; ``ok`` when memory was flat, nothing was lost, the report built."""

    minutes: float
    crashes: int
    exit_code: int
    rss_start_mb: float | None
    rss_end_mb: float | None
    rss_peak_mb: float | None
    rss_points: int
    slope_mb_per_hour: float | None
    max_slope_mb_per_hour: float
    sent: int
    recorded: int
    report: bool
    run_dir: str

    @property
    def lost(self) -> int:
        return self.sent - self.recorded

    @property
    def ok(self) -> bool:
        flat = (
            self.slope_mb_per_hour is not None
            and self.slope_mb_per_hour <= self.max_slope_mb_per_hour
        )
        return (
            flat and self.lost == 0 and self.sent > 0 and self.report and self.exit_code in (0, 1)
        )

    def lines(self) -> list[str]:
        slope = "n/a" if self.slope_mb_per_hour is None else f"{self.slope_mb_per_hour:+.2f}"
        return [
            f"soak: {self.minutes:g} min, {self.crashes} crashes, run exit code {self.exit_code}",
            f"runner RSS: {_mb(self.rss_start_mb)} at the first crash -> {_mb(self.rss_end_mb)} "
            f"at the revert (peak {_mb(self.rss_peak_mb)}, {self.rss_points} points); "
            f"slope {slope} MB/h (flat: <= {self.max_slope_mb_per_hour:g})",
            f"requests: {self.sent} sent (Locust's count), {self.recorded} recorded, "
            f"{self.lost} lost",
            f"report: {'built' if self.report else 'MISSING'} ({self.run_dir})",
            f"soak {'passed' if self.ok else 'FAILED'}",
        ]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MB"


def sent_requests(run_dir: Path) -> int:
    """Requests Locust counted, summed over the windows' ``locust-sent.json`` files."""
    total = 0
    for path in sorted((run_dir / SAMPLES_DIR).glob(f"*/{SENT_FILE}")):
        total += int(json.loads(path.read_text(encoding="utf-8"))["requests"])
    return total


def _hold_span(run_dir: Path) -> tuple[float, float] | None:
    """Monotonic times of the first ``fault_applied`` and the last ``fault_reverted``."""
    entries = read_journal(run_dir)
    applied = [e.t for e in entries if e.kind == "fault_applied"]
    reverted = [e.t for e in entries if e.kind == "fault_reverted"]
    if not applied or not reverted:
        return None
    return applied[0], reverted[-1]


def run_soak(
    plan: SoakPlan,
    out_dir: Path,
    *,
    slot: int | None = None,
    max_slope: float = 10.0,
    extra_env: dict[str, str] | None = None,
) -> SoakResult:
    """Run the soak into ``out_dir`` (created; must not hold a previous run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    experiment = out_dir / "soak.yaml"
    experiment.write_text(plan.experiment(), encoding="utf-8")
    run_dir = out_dir / "run"
    argv = [
        sys.executable,
        "-c",
        "from chaos.cli.app import main; main()",
        "run",
        str(experiment),
        "--out",
        str(run_dir),
        "--no-history",
    ]
    if slot is not None:
        argv += ["--slot", f"sidecar={slot}"]
    env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    with (out_dir / "runner.out").open("wb") as out, (out_dir / "runner.err").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=out_dir)
    sampler = RssSampler(proc.pid)
    sampler.start()
    try:
        code = proc.wait(timeout=plan.minutes * 60.0 * (1 + GRACE_SHARE) + GRACE_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the runner reverts and tears down on SIGTERM
        code = proc.wait(timeout=60.0)
    finally:
        sampler.stop()
    span = _hold_span(run_dir)
    window = (
        [(t, m) for t, m in sampler.samples if span[0] + SETTLE_S <= t <= span[1]]
        if span is not None
        else []
    )
    samples_root = run_dir / SAMPLES_DIR
    # DROPPED rows (open-loop requests never sent) are no request Locust counted
    recorded = (
        int((load_samples(run_dir)["error_kind"] != DROPPED).sum()) if samples_root.is_dir() else 0
    )
    result = SoakResult(
        minutes=plan.minutes,
        crashes=plan.crashes,
        exit_code=code,
        rss_start_mb=window[0][1] if window else None,
        rss_end_mb=window[-1][1] if window else None,
        rss_peak_mb=max((m for _, m in window), default=None),
        rss_points=len(window),
        slope_mb_per_hour=slope_mb_per_hour(window),
        max_slope_mb_per_hour=max_slope,
        sent=sent_requests(run_dir) if samples_root.is_dir() else 0,
        recorded=recorded,
        report=(run_dir / REPORT_FILE).is_file(),
        run_dir=str(run_dir),
    )
    document = {**asdict(result), "lost": result.lost, "ok": result.ok, "rss": sampler.samples}
    (out_dir / "soak.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between crashes")
    parser.add_argument("--out", type=Path, default=None, help="directory (default: reports/)")
    parser.add_argument("--slot", type=int, default=None, help="third octet of the pods")
    parser.add_argument("--max-slope", type=float, default=10.0, help="flat: MB/h at most")
    args = parser.parse_args(argv)
    if not (0.5 <= args.minutes <= 24 * 60 and 0 < args.rate <= 2000 and args.interval >= 5):
        parser.error("need 0.5 <= --minutes <= 1440, 0 < --rate <= 2000, --interval >= 5")
    if args.slot is not None and not 1 <= args.slot <= 254:
        parser.error("--slot must be within 1..254")
    out = args.out or Path("reports") / time.strftime("soak-%Y%m%d-%H%M%S")
    if (out / "run").exists():
        parser.error(f"--out: {out} holds a previous soak; pick a new directory")
    plan = SoakPlan(args.minutes, rate=args.rate, interval_s=args.interval)
    result = run_soak(plan, out, slot=args.slot, max_slope=args.max_slope)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
