"""Write ids as 64-bit keys: the empty id is 0, real ids are distinct, counts are exact."""

from __future__ import annotations

import numpy as np

from chaos.rundir.writes import NO_WRITE, RecordedWrites, write_keys


def test_keys_are_stable_distinct_and_zero_only_for_no_id() -> None:
    ids = [f"{pid:x}-a1b2c3-{n}" for pid in (7, 4242) for n in range(50_000)]
    keys = write_keys(ids)
    assert keys.dtype == np.uint64 and len(np.unique(keys)) == len(ids)
    assert NO_WRITE not in keys
    assert write_keys(["", ids[3], ""]).tolist() == [0, keys[3], 0]
    # same key from a list, an iterator and an object array
    assert (
        write_keys(iter(ids[:5])).tolist() == write_keys(np.array(ids[:5], dtype=object)).tolist()
    )
    assert len(write_keys([])) == 0


def test_recorded_writes_count_duplicates_and_missing_ids() -> None:
    first = RecordedWrites.from_ids(["a", "b", "", "b"])
    second = RecordedWrites.from_ids(["c"])
    both = RecordedWrites.concat([first, second, RecordedWrites.empty()])
    assert len(first) == 3 and len(both) == 4 and len(first + second) == 4
    assert [both.count(i) for i in ("a", "b", "c", "d")] == [1, 2, 1, 0]
    assert both.counts_of(write_keys(["b", "zz", "a"])).tolist() == [2, 0, 1]
    assert RecordedWrites.empty().counts_of(write_keys(["a"])).tolist() == [0]
    assert len(RecordedWrites.concat([])) == 0
