"""The typed inputs and outputs of the analysis: samples, windows, results, statistics.

These are the contracts shared with the traffic recorder (samples), the engine
(fault windows, counters, writes) and the report (results). Everything here is
plain data; the computations live in the sibling modules.

Time is always seconds on ``time.monotonic()`` (the clock of the run journal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from chaos.errors import InputError
from chaos.rundir.columns import SampleColumns
from chaos.rundir.samples import DROPPED, ERROR_KINDS, OK, SAMPLE_COLUMNS, SAMPLE_DTYPES

if TYPE_CHECKING:
    from chaos.analysis.decisions import DecisionSet
    from chaos.analysis.security import WindowSecurity

# The samples' columns and error kinds are the run directory's contract
# (chaos.rundir.samples). ``t`` is when the request was *sent* (its start);
# ``latency_ms`` is its duration, so the request was in flight over
# ``[t, t + latency_ms / 1000]``. Recording the start (not the completion) makes a
# request that hangs until a timeout count at the moment the trouble began.
# Under open-loop load ``t`` is the scheduled start and ``latency_ms`` runs from it, so
# a driver that sent late does not hide the wait; DROPPED rows (never sent) are split
# off by :func:`split_dropped` and counted apart.

#: Columns the analysis can do without (run directories written before they existed).
OPTIONAL_COLUMNS: frozenset[str] = frozenset({"send_lag_ms", "auth"})

#: The kind of value each column must hold, from its dtype in the contract.
_COLUMN_KINDS: dict[str, str] = {
    name: {"float64": "float", "int64": "int", "str": "str"}[dtype]
    for name, dtype in SAMPLE_DTYPES.items()
}


def empty_samples() -> pd.DataFrame:
    """A samples frame with the right columns and no rows."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SAMPLE_DTYPES.items()})


def validate_samples(samples: pd.DataFrame) -> None:
    """Raise ``InputError`` unless ``samples`` follows the samples contract.

    Checks the columns and their kinds, that times and latencies are finite, that
    latencies are not negative and that every ``error_kind`` is known.
    """
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise InputError(f"samples lack columns: {', '.join(missing)}")
    for name, kind in _COLUMN_KINDS.items():
        if name not in samples.columns:
            continue
        column = samples[name]
        ok = {
            "float": pd.api.types.is_numeric_dtype(column)
            and not pd.api.types.is_bool_dtype(column),
            "int": pd.api.types.is_integer_dtype(column),
            "str": pd.api.types.is_string_dtype(column) or column.dtype == object,
        }[kind]
        if not ok:
            raise InputError(f"samples column {name!r} must be {kind}, not {column.dtype}")
    if len(samples) == 0:
        return
    t = samples["t"].to_numpy(dtype="float64")
    latency = samples["latency_ms"].to_numpy(dtype="float64")
    if not (pd.notna(t).all() and pd.notna(latency).all()):
        raise InputError("samples have missing t or latency_ms values")
    if (latency < 0).any():
        raise InputError("samples have negative latency_ms values")
    unknown = set(samples["error_kind"].unique()) - {OK, DROPPED, *ERROR_KINDS}
    if unknown:
        raise InputError(f"samples have unknown error kinds: {sorted(map(str, unknown))}")


def validate_columns(columns: SampleColumns) -> None:
    """Raise ``InputError`` unless the samples' columns follow the samples contract.

    The checks of :func:`validate_samples`, on arrays: finite times and latencies,
    no negative latency, only known error kinds (checked on the names in use, not
    per row; DROPPED included).
    """
    if len(columns) == 0:
        return
    if not (np.isfinite(columns.t).all() and np.isfinite(columns.latency_ms).all()):
        raise InputError("samples have missing t or latency_ms values")
    if (columns.latency_ms < 0).any():
        raise InputError("samples have negative latency_ms values")
    used = np.bincount(columns.coded("error_kind"), minlength=len(columns.names)) > 0
    unknown = {str(n) for n in columns.names[used]} - {OK, DROPPED, *ERROR_KINDS}
    if unknown:
        raise InputError(f"samples have unknown error kinds: {sorted(unknown)}")


