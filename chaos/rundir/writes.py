"""Write ids held as 64-bit keys: how lost and duplicated writes are counted at scale.

A POST carries a write id (a string, see ``chaos.traffic.client.next_write_id``);
the samples record the id the client sent, the ``payments`` service the ids it
accepted. A 30-minute soak has millions of them: held as Python strings (one
object, 60 bytes or more, per id, on both sides) they were the largest cost of the
finish step left. Both sides are turned into one ``uint64`` key per id here, with
one vectorised hash (pandas' SipHash-2-4 over the UTF-8 bytes), and compared with
sorted arrays.

The key is a hash, so two different ids share a key with probability about
n² / 2⁶⁵ over n ids (3·10⁻⁶ for 10 M ids); such a pair could hide one lost
write or show one false duplicate. Keys are made and compared in one process and
never written to disk, so the hash may change with pandas without harm. Key 0
means "no write id" (the empty string).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

KeyArray = npt.NDArray[np.uint64]
#: The key of "no write id".
NO_WRITE = np.uint64(0)


def write_keys(ids: Iterable[str] | npt.NDArray[np.object_]) -> KeyArray:
    """One key per id, in order; ``""`` gives :data:`NO_WRITE`, any other id never does."""
    if isinstance(ids, np.ndarray):
        array = ids.astype(object, copy=False)
    else:
        listed = ids if isinstance(ids, list) else list(ids)
        array = np.empty(len(listed), dtype=object)
        array[:] = listed
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint64)
    keys = hash_ids(array)
    keys[array == ""] = NO_WRITE
    return keys


def hash_ids(ids: npt.NDArray[np.object_]) -> KeyArray:
    """The keys of non-empty ids (:func:`write_keys` without the check for ``""``)."""
    keys: KeyArray = pd.util.hash_array(ids, categorize=False)
    keys[keys == NO_WRITE] = 1  # a real id whose hash is 0 (one chance in 2^64)
    return keys


@dataclass(frozen=True, eq=False)
class RecordedWrites:
    """The keys of the write ids a service recorded, duplicates included (8 bytes an id)."""

    keys: KeyArray

    @classmethod
    def empty(cls) -> RecordedWrites:
        """No write recorded."""
        return cls(np.zeros(0, dtype=np.uint64))

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> RecordedWrites:
        """Every recorded id (duplicates included), in any order; empty ids are left out."""
        keys = write_keys(ids)
        return cls(keys[keys != NO_WRITE])

    @classmethod
    def concat(cls, parts: Iterable[RecordedWrites]) -> RecordedWrites:
        """The writes of several records together (the engine keeps one per window)."""
        arrays = [p.keys for p in parts]
        return cls(np.concatenate(arrays)) if arrays else cls.empty()

    def __add__(self, other: RecordedWrites) -> RecordedWrites:
        return RecordedWrites(np.concatenate((self.keys, other.keys)))

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def _table(self) -> tuple[KeyArray, npt.NDArray[np.int64]]:
        unique, counts = np.unique(self.keys, return_counts=True)
        return unique, counts.astype(np.int64)

    def counts_of(self, keys: KeyArray) -> npt.NDArray[np.int64]:
        """How often each of ``keys`` was recorded (0 for a key never recorded)."""
        unique, counts = self._table
        found = np.zeros(len(keys), dtype=np.int64)
        if len(unique) == 0 or len(keys) == 0:
            return found
        # sorted needles walk the table in order: random ones miss the cache at every step
        order = np.argsort(keys)
        needles = keys[order]
        at = np.minimum(np.searchsorted(unique, needles), len(unique) - 1)
        found[order] = np.where(unique[at] == needles, counts[at], 0)
        return found

    def count(self, write_id: str) -> int:
        """How often ``write_id`` was recorded."""
        return int(self.counts_of(write_keys([write_id]))[0])
