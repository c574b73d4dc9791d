"""Leasing a free slot (``127.0.<slot>.x``) for a topology that does not use the defaults.

The tests and the benchmarks start topologies in slots 100..250, several at once on
one machine (several test processes, a bench next to them). ``lease_slot`` picks a
random slot whose pod, proxy and IdP addresses can all be bound now, and holds an
exclusive ``flock`` on ``<tmp>/sidecar-chaos-test-slots/<slot>.lock`` while the
block runs, so no other lease of ours (in any process) takes the same slot meanwhile.
Checking the addresses as well covers programs that do not lease (a run in a
default slot, another tool). The lock is released when the block ends or the
process dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from chaos.errors import AddressInUseError
from chaos.experiment import Setup
from chaos.platforms.shared.layout import INGRESS_HOST, build_layout

#: The slots leases choose from (third octets; the defaults 11..13 stay out of the way).
LEASE_SLOTS: Final = range(100, 251)
#: One lock file per slot; the name predates the benchmarks taking leases too.
LOCK_DIR: Final = Path(tempfile.gettempdir()) / "sidecar-chaos-test-slots"


def slot_is_free(slot: int) -> bool:
    """Whether every pod/proxy/IdP address of every setup in ``slot`` can be bound now."""
    pairs: set[tuple[str, int]] = set()
    for setup in Setup:
        layout = build_layout(setup, Path("/nonexistent"), slot=slot, ingress_port=1)
        pairs |= {(h, p) for h, p in layout.bound_addresses() if h != INGRESS_HOST}
    for host, port in sorted(pairs):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                raise
    return True


@contextlib.contextmanager
def lease_slot(slots: Sequence[int] = LEASE_SLOTS, lock_dir: Path = LOCK_DIR) -> Iterator[int]:
    """Hold a free slot of ``slots`` (locked against our other leases) while the block runs."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    candidates = list(slots)
    random.shuffle(candidates)
    for slot in candidates:
        fd = os.open(lock_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            if not slot_is_free(slot):
                continue
            yield slot
            return
        finally:
            os.close(fd)  # closing releases the lock
    raise AddressInUseError(
        f"no free slot in 127.0.{min(slots)}-{max(slots)}.x (all leased or their addresses taken)"
    )
