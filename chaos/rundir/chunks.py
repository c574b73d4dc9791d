"""The on-disk form of request samples: self-contained, append-only columnar chunks.

A samples file is a sequence of chunks, each written with one ``write()`` to an
``O_APPEND`` file, so a crash leaves at most one partial chunk at the end, which
readers ignore. A chunk::

    header  <4s I I I I>   magic b"CHS3", rows, body length, raw length, crc32(body)
    body    zlib(raw)
    raw     u32 n + JSON list of the chunk's strings (index 0 is always "")
            t f8[rows] | latency_ms f8[rows] | send_lag_ms f8[rows] | status i4[rows]
            auth u1[rows]
            endpoint u4[rows] | method u4[rows] | error_kind u4[rows] | write_id u4[rows]

String columns are indexes into the chunk's own string list, so every chunk can be
read alone. Chunks written before open-loop load (magic b"CHS1") have no
``send_lag_ms``; they read with a lag of 0 (their requests were sent when started).
Chunks written before ``auth`` (b"CHS2", b"CHS1") read with ``auth`` 0: the app said
nothing (bits in :mod:`chaos.rundir.auth`).

Only numpy and the standard library here: the writer runs in the Locust
process, the reader in the main one.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

MAGIC: Final = b"CHS3"
#: The format before ``auth``; still read.
MAGIC_V2: Final = b"CHS2"
#: The format before ``send_lag_ms``; still read.
MAGIC_V1: Final = b"CHS1"
SUFFIX: Final = ".chs"
_HEAD = struct.Struct("<4sIIII")
_U32 = struct.Struct("<I")
_NUMERIC = (
    ("t", "<f8"),
    ("latency_ms", "<f8"),
    ("send_lag_ms", "<f8"),
    ("status", "<i4"),
    ("auth", "<u1"),
)
_NUMERIC_V2 = _NUMERIC[:4]
_NUMERIC_V1 = (("t", "<f8"), ("latency_ms", "<f8"), ("status", "<i4"))
_CODED = ("endpoint", "method", "error_kind", "write_id")
DEFAULT_MAX_ROWS: Final = 1000
DEFAULT_MAX_AGE_S: Final = 0.25


@dataclass(frozen=True)
class Chunk:
    """The decoded columns of one chunk; string columns as object arrays of str."""

    t: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    send_lag_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int32]
    endpoint: npt.NDArray[np.object_]
    method: npt.NDArray[np.object_]
    error_kind: npt.NDArray[np.object_]
    write_id: npt.NDArray[np.object_]
    #: What the app received (bits of :mod:`chaos.rundir.auth`; 0: it said nothing).
    auth: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.t)


SampleRow = tuple[float, float, float, int, str, str, str, str, int]
"""One sample as a writer buffers it: ``(t, latency_ms, send_lag_ms, status, endpoint,
method, error_kind, write_id, auth)``."""


def encode_chunk(
    t: Sequence[float],
    latency_ms: Sequence[float],
    status: Sequence[int],
    strings: dict[str, Sequence[str]],
    send_lag_ms: Sequence[float] | None = None,
    auth: Sequence[int] | None = None,
) -> bytes:
    """One chunk from equal-length columns (``strings`` holds the four string columns).

    ``send_lag_ms`` and ``auth`` default to zeros (sent when due; the app said nothing).
    """
    rows = len(t)
    if send_lag_ms is None:
        send_lag_ms = [0.0] * rows
    if auth is None:
        auth = [0] * rows
    numeric: tuple[Sequence[float], ...] = (t, latency_ms, send_lag_ms, status, auth)
    for (name, _), values in zip(_NUMERIC, numeric, strict=True):
        if len(values) != rows:
            raise ValueError(f"column {name} has {len(values)} rows, expected {rows}")
    for name in _CODED:
        if len(strings[name]) != rows:
            raise ValueError(f"column {name} has {len(strings[name])} rows, expected {rows}")
    return _encode_columns(numeric, [strings[name] for name in _CODED])


def encode_rows(rows: Sequence[SampleRow]) -> bytes:
    """One chunk from buffered :data:`SampleRow` tuples (what a writer holds)."""
    if not rows:
        raise ValueError("a chunk needs at least one row")
    t, latency_ms, send_lag_ms, status, *strings, auth = zip(*rows, strict=True)
    return _encode_columns((t, latency_ms, send_lag_ms, status, auth), strings)


def _encode_columns(numeric: Sequence[Sequence[float]], strings: Sequence[Sequence[str]]) -> bytes:
    """A chunk from the five numeric and the four string columns, in chunk order.

    Each string column is coded through one table (first seen, first numbered; the
    distinct values are found in C by ``dict.fromkeys``, then mapped with ``map``), so
    coding costs a few C-level passes per column instead of a Python step per row.
    """
    table: dict[str, int] = {"": 0}
    coded: list[bytes] = []
    for column in strings:
        for value in dict.fromkeys(column):
            if value not in table:
                table[value] = len(table)
        codes = np.fromiter(map(table.__getitem__, column), dtype="<u4", count=len(column))
        coded.append(codes.tobytes())
    return _frame(len(numeric[0]), list(table), [np.asarray(v) for v in numeric], coded)


def encode_coded_chunk(
    t: npt.NDArray[np.float64],
    latency_ms: npt.NDArray[np.float64],
    status: npt.NDArray[np.integer],
    codes: Sequence[npt.NDArray[np.integer]],
    names: Sequence[str],
    send_lag_ms: npt.NDArray[np.float64] | None = None,
    auth: npt.NDArray[np.uint8] | None = None,
) -> bytes:
    """One chunk from arrays whose four string columns are already indexes into ``names``.

    ``codes`` holds the endpoint, method, error_kind and write_id columns, in that
    order; ``names[0]`` must be ``""``. For writers that build columns with numpy
    (synthetic runs at benchmark scale) instead of one row at a time.
    ``send_lag_ms`` and ``auth`` default to zeros (sent when due; the app said nothing).
    """
    rows = len(t)
    if not names or names[0] != "":
        raise ValueError('names[0] must be ""')
    lag = np.zeros(rows, dtype=np.float64) if send_lag_ms is None else send_lag_ms
    bits = np.zeros(rows, dtype=np.uint8) if auth is None else auth
    columns = (latency_ms, lag, status, bits, *codes)
    if len(codes) != len(_CODED) or any(len(c) != rows for c in columns):
        raise ValueError(f"every column needs {rows} rows, and there are four coded columns")
    coded = [np.asarray(c, dtype="<u4").tobytes() for c in codes]
    return _frame(rows, list(names), [t, latency_ms, lag, status, bits], coded)


def _frame(
    rows: int, names: list[str], numeric: Sequence[npt.NDArray[np.generic]], coded: list[bytes]
) -> bytes:
    """A current-version (``MAGIC``) chunk: numeric columns in ``_NUMERIC`` order."""
    table = json.dumps(names, separators=(",", ":")).encode()
    parts = [_U32.pack(len(table)), table]
    for (_, dtype), values in zip(_NUMERIC, numeric, strict=True):
        parts.append(np.asarray(values, dtype=dtype).tobytes())
    parts.extend(coded)
    raw = b"".join(parts)
    body = zlib.compress(raw, 1)
    return _HEAD.pack(MAGIC, rows, len(body), len(raw), zlib.crc32(body)) + body


@dataclass(frozen=True)
class CodedChunk:
    """One chunk's columns as read-only views into its raw bytes; strings still coded.

    ``codes`` holds endpoint, method, error_kind and write_id, each an index into
    ``names`` (whose first entry is ``""``). ``send_lag_ms`` is zeros for a
    ``MAGIC_V1`` chunk (written before the column existed).
    """

    t: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    send_lag_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int32]
    codes: tuple[npt.NDArray[np.uint32], ...]
    names: list[str]
    #: Bits of :mod:`chaos.rundir.auth` (zeros before ``MAGIC``).
    auth: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.t)


def _decode_coded(rows: int, raw: bytes, *, version: int) -> CodedChunk:
    (names_len,) = _U32.unpack_from(raw, 0)
    pos = _U32.size
    names = json.loads(raw[pos : pos + names_len])
    pos += names_len
    numeric: dict[str, npt.NDArray[np.generic]] = {}
    layout = {3: _NUMERIC, 2: _NUMERIC_V2}.get(version, _NUMERIC_V1)
    for name, dtype in layout:
        numeric[name] = np.frombuffer(raw, dtype=dtype, count=rows, offset=pos)
        pos += np.dtype(dtype).itemsize * rows
    lag = numeric.get("send_lag_ms")
    codes: list[npt.NDArray[np.uint32]] = []
    for _ in _CODED:
        codes.append(np.frombuffer(raw, dtype="<u4", count=rows, offset=pos))
        pos += 4 * rows
    return CodedChunk(
        t=numeric["t"].astype(np.float64, copy=False),
        latency_ms=numeric["latency_ms"].astype(np.float64, copy=False),
        send_lag_ms=(
            np.zeros(rows, dtype=np.float64) if lag is None else lag.astype(np.float64, copy=False)
        ),
        status=numeric["status"].astype(np.int32, copy=False),
        codes=tuple(codes),
        names=names,
        auth=(
            np.zeros(rows, dtype=np.uint8)
            if "auth" not in numeric
            else numeric["auth"].astype(np.uint8, copy=False)
        ),
    )


def _decode_body(rows: int, raw: bytes, *, version: int) -> Chunk:
    coded = _decode_coded(rows, raw, version=version)
    table = np.asarray(coded.names, dtype=object)
    endpoint, method, error_kind, write_id = (table[c] for c in coded.codes)
    return Chunk(
        t=coded.t.astype(np.float64),
        latency_ms=coded.latency_ms.astype(np.float64),
        send_lag_ms=coded.send_lag_ms.astype(np.float64),
        status=coded.status.astype(np.int32),
        endpoint=endpoint,
        method=method,
        error_kind=error_kind,
        write_id=write_id,
        auth=coded.auth.astype(np.uint8),
    )


_VERSIONS: Final = {MAGIC: 3, MAGIC_V2: 2, MAGIC_V1: 1}


def rows_upper_bound(data: bytes | mmap.mmap) -> int:
    """Rows in the chunks whose headers and bodies fit in ``data`` (checksums not checked).

    An upper bound of what :func:`iter_coded_chunks` yields, read from the headers
    alone, so a reader can allocate its columns once.
    """
    rows_total, pos = 0, 0
    while len(data) - pos >= _HEAD.size:
        magic, rows, body_len, _, _ = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + body_len
        if magic not in _VERSIONS or end > len(data):
            break
        rows_total += rows
        pos = end
    return rows_total


def iter_coded_chunks(data: bytes | mmap.mmap) -> Iterator[tuple[CodedChunk, int]]:
    """Like :func:`iter_chunks`, but the columns stay coded (no Python string per row)."""
    for rows, raw, end, version in _iter_raw(data):
        yield _decode_coded(rows, raw, version=version), end


def _iter_raw(data: bytes | mmap.mmap) -> Iterator[tuple[int, bytes, int, int]]:
    """Rows, raw body, offset past the chunk and format version of each complete chunk."""
    pos = 0
    view = memoryview(data)
    try:
        while len(data) - pos >= _HEAD.size:
            magic, rows, body_len, raw_len, crc = _HEAD.unpack_from(data, pos)
            end = pos + _HEAD.size + body_len
            version = _VERSIONS.get(magic)
            if version is None or end > len(data):
                return
            body = view[pos + _HEAD.size : end]
            if zlib.crc32(body) != crc:
                return
            raw = zlib.decompress(body)
            del body  # no view of ``data`` may outlive the loop (an mmap must close)
            if len(raw) != raw_len:
                return
            yield rows, raw, end, version
            pos = end
    finally:
        view.release()


def iter_chunks(data: bytes | mmap.mmap) -> Iterator[tuple[Chunk, int]]:
    """Complete chunks in ``data`` with the offset just past each.

    Stops at the first incomplete or damaged chunk: that is a crash's leftover.
    Reads both ``MAGIC`` and ``MAGIC_V1`` chunks (the latter with a lag of 0).
    """
    for rows, raw, end, version in _iter_raw(data):
        yield _decode_body(rows, raw, version=version), end


class ChunkTail:
    """Reads the chunks appended to one file since the last call (for live views)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read_new(self) -> list[Chunk]:
        """Chunks completed since the previous call; a partial one waits for next time."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        chunks: list[Chunk] = []
        for chunk, end in iter_chunks(data):
            chunks.append(chunk)
            consumed = end
        if chunks:
            self.offset += consumed
        return chunks


class SampleWriter:
    """Buffers samples and appends them to ``path`` as chunks.

    A chunk is written when ``max_rows`` rows are buffered, or on :meth:`add` /
    :meth:`flush_if_due` once the oldest buffered row is ``max_age_s`` old, so the
    buffer never holds more than ``max_rows`` rows and memory stays flat.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.chunks_written = 0
        self.rows_written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._reset()

    def _reset(self) -> None:
        self._rows: list[SampleRow] = []
        self._first_at = 0.0

    @property
    def buffered(self) -> int:
        """Rows waiting in memory."""
        return len(self._rows)

    def add(
        self,
        *,
        t: float,
        endpoint: str,
        method: str,
        latency_ms: float,
        status: int,
        error_kind: str,
        write_id: str,
        send_lag_ms: float = 0.0,
        auth: int = 0,
    ) -> None:
        """Buffer one sample, writing a chunk when the buffer is full or old."""
        row = (t, latency_ms, send_lag_ms, status, endpoint, method, error_kind, write_id, auth)
        self.append_row(row)

    def append_row(self, row: SampleRow) -> None:
        """Buffer one :data:`SampleRow`, writing a chunk when the buffer is full or old."""
        if self._fd is None:
            return
        now = time.monotonic()
        rows = self._rows
        if not rows:
            self._first_at = now
        rows.append(row)
        if len(rows) >= self.max_rows or now - self._first_at >= self.max_age_s:
            self.flush()

    def flush_if_due(self) -> None:
        """Write the buffer if its oldest row is ``max_age_s`` old (called by a timer)."""
        if self._rows and time.monotonic() - self._first_at >= self.max_age_s:
            self.flush()

    def flush(self) -> None:
        """Write whatever is buffered as one chunk."""
        if not self._rows or self._fd is None:
            return
        rows = self._rows
        self.write_rows(rows)
        self._reset()

    def write_rows(self, rows: Sequence[SampleRow]) -> None:
        """Write ``rows`` now as one chunk (for a caller that keeps its own buffer).

        One ``write()`` normally; on an error the file is cut back to its last complete
        chunk and the error raised. Nothing is written once the writer is closed.
        """
        if not rows or self._fd is None:
            return
        view = memoryview(encode_rows(rows))
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            # one write() normally; loop only if the kernel takes a part (a full disk)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            # no torn chunk stays behind: the file keeps every complete chunk readable
            os.ftruncate(self._fd, start)
            raise
        self.chunks_written += 1
        self.rows_written += len(rows)

    def discard(self) -> None:
        """Drop what is buffered and close (after a failed write); further samples are dropped."""
        self._reset()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def close(self) -> None:
        """Flush and close; further samples are dropped."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None
