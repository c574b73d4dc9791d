"""The coded-array path the finish step takes at scale gives exactly what the frame path gave.

A synthetic run directory (real sample chunks) is analysed twice, once from
``load_samples``' frame as before issue 11 and once from ``load_columns``'
arrays, and every result must be equal; the loader must also agree with the
frame loader row for row, cut-off chunks included.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaos.analysis import (
    CounterDeltas,
    FaultWindow,
    RecordedWrites,
    SteadyState,
    analyze_run,
    measure_window,
    read_results,
)
from chaos.bench.finish_scale import LOST_EVERY, _finish_here, write_scale_run
from chaos.errors import InputError
from chaos.rundir.chunks import (
    MAGIC,
    encode_chunk,
    encode_coded_chunk,
    iter_chunks,
    iter_coded_chunks,
)
from chaos.rundir.columns import SampleColumns, load_columns, load_latencies
from chaos.rundir.samples import DROPPED, load_samples, samples_dir
from chaos.rundir.writes import NO_WRITE, write_keys
from chaos.testing.synthetic import Outage, synthetic_samples
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

STEADY = SteadyState(0.01, 100.0)


def _same_rows(columns: SampleColumns, frame: pd.DataFrame) -> None:
    """``columns`` hold ``frame``'s rows: every column, and the write ids as their keys."""
    pd.testing.assert_frame_equal(columns.frame(), frame.drop(columns="write_id"))
    assert columns.write_key.tolist() == write_keys(frame["write_id"].to_numpy()).tolist()


def _run(tmp_path: Path) -> Path:
    spec = SyntheticRun(
        faults=(SyntheticFault("abort-checkout"), SyntheticFault("crash-payments", "crash")),
        repetitions=2,
    )
    return write_synthetic_run(tmp_path / "run", spec)


def test_columns_match_the_frame_loader_row_for_row(tmp_path: Path) -> None:
    run = _run(tmp_path)
    frame = load_samples(run)
    columns = load_columns(run)
    _same_rows(columns, frame)
    assert (columns.write_key != NO_WRITE).sum() == (frame["write_id"] != "").sum()
    t, latency = load_latencies(run)
    assert np.array_equal(t, frame["t"].to_numpy()) and np.array_equal(
        latency, frame["latency_ms"].to_numpy()
    )
    assert columns.names[0] == "" and len(set(columns.names)) == len(columns.names)
    assert not any(str(n).startswith("w") for n in columns.names)  # no write id as a string


def test_columns_from_several_files_and_a_cut_off_chunk(tmp_path: Path) -> None:
    def chunk(ts: list[float], ids: list[str]) -> bytes:
        n = len(ts)
        strings = {"endpoint": ["/"] * n, "method": ["POST"] * n, "error_kind": [""] * n}
        return encode_chunk(ts, [1.0] * n, [200] * n, {**strings, "write_id": ids})

    d = samples_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "a.chs").write_bytes(chunk([3.0, 1.0], ["w1", "w2"]) + chunk([5.0], ["w1"])[:-3])
    (d / "b.chs").write_bytes(chunk([2.0, 4.0], ["w3", "w2"]))
    columns = load_columns(tmp_path)
    assert columns.t.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert columns.write_key.tolist() == write_keys(["w2", "w3", "w1", "w2"]).tolist()
    _same_rows(columns, load_samples(tmp_path))
    (tmp_path / "empty").mkdir()
    assert len(load_columns(tmp_path / "empty")) == 0


def test_coded_chunk_decodes_like_a_row_chunk() -> None:
    names = ["", "/", "GET", "http", "w9"]
    raw = encode_coded_chunk(
        np.array([1.0, 2.0]),
        np.array([3.0, 4.0]),
        np.array([200, 503]),
        (np.array([1, 1]), np.array([2, 2]), np.array([0, 3]), np.array([4, 0])),
        names,
    )
    [(chunk, _)] = list(iter_chunks(raw))
    assert chunk.error_kind.tolist() == ["", "http"] and chunk.write_id.tolist() == ["w9", ""]
    with pytest.raises(ValueError, match="names"):
        encode_coded_chunk(chunk.t, chunk.t, chunk.status, (), ["x"])


def test_analysis_from_columns_equals_analysis_from_the_frame(tmp_path: Path) -> None:
    run = _run(tmp_path)
    before = read_results(run)  # written by the synthetic run from the frame path
    windows = [r.window for r in before.runs]
    frame = load_samples(run)
    recorded = RecordedWrites.from_ids(
        [i for i in frame["write_id"] if i] + ["not-sent", "w5", "w5"]
    )
    a = analyze_run(frame, windows, STEADY, 1.0, recorded_writes=recorded, resamples=500)
    b = analyze_run(
        load_columns(run), windows, STEADY, 1.0, recorded_writes=recorded, resamples=500
    )
    assert a.runs == b.runs and a.summaries == b.summaries and a.comparisons == b.comparisons
    pd.testing.assert_frame_equal(a.buckets, b.buckets)
    # and what the synthetic run wrote from the frame (it also had proxy counters)
    c = analyze_run(load_columns(run), windows, STEADY, 1.0, resamples=500)
    assert [replace(r, counters=CounterDeltas()) for r in c.runs] == [
        replace(r, counters=CounterDeltas()) for r in before.runs
    ]


