"""A complete run directory whose outcome is known by construction: the report's fake engine.

Writes what the engine writes (``journal.jsonl``, ``samples/``, ``results.json``,
``buckets.csv``, ``experiment.yaml``, ``meta.json``) from synthetic samples
(``chaos.testing.synthetic``), so the report, JUnit and history can be tested
and demonstrated without running Envoy. Each setup recovers ``recovery_s`` after
the revert (or after injection for a crash), jittered per repetition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from chaos.analysis import FaultWindow, SteadyState, analyze_run, write_analysis
from chaos.analysis.adaptive import decisions_for
from chaos.experiment import load_experiment
from chaos.rundir import EXPERIMENT_FILE, JOURNAL_FILE
from chaos.rundir.chunks import encode_chunk
from chaos.rundir.counters import CounterSample
from chaos.rundir.meta import RunMeta, write_meta
from chaos.rundir.samples import samples_dir
from chaos.testing.synthetic import Outage, Slowdown, synthetic_samples

_STRING_COLUMNS = ("endpoint", "method", "error_kind", "write_id")


@dataclass(frozen=True)
class SyntheticFault:
    """A fault of the synthetic run: ``type`` is latency, crash, abort or cert-expiry."""

    name: str
    type: str = "abort"
    pods_hit: int = 1


@dataclass(frozen=True)
class SyntheticRun:
    """What to fake: setups, faults, repetitions and each setup's recovery time."""

    experiment_name: str = "synthetic"
    description: str = "synthetic run"
    setups: Sequence[str] = ("sidecar", "mesh")
    faults: Sequence[SyntheticFault] = (SyntheticFault("abort-checkout"),)
    repetitions: int = 3
    #: Seconds from revert (crash: from injection) until errors stop, per setup.
    recovery_s: Mapping[str, float] = field(default_factory=lambda: {"sidecar": 2.0, "mesh": 0.5})
    #: Setups in which a fault of this name has no effect at all.
    no_effect: Sequence[tuple[str, str]] = ()
    jitter: float = 0.15
    warmup_s: float = 3.0
    hold_s: float = 4.0
    recovery_window_s: float = 7.0
    rate_rps: float = 60.0
    seed: int = 7
    started_utc: str = "2025-01-01T02:00:00+00:00"
    exit_code: int = 0
    aborted: Sequence[tuple[str, str, int]] = ()
    #: The journal's ``run_aborted`` reason (empty: the run was not aborted).
    abort_reason: str = ""
    #: The ``hypotheses:`` section, as YAML lines (indented by two spaces), if any.
    hypotheses_yaml: str = ""


