"""The monitoring options of ``run`` and ``demo``: push the results to a Pushgateway, serve live
metrics while the run goes on, read the proxy counters through a Prometheus.
"""

from __future__ import annotations

from typing import Annotated

import typer

from chaos.metrics import PROMETHEUS_ENV, PUSHGATEWAY_ENV

_Pushgateway = Annotated[
    str | None,
    typer.Option(
        envvar=PUSHGATEWAY_ENV,
        help="push the results to this Prometheus Pushgateway at the end (e.g. http://host:9091)",
    ),
]
_MetricsPort = Annotated[
    int | None, typer.Option(help="serve live metrics on this port while the run goes on")
]
_MetricsAddress = Annotated[str, typer.Option(help="address for --metrics-port")]

_Prometheus = Annotated[
    str | None,
    typer.Option(
        envvar=PROMETHEUS_ENV,
        help="read proxy counters through this Prometheus (query API), not the admin API",
    ),
]