def split_dropped(samples: pd.DataFrame) -> tuple[pd.DataFrame, npt.NDArray[np.float64]]:
    """The requests that were sent, and the scheduled times of the DROPPED ones (sorted).

    A dropped request never reached the system under test: it is neither a failure
    nor a latency, only the driver's shortfall against its schedule.
    """
    kinds = samples["error_kind"].to_numpy(dtype=object)
    dropped = kinds == DROPPED
    if not dropped.any():
        return samples, np.empty(0, dtype=np.float64)
    times = np.sort(samples["t"].to_numpy(dtype=np.float64)[dropped])
    return samples[~dropped], times


def split_dropped_columns(
    columns: SampleColumns,
) -> tuple[SampleColumns, npt.NDArray[np.float64]]:
    """:func:`split_dropped` on columns: the sent requests, and the DROPPED ones' times.

    Copies the columns only when some request was dropped (open-loop load whose cap
    was reached); otherwise ``columns`` comes back as it is.
    """
    code = columns.code_of(DROPPED)
    if code is None:
        return columns, np.empty(0, dtype=np.float64)
    dropped = columns.coded("error_kind") == code
    if not dropped.any():
        return columns, np.empty(0, dtype=np.float64)
    times = np.sort(columns.t[dropped])
    return columns.take(~dropped), times


@dataclass(frozen=True)
class SteadyState:
    """What "healthy" means: the error rate and p95 latency a 100 ms bucket may have."""

    max_error_rate: float
    max_p95_ms: float


@dataclass(frozen=True)
class FaultWindow:
    """One fault injection as the engine ran it (times on the monotonic clock).

    ``warmup_start_t`` .. ``inject_t`` is the period checked for the steady state
    before the fault; ``end_t`` closes the recovery window. ``self_healing`` faults
    (a crash the supervisor restarts) measure recovery from injection, the others
    from ``revert_t``. ``aborted`` is set when a stop condition ended the run early.
    """

    setup: str
    fault: str
    fault_type: str
    repetition: int
    inject_t: float
    revert_t: float
    end_t: float
    self_healing: bool
    warmup_start_t: float
    aborted: bool = False
    #: ``proxy:stat`` counters of every request through the faulted element(s), and the
    #: one of every client request: their rises give the affected share (empty: none).
    share_counters: tuple[str, ...] = ()
    client_counter: str = ""

    def __post_init__(self) -> None:
        if not self.warmup_start_t <= self.inject_t <= self.revert_t <= self.end_t:
            raise InputError(
                f"fault window {self.setup}/{self.fault}#{self.repetition}: times must satisfy "
                "warmup_start_t <= inject_t <= revert_t <= end_t"
            )


@dataclass(frozen=True)
class BrokenWindow:
    """A window the runner could not measure: the runner's own fault, not the system's.

    A proxy that did not start, a port taken, traffic that died, a disk that filled:
    the window is listed with its reason and the step it broke in (``phase``) and is
    left out of every measurement, so it can neither pass nor fail a hypothesis.
    """

    setup: str
    fault: str
    repetition: int
    phase: str
    reason: str
    #: Whether the fault had been applied (and so was reverted) before it broke.
    injected: bool = False

    @property
    def label(self) -> str:
        return f"{self.setup}/{self.fault}#{self.repetition + 1}"


