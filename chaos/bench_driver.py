"""The traffic driver's CPU per request, side by side with plain Locust ``FastHttpUser``.

A real Envoy answering ``GET /`` with a ``direct_response`` is the target (pinned to
the first core when the machine has two or more); each load generator runs in its own
Locust process (pinned to the second core) against it, one after the other, with the
order interleaved over repetitions. For each run the Locust process's CPU time
(``utime + stime`` from ``/proc/<pid>/stat``) and the requests Envoy completed are
read at the start and the end of a steady window after a warm-up, so start-up and
shut-down cost are left out: CPU per request = CPU seconds / requests in the window.

The tool's driver must also lose no sample: every request Envoy saw in the whole run
is a sample in the run directory (dropped requests, which Envoy never saw, apart).

Each driver row has a plain Locust baseline in the same mode: ``FastHttpUser``, the
same users, target, pinning and spawn rate, no recording. Closed loop: the driver at a
rate it cannot reach (50,000/s) against plain users with ``constant(0)``. Open loop:
the driver's arrival schedule at 2,000/s against plain Locust keeping the same even
schedule (a shared next slot and 20 sender greenlets, no cap, drops or recording: the
like-for-like baseline), and, as a reference, against plain Locust's cheapest pacing,
``constant_throughput(rate / users)`` per user. That one keeps no schedule: its users'
sends bunch up, and the event loop serves a bunch in one wake-up where evenly spaced
arrivals cost one each, so it is cheaper per request than any even schedule.

Call :func:`measure_driver_cost` (the bench calls it; it returns a
:class:`DriverCostReport`), or run
``python -m chaos.bench_driver [--window 5] [--repeats 3] [--json FILE]``.
Loopback only; every process is ended by its own pid; bounded in time (about
``repeats * drivers * (window + 6) s``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.errors import ChaosError, ProcessError, StartupError
from chaos.platforms.local.envoy_process import envoy_binary
from chaos.proc import spawn, stop_processes
from chaos.rundir.samples import DROPPED, load_samples, samples_dir
from chaos.traffic.config import CLOSED, OPEN, Endpoint, TrafficConfig
from chaos.traffic.runner import TrafficRun

HOST = "127.0.0.1"
_STAT_PREFIX = "bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_WARMUP_S = 1.0
_STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DriverSpec:
    """One load generator to measure: plain Locust or the tool's driver, and its load."""

    name: str
    #: "plain" (a bare FastHttpUser locustfile, paced per user), "plain-open" (a bare
    #: FastHttpUser keeping an even arrival schedule), or "driver" (chaos.traffic,
    #: recording on)
    kind: str
    #: Locust users; for "plain-open" and an open-loop driver, the requests in flight.
    users: int = 20
    #: Requests per second in all; None: as fast as it goes (plain: no wait at all).
    rate: float | None = None
    mode: str = OPEN
    #: The plain Locust row this one is compared with (same target, same load).
    baseline: str | None = None
    #: A second plain row to compare with, shown apart (the open loop's cheapest pacing).
    reference: str | None = None


