"""The supervisor with real processes: probes, CrashLoopBackOff, stops, and no orphans ever."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.errors import ProcessError, StartupError
from chaos.platforms.base import Event, EventKind
from chaos.platforms.local.backoff import BackoffPolicy
from chaos.platforms.local.events import EventLog
from chaos.platforms.local.probes import HttpProbe, TcpProbe
from chaos.platforms.local.processes import ProcessSpec, ProcessState
from chaos.platforms.local.supervisor import Supervisor
from chaos.proc import pid_alive

POLICY = BackoffPolicy(
    initial_s=0.2, factor=2, max_s=1.6, reset_after_s=3, first_restart_immediate=False
)
#: How long a test waits for what the supervisor does (only a limit on waiting): when it
#: acted is judged from its own events (a back-off announces its delay; the restart
#: must not come before it), never by how late a loaded machine let it act.
WAIT_S = 30.0


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def demo_spec(tmp: Path, host: str = "127.0.253.21", name: str = "checkout-0") -> ProcessSpec:
    port = free_port(host)
    argv = [sys.executable, "-m", "chaos.platforms.shared.demo_service", "--service", "checkout"]
    argv += ["--replica", "0", "--pod", name, "--node", "node-1", "--listen", f"{host}:{port}"]
    return ProcessSpec(
        name=name,
        argv=argv,
        log_path=tmp / f"{name}.log",
        probe=HttpProbe(f"http://{host}:{port}/healthz", timeout_s=0.3),
        group=name,
    )


def sleep_spec(name: str = "sleeper", restart: bool = True) -> ProcessSpec:
    return ProcessSpec(name=name, argv=["sleep", "120"], restart=restart)


def wait_until(predicate: object, timeout_s: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def next_event(log: EventLog, kind: EventKind, subject: str, after: float) -> Event:
    event = log.wait_for(kind, subject, after=after, timeout_s=WAIT_S)
    assert event is not None, f"no {kind} of {subject} after {after}: {log.to_json()}"
    return event


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def sup(events: EventLog) -> Iterator[Supervisor]:
    with Supervisor(POLICY, events, probe_interval_s=0.1) as supervisor:
        yield supervisor


def test_a_killed_process_is_restarted_after_the_backoff(
    sup: Supervisor, events: EventLog, tmp_path: Path
) -> None:
    spec = demo_spec(tmp_path)
    sup.add(spec)
    first_pid = sup.start(spec.name)
    sup.wait_ready(timeout_s=10)
    assert sup.is_ready(spec.name)

    killed_at = time.monotonic()
    assert sup.kill(spec.name) == first_pid
    ready_again = next_event(events, EventKind.READY, spec.name, after=killed_at)

    kinds = [e.kind for e in events.events(subject=spec.name)]
    assert kinds == [
        EventKind.STARTED,
        EventKind.READY,
        EventKind.CRASHED,
        EventKind.UNREADY,
        EventKind.BACKOFF,
        EventKind.RESTARTED,
        EventKind.READY,
    ]
    crashed = events.events(EventKind.CRASHED, spec.name)[0]
    backoff = events.events(EventKind.BACKOFF, spec.name)[0]
    restarted = events.events(EventKind.RESTARTED, spec.name)[0]
    assert "signal=SIGKILL" in crashed.detail
    assert "delay_s=0.200 crashes=1" in backoff.detail
    assert killed_at <= crashed.t and killed_at <= backoff.t <= restarted.t
    assert restarted.t - backoff.t >= 0.2  # waited out the delay it announced
    assert ready_again.t > restarted.t
    new_pid = sup.pid(spec.name)
    assert new_pid is not None and new_pid != first_pid
    assert not pid_alive(first_pid)
    assert sup.restarts(spec.name) == 1
    assert sup.is_ready(spec.name)
    assert sup.status(spec.name).last_exit == "signal=SIGKILL"


def test_consecutive_crashes_double_the_delay(sup: Supervisor, events: EventLog) -> None:
    sup.add(sleep_spec())
    sup.start("sleeper")
    delays = []
    for _ in range(3):
        killed_at = time.monotonic()
        sup.kill("sleeper")
        backoff = next_event(events, EventKind.BACKOFF, "sleeper", after=killed_at)
        restarted = next_event(events, EventKind.RESTARTED, "sleeper", after=killed_at)
        delays.append(restarted.t - backoff.t)
    for measured, expected in zip(delays, [0.2, 0.4, 0.8], strict=True):
        assert measured >= expected, delays  # never before the delay it announced
    backoffs = [e.detail for e in events.events(EventKind.BACKOFF, "sleeper")]
    assert backoffs == [
        "delay_s=0.200 crashes=1",
        "delay_s=0.400 crashes=2",
        "delay_s=0.800 crashes=3",
    ]
    assert sup.restarts("sleeper") == 3


def test_kubelet_schedule_restarts_the_first_crash_at_once(events: EventLog) -> None:
    # The kubelet has no back-off entry before the first crash: it restarts at once,
    # then backs off from the second crash on.
    kubelet_like = BackoffPolicy(initial_s=0.3, factor=2, max_s=1.2, reset_after_s=10)
    with Supervisor(kubelet_like, events) as sup:
        sup.add(sleep_spec())
        sup.start("sleeper")
        delays = []
        for _ in range(3):
            killed_at = time.monotonic()
            sup.kill("sleeper")
            backoff = next_event(events, EventKind.BACKOFF, "sleeper", after=killed_at)
            restarted = next_event(events, EventKind.RESTARTED, "sleeper", after=killed_at)
            delays.append(restarted.t - backoff.t)
        for measured, expected in zip(delays, [0.0, 0.3, 0.6], strict=True):
            assert measured >= expected, delays  # never before the delay it announced
    # the supervisor's record of its schedule: the first crash restarts at once
    backoffs = [e.detail for e in events.events(EventKind.BACKOFF, "sleeper")]
    assert backoffs == [
        "delay_s=0.000 crashes=1",
        "delay_s=0.300 crashes=2",
        "delay_s=0.600 crashes=3",
    ]


def test_a_clean_run_resets_the_backoff(events: EventLog) -> None:
    quick_reset = BackoffPolicy(
        initial_s=0.2, factor=2, max_s=1.6, reset_after_s=0.5, first_restart_immediate=False
    )
    with Supervisor(quick_reset, events) as sup:
        sup.add(sleep_spec())
        sup.start("sleeper")
        sup.kill("sleeper")  # runs 0 s: crash 1
        next_event(events, EventKind.RESTARTED, "sleeper", after=0)
        time.sleep(0.6)  # longer than reset_after_s
        sup.kill("sleeper")
        wait_until(lambda: len(events.events(EventKind.BACKOFF, "sleeper")) == 2)
    backoffs = [e.detail for e in events.events(EventKind.BACKOFF, "sleeper")]
    assert backoffs == ["delay_s=0.200 crashes=1", "delay_s=0.200 crashes=1"]


def test_a_crashing_program_crash_loops_and_wait_ready_shows_its_log(
    sup: Supervisor, events: EventLog, tmp_path: Path
) -> None:
    log = tmp_path / "bad.log"
    spec = ProcessSpec(
        "bad",
        ["sh", "-c", "echo config is broken >&2; exit 3"],
        log_path=log,
        probe=TcpProbe("127.0.0.1", 1),
    )
    sup.add(spec)
    sup.start("bad")
    with pytest.raises(StartupError) as err:
        sup.wait_ready(["bad"], timeout_s=0.8)
    message = str(err.value)
    assert message.splitlines()[0].startswith(
        "not ready within 0.8 s: bad (crash-looping, last exit_code=3"
    )
    assert "config is broken" in message
    assert all("exit_code=3" in e.detail for e in events.events(EventKind.CRASHED, "bad"))
    assert len(events.events(EventKind.RESTARTED, "bad")) >= 1


def test_restart_policy_never_leaves_an_exited_process_alone(
    sup: Supervisor, events: EventLog
) -> None:
    sup.add(ProcessSpec("init", ["sh", "-c", "exit 0"], restart=False))
    sup.add(ProcessSpec("broken-init", ["sh", "-c", "exit 4"], restart=False))
    sup.start_all()
    wait_until(lambda: sup.status("broken-init").state is ProcessState.EXITED)
    wait_until(lambda: sup.status("init").state is ProcessState.EXITED)
    sup.wait_ready(["init"], timeout_s=1)  # a one-shot that succeeded counts as done
    started = time.monotonic()
    with pytest.raises(StartupError, match=r"broken-init \(exited, exit_code=4\)"):
        sup.wait_ready(timeout_s=60)
    assert time.monotonic() - started < 60  # hopeless: no need to wait out the timeout
    time.sleep(0.3)
    assert events.events(EventKind.RESTARTED) == []
    assert [e.kind for e in events.events(subject="init")] == [
        EventKind.STARTED,
        EventKind.READY,  # no probe: ready once started
        EventKind.EXITED,
        EventKind.UNREADY,
    ]


def test_a_probe_that_stops_passing_makes_the_process_unready(
    sup: Supervisor, events: EventLog, tmp_path: Path
) -> None:
    spec = demo_spec(tmp_path, host="127.0.253.22", name="frozen-0")
    sup.add(spec)
    pid = sup.start(spec.name)
    sup.wait_ready(timeout_s=10)
    frozen_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)  # alive but not answering: probes time out
    try:
        unready = next_event(events, EventKind.UNREADY, spec.name, after=frozen_at)
        assert not sup.is_ready(spec.name)
    finally:
        os.kill(pid, signal.SIGCONT)
    next_event(events, EventKind.READY, spec.name, after=unready.t)
    assert sup.is_ready(spec.name)
    assert sup.pid(spec.name) == pid and sup.restarts(spec.name) == 0


def test_wait_ready_names_the_process_whose_probe_fails(sup: Supervisor) -> None:
    closed_port = free_port("127.0.253.30")
    sup.add(ProcessSpec("deaf", ["sleep", "60"], probe=TcpProbe("127.0.253.30", closed_port)))
    sup.start("deaf")
    with pytest.raises(StartupError, match=r"deaf \(running, probe: ConnectionRefusedError"):
        sup.wait_ready(timeout_s=0.5)


def test_stop_is_deliberate_and_restart_gives_a_new_pid(sup: Supervisor, events: EventLog) -> None:
    sup.add(sleep_spec())
    first = sup.start("sleeper")
    assert sup.start("sleeper") == first  # starting a running process changes nothing
    second = sup.restart("sleeper")
    assert second != first and not pid_alive(first)
    assert (
        events.events(EventKind.RESTARTED, "sleeper")[0].detail == f"pid={second} reason=requested"
    )
    sup.stop("sleeper")
    assert not pid_alive(second)
    assert sup.pid("sleeper") is None
    time.sleep(0.4)  # longer than the first backoff: a stop is not a crash
    assert sup.status("sleeper").state is ProcessState.STOPPED
    assert events.events(EventKind.CRASHED) == []
    with pytest.raises(ProcessError, match="not running"):
        sup.kill("sleeper")
    assert sup.start("sleeper") not in (first, second)


def test_a_missing_binary_is_one_clear_error(sup: Supervisor) -> None:
    sup.add(ProcessSpec("ghost", ["/nonexistent/bin/envoy", "-c", "x.yaml"]))
    with pytest.raises(ProcessError) as err:
        sup.start("ghost")
    assert str(err.value) == "cannot start ghost: no such file or directory: /nonexistent/bin/envoy"
    with pytest.raises(ProcessError, match="no supervised process named 'nobody'"):
        sup.start("nobody")


def test_env_adds_to_the_inherited_environment(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "env.log"
    sup.add(
        ProcessSpec(
            "printer",
            ["sh", "-c", 'echo "$CHAOS_X $HOME"'],
            env={"CHAOS_X": "hello"},
            log_path=out,
            restart=False,
        )
    )
    sup.start("printer")
    wait_until(lambda: sup.status("printer").state is ProcessState.EXITED)
    assert out.read_text().splitlines()[-1].startswith("hello /")


def test_close_leaves_no_process_behind(events: EventLog, tmp_path: Path) -> None:
    sup = Supervisor(POLICY, events, stop_grace_s=0.3)
    sup.add(demo_spec(tmp_path, host="127.0.253.23", name="web-0"))
    sup.add(sleep_spec())
    # Ignores SIGTERM, and so does its child: only the SIGKILL to the group ends both.
    sup.add(ProcessSpec("stubborn", ["sh", "-c", "trap '' TERM; sleep 120 & wait"]))
    sup.add(ProcessSpec("looping", ["sh", "-c", "exit 1"]))
    sup.start_all()
    sup.wait_ready(["web-0", "sleeper"], timeout_s=10)
    stubborn = sup.pid("stubborn")
    assert stubborn is not None
    wait_until(lambda: bool(Path(f"/proc/{stubborn}/task/{stubborn}/children").read_text().split()))
    grandchildren = [
        int(p) for p in Path(f"/proc/{stubborn}/task/{stubborn}/children").read_text().split()
    ]
    pids = [*sup.pids().values(), *grandchildren]
    sup.close()
    # SIGKILL to a group is delivered at once but a grandchild exits when the kernel next
    # runs it (its parent, not the supervisor, reaps it): wait for that, never for a
    # process that escaped the group (it would outlive any wait)
    wait_until(lambda: not [p for p in pids if pid_alive(p)], timeout_s=WAIT_S)
    assert sup.pids() == {}
    stopped = {e.subject: e.detail for e in events.events(EventKind.STOPPED)}
    assert set(stopped) == {"web-0", "sleeper", "stubborn", "looping"}
    # the supervisor's record: the one that ignored SIGTERM was SIGKILLed after the grace
    assert "signal=SIGKILL" in stopped["stubborn"], stopped
    assert "signal=SIGKILL" not in stopped["sleeper"], stopped
    with pytest.raises(ProcessError, match="closed"):
        sup.start("sleeper")
    sup.close()  # idempotent


RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from chaos.platforms.base import EventKind
    from chaos.platforms.local.events import EventLog
    from chaos.platforms.local.backoff import BackoffPolicy
    from chaos.platforms.local.probes import HttpProbe
    from chaos.platforms.local.processes import ProcessSpec
    from chaos.platforms.local.supervisor import Supervisor

    host, port, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    events = EventLog()
    sup = Supervisor(BackoffPolicy(0.1, 2, 1, 10, first_restart_immediate=False), events)
    sup.add(ProcessSpec("sleeper", ["sleep", "300"]))
    demo = [sys.executable, "-m", "chaos.platforms.shared.demo_service", "--service", "payments",
            "--replica", "0", "--pod", "payments-0", "--node", "node-1",
            "--listen", f"{host}:{port}"]
    sup.add(ProcessSpec("payments-0", demo, probe=HttpProbe(f"http://{host}:{port}/healthz"),
                        log_path=tmp / "payments-0.log"))
    sup.start_all()
    sup.wait_ready(timeout_s=10)
    # A restarted child must die with the runner too (it is forked by the watcher thread).
    sup.kill("sleeper")
    assert events.wait_for(EventKind.RESTARTED, "sleeper", timeout_s=5) is not None
    print(json.dumps(sup.pids()), flush=True)
    time.sleep(300)
    """
)


def test_a_sigkilled_runner_leaves_no_child_behind(tmp_path: Path) -> None:
    host = "127.0.253.24"
    argv = [sys.executable, "-c", RUNNER, host, str(free_port(host)), str(tmp_path)]
    errors = tmp_path / "runner.err"
    with (
        errors.open("wb") as err,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err) as runner,
    ):
        try:
            assert runner.stdout is not None
            line = runner.stdout.readline()
            assert line, errors.read_text()
            pids: dict[str, int] = json.loads(line)
            assert set(pids) == {"sleeper", "payments-0"}
            assert all(pid_alive(p) for p in pids.values())
        finally:
            runner.kill()
    # The kernel's parent-death signal, not any cleanup code, has to end them.
    wait_until(lambda: not any(pid_alive(p) for p in pids.values()), timeout_s=5)
