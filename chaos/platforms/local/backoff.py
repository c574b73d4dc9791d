"""CrashLoopBackOff: how long a crashed local process waits before its restart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """CrashLoopBackOff as the kubelet does it.

    The kubelet restarts a container that crashed for the first time at once (it has
    no back-off entry yet) and only then starts backing off: the n-th consecutive
    crash (n >= 2) waits ``initial_s * factor**(n-2)``, capped at ``max_s``. A process
    that ran ``reset_after_s`` without crashing starts the count afresh. Defaults are
    the kubelet's (10 s doubling to 300 s, reset after 10 min).
    ``first_restart_immediate=False`` backs off from the first crash on
    (``initial_s * factor**(n-1)``): a fixed, known restart delay, as tests want.
    """

    initial_s: float = 10.0
    factor: float = 2.0
    max_s: float = 300.0
    reset_after_s: float = 600.0
    first_restart_immediate: bool = True

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError(f"invalid backoff (need 0 <= initial <= max, factor >= 1): {self}")
        if self.reset_after_s <= 0:
            raise ValueError(f"invalid backoff (reset_after_s must be positive): {self}")

    def delay_s(self, crashes: int) -> float:
        """The wait before restarting after the ``crashes``-th consecutive crash (>= 1)."""
        if crashes < 1:
            raise ValueError(f"crashes must be >= 1, got {crashes}")
        if self.first_restart_immediate:
            if crashes == 1:
                return 0.0
            crashes -= 1
        # Capped exponent so that long crash loops cannot overflow the float.
        exponent = min(crashes - 1, 1000)
        return float(min(self.max_s, self.initial_s * self.factor**exponent))

    def crashes_after(self, previous: int, ran_for_s: float) -> int:
        """The consecutive-crash count after a crash that ended a run of ``ran_for_s``."""
        return (0 if ran_for_s >= self.reset_after_s else previous) + 1
