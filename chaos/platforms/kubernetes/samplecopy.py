"""Copying sample files out of pods by exec, onto this machine's monotonic clock.

A Locust pod writes chunks (:mod:`chaos.rundir.chunks`) whose ``t`` is the pod's
``time.monotonic()``; the engine's fault times are this machine's. Each copy execs
:data:`SYNC_SCRIPT` in the pod (the official client's exec stream is text, so the
bytes come back base64): it reads the pod's two clocks, then every sample file from
the offset already copied. :class:`SampleCopier` re-encodes the complete chunks with
``t`` moved onto this machine's clock and appends them to local files; a chunk still
being written waits for the next copy.

The clock: the pod and this machine share only wall-clock time, so the offset is
``(pod wall - pod monotonic) - (local wall - local monotonic)`` (:class:`PodClock`),
fixed at a pod's first copy so times never jump. It is exact where the pod's node
shares this machine's clock (kind on this host), else as good as the clocks' NTP
sync. Every copy checks it: the pod's reading, mapped, must fall inside the exec's
round trip here; together the readings bound its error (``bound_s``, shrinking as
they come), and how far the fixed offset ever fell outside one is recorded
(``worst_outside_s``: the clocks drifted or stepped). Where the wall clocks disagree
by more than the round trip, the offset comes from the round trip itself (its
midpoint, uncertain by half of it).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from chaos.errors import PlatformError
from chaos.rundir.chunks import encode_coded_chunk, iter_coded_chunks

#: The most bytes of one file a copy brings (a longer file takes several).
MAX_BYTES = 4 * 1024 * 1024

#: Read the pod's clocks, then every sample file from the offset already copied.
#: ``argv``: the samples directory, ``{file: offset}`` as JSON, the most bytes per file.
#: (``.chs`` is :data:`~chaos.rundir.chunks.SUFFIX`.)
SYNC_SCRIPT = """\
import base64, json, os, sys, time
root, offsets, limit = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
mono, wall = time.monotonic(), time.time()
files = {}
for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    if name.endswith(".chs"):
        with open(os.path.join(root, name), "rb") as f:
            f.seek(int(offsets.get(name, 0)))
            files[name] = base64.b64encode(f.read(limit)).decode()
print(json.dumps({"mono": mono, "wall": wall, "files": files}))
"""


# -- the clock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockReading:
    """One copy's clock reading: the pod's two clocks, this machine's around the exec."""

    pod_mono: float
    pod_wall: float
    local_before: float
    local_after: float
    #: This machine's ``time.time() - time.monotonic()`` at the reading.
    local_wall_minus_mono: float

    @property
    def wall_offset(self) -> float:
        """Pod monotonic -> local monotonic, through the wall clocks."""
        return (self.pod_wall - self.pod_mono) - self.local_wall_minus_mono

    def outside(self, offset: float) -> float:
        """How far the pod's reading, mapped with ``offset``, falls outside the round trip."""
        mapped = self.pod_mono + offset
        return max(0.0, self.local_before - mapped, mapped - self.local_after)

    def bound(self, offset: float) -> float:
        """The most ``offset`` can be wrong, given that the reading happened in the round trip."""
        mapped = self.pod_mono + offset
        return max(mapped - self.local_before, self.local_after - mapped)


