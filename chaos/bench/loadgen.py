"""Load generators side by side through one topology's ingress: wrk, plain Locust, the driver.

Each row is requests per second and CPU per request of the generator's own
processes (``RUSAGE_CHILDREN`` before and after), over the same URL, token and
duration. wrk (Debian's ``wrk``) is measured here when installed. The rows for
plain Locust and this tool's driver (recording on and off) come from issue 11
part A's measuring function: :data:`DRIVER_HOOK` names it, and
:func:`measure_load_generators` calls it once it exists; until then those rows
say so instead of showing a number.
"""

from __future__ import annotations

import importlib
import re
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

#: ``module:function`` of part A's measurement: ``(url, token, seconds) -> list[LoadGenRow]``.
DRIVER_HOOK = "chaos.traffic.costs:measure_generators"
NEEDS_PART_A = "needs issue 11 part A's measuring function (chaos.traffic.costs)"
CONNECTIONS = 20


@dataclass(frozen=True)
class LoadGenRow:
    """One load generator's figure (None where it was not measured, with ``note`` saying why)."""

    generator: str
    requests_per_s: float | None
    cpu_us_per_request: float | None
    note: str = ""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_wrk(url: str, token: str, seconds: float) -> LoadGenRow:
    """``wrk -t1 -c20`` for ``seconds`` (a row with a reason when wrk is missing)."""
    name = f"wrk -t1 -c{CONNECTIONS}"
    wrk = shutil.which("wrk")
    if wrk is None:
        return LoadGenRow(name, None, None, "wrk not installed (apt-get install wrk)")
    before = _children_cpu_s()
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    cpu = _children_cpu_s() - before
    total = re.search(r"(\d+) requests in", done.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or total is None or rate is None:
        return LoadGenRow(name, None, None, f"wrk failed (exit {done.returncode})")
    requests = int(total.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    note = f"{errors.group(1)} non-2xx answers" if errors else ""
    return LoadGenRow(
        name, round(float(rate.group(1)), 1), round(cpu / max(1, requests) * 1e6, 1), note
    )


def _part_a() -> Callable[[str, str, float], list[LoadGenRow]] | None:
    module, _, function = DRIVER_HOOK.partition(":")
    try:
        found = getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None
    return found if callable(found) else None


def measure_load_generators(url: str, token: str, seconds: float) -> list[LoadGenRow]:
    """Every generator's row: wrk here, the Locust rows through part A's hook."""
    rows = [measure_wrk(url, token, seconds)]
    driver = _part_a()
    if driver is not None:
        return [*rows, *driver(url, token, seconds)]
    waiting = (
        f"plain Locust FastHttpUser, {CONNECTIONS} users",
        "this tool's driver, recording on",
        "this tool's driver, recording off",
    )
    return [*rows, *(LoadGenRow(name, None, None, NEEDS_PART_A) for name in waiting)]