def _yaml_string(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid double-quoted YAML scalar


def experiment_yaml(spec: SyntheticRun) -> str:
    """A valid experiment file for ``spec`` (fault names and setups must be spec-valid)."""
    lines = [
        f"name: {spec.experiment_name}",
        f"description: {_yaml_string(spec.description)}",
        f"setups: [{', '.join(spec.setups)}]",
        f"repetitions: {spec.repetitions}",
        f"seed: {spec.seed}",
        "traffic:",
        "  users: 4",
        "  spawn_rate: 4",
        f"  rate: {float(spec.rate_rps)}",
        "  endpoints:",
        "    - {name: browse, path: /}",
        "timeline:",
        f"  warmup: {spec.warmup_s}s",
        f"  hold: {spec.hold_s}s",
        f"  recovery: {spec.recovery_window_s}s",
        "  recovered_for: 1s",
        "faults:",
    ]
    for f in spec.faults:
        lines.append(f"  - name: {f.name}")
        lines.append(f"    type: {f.type}")
        lines.append("    target: {service: checkout, replica: 0}")
        if f.type == "latency":
            lines.append("    delay: 200ms")
        elif f.type == "abort":
            lines.append("    status: 503")
        elif f.type == "cert-expiry":
            lines.append("    ttl: 1s")
    if spec.hypotheses_yaml:
        lines += ["hypotheses:", spec.hypotheses_yaml.rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_synthetic_run(run_dir: Path, spec: SyntheticRun = SyntheticRun()) -> Path:
    """Write a whole run directory for ``spec`` into ``run_dir`` and return it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    t = 1000.0
    frames: list[pd.DataFrame] = []
    windows: list[FaultWindow] = []
    journal: list[dict[str, object]] = []
    counters: list[CounterSample] = []

    def log(kind: str, at: float, **data: object) -> None:
        journal.append({"kind": kind, "utc": spec.started_utc, "t": at, **data})

    order = [
        (rep, f, setup)
        for rep in range(spec.repetitions)
        for f in spec.faults
        for setup in spec.setups
    ]
    for i, (rep, f, setup) in enumerate(order):
        inject, revert = t + spec.warmup_s, t + spec.warmup_s + spec.hold_s
        end = revert + spec.recovery_window_s
        healing = f.type == "crash"
        base = spec.recovery_s.get(setup, 1.0) * (1 + spec.jitter * rng.standard_normal())
        heal_at = (inject if healing else revert) + max(0.05, base)
        effect = (setup, f.name) not in spec.no_effect
        outages = [Outage(inject + 0.05, heal_at)] if effect and f.type != "latency" else []
        slow = [Slowdown(inject + 0.05, heal_at, 200.0)] if effect and f.type == "latency" else []
        frames.append(
            synthetic_samples(
                t, end, spec.rate_rps, seed=spec.seed * 1000 + i, outages=outages, slowdowns=slow
            )
        )
        aborted = (setup, f.name, rep) in spec.aborted
        windows.append(
            FaultWindow(setup, f.name, f.type, rep, inject, revert, end, healing, t, aborted)
        )
        pods = [f"{setup}/checkout-{k}" for k in range(f.pods_hit)]
        ids = {"setup": setup, "fault": f.name, "repetition": rep}
        log(
            "fault_planned",
            inject - 0.01,
            fault_id=f"{setup}-{f.name}-{rep}",
            blast_radius=pods,
            **ids,
        )
        log("event", inject, event="fault_injected", subject=pods[0], detail=f.type, **ids)
        if healing and effect:
            log("event", inject, event="crashed", subject=pods[0], detail="SIGKILL", **ids)
            log("event", heal_at, event="restarted", subject=pods[0], detail="supervisor", **ids)
        if f.type == "cert-expiry":
            log("event", revert + 0.1, event="cert_rotated", subject=pods[0], detail="", **ids)
        log("event", revert, event="fault_reverted", subject=pods[0], detail="", **ids)
        proxy = f"{setup}-checkout-0"
        retries = 40 if setup == "mesh" else 0
        counters += [
            CounterSample(inject - 0.5, proxy, "cluster.payments.upstream_rq_retry", 0),
            CounterSample(end - 0.1, proxy, "cluster.payments.upstream_rq_retry", retries),
            CounterSample(inject - 0.5, proxy, "restarts", 0),
            CounterSample(end - 0.1, proxy, "restarts", 1 if healing and effect else 0),
        ]
        t = end + 1.0
    if spec.abort_reason:
        log("run_aborted", t, reason=spec.abort_reason)
    samples = pd.concat(frames, ignore_index=True)
    _write_samples(run_dir, samples)
    (run_dir / JOURNAL_FILE).write_text(
        "".join(json.dumps(e) + "\n" for e in journal), encoding="utf-8"
    )
    analysis = analyze_run(
        samples, windows, SteadyState(0.01, 100.0), 1.0, counters=counters, resamples=500
    )
    (run_dir / EXPERIMENT_FILE).write_text(experiment_yaml(spec), encoding="utf-8")
    experiment = load_experiment(run_dir / EXPERIMENT_FILE)
    decided = decisions_for(
        experiment.hypotheses,
        analysis.runs,
        seed=spec.seed,
        max_rounds=spec.repetitions,
        family=experiment.multiple_testing,
    )
    write_analysis(run_dir, analysis, decided=decided)
    write_meta(
        run_dir,
        RunMeta(
            tool_version="0.1.0",
            envoy_version="1.40.0",
            locust_version="2.47.0",
            python_version="3.11",
            seed=spec.seed,
            experiment_name=spec.experiment_name,
            started_utc=spec.started_utc,
            finished_utc=spec.started_utc,
            exit_code=spec.exit_code,
            setups=tuple(spec.setups),
            faults=tuple(f.name for f in spec.faults),
            parameters={"rate_rps": spec.rate_rps, "connection_lifetime": "1s"},
        ),
    )
    return run_dir


def _write_samples(run_dir: Path, samples: pd.DataFrame, rows: int = 5000) -> None:
    path = samples_dir(run_dir) / "samples-0-synthetic.chs"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for start in range(0, len(samples), rows):
            part = samples.iloc[start : start + rows]
            out.write(
                encode_chunk(
                    part["t"].tolist(),
                    part["latency_ms"].tolist(),
                    part["status"].astype(int).tolist(),
                    {c: part[c].astype(str).tolist() for c in _STRING_COLUMNS},
                )
            )
