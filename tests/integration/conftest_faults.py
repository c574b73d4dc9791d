"""Helpers for the fault tests: a bounded prober through the ingress, fault specs, drivers.

The prober is the test's own client, independent of the traffic package: it sends
requests one after another at a fixed pace for a few seconds (bounded in count and
time), with a bearer token from the topology's identity provider, and keeps, per
request, the status, the latency and the pods the request crossed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from chaos.experiment import Fault as FaultSpec
from chaos.faults import driver_for
from chaos.faults.base import Fault
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.topology import LocalTopology
from chaos.proc import kill_group, pid_alive
from chaos.rundir.journal import JournalEntry, read_journal

#: Status recorded for a request that got no HTTP answer at all.
NO_ANSWER = 0
REQUEST_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Reply:
    """One probe request: when it was sent (monotonic), what came back, what it crossed."""

    t: float
    status: int
    ms: float
    pods: tuple[str, ...] = ()


@dataclass
class Probe:
    """The replies of one probing period."""

    replies: list[Reply] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.replies)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.replies if r.status == 200)

    @property
    def failed(self) -> int:
        return len(self.replies) - self.ok

    def share(self, status: int) -> float:
        return self.statuses[status] / len(self.replies) if self.replies else 0.0

    def median_ms(self, keep: Callable[[Reply], bool] = lambda r: True) -> float:
        chosen = [r.ms for r in self.replies if r.status == 200 and keep(r)]
        assert chosen, f"no successful reply to take a median of: {self.statuses}"
        return statistics.median(chosen)

    def after(self, t: float) -> Probe:
        return Probe([r for r in self.replies if r.t >= t])

    def __str__(self) -> str:
        return f"{len(self.replies)} requests, statuses {dict(self.statuses)}"


def _pods(body: Any) -> tuple[str, ...]:
    """The pods a demo answer says it crossed, frontend first."""
    found: list[str] = []
    node = body
    while isinstance(node, dict):
        pod = node.get("pod")
        if isinstance(pod, str):
            found.append(pod)
        node = node.get("upstream")
    return tuple(found)


def probe(
    topology: LocalTopology,
    seconds: float,
    *,
    rate: float = 50.0,
    token: Callable[[], str] | None = None,
    until: Callable[[Probe], bool] | None = None,
) -> Probe:
    """Send requests through the ingress at ``rate`` for ``seconds`` (hard stop), one at a time.

    ``token`` gives the bearer token per request (default: one fresh token for the
    period). ``until`` ends the period early once it holds.
    """
    fixed = topology.idp.token()
    get_token = token or (lambda: fixed)
    url = topology.layout.ingress.url + "/"
    result = Probe()
    limit = max(1, int(seconds * rate) + 1)
    start = time.monotonic()
    deadline = start + seconds
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for n in range(limit):
            now = time.monotonic()
            if now >= deadline:
                break
            due = start + n / rate
            if due > now:
                time.sleep(due - now)
            sent = time.monotonic()
            try:
                answer = client.get(url, headers={"Authorization": f"Bearer {get_token()}"})
            except httpx.HTTPError:
                result.replies.append(Reply(sent, NO_ANSWER, (time.monotonic() - sent) * 1000))
                continue
            ms = (time.monotonic() - sent) * 1000
            pods: tuple[str, ...] = ()
            if answer.status_code == 200:
                try:
                    pods = _pods(answer.json())
                except ValueError:
                    pods = ()
            result.replies.append(Reply(sent, answer.status_code, ms, pods))
            if until is not None and until(result):
                break
    return result


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll until ``predicate`` holds or ``timeout_s`` passes; the last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


_FAULT_SPEC: TypeAdapter[FaultSpec] = TypeAdapter(FaultSpec)


def fault_spec(**fields: object) -> FaultSpec:
    """A validated fault spec, written as in an experiment file (durations as strings)."""
    return _FAULT_SPEC.validate_python(fields)


def make_fault(topology: LocalTopology, spec: FaultSpec, seed: int = 1) -> Fault[FaultSpec]:
    """The registered driver of ``spec`` bound to ``topology``."""
    driver: type[Fault[FaultSpec]] = driver_for(spec.type)
    return driver(
        spec,
        LocalFaultOps.of(topology),
        fault_id=f"test-{spec.type}",
        name=spec.name or spec.type,
        seed=seed,
    )


@dataclass
class Applied:
    """A fault applied for the duration of a ``with`` block; reverted on the way out."""

    fault: Fault[FaultSpec]
    applied_t: float = 0.0


@contextlib.contextmanager
def applied(fault: Fault[FaultSpec]) -> Iterator[Applied]:
    """Apply ``fault``; revert it whatever happens (the test may revert earlier itself)."""
    state = Applied(fault)
    try:
        state.applied_t = time.monotonic()
        fault.apply()
        yield state
    finally:
        fault.revert()


# -- the CLI as a subprocess ----------------------------------------------------------------------

#: ``sidecar-chaos`` with every setup's default slot moved to ``$SIDECAR_CHAOS_TEST_SLOT``, so
#: a test run uses a leased free slot (the CLI has no slot option; the defaults 11..13 may be
#: in use by a person's topology). Everything else is the real console entry point.
_CLI = """
import os, sys
from chaos.platforms.shared.layout import DEFAULT_SLOT
slot = int(os.environ["SIDECAR_CHAOS_TEST_SLOT"])
for setup in list(DEFAULT_SLOT):
    DEFAULT_SLOT[setup] = slot
