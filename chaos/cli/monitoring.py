"""The monitoring options of ``run`` and ``demo``: push the results to a Pushgateway, serve live
metrics while the run goes on, read the proxy counters through a Prometheus.
"""

from __future__ import annotations

from typing import Annotated, Final

import typer

#: Environment variable that sets ``--pushgateway`` (for CI).
PUSHGATEWAY_ENV: Final = "SIDECAR_CHAOS_PUSHGATEWAY"
#: Environment variable that sets ``--prometheus``.
PROMETHEUS_ENV: Final = "SIDECAR_CHAOS_PROMETHEUS"

PushgatewayOption = Annotated[
    str | None,
    typer.Option(
        envvar=PUSHGATEWAY_ENV,
        help="push the results to this Prometheus Pushgateway at the end (e.g. http://host:9091)",
    ),
]
MetricsPortOption = Annotated[
    int | None, typer.Option(help="serve live metrics on this port while the run goes on")
]
MetricsAddressOption = Annotated[str, typer.Option(help="address for --metrics-port")]

PrometheusOption = Annotated[
    str | None,
    typer.Option(
        envvar=PROMETHEUS_ENV,
        help="read proxy counters through this Prometheus (query API), not the admin API",
    ),
]
