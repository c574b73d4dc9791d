"""Optional for a platform: it can hold the next window's topology while this one's runs.

The engine then brings the next window's topology up (and its load) during the current
window's recovery, and stops the current one's while the next one warms up, instead of
paying for both between the windows. Every window still gets a topology of its own, fresh
(its own processes, directory and addresses): only the waiting overlaps. A platform says
so only where two topologies of one setup can coexist (the local one: another loopback
slot), and may decline per run (``starts_ahead`` False).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StartsAhead(Protocol):
    """A platform that can start a topology of a setup while another of it still runs."""

    def starts_ahead(self) -> bool:
        """Whether this run's topologies may overlap (False: one after the other)."""
        ...
