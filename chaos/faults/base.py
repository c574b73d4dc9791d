"""What every fault is: a pure plan, an apply, a check that it took, an idempotent revert.

The engine writes :meth:`Fault.plan`'s result to the journal *before* calling
:meth:`Fault.apply`, registers :meth:`Fault.revert` on its ``ExitStack`` at
once, and asks :meth:`Fault.verify` during the hold whether the fault changed
anything (a fault that changed nothing is a failed experiment, not a pass).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Generic, TypeVar

from chaos.errors import FaultError
from chaos.experiment import Experiment, Setup, Target
from chaos.experiment import Fault as FaultSpec
from chaos.platforms.base import FaultOps, Pod, Problem, Workload


@dataclass(frozen=True)
class Change:
    """One thing a fault touches, and how it is undone."""

    subject: str
    action: str
    undo: str


@dataclass(frozen=True)
class FaultPlan:
    """Everything a fault will do, decided before anything is touched."""

    fault_id: str
    name: str
    fault_type: str
    setup: str
    summary: str
    blast_radius: tuple[str, ...]
    changes: tuple[Change, ...]
    #: Recovery is measured from injection (the system heals itself, e.g. a crash).
    self_healing: bool
    #: ``proxy:stat`` counters of the requests through the faulted element(s), and of
    #: every client request: the affected share (``chaos.analysis.shares``); empty if none.
    share_counters: tuple[str, ...] = ()
    client_counter: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> list[str]:
        lines = [f"{self.setup}: {self.summary} (blast radius: {', '.join(self.blast_radius)})"]
        for change in self.changes:
            lines.append(f"  - {change.subject}: {change.action}; undo: {change.undo}")
        return lines


@dataclass(frozen=True)
class Evidence:
    """Whether a fault had an effect, measured, and what was seen."""

    took_effect: bool
    detail: str


def _selection(workload: Workload, target: Target) -> tuple[list[Pod], tuple[str, str] | None]:
    """The pods ``target`` selects, or the field that selects nothing and why."""
    pods = list(workload.pods)
    if target.service is not None:
        pods = [p for p in pods if p.service == target.service]
        if not pods:
            known = ", ".join(workload.services)
            return [], ("service", f"no service {target.service!r} (services: {known})")
    if target.node is not None:
        pods = [p for p in pods if p.node == target.node]
        if not pods:
            where = f" running {target.service}" if target.service is not None else ""
            known = ", ".join(workload.nodes)
            return [], ("node", f"no pod{where} on node {target.node!r} (nodes: {known})")
    if target.replica is not None:
        pods = [p for p in pods if p.replica == target.replica]
        if not pods:
            known = ", ".join(str(r) for r in workload.replicas_of(target.service or ""))
            return [], ("replica", f"no replica {target.replica} (replicas: {known})")
    return pods, None


def resolve_targets(workload: Workload, target: Target, seed: int) -> list[Pod]:
    """The pods a target selects; a share is drawn reproducibly from ``seed``."""
    pods, problem = _selection(workload, target)
    if problem is not None:
        raise FaultError(f"target.{problem[0]}: {problem[1]}")
    if target.share is not None:
        count = max(1, round(len(pods) * target.share))
        pods = sorted(random.Random(seed).sample(pods, count), key=lambda p: p.name)
    return pods


def target_problems(experiment: Experiment, workload: Callable[[Setup], Workload]) -> list[Problem]:
    """Every fault target that selects no pod of a setup it applies to, at its field."""
    problems: list[Problem] = []
    for index, fault in enumerate(experiment.faults):
        for setup in experiment.setups:
            if fault.target.setups is not None and setup not in fault.target.setups:
                continue
            if fault.target.existing:
                break  # an existing workload's pods are found (and checked) as a window starts
            _, problem = _selection(workload(setup), fault.target)
            if problem is not None:
                at: tuple[str | int, ...] = ("faults", index, "target", problem[0])
                problems.append(Problem(at, f"{problem[1]} in the {setup} workload"))
                break
    return problems


S = TypeVar("S", bound=FaultSpec)


class Fault(abc.ABC, Generic[S]):
    """A fault of one kind, bound to its spec and to a running topology."""

    fault_type: ClassVar[str]

    def __init__(self, spec: S, ops: FaultOps, *, fault_id: str, name: str, seed: int) -> None:
        self.spec = spec
        self.ops = ops
        self.fault_id = fault_id
        self.name = name
        self.pods = resolve_targets(ops.workload, spec.target, seed)

    @abc.abstractmethod
    def plan(self) -> FaultPlan:
        """What will change and how it is undone; pure (reads the layout only)."""

    @abc.abstractmethod
    def apply(self) -> None:
        """Make the change."""

    @abc.abstractmethod
    def verify(self) -> Evidence:
        """Whether the change had an effect, from the proxies' stats or the platform's events."""

    @abc.abstractmethod
    def revert(self) -> None:
        """Undo the change; safe to call twice and after a partial apply."""

    def _plan(self, changes: Sequence[Change], *, self_healing: bool = False) -> FaultPlan:
        return FaultPlan(
            fault_id=self.fault_id,
            name=self.name,
            fault_type=self.fault_type,
            setup=self.ops.setup.value,
            summary=self.spec.summary(),
            blast_radius=tuple(self.blast_radius()),
            changes=tuple(changes),
            self_healing=self_healing,
        )

    def blast_radius(self) -> list[str]:
        return [p.name for p in self.pods]
