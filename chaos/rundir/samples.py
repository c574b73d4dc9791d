"""Per-request samples: where they live in a run directory and how to load them.

One row per request (the contract with the analysis package)::

    t           float64  time.monotonic() at request start (CLOCK_MONOTONIC, system-wide):
                         the *scheduled* start under open-loop load, the send otherwise
    endpoint    str      endpoint name
    method      str      HTTP method
    latency_ms  float64  request start (as ``t``) to response end (or to the error): under
                         open-loop load it includes ``send_lag_ms``, so a driver that fell
                         behind does not hide the wait (no coordinated omission)
    status      int64    HTTP status; 0 when no response arrived
    error_kind  str      "" (OK) success, else one of ERROR_KINDS: "connect", "reset",
                         "tls", "timeout", "http" (status >= 400); see
                         chaos.traffic.errorkind.classify; or DROPPED
    write_id    str      the id a POST sent as {"id": ...}, else ""
    send_lag_ms float64  actual send minus scheduled start (how late the driver sent it);
                         0 for closed-loop load and for run directories written before
                         the column existed. Latency from the send: latency_ms - send_lag_ms
    auth        int64    what the app received (bits of chaos.rundir.auth: reported, verified,
                         identity, token, credential); 0 when the app said nothing

A DROPPED row is a request the open-loop schedule called for that was never sent,
because the driver's concurrency cap (``max_in_flight``) was reached at its time:
status 0, latency 0. It is the driver's shortfall, not an answer of the system
under test, so the analysis counts it apart from failed requests.

Every Locust process appends its own file ``<run>/samples/samples-<pid>-<token>.chs``
(format in :mod:`chaos.rundir.chunks`); :func:`load_samples` concatenates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from chaos.rundir import SAMPLES_DIR
from chaos.rundir.chunks import SUFFIX, Chunk, iter_chunks

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_DTYPES: Final = {
    "t": "float64",
    "endpoint": "str",
    "method": "str",
    "latency_ms": "float64",
    "status": "int64",
    "error_kind": "str",
    "write_id": "str",
    "send_lag_ms": "float64",
    "auth": "int64",
}
SAMPLE_COLUMNS: Final = tuple(SAMPLE_DTYPES)

#: ``error_kind`` of a request that succeeded.
OK: Final = ""
#: Every value ``error_kind`` takes for a failed request (see chaos.traffic.errorkind).
ERROR_KINDS: Final = ("connect", "reset", "tls", "timeout", "http")
#: ``error_kind`` of a request the schedule called for but the driver could not send.
DROPPED: Final = "dropped"


def samples_dir(run_dir: Path) -> Path:
    """The directory the Locust processes write their sample files into."""
    return Path(run_dir) / SAMPLES_DIR


def sample_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The sample files under a run directory (any depth), or the given files."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sorted(path.rglob(f"*{SUFFIX}"))
        return [path]
    return [Path(p) for p in source]


def read_chunks(path: Path) -> list[Chunk]:
    """Every complete chunk of one file (a cut-off last chunk is ignored)."""
    return [chunk for chunk, _ in iter_chunks(path.read_bytes())]


def load_samples(source: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """All samples of a run (directory) or of the given files, ordered by ``t``.

    Columns and dtypes are exactly :data:`SAMPLE_DTYPES`; an empty frame keeps them.
    """
    import pandas as pd

    chunks = [chunk for path in sample_files(source) for chunk in read_chunks(path)]

    def column(name: str, empty: str) -> npt.NDArray[np.generic]:
        parts = [getattr(c, name) for c in chunks]
        return np.concatenate(parts) if parts else np.empty(0, dtype=empty)

    frame = pd.DataFrame(
        {
            "t": column("t", "float64"),
            "endpoint": column("endpoint", "object"),
            "method": column("method", "object"),
            "latency_ms": column("latency_ms", "float64"),
            "status": column("status", "int64"),
            "error_kind": column("error_kind", "object"),
            "write_id": column("write_id", "object"),
            "send_lag_ms": column("send_lag_ms", "float64"),
            "auth": column("auth", "int64"),
        }
    ).astype(SAMPLE_DTYPES)
    return frame.sort_values("t", kind="stable", ignore_index=True)
