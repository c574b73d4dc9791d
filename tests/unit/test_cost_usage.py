"""Reading a process's usage from /proc, and what a change of process does to a window."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.errors import UsageError
from chaos.experiment import Setup
from chaos.platforms.local.usage import kind_of, read_memory, read_stat, read_threads_ns
from chaos.platforms.usage import ProcessReading, UsageReading, usage_between
from chaos.rundir.cost import ProxyKind

# A bounded amount of work, in the child's own CPU time: no wall clock is involved.
_BUSY = (
    "import sys\nx = 0\nfor i in range(3_000_000):\n    x += i\n"
    "print('done', flush=True)\nsys.stdin.read()\n"
)


def test_cpu_of_a_child_matches_the_kernels_rusage_after_it_is_reaped() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _BUSY], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"done\n"  # the loop is over: it waits on stdin
        seen = read_stat(Path(f"/proc/{child.pid}/stat"))
        memory = read_memory(child.pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
        child.stdout.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert seen is not None
    ticks, started = seen
    rusage_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # The same accounting seen two ways: /proc in ticks while it waited, rusage in seconds
    # once reaped (which adds the interpreter's shutdown).
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert ticks > 0
    assert ticks * tick <= rusage_s + tick
    assert ticks * tick >= 0.5 * rusage_s
    assert started > 0
    assert memory is not None
    pss, rss = memory
    assert 0 < pss <= rss  # PSS splits the shared pages: never above RSS


_THREADS = (
    "import sys, threading\n"
    "def work():\n    x = 0\n    for i in range(1_500_000):\n        x += i\n"
    "t = threading.Thread(target=work); t.start(); work(); t.join()\n"
    "print('done', flush=True)\nsys.stdin.read()\n"
)


def test_cpu_in_ns_is_the_sum_over_threads_of_the_same_account_as_the_ticks() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _THREADS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"done\n"  # the work is over: it waits on stdin
        seen = read_stat(Path(f"/proc/{child.pid}/stat"))
        threads = read_threads_ns(Path(f"/proc/{child.pid}/task"))
    finally:
        child.stdin.close()
        child.wait(timeout=60)
        child.stdout.close()
    assert seen is not None and threads is not None
    ns, tids = threads
    assert child.pid in tids  # the main thread is one of them (the worker has exited)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    # The kernel derives utime + stime from the same run time; the ticks round it down.
    # The worker thread exited, so its run time is in the ticks and not in the live sum.
    assert ns > 0 and ns / 1e9 <= seen[0] * tick + tick


def test_a_gone_process_reads_as_none() -> None:
    assert read_stat(Path("/proc/0/nonexistent/stat")) is None
    assert read_memory(0) is None


def _reading(
    pid: int,
    ticks: int,
    start: int = 100,
    *,
    missing: tuple[str, ...] = (),
    ns: int | None = None,
    threads: frozenset[int] = frozenset(),
) -> UsageReading:
    proc = ProcessReading(
        "checkout-0.proxy",
        ProxyKind.SIDECAR,
        "checkout-0",
        "node-1",
        pid,
        start,
        ticks,
        2_000_000,
        5_000_000,
        cpu_ns=ns,
        threads=threads,
    )
    return UsageReading((proc,), clk_tck=100, missing=missing)


def test_usage_between_is_the_cpu_delta_and_the_last_memory() -> None:
    (cost,) = usage_between(_reading(7, 1000), _reading(7, 1250))
    assert cost.cpu_s == pytest.approx(2.5)
    assert (cost.pss_bytes, cost.kind, cost.pod) == (2_000_000, ProxyKind.SIDECAR, "checkout-0")


def test_the_ns_account_is_the_figure_unless_a_thread_exited_in_between() -> None:
    before = _reading(7, 1000, ns=10_004_000_000, threads=frozenset({7, 8}))
    # Every thread lived through it (one more started): the ns difference, not the ticks.
    (cost,) = usage_between(
        before, _reading(7, 1003, ns=10_034_500_000, threads=frozenset({7, 8, 9}))
    )
    assert cost.cpu_s == pytest.approx(0.0305)
    assert cost.cpu_tick_s == pytest.approx(0.03)
    # Thread 8 exited and took its run time along: the process's ticks are the figure.
    (cost,) = usage_between(before, _reading(7, 1003, ns=10_010_000_000, threads=frozenset({7})))
    assert cost.cpu_s == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("last", "says"),
    [
        (_reading(8, 1250), "restarted"),  # another pid: a restart
        (_reading(7, 1250, start=101), "restarted"),  # same pid, another start time: reused
        (_reading(7, 1250, missing=("checkout-0.proxy",)), "exited"),
        (UsageReading((), clk_tck=100), "changed"),
    ],
)
def test_a_process_that_changed_mid_measurement_breaks_the_window(
    last: UsageReading, says: str
) -> None:
    with pytest.raises(UsageError, match=says):
        usage_between(_reading(7, 1000), last)


@pytest.mark.parametrize(
    ("setup", "name", "kind"),
    [
        (Setup.SIDECAR, "checkout-0.proxy", ProxyKind.SIDECAR),
        (Setup.MESH, "checkout-0.proxy", ProxyKind.MESH_SIDECAR),
        (Setup.AMBIENT, "ztunnel-node-1", ProxyKind.NODE_PROXY),
        (Setup.AMBIENT, "waypoint-checkout", ProxyKind.WAYPOINT),
        (Setup.BASELINE, "ingress", ProxyKind.INGRESS),
        (Setup.BASELINE, "payments-1.app", ProxyKind.APP),
    ],
)
def test_every_process_of_the_layout_has_its_kind(setup: Setup, name: str, kind: ProxyKind) -> None:
    assert kind_of(setup, name) is kind


def test_an_unknown_process_is_refused() -> None:
    with pytest.raises(UsageError):
        kind_of(Setup.SIDECAR, "stranger")
