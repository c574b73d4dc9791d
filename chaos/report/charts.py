"""The report's charts, drawn with matplotlib's Agg canvas and returned as PNG data URIs.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas directly,
never through ``pyplot``: no global figure registry to leak into, no backend
switch, and every figure is garbage once its PNG is taken.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chaos.analysis import FaultResult
from chaos.report.rundata import EVENT_LABELS, RunEvent

_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7f7f7f")
_KNOWN = {"sidecar": 0, "mesh": 1, "ambient": 2}
_EVENT_MARKERS = {
    "crashed": "X",
    "restarted": "^",
    "cert_rotated": "D",
    "cert_expired": "v",
    "cert_issued": "d",
    "endpoints_removed": "<",
    "endpoints_restored": ">",
}
_DPI = 110

FloatArray = npt.NDArray[np.float64]


def setup_color(setup: str, order: Sequence[str] = ()) -> str:
    """A stable colour per setup: the three built-ins always get the same one."""
    if setup in _KNOWN:
        return _PALETTE[_KNOWN[setup]]
    extra = [s for s in order if s not in _KNOWN]
    i = extra.index(setup) if setup in extra else len(extra)
    return _PALETTE[3 + i % (len(_PALETTE) - 3)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: object) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8.5, colors="#374151")


def to_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class TimelineInput:
    """One fault's buckets (all setups and repetitions) and what to mark on them."""

    buckets: pd.DataFrame
    setups: Sequence[str]
    fault_duration_s: float
    events: Sequence[RunEvent]
    max_error_rate: float | None
    max_p95_ms: float | None


def timeline_chart(data: TimelineInput) -> str:
    """Error rate and p95 over time since injection, one colour per setup.

    Thin lines are the repetitions, the thick line their median per bucket; the
    fault window is shaded and crashes, restarts and rotations are marked on top.
    """
    fig = _figure(10.0, 5.0)
    ax_err, ax_p95 = fig.subplots(2, 1, sharex=True)
    for ax in (ax_err, ax_p95):
        _style(ax)
        ax.axvspan(0.0, data.fault_duration_s, color="#fde2e2", alpha=0.7, lw=0, zorder=0)
        ax.axvline(0.0, color="#b91c1c", lw=0.8, ls="--")
    b = data.buckets.assign(slot=np.round(data.buckets["t_rel"].to_numpy() * 10.0).astype(int))
    for setup in data.setups:
        color = setup_color(setup, data.setups)
        mine = b[b["setup"] == setup]
        for _, rep in mine.groupby("repetition"):
            ax_err.plot(rep["t_rel"], rep["error_rate"] * 100, color=color, lw=0.6, alpha=0.3)
            ax_p95.plot(rep["t_rel"], rep["p95_ms"], color=color, lw=0.6, alpha=0.3)
        med = mine.groupby("slot")[["t_rel", "error_rate", "p95_ms"]].median()
        ax_err.plot(med["t_rel"], med["error_rate"] * 100, color=color, lw=1.8, label=setup)
        ax_p95.plot(med["t_rel"], med["p95_ms"], color=color, lw=1.8)
    if data.max_error_rate is not None:
        ax_err.axhline(data.max_error_rate * 100, color="#6b7280", lw=0.8, ls=":")
    if data.max_p95_ms is not None:
        ax_p95.axhline(data.max_p95_ms, color="#6b7280", lw=0.8, ls=":")
    ax_err.set_ylabel("error rate (%)", fontsize=9)
    ax_err.set_ylim(-2, 105)
    ax_p95.set_ylabel("p95 latency (ms)", fontsize=9)
    if b["p95_ms"].notna().any() and float(b["p95_ms"].max()) > 0:
        ax_p95.set_yscale("log")
    ax_p95.set_xlabel(
        "seconds since injection (shaded: fault active; dotted: steady state)", fontsize=9
    )
    _mark_events(ax_err, data)
    ax_err.legend(loc="upper right", fontsize=8, frameon=False, ncols=6)
    return to_data_uri(fig)


def _mark_events(ax: object, data: TimelineInput) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    seen: set[str] = set()
    for e in data.events:
        marker = _EVENT_MARKERS.get(e.kind)
        if marker is None:
            continue
        label = EVENT_LABELS[e.kind] if e.kind not in seen else None
        seen.add(e.kind)
        ax.scatter(
            [e.t_rel],
            [101.0],
            marker=marker,
            s=36,
            color=setup_color(e.setup, data.setups),
            edgecolors="#111827",
            linewidths=0.5,
            zorder=5,
            clip_on=False,
        )
        if label:
            ax.scatter(
                [], [], marker=marker, s=36, color="white", edgecolors="#111827", label=label
            )


