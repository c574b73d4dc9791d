"""Ctrl-C and SIGTERM during a run: the first one stops the run, none skips a revert.

The first SIGINT/SIGTERM raises :class:`RunInterrupted` in the main thread; the
``ExitStack`` of the window then reverts the fault and tears the topology down.
Every later signal only says that reverting is under way and returns, so a
second Ctrl-C cannot cut a revert short.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType, TracebackType

from chaos.errors import AbortedError


class RunInterrupted(AbortedError):
    """The run was stopped by a signal; what was applied is being reverted."""


class SignalGuard:
    """Installs the handlers for the duration of a run (main thread only)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            sys.stderr.write(f"\n{name} again: still reverting, please wait...\n")
            sys.stderr.flush()
            return
        self.received = name
        sys.stderr.write(f"\n{name}: stopping the run; reverting what was applied...\n")
        sys.stderr.flush()
        raise RunInterrupted(f"interrupted by {name}; every fault was reverted")
