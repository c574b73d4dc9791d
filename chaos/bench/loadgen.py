"""Load generators side by side against one real Envoy: wrk, plain Locust, the tool's driver.

The target is a real Envoy answering ``GET /`` with a ``direct_response``, pinned
to the first core (:func:`chaos.bench.target.envoy_target`); the generator runs
pinned to the second. The Locust rows (plain ``FastHttpUser`` and this tool's
driver, closed and open loop, each against a plain Locust row at the same load)
come from :func:`chaos.bench.driver.measure_driver_cost`: CPU per request of the
Locust process over a steady window, and samples lost. The driver always records;
the plain Locust rows (paced, no wait, and an even open-loop schedule) are the rows
without recording. Debian's ``wrk`` gets a row when installed (``wrk -t1 -c20``:
its CPU per request over its whole run); without it the row says so.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chaos.bench.driver import measure_driver_cost
from chaos.bench.target import Target

CONNECTIONS = 20


@dataclass(frozen=True)
class LoadGenRow:
    """One load generator's figure (None where it was not measured, ``note`` says why)."""

    generator: str
    requests_per_s: float | None
    cpu_us_per_request: float | None
    note: str = ""
    #: The row this one is compared with (plain Locust at the same load), if any.
    baseline: str | None = None
    #: Requests Envoy answered that have no sample (the driver's rows only).
    samples_lost: int | None = None


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_wrk(target: Target, seconds: float, core: int | None) -> LoadGenRow:
    """``wrk -t1 -c20`` against ``target`` for ``seconds`` (a row with a reason without wrk)."""
    name = f"wrk -t1 -c{CONNECTIONS}"
    wrk = shutil.which("wrk")
    if wrk is None:
        return LoadGenRow(name, None, None, "wrk not installed (apt-get install wrk)")
    before = _children_cpu_s()  # wrk is the only child that ends (and is reaped) meanwhile
    done = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", target.url + "/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core is not None else None,
    )
    cpu = _children_cpu_s() - before
    total = re.search(r"(\d+) requests in", done.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or total is None or rate is None:
        return LoadGenRow(name, None, None, f"wrk failed (exit {done.returncode})")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    note = f"{errors.group(1)} non-2xx answers" if errors else ""
    requests = max(1, int(total.group(1)))
    return LoadGenRow(name, round(float(rate.group(1)), 1), round(cpu / requests * 1e6, 1), note)


def measure_locust_rows(window_s: float, repeats: int, work: Path) -> list[LoadGenRow]:
    """Plain Locust and the driver, taking turns over ``repeats`` rounds."""
    report = measure_driver_cost(window_s, repeats, work_dir=work)
    rows = []
    for c in report.generators:
        note = f"{len(c.runs)} windows of {window_s:g} s, taking turns"
        rounds = report.round_ratios(c.name)
        if rounds:
            note += f"; rounds {min(rounds):.3f}-{max(rounds):.3f}x"
        reference = report.reference_ratio(c.name)
        if reference is not None and c.spec is not None:
            note += f"; {reference:.3f}x the CPU of {c.spec.reference}"
        rows.append(
            LoadGenRow(
                c.name,
                round(c.requests_per_s, 1),
                round(c.cpu_us_per_request, 1),
                note,
                c.spec.baseline if c.spec is not None else None,
                c.samples_lost,
            )
        )
    return rows