#: The default comparison: as fast as each goes, and at one fixed rate both can carry.
_PLAIN_FAST = "plain FastHttpUser, no wait"
_PLAIN_PACED = "plain constant_throughput, 2,000/s"
_PLAIN_OPEN = "plain open loop, 2,000/s"
DEFAULT_DRIVERS: tuple[DriverSpec, ...] = (
    DriverSpec(_PLAIN_FAST, "plain"),
    DriverSpec(
        "driver closed loop, rate 50,000", "driver", rate=50_000.0, mode=CLOSED,
        baseline=_PLAIN_FAST,
    ),
    DriverSpec(_PLAIN_PACED, "plain", rate=2_000.0),
    DriverSpec(_PLAIN_OPEN, "plain-open", rate=2_000.0),
    DriverSpec(
        "driver open loop, 2,000/s", "driver", rate=2_000.0,
        baseline=_PLAIN_OPEN, reference=_PLAIN_PACED,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DriverRun:
    """One measured window of one load generator."""

    name: str
    window_s: float
    cpu_s: float
    requests: int
    #: The whole run: requests Envoy completed, samples recorded (driver only), dropped.
    envoy_requests_total: int
    samples_recorded: int | None
    samples_dropped: int | None

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("inf")

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window_s

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second of the window (1.0 is one busy core)."""
        return self.cpu_s / self.window_s


@dataclass(frozen=True)
class DriverCost:
    """One load generator over the repetitions: medians, and every request accounted for."""

    name: str
    runs: list[DriverRun] = field(default_factory=list)
    spec: DriverSpec | None = None

    @property
    def cpu_us_per_request(self) -> float:
        """Median CPU microseconds per request (the figure compared)."""
        return statistics.median(r.cpu_us_per_request for r in self.runs)

    @property
    def requests_per_s(self) -> float:
        """Median requests per second Envoy completed in the measured windows."""
        return statistics.median(r.requests_per_s for r in self.runs)

    @property
    def requests_sent(self) -> int:
        """Requests Envoy completed over the whole runs (start-up and shut-down included)."""
        return sum(r.envoy_requests_total for r in self.runs)

    @property
    def samples_recorded(self) -> int | None:
        """Samples of sent requests in the run directories (driver only; None for plain)."""
        recorded = [r.samples_recorded for r in self.runs if r.samples_recorded is not None]
        return sum(recorded) if recorded else None

    @property
    def samples_dropped(self) -> int | None:
        """Open-loop requests recorded as dropped (never sent: the cap was full)."""
        dropped = [r.samples_dropped for r in self.runs if r.samples_dropped is not None]
        return sum(dropped) if dropped else None

    @property
    def samples_lost(self) -> int | None:
        """Requests Envoy completed that have no sample (driver runs only)."""
        lost = [
            r.envoy_requests_total - r.samples_recorded
            for r in self.runs
            if r.samples_recorded is not None
        ]
        return sum(lost) if lost else None


@dataclass(frozen=True)
class DriverCostReport:
    """What :func:`measure_driver_cost` returns: every generator, and each driver's ratio.

    ``generators`` is in the order of the specs measured; ``ratio(name)`` is a
    driver's median CPU per request over its like-for-like plain baseline's (1.05 is
    the goal), ``reference_ratio(name)`` over its reference row's where it has one.
    ``load_average`` is ``os.getloadavg()`` before and after: the figures are only as
    steady as the machine was.
    """

    window_s: float
    repeats: int
    generators: tuple[DriverCost, ...]
    load_average: tuple[tuple[float, float, float], tuple[float, float, float]]
    #: Cores the Envoy target and the load generators were pinned to (None: not pinned).
    cores: tuple[int | None, int | None]

    def get(self, name: str) -> DriverCost:
        """The generator called ``name``."""
        for cost in self.generators:
            if cost.name == name:
                return cost
        raise KeyError(name)

    def baseline_of(self, name: str) -> DriverCost | None:
        """The plain Locust row a driver row is compared with (None for a plain row)."""
        spec = self.get(name).spec
        return self.get(spec.baseline) if spec is not None and spec.baseline else None

    def ratio(self, name: str) -> float | None:
        """CPU per request of ``name`` over its baseline's; None without a baseline."""
        base = self.baseline_of(name)
        if base is None:
            return None
        return self.get(name).cpu_us_per_request / base.cpu_us_per_request

    def reference_ratio(self, name: str) -> float | None:
        """CPU per request of ``name`` over its reference row's (``DriverSpec.reference``)."""
        spec = self.get(name).spec
        if spec is None or not spec.reference:
            return None
        return self.get(name).cpu_us_per_request / self.get(spec.reference).cpu_us_per_request

    @property
    def samples_lost(self) -> int:
        """Requests sent and not recorded, over every driver run (0 is the goal)."""
        return sum(c.samples_lost or 0 for c in self.generators)


# -- the target ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _bootstrap(port: int, admin_port: int) -> dict[str, object]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": _STAT_PREFIX,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        # workers' counters reach /stats only at a flush (every 5 s by default): flush on
        # each admin read, so a window's count is exact
        "stats_flush_on_admin": True,
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": HOST, "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ]
        },
    }  # fmt: skip


@dataclass(frozen=True)
class Target:
    """The Envoy being loaded: its URL and a way to read how many requests it completed."""

    url: str
    admin_url: str
    pid: int

    def completed(self) -> int:
        """Requests Envoy has completed so far (``downstream_rq_completed``)."""
        name = f"http.{_STAT_PREFIX}.downstream_rq_completed"
        with urllib.request.urlopen(f"{self.admin_url}/stats?filter=^{name}$", timeout=5) as r:
            text = bytes(r.read()).decode()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return int(value)
        return 0


