"""Bench rows from the real run: retry overflows, restart latency and affected share per setup.

Read from the real run's directory (:mod:`chaos.bench.realrun`):

* **retry overflows**: each window's rise of ``upstream_rq_retry_overflow`` (retries the
  circuit breaker's ``max_retries`` refused: Envoy's default 3 in the sidecar setup,
  Istio's 2^32-1 in mesh and ambient), from ``results.json``;
* **restart latency**: in a crash window, the crashed proxy's ``crashed`` to its
  ``restarted`` event (the journal's event times: the supervisor's back-off plus, in
  mesh and ambient, the certificate and config fetch a restarted proxy waits for);
* **affected share**: the share of client requests through the faulted element, from
  the proxies' counters (``chaos.analysis.shares``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos.analysis import read_results
from chaos.rundir.journal import read_journal


@dataclass(frozen=True)
class ResilienceRow:
    """One window's retry overflows, restart latency (crashes) and affected share."""

    fault: str
    setup: str
    retry_overflows: int
    restart_s: float | None
    affected_share: float | None


def _restart_latency(run_dir: Path, start: float, end: float) -> float | None:
    """First ``crashed`` to the same subject's next ``restarted``, within ``[start, end]``."""
    crashed: dict[str, float] = {}
    for entry in read_journal(run_dir):
        if entry.kind != "event" or not start <= entry.t <= end:
            continue
        kind, subject = entry.get_str("event"), entry.get_str("subject")
        at = entry.data.get("event_t")
        t = float(at) if isinstance(at, (int, float)) else entry.t
        if kind == "crashed":
            crashed.setdefault(subject, t)
        elif kind == "restarted" and subject in crashed:
            return max(0.0, t - crashed[subject])
    return None


def resilience_rows(run_dir: Path) -> list[ResilienceRow]:
    """Every measured window of the run, in results order."""
    rows = []
    for r in read_results(run_dir).runs:
        w = r.window
        restart = _restart_latency(run_dir, w.inject_t, w.end_t) if w.self_healing else None
        rows.append(
            ResilienceRow(r.fault, r.setup, r.counters.retry_overflows, restart, r.affected_share)
        )
    return rows


def render_resilience(rows: list[ResilienceRow], setups: tuple[str, ...]) -> list[str]:
    """The bench's section: one line per fault, per setup overflows / restart s / share."""
    lines = [
        "## Retry overflows, restart latency and affected share per setup",
        "",
        "From the same real run: retries the circuit breaker refused "
        "(`upstream_rq_retry_overflow`, results.json), a crashed proxy's `crashed` to "
        "`restarted` (journal; mesh and ambient include the certificate and config fetch), "
        "and the share of client requests through the faulted element (proxy counters).",
        "",
    ]
    if not rows:
        return [*lines, "No windows measured.", ""]
    lines += [
        "| fault | " + " | ".join(f"{s} overflows / restart s / share" for s in setups) + " |",
        "|---" * (len(setups) + 1) + "|",
    ]
    for fault in dict.fromkeys(r.fault for r in rows):
        cells = []
        for setup in setups:
            row = next((r for r in rows if r.fault == fault and r.setup == setup), None)
            if row is None:
                cells.append("–")
                continue
            restart = "–" if row.restart_s is None else f"{row.restart_s:.2f}"
            share = "–" if row.affected_share is None else f"{row.affected_share:.0%}"
            cells.append(f"{row.retry_overflows} / {restart} / {share}")
        lines.append(f"| {fault} | " + " | ".join(cells) + " |")
    return [*lines, ""]
