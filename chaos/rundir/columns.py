"""A run's samples as plain arrays, strings kept as codes: the form the analysis reads at scale.

:func:`chaos.rundir.samples.load_samples` builds a pandas frame with one Python
string per row and column; at 10 M rows that is gigabytes. :func:`load_columns`
reads the same chunks into arrays allocated once (row counts come from the chunk
headers), keeps endpoint, method and error kind as ``int32`` indexes into one
shared table of names, the write id as a 64-bit key (:mod:`chaos.rundir.writes`:
millions of distinct ids never become Python strings), and sorts by ``t`` once.
About 32 bytes a row, plus 8 for ``write_key`` once a run has writes and 8 for
``send_lag_ms`` once it has a lag that is not 0 (open-loop load): columns that stay
0 (closed loop, ``CHS1`` files, read-only traffic) stay in pages never touched.

Both chunk versions read (see :mod:`chaos.rundir.chunks`). DROPPED rows (open-loop
requests never sent) are kept by :func:`load_columns`, like ``load_samples``, for the
analysis to count apart; :func:`load_latencies` leaves them out (they have no latency).
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from chaos.rundir.chunks import CodedChunk, iter_coded_chunks, rows_upper_bound
from chaos.rundir.samples import DROPPED, OK, SAMPLE_DTYPES, sample_files
from chaos.rundir.writes import NO_WRITE, KeyArray, hash_ids, write_keys

#: ``t`` and ``latency_ms`` of the requests sent, by ``t`` (:func:`load_latencies`).
Latencies = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
#: The coded columns, in the order of :attr:`SampleColumns.codes`' rows.
CODED_COLUMNS: Final = ("endpoint", "method", "error_kind")
#: Read this much of a mapped samples file between releases of its pages.
_RELEASE_BYTES = 16 << 20
#: Position of the write id among a chunk's coded columns (after the three above).
_CHUNK_WRITE_ID = 3


@dataclass(frozen=True)
class SampleColumns:
    """Every sample as arrays ordered by ``t``; ``codes[k]`` indexes ``names``.

    ``names[0]`` is ``""`` (a request that succeeded). ``write_key`` is the key of
    each row's write id (:func:`chaos.rundir.writes.write_keys`; 0: none).
    """

    t: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    #: Actual send minus scheduled start (0 for closed-loop load and ``CHS1`` files).
    send_lag_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int32]
    #: Shape ``(3, rows)``: endpoint, method, error_kind (see CODED_COLUMNS).
    codes: npt.NDArray[np.int32]
    names: npt.NDArray[np.object_]
    write_key: KeyArray
    #: What the app received per request (bits of :mod:`chaos.rundir.auth`; 0: nothing said).
    auth: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.t)

    def coded(self, column: str) -> npt.NDArray[np.int32]:
        """The codes of one string column."""
        row: npt.NDArray[np.int32] = self.codes[CODED_COLUMNS.index(column)]
        return row

    def failed(self) -> npt.NDArray[np.bool_]:
        """Which requests failed (``error_kind`` not empty)."""
        failed: npt.NDArray[np.bool_] = self.coded("error_kind") != 0
        return failed

    def code_of(self, name: str) -> int | None:
        """The code of ``name`` in the table, or None when no sample has it."""
        found = np.flatnonzero(self.names == name)
        return int(found[0]) if len(found) else None

    def sent_latencies(self) -> Latencies:
        """What :func:`load_latencies` reads: DROPPED rows (never sent) left out."""
        dropped = self.code_of(DROPPED)
        if dropped is None:
            return self.t, self.latency_ms
        sent = self.coded("error_kind") != dropped
        return self.t[sent], self.latency_ms[sent]

    def take(self, rows: npt.NDArray[np.bool_]) -> SampleColumns:
        """The samples where ``rows`` is true (same table of names, order kept)."""
        return SampleColumns(
            t=self.t[rows],
            latency_ms=self.latency_ms[rows],
            send_lag_ms=self.send_lag_ms[rows],
            status=self.status[rows],
            codes=self.codes[:, rows],
            names=self.names,
            write_key=self.write_key[rows],
            auth=self.auth[rows],
        )

    def frame(self) -> pd.DataFrame:
        """The samples as :func:`chaos.rundir.samples.load_samples` returns them, but
        ``write_id`` (only its key is kept: see ``write_key``)."""
        data: dict[str, object] = {"t": self.t}
        for name in ("endpoint", "method"):
            data[name] = self.names[self.coded(name)]
        data["latency_ms"] = self.latency_ms
        data["status"] = self.status.astype(np.int64)
        data["error_kind"] = self.names[self.coded("error_kind")]
        data["send_lag_ms"] = self.send_lag_ms
        data["auth"] = self.auth.astype(np.int64)
        dtypes = {k: v for k, v in SAMPLE_DTYPES.items() if k != "write_id"}
        return pd.DataFrame(data).astype(dtypes)

    @classmethod
    def from_frame(cls, samples: pd.DataFrame) -> SampleColumns:
        """Columns of a samples frame (in the frame's order, which must be by ``t``)."""
        strings = pd.concat(
            [pd.Series([OK], dtype=object)]
            + [samples[c].astype(object).reset_index(drop=True) for c in CODED_COLUMNS],
            ignore_index=True,
        )
        codes, names = pd.factorize(strings)
        rows = len(samples)
        lag = (
            samples["send_lag_ms"].to_numpy(dtype=np.float64)
            if "send_lag_ms" in samples.columns
            else np.zeros(rows, dtype=np.float64)  # a frame from before the column
        )
        auth = (
            samples["auth"].to_numpy(dtype=np.uint8)
            if "auth" in samples.columns
            else np.zeros(rows, dtype=np.uint8)
        )
        return cls(
            t=samples["t"].to_numpy(dtype=np.float64),
            latency_ms=samples["latency_ms"].to_numpy(dtype=np.float64),
            send_lag_ms=lag,
            status=samples["status"].to_numpy(dtype=np.int32),
            codes=codes[1:].astype(np.int32).reshape(len(CODED_COLUMNS), rows),
            names=np.asarray(names, dtype=object),
            write_key=write_keys(samples["write_id"].to_numpy(dtype=object)),
            auth=auth,
        )


def _open(path: Path) -> mmap.mmap | bytes:
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def load_columns(source: str | Path | Sequence[str | Path]) -> SampleColumns:
    """All samples of a run (directory) or of the given files, ordered by ``t``."""
    t, latency, lag, status, codes, table, keys, auth = _read(source, strings=True)
    names = np.empty(len(table), dtype=object)
    names[:] = table
    return SampleColumns(
        t=t,
        latency_ms=latency,
        send_lag_ms=lag,
        status=status,
        codes=codes,
        names=names,
        write_key=keys,
        auth=auth,
    )


def load_latencies(source: str | Path | Sequence[str | Path]) -> Latencies:
    """Only ``t`` and ``latency_ms`` of every request sent, ordered by ``t`` (16 bytes a row).

    DROPPED rows (never sent, so no latency) are left out.
    """
    t, latency, *_ = _read(source, strings=False)
    return t, latency


def _read(
    source: str | Path | Sequence[str | Path], *, strings: bool
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    list[str],
    KeyArray,
    npt.NDArray[np.uint8],
]:
    files = [_open(p) for p in sample_files(source)]
    try:
        total = sum(rows_upper_bound(data) for data in files)
        width = total if strings else 0
        t = np.empty(total, dtype=np.float64)
        latency = np.empty(total, dtype=np.float64)
        # calloc'd: the pages of a lag (or a write key) that stays 0 are never touched
        lag = np.zeros(width, dtype=np.float64)
        keys = np.zeros(width, dtype=np.uint64)
        auth = np.zeros(width, dtype=np.uint8)
        any_lag = any_write = any_auth = False
        status = np.empty(width, dtype=np.int32)
        codes = np.empty((len(CODED_COLUMNS), width), dtype=np.int32)
        # Every chunk's names in use go into one list; codes first index that list, and
        # one hash pass (pd.factorize) at the end maps them to a table without duplicates.
        # A Python dict lookup per name costs more than everything else at 10 M rows.
        every_name: list[str] = [OK]
        n = 0
        for data in files:
            released = 0
            for chunk, offset in iter_coded_chunks(data):
                if offset - released >= _RELEASE_BYTES:
                    released = _release(data, offset)
                if strings:
                    end = n + len(chunk)
                    t[n:end] = chunk.t
                    latency[n:end] = chunk.latency_ms
                    if chunk.send_lag_ms.any():
                        lag[n:end] = chunk.send_lag_ms
                        any_lag = True
                    status[n:end] = chunk.status
                    if chunk.auth.any():
                        auth[n:end] = chunk.auth
                        any_auth = True
                    _coded(chunk, every_name, codes[:, n:end])
                    if chunk.codes[_CHUNK_WRITE_ID].any():
                        keys[n:end] = _keys(chunk)
                        any_write = True
                elif DROPPED in chunk.names:  # latencies only: a dropped row has none
                    sent = chunk.codes[CODED_COLUMNS.index("error_kind")] != chunk.names.index(
                        DROPPED
                    )
                    end = n + int(sent.sum())
                    t[n:end] = chunk.t[sent]
                    latency[n:end] = chunk.latency_ms[sent]
                else:
                    end = n + len(chunk)
                    t[n:end] = chunk.t
                    latency[n:end] = chunk.latency_ms
                n = end
    finally:
        for data in files:
            if isinstance(data, mmap.mmap):
                # a reader stopped by an error may still hold a view; the error matters more
                with contextlib.suppress(BufferError):
                    data.close()
    t, latency = t[:n], latency[:n]
    table = [OK]
    if strings:
        lag, status, codes, keys, auth = lag[:n], status[:n], codes[:, :n], keys[:n], auth[:n]
        unique_codes, uniques = pd.factorize(np.asarray(every_name, dtype=object))
        del every_name
        remap = unique_codes.astype(np.int32)
        for k in range(len(CODED_COLUMNS)):
            codes[k] = remap[codes[k]]
        table = list(uniques)
    if n > 1 and not bool((t[1:] >= t[:-1]).all()):
        order = np.argsort(t, kind="stable")
        t, latency = t[order], latency[order]
        if strings:
            if any_lag:
                lag = lag[order]
            if any_write:
                keys = keys[order]
            if any_auth:
                auth = auth[order]
            status = status[order]
            for k in range(len(CODED_COLUMNS)):  # a row at a time: one extra row in memory
                codes[k] = codes[k][order]
        del order
    return t, latency, lag, status, codes, table, keys, auth


def _release(data: mmap.mmap | bytes, offset: int) -> int:
    """Drop the pages of ``data`` before ``offset`` from this process; the offset released.

    Pages of a mapped file read once count in the process's resident memory until the
    mapping closes (200 MB at 10 M samples); the page cache keeps them anyway.
    """
    if not isinstance(data, mmap.mmap):
        return offset
    upto = offset - offset % mmap.PAGESIZE
    if upto:
        data.madvise(mmap.MADV_DONTNEED, 0, upto)
    return upto


def _coded(chunk: CodedChunk, every_name: list[str], out: npt.NDArray[np.int32]) -> None:
    """Append the names ``chunk``'s coded columns use to ``every_name``; codes into ``out``.

    Only names in use: a chunk's table also holds its write ids, which stay out (they
    become keys), or the table would hold a Python string per write of the run.
    """
    columns = chunk.codes[: len(CODED_COLUMNS)]
    used = np.zeros(len(chunk.names), dtype=np.bool_)
    for column in columns:
        used[column] = True
    kept = np.flatnonzero(used)
    local = np.zeros(len(chunk.names), dtype=np.int32)
    local[kept] = np.arange(len(every_name), len(every_name) + len(kept), dtype=np.int32)
    every_name += [chunk.names[i] for i in kept]
    for k, column in enumerate(columns):
        np.take(local, column, out=out[k])


def _keys(chunk: CodedChunk) -> KeyArray:
    """The write key of each row of ``chunk`` (0: no write id)."""
    names = np.empty(len(chunk.names), dtype=object)
    names[:] = chunk.names
    table = hash_ids(names)
    table[0] = NO_WRITE  # a chunk's names are distinct, and the first is always ""
    found: KeyArray = table[chunk.codes[_CHUNK_WRITE_ID]]
    return found
