"""The report's data-plane table: what each setup's proxies did, side by side.

Read from ``meta.json`` (the journal's table per setup, ``chaos.rundir.dataplane``):
one row per behaviour, one column per setup, a deviation the experiment asked for
marked, and where each default comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chaos.rundir.meta import RunMeta


@dataclass(frozen=True)
class DataPlaneCell:
    value: str
    deviation: bool


@dataclass(frozen=True)
class DataPlaneLine:
    name: str
    cells: list[DataPlaneCell]
    #: ``setup: source`` for each setup, the same source once.
    sources: str


@dataclass(frozen=True)
class DataPlaneView:
    setups: list[str]
    lines: list[DataPlaneLine]


def dataplane_view(meta: RunMeta | None) -> DataPlaneView | None:
    """The table of ``meta``'s setups; None for a run that recorded none."""
    if meta is None or not meta.dataplane:
        return None
    setups = list(meta.dataplane)
    names: list[str] = []
    for rows in meta.dataplane.values():
        names += [r.name for r in rows if r.name not in names]
    lines = []
    for name in names:
        cells = []
        sources: dict[str, list[str]] = {}
        for setup in setups:
            row = next((r for r in meta.dataplane[setup] if r.name == name), None)
            if row is None:
                cells.append(DataPlaneCell("–", False))
                continue
            cells.append(DataPlaneCell(row.value, row.deviation))
            sources.setdefault(row.source, []).append(setup)
        text = "; ".join(f"{', '.join(s)}: {src}" for src, s in sources.items())
        lines.append(DataPlaneLine(name, cells, text))
    return DataPlaneView(setups, lines)


#: Fault types whose placement is a setup's choice (a VirtualService fault, a waypoint).
HTTP_FAULTS = ("latency", "abort")


#: Shares further apart than this (absolute, 0..1) make a comparison not like with like.
SHARE_TOLERANCE = 0.10


def placement_note(
    fault_type: str,
    pods_by_setup: Mapping[str, Sequence[str]],
    shares: Mapping[str, float | None] | None = None,
) -> str:
    """A line for the verdict: each setup's affected share of requests, and whether they differ.

    Each setup applies an HTTP fault where it puts L7 policy (the target's sidecar; the
    callers' outbound route for a whole service in mesh, the ingress for the frontend;
    the service's waypoint, for every replica, in ambient), so one target can mean a
    different share of requests. ``shares`` (per setup, the median of its windows' measured
    shares, ``chaos.analysis.shares``) are stated when measured; pairs further apart than
    :data:`SHARE_TOLERANCE` are named. Without shares, the pods each setup reached.
    """
    if fault_type not in HTTP_FAULTS:
        return ""
    measured = {s: v for s, v in (shares or {}).items() if v is not None}
    if measured:
        text = "Affected share of requests (proxy counters, injection to revert): " + ", ".join(
            f"{setup} {value:.0%}" for setup, value in measured.items()
        )
        names = list(measured)
        apart = [
            f"{a} vs {b}"
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            if abs(measured[a] - measured[b]) > SHARE_TOLERANCE
        ]
        if apart:
            text += (
                f". The shares differ ({', '.join(apart)}): "
                "those comparisons are not like with like."
            )
        else:
            text += "."
        return text
    if len(pods_by_setup) < 2:
        return ""
    counts = {setup: len(set(pods)) for setup, pods in pods_by_setup.items()}
    if len(set(counts.values())) < 2:
        return ""
    reached = ", ".join(f"{setup} {n} pod(s)" for setup, n in counts.items())
    return (
        f"The fault's placement differs per setup (it reached {reached}): the shares of "
        "affected requests differ, so this comparison is not like with like."
    )
