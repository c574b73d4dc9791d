"""Plans without a topology: what ``run --dry-run`` prints."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from chaos.faults import driver_for
from chaos.platforms.local.faultops import LocalFaultOps
from chaos.platforms.local.layout import DEFAULT_SLOT, Setup, build_layout, default_ingress_port
from chaos.spec import Fault as FaultSpec


class _Key(Protocol):
    @property
    def setup(self) -> str: ...
    @property
    def fault(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def repetition(self) -> int: ...


def plan_offline(spec: FaultSpec, key: _Key, seed: int) -> list[str]:
    """The plan of one fault window, as lines, computed from the layout alone."""
    setup = Setup(key.setup)
    slot = DEFAULT_SLOT[setup]
    layout = build_layout(
        setup,
        Path(tempfile.gettempdir()) / "dry-run",
        slot=slot,
        ingress_port=default_ingress_port(slot),
    )
    fault = driver_for(spec.type)(
        spec, LocalFaultOps(layout), fault_id=key.slug, name=key.fault, seed=seed + key.repetition
    )
    lines: list[str] = fault.plan().describe()
    return lines