def test_writes_lost_and_duplicated_by_codes() -> None:
    samples = synthetic_samples(0.0, 10.0, 100.0, seed=3, write_every=4)
    samples.loc[samples.index[-1], "write_id"] = "w0"  # the same id sent twice
    acked = [i for i, s in zip(samples.write_id, samples.status, strict=True) if i and s < 300]
    recorded_ids = acked[2:-1] + acked[-20:-17]
    recorded = RecordedWrites.from_ids(recorded_ids)
    w = FaultWindow("sidecar", "x", "abort", 0, 2.0, 4.0, 10.0, False, 0.0)
    r = measure_window(samples, w, STEADY, 1.0, recorded_writes=recorded)
    # the truth, counted the slow way
    inside = samples[(samples.t >= 2.0) & (samples.t < 10.0) & (samples.write_id != "")]
    times = Counter(recorded_ids)
    ok = inside[(inside.status >= 200) & (inside.status < 300)]
    assert r.writes_lost == sum(1 for i in set(ok.write_id) if times[i] == 0) > 0
    assert r.writes_duplicated == sum(1 for i in set(inside.write_id) if times[i] > 1) > 0
    keys = write_keys(["w0", acked[-19], "nope"])
    assert recorded.counts_of(keys).tolist() == [times["w0"], 2, 0]
    assert len(recorded) == len(recorded_ids)
    assert all(recorded.count(i) == n for i, n in times.items())


def test_errors_by_kind_and_unknown_kinds_from_columns() -> None:
    samples = synthetic_samples(
        0.0, 6.0, 100.0, outages=[Outage(2.0, 3.0), Outage(3.0, 3.5, "reset", 0)]
    )
    w = FaultWindow("sidecar", "x", "abort", 0, 2.0, 4.0, 6.0, False, 0.0)
    r = measure_window(SampleColumns.from_frame(samples), w, STEADY, 1.0)
    assert r.errors_by_kind == {"http": 100, "reset": 50}
    bad = samples.copy()
    bad.loc[0, "error_kind"] = "weird"
    with pytest.raises(InputError, match="weird"):
        measure_window(SampleColumns.from_frame(bad), w, STEADY, 1.0)


def test_scale_run_goes_through_the_finish_step_with_known_writes(tmp_path: Path) -> None:
    run = tmp_path / "scale"
    windows = write_scale_run(run, 240_000)  # windows of 8 s: recovery fits
    measure = _finish_here(run)
    # In-process: ru_maxrss is the whole test process's peak, which earlier tests may have set.
    assert measure.exit_code == 0 and measure.peak_rss_mb >= measure.before_rss_mb > 0
    results = read_results(run)
    assert [(r.setup, r.repetition) for r in results.runs] == [
        (w.setup, w.repetition) for w in windows
    ]
    assert all(r.recovered and r.had_impact for r in results.runs)
    # ids are 1.. over the run; an acked id that is a multiple of LOST_EVERY went unrecorded
    assert sum(r.writes_lost or 0 for r in results.runs) >= 1
    assert sum(r.writes_lost or 0 for r in results.runs) <= 240_000 // 4 // LOST_EVERY
    assert (run / "report.html").exists() and (run / "junit.xml").exists()


def _chunk_v1(t: list[float], latency: list[float], kinds: list[str]) -> bytes:
    """A chunk in the first format (b"CHS1", no send_lag_ms), built from its description."""
    import json
    import struct
    import zlib

    names = ["", "ep", "GET", *sorted({k for k in kinds if k})]
    table = json.dumps(names).encode()
    rows = len(t)
    raw = b"".join(
        [
            struct.pack("<I", len(table)),
            table,
            np.asarray(t, "<f8").tobytes(),
            np.asarray(latency, "<f8").tobytes(),
            np.full(rows, 200, "<i4").tobytes(),
            np.full(rows, 1, "<u4").tobytes(),  # endpoint "ep"
            np.full(rows, 2, "<u4").tobytes(),  # method "GET"
            np.asarray([names.index(k) for k in kinds], "<u4").tobytes(),  # error_kind
            np.zeros(rows, "<u4").tobytes(),  # write_id ""
        ]
    )
    body = zlib.compress(raw)
    return struct.pack("<4sIIII", b"CHS1", rows, len(body), len(raw), zlib.crc32(body)) + body


