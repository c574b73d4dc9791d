"""The run directory: the one contract between a run and whoever reads it afterwards.

A run writes, and ``report``, ``trend``, ``clean`` and the history store read,
these files (names defined here and nowhere else)::

    journal.jsonl     every step, written as it goes        (chaos.rundir.journal)
    samples/          one record per request, columnar     (chaos.rundir.samples)
    counters.csv      proxy counters sampled per window     (chaos.rundir.counters)
    results.json      per-window results, summary, decisions (chaos.analysis.results_io)
    buckets.csv       100 ms buckets
    meta.json         versions, parameters, exit code       (chaos.rundir.meta)
    experiment.yaml   the experiment file exactly as given
    experiment.effective.yaml  the experiment as run (after --set, --setup)
                                                            (chaos.report.effective)
    junit.xml         one case per setup and fault
    report.html       the self-contained report
    topologies/       per-window platform files (configs, logs, certificates)
    bypass/           the bypass probe's requests, one JSON line each (chaos.traffic.bypass)

This package imports nothing heavy: the constants below are safe to import anywhere.
"""

from __future__ import annotations

from typing import Final

JOURNAL_FILE: Final = "journal.jsonl"
SAMPLES_DIR: Final = "samples"
COUNTERS_FILE: Final = "counters.csv"
RESULTS_FILE: Final = "results.json"
BUCKETS_FILE: Final = "buckets.csv"
META_FILE: Final = "meta.json"
EXPERIMENT_FILE: Final = "experiment.yaml"
EFFECTIVE_FILE: Final = "experiment.effective.yaml"
JUNIT_FILE: Final = "junit.xml"
REPORT_FILE: Final = "report.html"
TOPOLOGIES_DIR: Final = "topologies"
BYPASS_DIR: Final = "bypass"

__all__ = [
    "BUCKETS_FILE",
    "BYPASS_DIR",
    "COUNTERS_FILE",
    "EFFECTIVE_FILE",
    "EXPERIMENT_FILE",
    "JOURNAL_FILE",
    "JUNIT_FILE",
    "META_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "SAMPLES_DIR",
    "TOPOLOGIES_DIR",
]