sys.argv[0] = "sidecar-chaos"
from chaos.cli.app import main
main()
"""


def cli_argv(*args: str, prelude: str = "") -> list[str]:
    """The command line that runs ``sidecar-chaos ARGS`` in the leased slot.

    ``prelude`` is Python run first in that process (a test's own hook, e.g. a shorter wait).
    """
    return [sys.executable, "-c", prelude + _CLI, *args]


def cli_env(slot: int) -> dict[str, str]:
    return {**os.environ, "SIDECAR_CHAOS_TEST_SLOT": str(slot), "PYTHONUNBUFFERED": "1"}


TINY_EXPERIMENT = """\
name: tiny
setups: [sidecar]
repetitions: 1
seed: 5
traffic:
  users: 5
  spawn_rate: 5
  rate: 50
  endpoints:
    - {{name: browse, path: /}}
steady_state:
  max_error_rate: 0.01
  max_p95_ms: 500
stop_conditions: [{stop}]
timeline:
  warmup: 5s            # shortened with --set in the tests
  hold: {hold}
  recovery: 2s
faults:
  - type: abort
    name: checkout-500
    target: {{service: checkout{replica}}}
    status: 500
    percent: {percent}
"""


def write_experiment(
    directory: Path,
    *,
    hold: str = "20s",
    percent: int = 50,
    replica: int | None = 0,
    stop: str = "",
) -> Path:
    """A one-window experiment (sidecar, abort at checkout) in ``directory``."""
    path = directory / "tiny.yaml"
    text = TINY_EXPERIMENT.format(
        hold=hold,
        percent=percent,
        replica="" if replica is None else f", replica: {replica}",
        stop=stop,
    )
    path.write_text(text, encoding="utf-8")
    return path


#: How long an ended runner has, after SIGTERM, to revert and tear down before SIGKILL.
END_GRACE_S = 30.0

#: Every runner a ``CliRun`` was made for and not yet ended (``end_started`` ends them).
_STARTED: list[CliRun] = []


@dataclass
class CliRun:
    """A ``sidecar-chaos run`` subprocess with its output in files.

    Ended whatever the test's outcome: on leaving ``with start_run(...) as run:``, and in
    any case at the test's teardown (``tests/integration/conftest.py`` calls
    :func:`end_started`), so a failed test leaves no runner for the next one to trip on.
    The runner runs in a session of its own, so :meth:`end` can kill its process group.
    """

    proc: subprocess.Popen[bytes]
    run_dir: Path
    out_path: Path
    err_path: Path

    def __post_init__(self) -> None:
        _STARTED.append(self)

    def __enter__(self) -> CliRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()

    def end(self, grace_s: float = END_GRACE_S) -> int:
        """End the runner if it still runs, reap it and close its pipes; its exit code.

        SIGTERM first (the runner reverts its faults and tears its topology down), then
        SIGKILL to its process group after ``grace_s`` (its topology's processes die with it,
        ``chaos.proc``). Only by its own pid and group, while it is not yet reaped.
        """
        proc = self.proc
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    kill_group(proc.pid)
                    proc.wait()
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        return proc.returncode

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def journal(self) -> list[JournalEntry]:
        return read_journal(self.run_dir)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.journal()]

    def wait_for_entry(self, kind: str, timeout_s: float = 40.0) -> JournalEntry:
        """The first journal entry of ``kind``; fails if the run ends or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self.journal() if e.kind == kind]
            if found:
                return found[0]
            assert self.proc.poll() is None, (
                f"the run exited ({self.proc.returncode}) before {kind}:\n{self.stderr}"
            )
            time.sleep(0.05)
        raise AssertionError(f"no {kind} in the journal after {timeout_s} s:\n{self.stderr}")

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.end(grace_s=10.0)
            raise AssertionError(f"the run did not end in {timeout_s} s:\n{self.stderr}") from None

    def window_pids(self) -> dict[str, dict[str, int]]:
        """Per window (the ``window`` its ``topology_up`` entry names): process name -> pid.

        Per window because windows overlap (``chaos.engine.ahead``: the next window's
        topology starts during this one's recovery) and both topologies have the same names.
        """
        found: dict[str, dict[str, int]] = {}
        for entry in self.journal():
            raw, window = entry.data.get("pids"), entry.get_str("window")
            if entry.kind != "topology_up" or not isinstance(raw, dict):
                continue
            assert window and window not in found, (
                f"topology_up without a window of its own: {entry}"
            )
            found[window] = {k: v for k, v in raw.items() if isinstance(v, int)}
        return found

    def topology_pids(self, window: str) -> dict[str, int]:
        """The pids window ``window``'s ``topology_up`` entry recorded (name -> pid)."""
        pids = self.window_pids()
        assert window in pids, f"no topology_up for window {window}: {sorted(pids)}"
        return pids[window]