@dataclass
class PodClock:
    """One pod's monotonic clock on this machine's: fixed at the first reading, then checked.

    Each reading proves the true offset lies in ``[before - pod_mono, after - pod_mono]``
    (the pod read its clock during the exec); ``bound_s`` is how far the fixed offset
    can be from the intersection of those intervals, so it shrinks as readings come.
    """

    pod: str
    offset_s: float
    method: str
    #: The most the offset can be off, from the round trips seen so far.
    bound_s: float
    readings: int = 1
    #: The most a later reading put the fixed offset outside its round trip (0: never).
    worst_outside_s: float = 0.0
    #: The offsets every reading so far allows (their intersection).
    low_s: float = -math.inf
    high_s: float = math.inf

    @classmethod
    def first(cls, pod: str, reading: ClockReading) -> PodClock:
        offset = reading.wall_offset
        method = "wall-clock"
        if reading.outside(offset) > 0.0:
            # The wall clocks disagree by more than the round trip: trust the round trip.
            offset = (reading.local_before + reading.local_after) / 2 - reading.pod_mono
            method = "round-trip"
        clock = cls(pod, offset, method, reading.bound(offset), readings=0)
        clock.check(reading)
        return clock

    def check(self, reading: ClockReading) -> None:
        self.readings += 1
        self.worst_outside_s = max(self.worst_outside_s, reading.outside(self.offset_s))
        low = max(self.low_s, reading.local_before - reading.pod_mono)
        high = min(self.high_s, reading.local_after - reading.pod_mono)
        if low <= self.offset_s <= high:  # else the clocks drifted or stepped: worst_outside
            self.low_s, self.high_s = low, high
            self.bound_s = max(self.offset_s - low, high - self.offset_s)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shift_chunks(data: bytes, offset_s: float) -> tuple[bytes, int]:
    """The complete chunks of ``data`` with ``t`` moved by ``offset_s``, and the bytes used.

    A partial chunk at the end (still being written in the pod) is left for the next copy.
    """
    out: list[bytes] = []
    used = 0
    for chunk, end in iter_coded_chunks(data):
        out.append(
            encode_coded_chunk(
                chunk.t + offset_s,
                chunk.latency_ms,
                chunk.status,
                chunk.codes,
                chunk.names,
                send_lag_ms=np.asarray(chunk.send_lag_ms, dtype=np.float64),
                auth=np.asarray(chunk.auth, dtype=np.uint8),
            )
        )
        used = end
    return b"".join(out), used


# -- the copier -----------------------------------------------------------------------------

#: Runs a command in a pod's container: ``(pod, argv) -> stdout`` (a PlatformError if not).
PodCommand = Callable[[str, list[str]], str]


@dataclass
class _RemoteFile:
    copied: int = 0  # bytes read from the pod's file
    pending: bytes = b""  # read, not yet a complete chunk


@dataclass
class _PodFiles:
    clock: PodClock | None = None
    files: dict[str, _RemoteFile] = field(default_factory=dict)


def _parse(output: str, pod: str) -> tuple[float, float, dict[str, bytes]]:
    try:
        answer = json.loads(output.strip().splitlines()[-1])
        files = {str(k): base64.b64decode(v) for k, v in answer["files"].items()}
        return float(answer["mono"]), float(answer["wall"]), files
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise PlatformError(f"pod {pod}: unreadable samples listing: {output[:200]!r}") from exc


class SampleCopier:
    """Brings the sample files of pods into ``local_dir`` as ``<pod>-<file>`` (not thread-safe)."""

    def __init__(self, remote_dir: PurePosixPath, local_dir: Path, run: PodCommand) -> None:
        self.remote_dir = remote_dir
        self.local_dir = local_dir
        self._run = run
        self._pods: dict[str, _PodFiles] = {}

    def copy(self, pod: str) -> None:
        """Everything ``pod`` wrote since its last copy (a PlatformError if it is unreachable)."""
        state = self._pods.setdefault(pod, _PodFiles())
        while True:
            offsets = json.dumps({name: f.copied for name, f in state.files.items()})
            command = ["python", "-c", SYNC_SCRIPT, str(self.remote_dir), offsets, str(MAX_BYTES)]
            before = time.monotonic()
            output = self._run(pod, command)
            after = time.monotonic()
            pod_mono, pod_wall, files = _parse(output, pod)
            reading = ClockReading(
                pod_mono, pod_wall, before, after, time.time() - time.monotonic()
            )
            if state.clock is None:
                state.clock = PodClock.first(pod, reading)
            else:
                state.clock.check(reading)
            for name, data in files.items():
                remote = state.files.setdefault(name, _RemoteFile())
                remote.copied += len(data)
                remote.pending += data
                shifted, used = shift_chunks(remote.pending, state.clock.offset_s)
                remote.pending = remote.pending[used:]
                if shifted:
                    self._append(f"{pod}-{name}", shifted)
            if all(len(data) < MAX_BYTES for data in files.values()):
                return

    def _append(self, name: str, data: bytes) -> None:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.local_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def clocks(self) -> list[PodClock]:
        """Each pod's clock, as used for its samples."""
        return [s.clock for s in self._pods.values() if s.clock is not None]

    def torn(self) -> list[str]:
        """Files whose last bytes are not a complete chunk (lost if the pod is gone)."""
        return [
            f"{pod}/{name}: {len(f.pending)} bytes of a torn chunk"
            for pod, state in self._pods.items()
            for name, f in state.files.items()
            if f.pending
        ]


__all__ = [
    "MAX_BYTES",
    "SYNC_SCRIPT",
    "ClockReading",
    "PodClock",
    "PodCommand",
    "SampleCopier",
    "shift_chunks",
]
