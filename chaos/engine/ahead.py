"""A window's start ahead of its turn, and its teardown behind it, on threads of their own.

A window's start (its topology up, the counter sampler, Locust started) and its teardown
(Locust stopped, the recorded writes collected, the topology stopped) are not part of its
planned phases. Where the platform allows it (``chaos.platforms.ahead.StartsAhead``) the
engine runs the next window's start during the current window's recovery and the current
window's teardown during the next one's warm-up. :class:`Background` is the one call on a
thread that both use: :meth:`Background.join` returns its value or raises what it raised,
in the engine's thread, so a broken start breaks its own window at its turn.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from chaos.engine.records import WindowKey, WindowRecord
from chaos.platforms.base import RunningTopology
from chaos.traffic.base import Traffic

T = TypeVar("T")


class Background(Generic[T]):
    """``call()`` on a daemon thread, started at once."""

    def __init__(self, name: str, call: Callable[[], T]) -> None:
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the engine's thread by join()
            self._error = exc

    def join(self) -> T:
        """Wait for the call; its value, or raise its exception here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class HeldStart:
    """``start(released)`` on a thread that lives until ``released`` is set.

    Every child process asks for SIGKILL when the *thread* that forked it ends
    (``PR_SET_PDEATHSIG``, ``chaos.proc``): the thread that starts a window's topology and
    Locust must outlive them. ``start`` registers ``released.set`` first on the window's
    stack, so it runs last, once every process of the window is stopped.
    """

    def __init__(self, name: str, start: Callable[[threading.Event], Started]) -> None:
        self._start = start
        self._value: Started | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._start(self._released)
        except BaseException as exc:  # handed to the engine's thread by join()
            self._error = exc
            return
        finally:
            self._ready.set()
        self._released.wait()

    def join(self) -> Started:
        """Wait for the start; the window brought up, or raise what the start raised."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


@dataclass
class Started:
    """A window brought up: everything it holds is on ``stack`` (closed at its teardown)."""

    stack: contextlib.ExitStack
    topology: RunningTopology
    traffic: Traffic


@dataclass
class Ahead:
    """The next window, being brought up while the current one recovers."""

    key: WindowKey
    record: WindowRecord
    start: HeldStart


__all__ = ["Ahead", "Background", "HeldStart", "Started"]