@dataclass(frozen=True)
class CounterDeltas:
    """How much proxy counters rose during a window, summed over proxies.

    ``retries`` are retries the proxies made; they are *not* "errors absorbed": a
    retry can fail again, one client request can be retried several times, and each
    hop counts its own. They are shown next to the failures clients saw, not
    subtracted from them. ``by_counter`` holds every counter's rise, keyed
    ``"<proxy>:<name>"``.
    """

    retries: int = 0
    #: Retries the circuit breaker refused (``max_retries`` reached: Envoy's default 3,
    #: Istio's 2^32-1).
    retry_overflows: int = 0
    tls_failures: int = 0
    ejections: int = 0
    connect_failures: int = 0
    restarts: int = 0
    by_counter: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultResult:
    """What one fault window did to the clients, and how fast it passed.

    Times are seconds, latencies milliseconds. ``None`` means "not measurable" (no
    requests in the period) or, for ``time_to_recover_s``, "not recovered".
    ``had_impact`` is False when the steady state held throughout (the fault had no
    visible effect; ``time_to_recover_s`` is then 0), None when there was no traffic.
    """

    window: FaultWindow
    steady: SteadyState
    recovered_for_s: float
    had_impact: bool | None
    time_to_impact_s: float | None
    time_to_recover_s: float | None
    impact_duration_s: float | None
    relapsed: bool
    failed_requests: int
    total_requests: int
    error_rate_during_fault: float | None
    p50_ms_during_fault: float | None
    p95_ms_during_fault: float | None
    p99_ms_during_fault: float | None
    baseline_error_rate: float | None
    baseline_p50_ms: float | None
    baseline_p95_ms: float | None
    steady_state_before: bool
    steady_state_after: bool
    writes_lost: int | None
    writes_duplicated: int | None
    counters: CounterDeltas
    errors_by_kind: dict[str, int]
    #: Requests the open-loop schedule called for in the window that the driver could
    #: not send (its concurrency cap was full); not in ``total_requests``.
    dropped_requests: int = 0
    #: What the window let through (chaos.analysis.security); None in older results.
    security: WindowSecurity | None = None
    #: Share of client requests that passed through the faulted element between
    #: injection and revert, from the proxies' counters (chaos.analysis.shares); None
    #: when the platform names no counters or nothing was counted.
    affected_share: float | None = None

    @property
    def setup(self) -> str:
        """The setup this window ran on."""
        return self.window.setup

    @property
    def fault(self) -> str:
        """The fault's name."""
        return self.window.fault

    @property
    def repetition(self) -> int:
        """The repetition number."""
        return self.window.repetition

    @property
    def recovered(self) -> bool:
        """Whether the window reached the steady state again (and held it)."""
        return self.time_to_recover_s is not None


@dataclass(frozen=True)
class Estimate:
    """A median with its bootstrap 95 % interval; ``None`` marks an infinite or undefined value.

    For recovery times ``None`` means "not recovered" (a not-recovered run counts as
    infinitely slow).
    """

    median: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Summary:
    """One setup and fault across its repetitions.

    ``repetitions`` counts every run; the estimates use only the measured ones
    (not ``aborted``, and not ``unmeasured`` for lack of traffic).
    """

    setup: str
    fault: str
    repetitions: int
    aborted: int
    unmeasured: int
    recovered: int
    no_impact: int
    time_to_recover_s: Estimate
    failed_requests: Estimate
    error_rate: Estimate


@dataclass(frozen=True)
class Comparison:
    """Which of two setups recovers faster from a fault, and whether statistics back it.

    ``faster`` names the setup with the lower median recovery time when
    ``supported``; otherwise None. ``difference_s`` is ``median_b - median_a``
    (positive when A is faster); ``ratio`` is slower median over faster median.
    ``None`` stands for infinite or undefined values. ``statement`` is one plain
    sentence for the report.
    """

    fault: str
    setup_a: str
    setup_b: str
    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    difference_s: float | None
    ratio: float | None
    p_value: float | None
    supported: bool
    faster: str | None
    statement: str


@dataclass(frozen=True)
class RunAnalysis:
    """Everything the analysis found in one run: what ``results.json`` and ``buckets.csv`` hold.

    ``buckets`` has the ``BUCKET_COLUMNS`` plus ``setup``, ``fault``,
    ``repetition`` and ``t_rel`` (seconds since that window's injection).
    ``decided``: the hypotheses' decisions (None in results written before them).
    """

    runs: list[FaultResult]
    summaries: list[Summary]
    comparisons: list[Comparison]
    buckets: pd.DataFrame
    decided: DecisionSet | None = None
    #: Windows the runner could not measure, with the reason (none in ``runs``).
    broken: list[BrokenWindow] = field(default_factory=list)
