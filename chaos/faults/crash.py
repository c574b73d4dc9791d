"""``crash``: kill the target proxy, once or N times at an interval (a crash loop).

The platform restarts it under its restart policy (the supervisor's or the
kubelet's CrashLoopBackOff), so recovery is measured from injection. Where a
proxy serves a whole node (ambient's node proxy), every pod on the node loses
its data path: the platform says which pods each proxy carries.
"""

from __future__ import annotations

import threading

from chaos.errors import ChaosError
from chaos.experiment import CrashFault
from chaos.faults.base import Change, Evidence, Fault, FaultPlan
from chaos.platforms.base import ProxyTarget


class CrashFaultDriver(Fault[CrashFault]):
    fault_type = "crash"
    _kills = 0
    _failures: list[str] = []  # noqa: RUF012 - replaced per instance in apply()
    _restarts_before: dict[str, int] = {}  # noqa: RUF012 - replaced per instance in apply()
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def _targets(self) -> list[ProxyTarget]:
        return self.ops.crash_targets(self.pods, self.spec.target.node)

    def _others(self) -> list[ProxyTarget]:
        """Every other proxy of the topology: a restart there is a cascade."""
        mine = {t.name for t in self._targets()}
        every = self.ops.crash_targets(list(self.ops.workload.pods), None)
        return [t for t in every if t.name not in mine]

    def blast_radius(self) -> list[str]:
        return list(dict.fromkeys(pod for t in self._targets() for pod in t.affects))

    def plan(self) -> FaultPlan:
        times = self.spec.times
        every = f" every {self.spec.interval:g} s" if times > 1 and self.spec.interval else ""
        changes = [
            Change(t.name, f"{t.mechanism} {times}x{every}", t.undo) for t in self._targets()
        ]
        return self._plan(changes, self_healing=True)

    def apply(self) -> None:
        self._stop = threading.Event()
        self._restarts_before = {
            t.name: self.ops.proxy_restarts(t) for t in [*self._targets(), *self._others()]
        }
        self._kills = 0
        self._failures = []
        self._kill_all()
        if self.spec.times > 1:
            self._thread = threading.Thread(target=self._loop, name="crash-loop", daemon=True)
            self._thread.start()

    def _kill_all(self) -> None:
        for target in self._targets():
            try:
                self.ops.kill_proxy(target)
            except ChaosError as exc:
                # Down already (restarting, in back-off): no kill this round; verify says why.
                self._failures.append(f"{target.name}: {exc}")
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
        rises = {
            t.name: self.ops.proxy_restarts(t) - before.get(t.name, 0) for t in self._targets()
        }
        detail = f"{self._kills} kills; restarts " + ", ".join(
            f"{p}: {n}" for p, n in rises.items()
        )
        cascade = {
            t.name: n
            for t in self._others()
            if (n := self.ops.proxy_restarts(t) - before.get(t.name, 0)) > 0
        }
        detail += (
            "; restarts elsewhere (a cascade): "
            + ", ".join(f"{p}: {n}" for p, n in cascade.items())
            if cascade
            else "; no restart elsewhere"
        )
        if self._failures:
            detail += "; kills that failed: " + "; ".join(self._failures[:3])
        return Evidence(self._kills > 0, detail)

    def revert(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