def ttr_spread_chart(runs: Sequence[FaultResult], setups: Sequence[str]) -> str:
    """Time to recover of every repetition per setup (points) with its median (bar).

    Runs that did not recover sit on a line above the rest, marked with a cross.
    """
    fig = _figure(4.8, 3.2)
    ax = fig.subplots()
    _style(ax)
    measured = [r for r in runs if not r.window.aborted and r.had_impact is not None]
    finite = [r.time_to_recover_s for r in measured if r.time_to_recover_s is not None]
    top = max(finite, default=1.0) * 1.15 + 0.1
    rng = np.random.default_rng(0)
    for i, setup in enumerate(setups):
        color = setup_color(setup, setups)
        mine = [r for r in measured if r.setup == setup]
        ys = [top if r.time_to_recover_s is None else r.time_to_recover_s for r in mine]
        xs = i + rng.uniform(-0.12, 0.12, len(ys))
        done = [r.time_to_recover_s is not None for r in mine]
        ax.scatter(xs[done], np.asarray(ys)[done], color=color, s=30, alpha=0.85, zorder=3)
        if not all(done):
            never = np.logical_not(done)
            ax.scatter(xs[never], np.asarray(ys)[never], color=color, marker="x", s=40, zorder=3)
        values = [math.inf if r.time_to_recover_s is None else r.time_to_recover_s for r in mine]
        if values and math.isfinite(float(np.median(values))):
            ax.hlines(float(np.median(values)), i - 0.28, i + 0.28, color=color, lw=2.2)
    if any(r.time_to_recover_s is None for r in measured):
        ax.axhline(top, color="#9ca3af", lw=0.6, ls=":")
        ax.text(len(setups) - 0.5, top, "not recovered", fontsize=7.5, va="bottom", ha="right")
    ax.set_xticks(range(len(setups)), list(setups), fontsize=9)
    ax.set_xlim(-0.6, len(setups) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("time to recover (s)", fontsize=9)
    ax.set_title("spread across repetitions (bar: median)", fontsize=9, color="#374151")
    return to_data_uri(fig)


#: Probabilities at which a latency CDF is drawn: enough points for a smooth line
#: and a resolved tail, however many samples there are.
CDF_PROBABILITIES: FloatArray = np.unique(
    np.r_[np.linspace(0.0, 0.99, 199), np.linspace(0.99, 1.0, 101)]
)


def latency_quantiles(latency_ms: FloatArray) -> FloatArray:
    """The latencies at ``CDF_PROBABILITIES`` (empty input gives an empty array)."""
    if len(latency_ms) == 0:
        return np.empty(0, dtype=np.float64)
    return np.quantile(latency_ms, CDF_PROBABILITIES)


def latency_cdf_chart(quantiles: Mapping[str, FloatArray], setups: Sequence[str]) -> str:
    """Latency CDF per setup over the fault and recovery window (failed requests included)."""
    fig = _figure(4.8, 3.2)
    ax = fig.subplots()
    _style(ax)
    for setup in setups:
        q = quantiles.get(setup)
        if q is None or len(q) == 0:
            continue
        ax.plot(
            np.maximum(q, 1e-3),
            CDF_PROBABILITIES,
            color=setup_color(setup, setups),
            lw=1.6,
            label=setup,
        )
    for p in (0.95, 0.99):
        ax.axhline(p, color="#9ca3af", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("latency (ms, log)", fontsize=9)
    ax.set_ylabel("share of requests", fontsize=9)
    ax.set_title("latency CDF, injection to window end", fontsize=9, color="#374151")
    ax.legend(loc="best", fontsize=8, frameon=True, framealpha=0.85, edgecolor="none")
    return to_data_uri(fig)


@dataclass(frozen=True)
class TrendSeries:
    """One setup's values over runs (``None``: not recovered / not measured)."""

    setup: str
    times: Sequence[datetime]
    values: Sequence[float | None]
    flagged: bool


def trend_chart(title: str, ylabel: str, series: Sequence[TrendSeries]) -> str:
    """Values over runs, one line per setup; a flagged latest point is ringed in red."""
    fig = _figure(6.4, 2.8)
    ax = fig.subplots()
    _style(ax)
    setups = [s.setup for s in series]
    for s in series:
        color = setup_color(s.setup, setups)
        ys = [math.nan if v is None else v for v in s.values]
        # naive UTC: numpy's datetime64 has no time zones
        xs = np.array([t.replace(tzinfo=None) for t in s.times], dtype="datetime64[ms]")
        ax.plot(xs, ys, color=color, lw=1.4, marker="o", ms=3.5, label=s.setup)
        if s.flagged and s.times:
            ax.scatter(
                xs[-1:],
                [ys[-1]],
                s=140,
                facecolors="none",
                edgecolors="#dc2626",
                lw=1.8,
                zorder=4,
            )
    ax.set_title(title, fontsize=9.5, color="#111827")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return to_data_uri(fig)