@contextmanager
def envoy_target(work: Path, core: int | None) -> Iterator[Target]:
    """A real Envoy answering every request with 200 "ok", on loopback; ended by its pid."""
    port, admin_port = _free_port(), _free_port()
    config = work / "envoy-target.json"
    config.write_text(json.dumps(_bootstrap(port, admin_port)))
    argv = [
        str(envoy_binary()), "--config-path", str(config), "--disable-hot-restart",
        "--concurrency", "1", "--log-level", "error", "--log-path", str(work / "envoy.log"),
    ]  # fmt: skip
    proc = spawn(argv, log_path=work / "envoy.out", name="Envoy target")
    try:
        admin = f"http://{HOST}:{admin_port}"
        deadline = time.monotonic() + 15.0
        while True:
            try:
                with urllib.request.urlopen(f"{admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StartupError(f"the Envoy target did not get ready (see {work}/envoy.out)")
            time.sleep(0.05)
        if core is not None:
            pin(proc.pid, core)
        yield Target(f"http://{HOST}:{port}", admin, proc.pid)
    finally:
        stop_processes([proc], 3.0)


# -- measuring a process ------------------------------------------------------------------


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to one core (best effort: a thread may have ended)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except OSError:
            continue


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (``/proc/<pid>/stat``, all threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def _cores() -> tuple[int | None, int | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


# -- the load generators ------------------------------------------------------------------

_PLAIN_LOCUSTFILE = """\
from locust import FastHttpUser, constant, constant_throughput, task

class Plain(FastHttpUser):
    wait_time = {wait}

    @task
    def get(self):
        self.client.get("/")
"""


# The like-for-like baseline of the open-loop driver: plain Locust keeping an even
# arrival schedule (one shared next slot, ``users`` long-lived senders), without its
# cap, drops, lag or recording. Spawning a greenlet per request instead costs more.
_PLAIN_OPEN_LOCUSTFILE = """\
import random
import time

import gevent
from locust import FastHttpUser, constant, task

PERIOD = 1.0 / {rate}


class PlainOpen(FastHttpUser):
    concurrency = {senders}
    wait_time = constant(1.0)

    def on_start(self):
        self.due = time.monotonic() + random.uniform(0.0, PERIOD)
        self.senders = [gevent.spawn(self.send_from) for _ in range({senders})]

    def send_from(self):
        while True:
            due = self.due
            self.due = due + PERIOD
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            self.client.get("/")

    def on_stop(self):
        gevent.killall(self.senders)

    @task
    def idle(self):
        pass
"""


def _plain_locustfile(work: Path, spec: DriverSpec) -> Path:
    path = work / f"plain-{os.getpid()}-{time.monotonic_ns()}.py"
    if spec.kind == "plain-open":
        if spec.rate is None:
            raise ValueError(f"{spec.name}: a plain open loop needs a rate")
        path.write_text(_PLAIN_OPEN_LOCUSTFILE.format(rate=spec.rate, senders=spec.users))
        return path
    wait = "constant(0)" if spec.rate is None else f"constant_throughput({spec.rate / spec.users})"
    path.write_text(textwrap.dedent(_PLAIN_LOCUSTFILE.format(wait=wait)))
    return path


def _window(
    pid: int, target: Target, before: int, window_s: float, core: int | None
) -> tuple[float, int]:
    """CPU seconds of ``pid`` and requests Envoy completed over a window.

    The window opens a warm-up after the first request reached Envoy, so Locust's
    start-up (imports, spawning users) is not counted.
    """
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while target.completed() <= before:
        if time.monotonic() > deadline:
            raise StartupError(f"no request reached the Envoy target in {_STARTUP_TIMEOUT_S} s")
        time.sleep(0.05)
    time.sleep(_WARMUP_S)
    if core is not None:
        pin(pid, core)  # again: Locust may have started threads since
    cpu0, rq0 = process_cpu_s(pid), target.completed()
    time.sleep(window_s)
    cpu1, rq1 = process_cpu_s(pid), target.completed()
    return cpu1 - cpu0, rq1 - rq0


def _run_plain(
    spec: DriverSpec, target: Target, work: Path, window_s: float, core: int | None
) -> DriverRun:
    locustfile = _plain_locustfile(work, spec)
    # a backstop only: the run is ended (SIGTERM) right after the window, since Locust's
    # own timer can fire seconds early on a busy machine (gevent's clock is stale then)
    run_time = math.ceil(_STARTUP_TIMEOUT_S + _WARMUP_S + window_s)
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--host", target.url,
        "--headless", "--users", str(1 if spec.kind == "plain-open" else spec.users),
        "--spawn-rate", "1000",
        "--run-time", f"{run_time}s", "--only-summary", "--exit-code-on-error", "0",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    before = target.completed()
    proc = spawn(argv, env=env, log_path=work / "plain-locust.out", name="plain Locust")
    try:
        if core is not None:
            pin(proc.pid, core)
        cpu, requests = _window(proc.pid, target, before, window_s, core)
    finally:
        stop_processes([proc], 5.0)
    return DriverRun(spec.name, window_s, cpu, requests, target.completed() - before, None, None)


def _run_driver(
    spec: DriverSpec, target: Target, work: Path, window_s: float, core: int | None
) -> DriverRun:
    out = Path(tempfile.mkdtemp(prefix="driver-", dir=work))
    config = TrafficConfig(
        host=target.url,
        out_dir=out,
        # a backstop only, as for plain Locust: the run is stopped right after the window
        duration_s=_STARTUP_TIMEOUT_S + _WARMUP_S + window_s,
        startup_timeout_s=_STARTUP_TIMEOUT_S,
        users=spec.users,
        spawn_rate=1000.0,
        rate=spec.rate or 50_000.0,
        mode=spec.mode,
        endpoints=(Endpoint("get", "GET", "/"),),
    )
    before = target.completed()
    with TrafficRun(config) as run:
        pid = run.pids[0]
        if core is not None:
            pin(pid, core)
        cpu, requests = _window(pid, target, before, window_s, core)
        run.stop(30.0)  # SIGTERM: Locust stops the users, requests under way are recorded
        if any(code != 0 for code in run.returncodes.values()):
            raise ProcessError(f"the driver ended with {run.returncodes}")
    frame = load_samples(samples_dir(out))
    dropped = int((frame["error_kind"] == DROPPED).sum())
    return DriverRun(
        spec.name,
        window_s,
        cpu,
        requests,
        target.completed() - before,
        len(frame) - dropped,
        dropped,
    )


def measure_driver_cost(
    window_s: float = 5.0,
    repeats: int = 3,
    *,
    drivers: Sequence[DriverSpec] = DEFAULT_DRIVERS,
    work_dir: Path | None = None,
) -> DriverCostReport:
    """CPU per request of each load generator against one real Envoy, side by side.

    Each repetition runs every generator once, in a rotated order, for a
    ``window_s``-second measured window after a warm-up. Bounded: about
    ``repeats * len(drivers) * (window_s + 6)`` seconds. Raises
    :class:`~chaos.errors.ChaosError` when a generator cannot start or dies.
    """
    envoy_core, locust_core = _cores()
    load_before = os.getloadavg()
    results = {d.name: DriverCost(d.name, spec=d) for d in drivers}
    with tempfile.TemporaryDirectory(prefix="bench-driver-", dir=work_dir) as tmp:
        work = Path(tmp)
        with envoy_target(work, envoy_core) as target:
            for rep in range(repeats):
                order = list(drivers[rep % len(drivers) :]) + list(drivers[: rep % len(drivers)])
                for spec in order:
                    run = (_run_driver if spec.kind == "driver" else _run_plain)(
                        spec, target, work, window_s, locust_core
                    )
                    results[spec.name].runs.append(run)
    return DriverCostReport(
        window_s=window_s,
        repeats=repeats,
        generators=tuple(results[d.name] for d in drivers),
        load_average=(load_before, os.getloadavg()),
        cores=(envoy_core, locust_core),
    )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(report: DriverCostReport) -> str:
    """A plain-text table of the medians; each driver row against its plain Locust row."""
    head = (
        f"{'load generator':<36} {'CPU µs/req':>10} {'vs plain':>9} {'req/s':>8} "
        f"{'sent':>7} {'recorded':>8} {'dropped':>7} {'lost':>5}"
    )
    lines = [head]
    for c in report.generators:
        ratio = report.ratio(c.name)
        shown = f"{ratio:>8.3f}x" if ratio is not None else " " * 9
        n = _count
        lines.append(
            f"{c.name:<36} {c.cpu_us_per_request:>10.1f} {shown} {c.requests_per_s:>8,.0f} "
            f"{c.requests_sent:>7} {n(c.samples_recorded):>8} {n(c.samples_dropped):>7} "
            f"{n(c.samples_lost):>5}"
        )
    for c in report.generators:
        ref = report.reference_ratio(c.name)
        if ref is not None and c.spec is not None:
            lines.append(f"{c.name} vs {c.spec.reference}: {ref:.3f}x")
    before, after = report.load_average
    lines.append(
        f"window {report.window_s:g} s x {report.repeats} repetitions (medians); "
        f"Envoy on core {report.cores[0]}, Locust on core {report.cores[1]}; "
        f"load average {before[0]:.2f} before, {after[0]:.2f} after"
    )
    return "\n".join(lines)


def to_json(report: DriverCostReport) -> dict[str, object]:
    """The report as plain JSON data: medians, ratios and every run."""
    return {
        "window_s": report.window_s,
        "repeats": report.repeats,
        "load_average": report.load_average,
        "cores": report.cores,
        "generators": [
            {
                "name": c.name,
                "baseline": c.spec.baseline if c.spec else None,
                "reference": c.spec.reference if c.spec else None,
                "cpu_us_per_request": c.cpu_us_per_request,
                "ratio": report.ratio(c.name),
                "reference_ratio": report.reference_ratio(c.name),
                "requests_per_s": c.requests_per_s,
                "requests_sent": c.requests_sent,
                "samples_recorded": c.samples_recorded,
                "samples_dropped": c.samples_dropped,
                "samples_lost": c.samples_lost,
                "runs": [asdict(r) for r in c.runs],
            }
            for c in report.generators
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    args = parser.parse_args(argv)
    try:
        report = measure_driver_cost(args.window, args.repeats)
    except ChaosError as exc:
        print(f"bench_driver: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
