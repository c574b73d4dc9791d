"""A Prometheus scrape configuration for a local topology's proxies (``up --prometheus-config``).

Every Envoy of the topology (pod sidecars, node proxies, waypoints, the ingress)
becomes one static target scraped on its admin port's ``/stats/prometheus``, with
the labels ``setup`` and ``proxy`` (the supervisor's process name, the name the
counters are keyed by), so a local Prometheus sees the topology as it would see
a cluster's proxies. Pod addresses depend only on the setup and its slot, so the
file also covers later runs of the same setup in the same slot.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import yaml

from chaos.errors import InputError
from chaos.platforms.shared.layout import TopologyLayout

#: Labels every target carries (the counter source selects and keys by them).
SETUP_LABEL = "setup"
PROXY_LABEL = "proxy"
METRICS_PATH = "/stats/prometheus"


def scrape_job(layout: TopologyLayout, scrape_interval_s: float = 1.0) -> dict[str, object]:
    """One ``scrape_configs`` entry for every proxy of ``layout``."""
    targets = []
    for proxy, admin_url in layout.proxy_admins():
        netloc = urllib.parse.urlsplit(admin_url).netloc
        targets.append(
            {
                "targets": [netloc],
                "labels": {SETUP_LABEL: layout.setup.value, PROXY_LABEL: proxy},
            }
        )
    return {
        "job_name": f"sidecar-chaos-{layout.setup.value}",
        "metrics_path": METRICS_PATH,
        "scrape_interval": _duration(scrape_interval_s),
        "scrape_timeout": _duration(min(scrape_interval_s, 1.0)),
        "static_configs": targets,
    }


def scrape_config(layouts: Sequence[TopologyLayout], scrape_interval_s: float = 1.0) -> str:
    """A complete Prometheus configuration file (YAML) scraping every proxy of ``layouts``."""
    document = {
        "global": {"scrape_interval": _duration(scrape_interval_s)},
        "scrape_configs": [scrape_job(layout, scrape_interval_s) for layout in layouts],
    }
    header = (
        "# Written by `sidecar-chaos up --prometheus-config`: every proxy's /stats/prometheus.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


def write_scrape_config(
    path: Path, layouts: Sequence[TopologyLayout], scrape_interval_s: float = 1.0
) -> Path:
    """Write :func:`scrape_config` to ``path`` (through a temporary name, then renamed)."""
    if path.is_dir():
        raise InputError(f"--prometheus-config: {path} is a directory, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(scrape_config(layouts, scrape_interval_s), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise InputError(f"--prometheus-config: cannot write {path}: {exc}") from exc
    return path


def _duration(seconds: float) -> str:
    """Prometheus' duration syntax: whole milliseconds."""
    return f"{max(1, round(seconds * 1000))}ms"
