"""What every fault is: a pure plan, an apply, a check that it took, an idempotent revert.

The engine writes :meth:`Fault.plan`'s result to the journal *before* calling
:meth:`Fault.apply`, registers :meth:`Fault.revert` on its ``ExitStack`` at
once, and asks :meth:`Fault.verify` during the hold whether the fault changed
anything (a fault that changed nothing is a failed experiment, not a pass).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Generic, TypeVar

from chaos.errors import FaultError
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.layout import Pod, TopologyLayout
from chaos.spec import Fault as FaultSpec
from chaos.spec import Target


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


def resolve_targets(layout: TopologyLayout, target: Target, seed: int) -> list[Pod]:
    """The pods a target selects; a share is drawn reproducibly from ``seed``."""
    pods = list(layout.pods)
    if target.service is not None:
        pods = [p for p in pods if p.service == target.service]
        if not pods:
            raise FaultError(f"target.service: no service {target.service!r} in the topology")
    if target.node is not None:
        pods = [p for p in pods if p.node == target.node]
        if not pods:
            raise FaultError(f"target.node: no pod on node {target.node!r}")
    if target.replica is not None:
        pods = [p for p in pods if p.replica == target.replica]
        if not pods:
            raise FaultError(f"target.replica: no replica {target.replica}")
    if target.share is not None:
        count = max(1, round(len(pods) * target.share))
        pods = sorted(random.Random(seed).sample(pods, count), key=lambda p: p.name)
    return pods


S = TypeVar("S", bound=FaultSpec)


class Fault(abc.ABC, Generic[S]):
    """A fault of one kind, bound to its spec and to a running topology."""

    fault_type: ClassVar[str]

    def __init__(self, spec: S, ops: LocalFaultOps, *, fault_id: str, name: str, seed: int) -> None:
        self.spec = spec
        self.ops = ops
        self.fault_id = fault_id
        self.name = name
        self.pods = resolve_targets(ops.layout, spec.target, seed)

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
            setup=self.ops.layout.setup.value,
            summary=self.spec.summary(),
            blast_radius=tuple(self.blast_radius()),
            changes=tuple(changes),
            self_healing=self_healing,
        )

    def blast_radius(self) -> list[str]:
        return [p.name for p in self.pods]
