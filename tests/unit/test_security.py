"""What the app received, as data: header bits, the ``auth`` column, the window's counts.

Pure: the header contract, the chunk format carrying it (old chunks read as "said
nothing"), the invariants counted in exact requests, results.json round trip, the
hypothesis metrics and the run's failure lines.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaos.analysis import FaultWindow, SteadyState, analyze_run, read_results, write_results
from chaos.analysis.hypotheses import _raw
from chaos.analysis.security import BypassAttempt, invariant_lines, load_bypass
from chaos.rundir import BYPASS_DIR
from chaos.rundir.auth import CREDENTIAL, IDENTITY, REPORTED, TOKEN, VERIFIED, encode, fold
from chaos.rundir.auth import header_value as auth_header
from chaos.rundir.chunks import MAGIC_V2, encode_chunk, iter_chunks
from chaos.rundir.columns import load_columns

FULL = REPORTED | VERIFIED | IDENTITY | TOKEN | CREDENTIAL


def test_header_values_and_bits() -> None:
    assert encode(None) == 0  # the app said nothing
    assert encode("none") == REPORTED
    assert encode("verified,identity,token,credential") == FULL
    assert encode(" Identity , TOKEN ") == REPORTED | IDENTITY | TOKEN
    assert auth_header(FULL) == "verified,identity,token,credential"
    assert auth_header(REPORTED) == "none"


def test_a_chain_is_verified_only_if_every_hop_is() -> None:
    hop = encode("verified,identity,token")
    bare = encode("credential")
    assert fold(hop, hop) == hop
    # one hop without identity makes the chain unverified; a credential anywhere counts
    assert fold(hop, bare) == REPORTED | CREDENTIAL
    assert fold(bare, hop) == REPORTED | CREDENTIAL
    # an upstream that said nothing leaves this hop's view
    assert fold(hop, 0) == hop


def _strings(n: int) -> dict[str, list[str]]:
    return {
        "endpoint": ["browse"] * n,
        "method": ["GET"] * n,
        "error_kind": [""] * n,
        "write_id": [""] * n,
    }


def _chs2_chunk(t: float, status: int) -> bytes:
    """A chunk as written before the ``auth`` column (magic CHS2), built by hand."""
    table = json.dumps(["", "browse", "GET"]).encode()
    raw = struct.pack("<I", len(table)) + table
    raw += struct.pack("<d", t) + struct.pack("<d", 1.0) + struct.pack("<d", 0.0)
    raw += struct.pack("<i", status) + struct.pack("<IIII", 1, 2, 0, 0)
    body = zlib.compress(raw)
    return struct.pack("<4sIIII", MAGIC_V2, 1, len(body), len(raw), zlib.crc32(body)) + body


def test_auth_column_round_trips_and_old_chunks_read_as_not_said(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    new = encode_chunk([1.0, 2.0], [3.0, 4.0], [200, 200], _strings(2), auth=[FULL, REPORTED])
    assert new[:4] == b"CHS3"
    ((chunk, _),) = list(iter_chunks(new))
    assert chunk.auth.tolist() == [FULL, REPORTED]
    (samples / "a.chs").write_bytes(new + _chs2_chunk(5.0, 503))
    columns = load_columns(samples)
    assert columns.t.tolist() == [1.0, 2.0, 5.0]
    assert columns.status.tolist() == [200, 200, 503]
    assert columns.auth.tolist() == [FULL, REPORTED, 0]


def _window(setup: str, rep: int, start: float) -> FaultWindow:
    return FaultWindow(
        setup=setup,
        fault="f",
        fault_type="abort",
        repetition=rep,
        inject_t=start + 1.0,
        revert_t=start + 2.0,
        end_t=start + 4.0,
        self_healing=False,
        warmup_start_t=start,
    )


def _samples(rows: list[tuple[float, int, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t": [r[0] for r in rows],
            "endpoint": ["browse"] * len(rows),
            "method": ["GET"] * len(rows),
            "latency_ms": [5.0] * len(rows),
            "status": [r[1] for r in rows],
            "error_kind": [r[2] for r in rows],
            "write_id": [""] * len(rows),
            "send_lag_ms": [0.0] * len(rows),
            "auth": [r[3] for r in rows],
        }
    )


def test_window_counts_are_exact_requests(tmp_path: Path) -> None:
    verified = REPORTED | VERIFIED | IDENTITY | TOKEN
    rows = [(0.1 * i, 200, "", verified) for i in range(1, 30)]  # window a: 29 verified
    rows += [(0.05, 200, "", REPORTED | IDENTITY)]  # served: identity but no token -> fail open
    rows += [(1.5, 200, "", verified | CREDENTIAL)]  # a credential reached the app
    rows += [(1.6, 200, "", 0)]  # the app said nothing
    rows += [(1.7, 503, "http", 0)]  # failed: never counted as served
    rows += [(10.0 + 0.1 * i, 200, "", verified) for i in range(20)]  # window b: clean
    bypass = [
        BypassAttempt(0.5, "payments-0", "served", 200),
        BypassAttempt(0.6, "payments-1", "refused"),
        BypassAttempt(10.5, "payments-0", "refused"),
    ]
    windows = [_window("sidecar", 0, 0.0), _window("mesh", 0, 10.0)]
    a = analyze_run(
        _samples(sorted(rows)),
        windows,
        SteadyState(0.5, 1000.0),
        1.0,
        resamples=50,
        bypass=bypass,
        max_credentials_exposed=0.01,
    )
    sa, sb = (r.security for r in a.runs)
    assert sa is not None and sb is not None
    assert (sa.served, sa.served_unauthenticated, sa.unreported) == (32, 1, 1)
    assert sa.credentials_exposed == 1 and sa.credentials_share == pytest.approx(1 / 32)
    assert (sa.bypass_sent, sa.bypass_served, sa.bypass_refused) == (2, 1, 1)
    assert not sa.fail_open_held and not sa.credentials_held and not sa.held
    assert (sb.served, sb.served_unauthenticated, sb.bypass_refused, sb.held) == (20, 0, 1, True)
    # hypothesis metrics read the same counts
    assert _raw(a.runs[0], "served_unauthenticated") == 1.0
    assert _raw(a.runs[0], "bypass_served") == 1.0
    assert _raw(a.runs[1], "credentials_exposed") == 0.0
    lines = invariant_lines(a.runs)
    assert len(lines) == 1 and "sidecar/f#1" in lines[0] and "1 requests served unauth" in lines[0]
    assert "credentials" not in invariant_lines(a.runs, credentials=False)[0]
    # results.json: per window and per setup and fault, read back the same
    write_results(tmp_path, a.runs, a.summaries, a.comparisons, a.buckets)
    back = read_results(tmp_path)
    assert [r.security for r in back.runs] == [sa, sb]
    totals = json.loads((tmp_path / "results.json").read_text())["security"]
    assert [(t["setup"], t["served_unauthenticated"], t["bypass_served"]) for t in totals] == [
        ("sidecar", 1, 1),
        ("mesh", 0, 0),
    ]


def test_bypass_records_are_read_and_torn_lines_skipped(tmp_path: Path) -> None:
    d = tmp_path / BYPASS_DIR
    d.mkdir()
    good = {"t": 2.0, "pod": "p", "outcome": "served", "status": 200}
    other = {"t": 1.0, "pod": "q", "outcome": "refused", "status": 0}
    (d / "w.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps(other) + '\n{"t": 3.0, "pod": "x", "out'
    )
    found = load_bypass(tmp_path)
    assert [(a.t, a.outcome) for a in found] == [(1.0, "refused"), (2.0, "served")]
    assert load_bypass(tmp_path / "none") == []


def test_no_auth_column_means_unreported() -> None:
    frame = _samples([(0.5, 200, "", 0)]).drop(columns=["auth"])
    a = analyze_run(frame, [_window("sidecar", 0, 0.0)], SteadyState(0.5, 1000.0), 1.0)
    s = a.runs[0].security
    assert s is not None and (s.served, s.unreported, s.served_unauthenticated) == (1, 1, 0)
    assert np.asarray([s.held])[0]
