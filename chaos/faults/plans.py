"""Plans without a running topology: what ``run --dry-run`` prints."""

from __future__ import annotations

from typing import Protocol

from chaos.experiment import Fault as FaultSpec
from chaos.faults import driver_for
from chaos.platforms.base import FaultOps


class _Key(Protocol):
    @property
    def fault(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def repetition(self) -> int: ...


def plan_offline(spec: FaultSpec, ops: FaultOps, key: _Key, seed: int) -> list[str]:
    """The plan of one fault window, as lines, from the platform's planning-only mechanisms."""
    fault = driver_for(spec.type)(
        spec, ops, fault_id=key.slug, name=key.fault, seed=seed + key.repetition
    )
    lines: list[str] = fault.plan().describe()
    return lines