def start_run(tmp_path: Path, slot: int, experiment: Path, *extra: str) -> CliRun:
    """Start ``sidecar-chaos run EXPERIMENT --out RUN_DIR`` with a 1 s warm-up."""
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
    )
    return popen_run(argv, tmp_path, run_dir, cli_env(slot))


def popen_run(
    argv: list[str],
    cwd: Path,
    run_dir: Path,
    env: dict[str, str],
    preexec_fn: Callable[[], None] | None = None,
) -> CliRun:
    """Start ``argv`` (a ``cli_argv`` run) in a session of its own, output in ``cwd``'s files."""
    out_path, err_path = cwd / "cli.out", cwd / "cli.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    return CliRun(proc, run_dir, out_path, err_path)


def end_started() -> None:
    """End every runner started and not yet ended (the integration tests' teardown)."""
    while _STARTED:
        _STARTED.pop().end()


def processes_mentioning(text: str) -> list[int]:
    """Live processes (not us) whose command line or environment mentions ``text``."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in blob and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def assert_nothing_left(run: CliRun, timeout_s: float = 5.0) -> None:
    """No process of any window's topology (journal pids) or traffic (its paths) is alive."""
    pids = {f"{w}/{n}": p for w, named in run.window_pids().items() for n, p in named.items()}
    assert pids, "the journal recorded no topology pids"
    alive = wait_for_value(
        lambda: (
            [n for n, p in pids.items() if pid_alive(p)]
            + [str(p) for p in processes_mentioning(str(run.run_dir))]
        ),
        timeout_s,
    )
    assert not alive, f"still alive after the run: {alive}"


def wait_for_value(get: Callable[[], list[str]], timeout_s: float) -> list[str]:
    """Poll ``get`` until it returns an empty list or time runs out; its last value."""
    deadline = time.monotonic() + timeout_s
    value = get()
    while value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = get()
    return value


def fault_steps(entries: list[JournalEntry]) -> dict[str, list[str]]:
    """fault_id -> the fault steps the journal recorded for it, in order."""
    steps: dict[str, list[str]] = {}
    for entry in entries:
        if entry.kind.startswith("fault_"):
            steps.setdefault(entry.get_str("fault_id"), []).append(entry.kind)
    return steps
