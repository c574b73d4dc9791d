"""Prometheus in and out: results pushed to a Pushgateway, live metrics, counters from PromQL.

* :mod:`chaos.metrics.results`: a run directory's results as Prometheus metrics
  (read from the run directory only, like the report);
* :mod:`chaos.metrics.push`: push them to a Pushgateway at the end of a run; a
  gateway that is down never loses the run (one warning line);
* :mod:`chaos.metrics.live`: a :class:`~chaos.engine.view.RunView` that serves the
  run's progress on ``/metrics`` while it goes on;
* :mod:`chaos.metrics.promql`: proxy counters read through Prometheus' query API.

Every metric is named ``sidecar_chaos_*`` in base units (seconds, ratios).
"""

from __future__ import annotations

#: Prefix of every metric this tool exports.
PREFIX = "sidecar_chaos"
#: The Pushgateway job the results are pushed under.
PUSH_JOB = "sidecar_chaos"
#: Environment variable that sets ``--pushgateway`` (for CI).
PUSHGATEWAY_ENV = "SIDECAR_CHAOS_PUSHGATEWAY"
#: Environment variable that sets ``--prometheus``.
PROMETHEUS_ENV = "SIDECAR_CHAOS_PROMETHEUS"