def _mixed_versions(tmp_path: Path) -> Path:
    """A CHS1 file and a CHS2 file (with lag and dropped rows) in one samples directory."""
    d = samples_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "old.chs").write_bytes(_chunk_v1([1.0, 4.0, 2.0], [3.0, 4.0, 5.0], ["", "reset", ""]))
    new = encode_coded_chunk(
        np.array([1.5, 3.0, 2.5, 5.0]),
        np.array([7.0, 0.0, 9.0, 0.0]),
        np.array([200, 0, 200, 0]),
        (np.array([1, 1, 1, 1]), np.array([2, 2, 2, 2]), np.array([0, 3, 0, 3]), np.zeros(4)),
        ["", "ep", "GET", DROPPED],
        send_lag_ms=np.array([2.0, 0.0, 0.5, 0.0]),
    )
    (d / "new.chs").write_bytes(new + new[:-5])  # and a cut-off copy: ignored
    return tmp_path


def test_both_chunk_versions_read_alike_in_the_frame_and_the_columns_path(tmp_path: Path) -> None:
    run = _mixed_versions(tmp_path)
    frame = load_samples(run)
    columns = load_columns(run)
    _same_rows(columns, frame)
    assert frame.t.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
    assert frame.send_lag_ms.tolist() == [0.0, 2.0, 0.0, 0.5, 0.0, 0.0, 0.0]
    assert frame.error_kind.tolist() == ["", "", "", "", DROPPED, "reset", DROPPED]
    # only the requests sent: a dropped one has no latency
    t, latency = load_latencies(run)
    assert t.tolist() == [1.0, 1.5, 2.0, 2.5, 4.0]
    assert latency.tolist() == [3.0, 7.0, 5.0, 9.0, 4.0]
    held_t, held_latency = columns.sent_latencies()  # what the finish step hands the report
    assert held_t.tolist() == t.tolist() and held_latency.tolist() == latency.tolist()
    [(chunk, _)] = list(iter_coded_chunks((samples_dir(run) / "old.chs").read_bytes()))
    assert chunk.send_lag_ms.tolist() == [0.0, 0.0, 0.0]


def test_encoders_write_version_2_with_a_lag_of_zero_unless_given() -> None:
    strings = {"endpoint": ["/"], "method": ["GET"], "error_kind": [""], "write_id": [""]}
    plain = encode_chunk([1.0], [2.0], [200], strings)
    coded = encode_coded_chunk(
        np.array([1.0]), np.array([2.0]), np.array([200]), tuple(np.array([0]) for _ in range(4)),
        [""],
    )  # fmt: skip
    for raw in (plain, coded):
        assert raw[:4] == MAGIC
        [(chunk, _)] = list(iter_chunks(raw))
        assert chunk.send_lag_ms.tolist() == [0.0] and chunk.latency_ms.tolist() == [2.0]
    lagged = encode_chunk([1.0], [2.0], [200], strings, [0.5])
    [(chunk, _)] = list(iter_chunks(lagged))
    assert chunk.send_lag_ms.tolist() == [0.5]
    with pytest.raises(ValueError, match="rows"):
        encode_coded_chunk(
            np.array([1.0]), np.array([2.0]), np.array([200]),
            tuple(np.array([0]) for _ in range(4)), [""], send_lag_ms=np.array([1.0, 2.0]),
        )  # fmt: skip


def test_dropped_requests_are_counted_apart_on_the_columns_path_too() -> None:
    samples = synthetic_samples(
        0.0, 6.0, 100.0, outages=[Outage(2.0, 3.0), Outage(3.0, 3.5, "reset", 0)]
    )
    samples["send_lag_ms"] = 0.0
    due = [2.2 + i / 100 for i in range(40)] + [5.9, 7.5]  # 41 in the window, 1 after it
    dropped = pd.DataFrame(
        {
            "t": due,
            "endpoint": "e",
            "method": "GET",
            "latency_ms": 0.0,
            "status": 0,
            "error_kind": DROPPED,
            "write_id": "",
            "send_lag_ms": 0.0,
        }
    )
    both = pd.concat([samples, dropped]).sort_values("t", kind="stable", ignore_index=True)
    w = FaultWindow("sidecar", "x", "abort", 0, 2.0, 4.0, 6.0, False, 0.0)
    plain = measure_window(samples, w, STEADY, 1.0)
    from_frame = measure_window(both, w, STEADY, 1.0)
    from_columns = measure_window(SampleColumns.from_frame(both), w, STEADY, 1.0)
    assert from_frame == from_columns
    assert from_columns.dropped_requests == 41 and plain.dropped_requests == 0
    assert from_columns.errors_by_kind == plain.errors_by_kind == {"http": 100, "reset": 50}
    assert replace(from_columns, dropped_requests=0) == plain
