"""``crash``: SIGKILL the target proxy, once or N times at an interval (a crash loop).

The supervisor restarts it under its CrashLoopBackOff policy, so recovery is
measured from injection. In ambient the target is the node proxy: every pod on
the node loses its data path.
"""

from __future__ import annotations

import threading

from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.spec import CrashFault


class CrashFaultDriver(Fault[CrashFault]):
    fault_type = "crash"
    _kills = 0
    _restarts_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def _processes(self) -> list[str]:
        return self.ops.proxy_processes(self.pods, self.spec.target.node)

    def blast_radius(self) -> list[str]:
        layout = self.ops.layout
        if layout.node_proxies:
            nodes = (
                {self.spec.target.node} if self.spec.target.node else {p.node for p in self.pods}
            )
            return [p.name for p in layout.pods if p.node in nodes]
        return [p.name for p in self.pods]

    def plan(self) -> FaultPlan:
        times = self.spec.times
        every = f" every {self.spec.interval:g} s" if times > 1 and self.spec.interval else ""
        changes = [
            Change(
                proc, f"SIGKILL {times}x{every}", "stop further kills; the supervisor restarts it"
            )
            for proc in self._processes()
        ]
        return self._plan(changes, self_healing=True)

    def apply(self) -> None:
        self._stop = threading.Event()
        self._restarts_before = {p: self.ops.restarts(p) for p in self._processes()}
        self._kills = 0
        self._kill_all()
        if self.spec.times > 1:
            self._thread = threading.Thread(target=self._loop, name="crash-loop", daemon=True)
            self._thread.start()

    def _kill_all(self) -> None:
        for proc in self._processes():
            try:
                self.ops.kill(proc)
            except Exception:
                continue
            self._kills += 1

    def _loop(self) -> None:
        interval = self.spec.interval or 1.0
        stop = self._stop
        assert stop is not None  # set by apply() before the thread starts
        for _ in range(self.spec.times - 1):
            if stop.wait(interval):
                return
            self._kill_all()

    def verify(self) -> Evidence:
        before = self._restarts_before
        rises = {p: self.ops.restarts(p) - before.get(p, 0) for p in self._processes()}
        detail = f"{self._kills} kills; restarts " + ", ".join(
            f"{p}: {n}" for p, n in rises.items()
        )
        return Evidence(self._kills > 0, detail)

    def revert(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
