"""``lease_slot``: the tests and the benchmarks never get the same slot at once.

Slots 60..62 are used here (outside the leased range 100..250 and the defaults
11..13), with a private lock directory, so the test does not compete with the
leases of other test processes on the machine.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.bench import fidelity, realrun, startup
from chaos.errors import AddressInUseError
from chaos.platforms.local import slots
from chaos.platforms.local.slots import lease_slot
from tests import conftest

ROOT = Path(__file__).resolve().parents[2]

#: Leases one of the slots given and holds it until its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from chaos.platforms.local.slots import lease_slot
with lease_slot([int(s) for s in sys.argv[2].split(",")], Path(sys.argv[1])) as slot:
    print(slot, flush=True)
    sys.stdin.read()
"""


def test_two_leases_in_one_process_get_two_slots(tmp_path: Path) -> None:
    with lease_slot([60, 61], tmp_path) as first, lease_slot([60, 61], tmp_path) as second:
        assert {first, second} == {60, 61}
        refused = pytest.raises(AddressInUseError, match=r"no free slot in 127\.0\.60-61\.x")
        with refused, lease_slot([60, 61], tmp_path):
            pass
    with lease_slot([60], tmp_path) as again:  # released at the end of the block
        assert again == 60


def test_a_slot_leased_by_another_process_is_never_given(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), "60"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "60"
            for _ in range(10):  # the choice is random: try it a few times
                with lease_slot([60, 61], tmp_path) as slot:
                    assert slot == 61
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    with lease_slot([60], tmp_path) as slot:  # its lock went with it
        assert slot == 60


def test_a_slot_whose_address_is_taken_is_skipped(tmp_path: Path) -> None:
    """A program that does not lease (a run in that slot, another tool) holds a pod's port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.62.21", 15006))  # checkout-0's inbound port in slot 62
        taken.listen()
        assert not slots.slot_is_free(62)
        with lease_slot([61, 62], tmp_path) as slot:
            assert slot == 61


def test_the_tests_and_the_benches_take_the_same_lock() -> None:
    assert conftest.lease_slot is lease_slot
    for module in (startup, fidelity, realrun):
        assert module.lease_slot is lease_slot, module.__name__
    assert slots.LOCK_DIR.name == "sidecar-chaos-test-slots"
