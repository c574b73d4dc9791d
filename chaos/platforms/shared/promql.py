"""Proxy counters read through Prometheus' HTTP query API (``--prometheus URL``).

This is how a cluster's proxy counters are read: Prometheus scrapes every Envoy's
``/stats/prometheus`` and the tool asks Prometheus, not the proxies. Envoy exports
``cluster.<name>.<stat>`` as ``envoy_cluster_<stat>{envoy_cluster_name="<name>"}``
and ``listener.<address>.<stat>`` as ``envoy_listener_<stat>{envoy_listener_address=
"<address>"}`` and ``http.<prefix>.<stat>`` as ``envoy_http_<stat>{
envoy_http_conn_manager_prefix="<prefix>"}`` (dots in the stat become underscores);
:class:`PrometheusCounters` turns them back into the admin API's names, so the analysis sees
the same counters whichever source read them.

Each reading takes, per series, the last raw sample of a short range (not an
instant query, whose timestamp is the query's): the sample's own scrape time
becomes the reading's time on the monotonic clock, and samples scraped before
the topology started (a previous window's proxies on the same addresses) are left
out. A proxy that is down has no new sample: its last one stays its reading, as
it was then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from chaos.errors import InputError
from chaos.rundir.counters import CounterSample

#: Envoy stats the analysis reads, in the admin API's spelling (``chaos.analysis.counters``).
COUNTER_STATS: tuple[str, ...] = (
    "upstream_rq_retry",
    "upstream_rq_retry_overflow",
    "ssl.fail_verify_error",
    "ssl.connection_error",
    "ssl.fail_verify_san",
    "ssl.fail_verify_no_cert",
    "outlier_detection.ejections_enforced_total",
    "upstream_cx_connect_fail",
    # An HTTP connection manager's requests (the affected share of a fault).
    "downstream_rq_total",
)
#: Envoy's Prometheus scopes: (metric name prefix, the label holding the scope's name).
_SCOPES: dict[str, tuple[str, str]] = {
    "cluster": ("envoy_cluster_", "envoy_cluster_name"),
    "listener": ("envoy_listener_", "envoy_listener_address"),
    "http": ("envoy_http_", "envoy_http_conn_manager_prefix"),
}
_BY_METRIC_SUFFIX = {stat.replace(".", "_"): stat for stat in COUNTER_STATS}


def prometheus_name(scope: str, stat: str) -> str:
    """The Prometheus metric Envoy exports ``<scope>.<x>.<stat>`` as."""
    return _SCOPES[scope][0] + stat.replace(".", "_")


def admin_name(metric: str, labels: Mapping[str, str]) -> str | None:
    """The admin API's name of an Envoy metric (``cluster.payments.upstream_rq_retry``)."""
    for scope, (prefix, label) in _SCOPES.items():
        if metric.startswith(prefix) and label in labels:
            stat = _BY_METRIC_SUFFIX.get(metric[len(prefix) :])
            if stat is not None:
                return f"{scope}.{labels[label]}.{stat}"
    return None


def counters_query(selector: Mapping[str, str], lookback_s: float) -> str:
    """The PromQL range query for every counter of the proxies matching ``selector``."""
    names = "|".join(prometheus_name(scope, stat) for scope in _SCOPES for stat in COUNTER_STATS)
    # Not the admin API's own requests (every scrape counts itself there); the label is
    # absent, so matched, on the other metrics.
    matchers = [f'__name__=~"{names}"', 'envoy_http_conn_manager_prefix!="admin"']
    matchers += [f'{key}="{_escape(value)}"' for key, value in sorted(selector.items())]
    return "{" + ",".join(matchers) + "}" + f"[{max(1, round(lookback_s * 1000))}ms]"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def check_prometheus(url: str, timeout_s: float = 5.0) -> str:
    """``url`` if a Prometheus answers its build-info API there, else an :class:`InputError`."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InputError(f"--prometheus: {url!r} is not an http(s) URL like http://127.0.0.1:9090")
    try:
        answer = httpx.get(f"{base}/api/v1/status/buildinfo", timeout=timeout_s)
        answer.raise_for_status()
        if answer.json().get("status") != "success":
            raise ValueError("status is not success")
    except (httpx.HTTPError, ValueError) as exc:
        raise InputError(f"--prometheus: no Prometheus answers at {base}: {exc}") from exc
    return base


@dataclass
class PrometheusCounters:
    """Reads one topology's proxy counters from Prometheus (a counter source)."""

    url: str
    #: Target labels that pick this topology's proxies (``{"setup": "mesh"}``).
    selector: Mapping[str, str]
    #: Wall time the topology started: samples scraped before it are ignored.
    since_wall: float
    proxy_label: str = "proxy"
    lookback_s: float = 30.0
    timeout_s: float = 2.0
    #: Why the last reading failed (None after a good one).
    last_error: str | None = None

    def read(self) -> list[CounterSample]:
        """One reading of every counter; empty when Prometheus does not answer."""
        query = counters_query(self.selector, self.lookback_s)
        try:
            answer = httpx.get(
                f"{self.url.rstrip('/')}/api/v1/query",
                params={"query": query},
                timeout=self.timeout_s,
            )
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.last_error = f"query to {self.url} failed: {exc}"
            return []
        self.last_error = None
        return self._samples(document)

    def _samples(self, document: object) -> list[CounterSample]:
        data = document.get("data") if isinstance(document, dict) else None
        series = data.get("result") if isinstance(data, dict) else None
        now_wall, now_mono = time.time(), time.monotonic()
        samples: list[CounterSample] = []
        for item in series if isinstance(series, list) else []:
            labels = item.get("metric") if isinstance(item, dict) else None
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(labels, dict) or not isinstance(values, list) or not values:
                continue
            proxy = labels.get(self.proxy_label)
            name = admin_name(str(labels.get("__name__", "")), labels)
            try:
                at, value = float(values[-1][0]), float(values[-1][1])
            except (TypeError, ValueError, IndexError):
                continue
            if not isinstance(proxy, str) or name is None or at < self.since_wall:
                continue
            samples.append(CounterSample(now_mono - (now_wall - at), proxy, name, value))
        return samples
