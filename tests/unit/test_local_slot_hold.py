"""The local platform's slots: a second topology of ours in a slot it already holds (the
next window started during this one's recovery) runs in another, leased slot."""

from __future__ import annotations

from chaos.platforms.local.platform import LocalPlatform
from chaos.platforms.local.slots import LEASE_SLOTS


def test_a_held_slot_sends_the_second_topology_to_a_leased_one() -> None:
    platform = LocalPlatform(slots={"sidecar": 42, "mesh": 42})
    with platform._hold_slot(42) as first:
        assert first == 42
        with platform._hold_slot(42) as second:
            assert second != 42 and second in LEASE_SLOTS
        with platform._hold_slot(43) as other:
            assert other == 43  # a slot not held is used as asked
    with platform._hold_slot(42) as again:
        assert again == 42  # released at the end of the first block


def test_overlap_is_declined_where_two_topologies_of_a_setup_cannot_coexist() -> None:
    assert LocalPlatform().starts_ahead()
    assert not LocalPlatform(publish=True).starts_ahead()  # `up`'s: one per setup
    assert not LocalPlatform(prometheus_url="http://127.0.0.1:9090").starts_ahead()
