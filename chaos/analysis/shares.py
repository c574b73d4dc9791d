"""The affected share of a fault: how many client requests passed through what was faulted.

One target can mean a different share of requests per setup: a fault on one replica
sits on that replica's proxy in the sidecar setup (about half the requests with two
replicas, less when least-request balancing steers away from a slow one), on the
callers' outbound route for a whole service in mesh (a VirtualService fault), on the
service's waypoint in ambient (every replica). The share is measured, not assumed:
the rise of the faulted HTTP connection managers' ``downstream_rq_total`` (the
proxies' own counters, named by the platform per fault site) over the rise of the
ingress's, between injection and revert. A retried request crosses a hop once per
attempt, so the share is capped at 1.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from chaos.analysis.counters import counter_deltas
from chaos.analysis.model import FaultWindow

#: Where the share comes from, in words (the report and results.json say so).
SHARE_SOURCE = (
    "proxy counters: rise of downstream_rq_total at the faulted proxies over the "
    "ingress's, injection to revert"
)


def affected_share(counters: pd.DataFrame | None, window: FaultWindow) -> float | None:
    """The share (0..1) of client requests through ``window``'s faulted element.

    None when the window names no counters (not an HTTP fault, or a platform that
    reads none) or the clients' counter did not rise (no traffic, or not read).
    """
    if counters is None or not window.share_counters or not window.client_counter:
        return None
    if window.revert_t <= window.inject_t:
        return None
    span = dataclasses.replace(window, end_t=window.revert_t)
    rises = counter_deltas(counters, span).by_counter
    clients = rises.get(window.client_counter, 0)
    if clients <= 0:
        return None
    through = sum(rises.get(key, 0) for key in window.share_counters)
    return min(1.0, through / clients)
