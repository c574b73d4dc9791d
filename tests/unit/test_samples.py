"""The sample file format, its writer's memory bound, the loader, and live stats."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chaos.rundir import chunks
from chaos.rundir.chunks import ChunkTail, SampleWriter, encode_chunk, iter_chunks
from chaos.rundir.samples import DROPPED, SAMPLE_DTYPES, load_samples, samples_dir
from chaos.traffic.live import LAG_S, LiveTail


def _write(
    writer: SampleWriter, i: int, *, kind: str = "", latency: float = 1.0, t: float = 0.0
) -> None:
    writer.add(
        t=t or 100.0 + i / 1000,
        endpoint=f"ep{i % 3}",
        method="POST" if i % 2 else "GET",
        latency_ms=latency,
        status=503 if kind == "http" else (0 if kind else 200),
        error_kind=kind,
        write_id=f"w-{i}" if i % 2 else "",
    )


def test_round_trip_keeps_every_column_and_dtype(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path / "a.chs", max_rows=4)
    for i in range(10):
        _write(writer, i, kind="reset" if i == 7 else "", latency=i + 0.5)
    writer.close()
    frame = load_samples(tmp_path)
    assert {c: str(d) for c, d in frame.dtypes.items()} == SAMPLE_DTYPES
    assert len(frame) == 10
    row = frame.iloc[7]
    assert row.endpoint == "ep1"
    assert row.method == "POST"
    assert row.latency_ms == 7.5
    assert row.status == 0
    assert row.error_kind == "reset"
    assert row.write_id == "w-7"
    assert frame.iloc[0].write_id == ""
    assert frame.t.is_monotonic_increasing


def test_loader_concatenates_files_and_orders_by_time(tmp_path: Path) -> None:
    directory = samples_dir(tmp_path)
    for name, start in (("samples-1.chs", 10.0), ("samples-2.chs", 10.0005)):
        writer = SampleWriter(directory / name)
        for i in range(5):
            _write(writer, i, t=start + i / 1000)
        writer.close()
    frame = load_samples(tmp_path)
    assert len(frame) == 10
    assert frame.t.is_monotonic_increasing
    assert load_samples([directory / "samples-1.chs"]).shape == (5, len(SAMPLE_DTYPES))


def test_empty_run_gives_typed_empty_frame(tmp_path: Path) -> None:
    frame = load_samples(tmp_path)
    assert frame.empty
    assert {c: str(d) for c, d in frame.dtypes.items()} == SAMPLE_DTYPES


@pytest.mark.parametrize("cut", [1, 10, 25, -1])
def test_loader_ignores_a_cut_off_last_chunk(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "s.chs"
    writer = SampleWriter(path, max_rows=100)
    for i in range(300):
        _write(writer, i)
    writer.close()
    data = path.read_bytes()
    ends = [end for _, end in iter_chunks(data)]
    assert len(ends) == 3
    # keep two whole chunks plus part of the third (header or body)
    path.write_bytes(data[: ends[1] + cut] if cut > 0 else data[: ends[2] + cut])
    assert len(load_samples(path)) == 200


def test_loader_stops_at_garbage(tmp_path: Path) -> None:
    path = tmp_path / "s.chs"
    path.write_bytes(
        encode_chunk([1.0], [2.0], [200], _strings(1)) + b"\x00" * 40 + b"not a chunk at all"
    )
    assert len(load_samples(path)) == 1


def _strings(rows: int) -> dict[str, list[str]]:
    return {k: ["x"] * rows for k in ("endpoint", "method", "error_kind", "write_id")}


def test_buffer_never_exceeds_its_bound(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path / "s.chs", max_rows=100, max_age_s=3600)
    peak = 0
    for i in range(10_050):
        _write(writer, i)
        peak = max(peak, writer.buffered)
    assert peak == 99  # the 100th row triggers the write
    assert writer.chunks_written == 100
    assert len(load_samples(tmp_path)) == 10_000  # the last 50 wait in memory
    writer.close()
    assert len(load_samples(tmp_path)) == 10_050


def test_old_rows_are_written_by_the_timer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the writer's clock is the test's: no race between the two calls and a sleep
    now = [1000.0]
    monkeypatch.setattr(chunks, "time", SimpleNamespace(monotonic=lambda: now[0]))
    writer = SampleWriter(tmp_path / "s.chs", max_rows=1000, max_age_s=0.05)
    _write(writer, 1)
    now[0] += 0.049
    writer.flush_if_due()
    assert writer.chunks_written == 0
    now[0] += 0.011  # 60 ms old
    writer.flush_if_due()
    assert writer.chunks_written == 1
    assert writer.buffered == 0
    writer.close()


def test_memory_stays_flat_as_rows_grow(tmp_path: Path) -> None:
    def peak_for(rows: int, name: str) -> int:
        writer = SampleWriter(tmp_path / name, max_rows=1000, max_age_s=3600)
        tracemalloc.start()
        for i in range(rows):
            _write(writer, i)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        writer.close()
        return peak

    small = peak_for(20_000, "small.chs")
    large = peak_for(200_000, "large.chs")
    assert large < 1.5 * small + 100_000, (small, large)
    assert large < 2_000_000, large
    assert os.path.getsize(tmp_path / "large.chs") > 9 * os.path.getsize(tmp_path / "small.chs")


def test_closed_writer_drops_samples(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path / "s.chs")
    writer.close()
    _write(writer, 1)
    assert writer.buffered == 0


def test_chunk_tail_reads_only_new_complete_chunks(tmp_path: Path) -> None:
    path = tmp_path / "s.chs"
    tail = ChunkTail(path)
    assert tail.read_new() == []
    one = encode_chunk([1.0, 2.0], [3.0, 4.0], [200, 200], _strings(2))
    two = encode_chunk([5.0], [6.0], [500], _strings(1))
    path.write_bytes(one + two[:7])
    assert [len(c) for c in tail.read_new()] == [2]
    with path.open("ab") as f:
        f.write(two[7:])
    chunks = tail.read_new()
    assert [len(c) for c in chunks] == [1]
    assert chunks[0].status.tolist() == [500]
    assert tail.read_new() == []


def test_live_stats_count_the_last_complete_second(tmp_path: Path) -> None:
    directory = samples_dir(tmp_path)
    writer = SampleWriter(directory / "samples-9.chs")
    now = 1000.0
    end = now - LAG_S
    # 100 requests completing inside the window, 10 of them failed; 20 outside it
    latencies = np.linspace(1.0, 100.0, 100)
    for i, latency in enumerate(latencies):
        done = end - 0.99 + i * 0.0098
        writer.add(
            t=done - latency / 1000,
            endpoint="e",
            method="GET",
            latency_ms=float(latency),
            status=503 if i < 10 else 200,
            error_kind="http" if i < 10 else "",
            write_id="",
        )
    for i in range(20):
        writer.add(
            t=end + 0.01 + i * 0.001,
            endpoint="e",
            method="GET",
            latency_ms=1.0,
            status=200,
            error_kind="",
            write_id="",
        )
    for i in range(30):  # due inside the window but never sent: not requests, not errors
        writer.add(
            t=end - 0.5 + i * 0.001,
            endpoint="e",
            method="GET",
            latency_ms=0.0,
            status=0,
            error_kind=DROPPED,
            write_id="",
        )
    writer.close()
    stats = LiveTail(directory).stats(now=now)
    assert stats.requests == 100
    assert stats.errors == 10
    assert stats.error_rate == pytest.approx(0.1)
    assert stats.rps == pytest.approx(100.0)
    assert stats.p95_ms == pytest.approx(float(np.percentile(latencies, 95)))


def test_live_stats_without_samples(tmp_path: Path) -> None:
    stats = LiveTail(tmp_path / "nothing").stats(now=5.0)
    assert (stats.requests, stats.errors, stats.p95_ms, stats.error_rate) == (0, 0, None, 0.0)


def test_send_lag_round_trips_and_defaults_to_zero(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path / "a.chs")
    writer.add(
        t=1.0, endpoint="e", method="GET", latency_ms=250.0, status=200, error_kind="",
        write_id="", send_lag_ms=50.0,
    )  # fmt: skip
    _write(writer, 1, t=2.0)
    writer.close()
    frame = load_samples(tmp_path)
    assert frame.send_lag_ms.tolist() == [50.0, 0.0]
    assert frame.latency_ms.tolist() == [250.0, 1.0]


def _chunk_v1(t: list[float], latency: list[float], status: list[int]) -> bytes:
    """A chunk in the first format (b"CHS1", no send_lag_ms), built from its description."""
    import json
    import struct
    import zlib

    names = json.dumps(["", "ep", "GET"]).encode()
    rows = len(t)
    raw = b"".join(
        [
            struct.pack("<I", len(names)),
            names,
            np.asarray(t, "<f8").tobytes(),
            np.asarray(latency, "<f8").tobytes(),
            np.asarray(status, "<i4").tobytes(),
            np.full(rows, 1, "<u4").tobytes(),  # endpoint "ep"
            np.full(rows, 2, "<u4").tobytes(),  # method "GET"
            np.zeros(rows, "<u4").tobytes(),  # error_kind ""
            np.zeros(rows, "<u4").tobytes(),  # write_id ""
        ]
    )
    body = zlib.compress(raw)
    return struct.pack("<4sIIII", b"CHS1", rows, len(body), len(raw), zlib.crc32(body)) + body


def test_a_run_directory_from_before_send_lag_still_reads(tmp_path: Path) -> None:
    old = _chunk_v1([1.0, 2.0], [3.0, 4.0], [200, 503])
    new = encode_chunk([5.0], [6.0], [200], _strings(1), [1.5])
    (tmp_path / "s.chs").write_bytes(old + new)
    frame = load_samples(tmp_path)
    assert {c: str(d) for c, d in frame.dtypes.items()} == SAMPLE_DTYPES
    assert frame.t.tolist() == [1.0, 2.0, 5.0]
    assert frame.latency_ms.tolist() == [3.0, 4.0, 6.0]
    assert frame.status.tolist() == [200, 503, 200]
    assert frame.send_lag_ms.tolist() == [0.0, 0.0, 1.5]
    assert frame.endpoint.tolist()[:2] == ["ep", "ep"]


def test_live_stats_count_refused_and_unanswered_requests(tmp_path: Path) -> None:
    """What verify reads when a proxy's counters are missing: 401/403, and no answer or 503."""
    directory = tmp_path / "samples"
    directory.mkdir()
    writer = SampleWriter(directory / "a.chs")
    now = 10.0
    answers = [(200, ""), (401, "http"), (403, "http"), (503, "http"), (0, "tls"), (0, "reset")]
    answers += [(0, "connect"), (500, "http"), (200, "")]
    for i, (status, kind) in enumerate(answers):
        writer.add(
            t=now - LAG_S - 0.5 + i / 100, endpoint="e", method="GET", latency_ms=1.0,
            status=status, error_kind=kind, write_id="",
        )  # fmt: skip
    writer.close()
    stats = LiveTail(directory).stats(now=now)
    assert (stats.requests, stats.errors) == (9, 7)
    assert stats.denied == 2  # 401, 403
    assert stats.unavailable == 4  # 503, tls, reset, connect (not the 500)
