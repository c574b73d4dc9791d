"""The platform a command runs on: the options the CLI has for it, and the experiment loaded
and checked against it (``--setup``, ``--slot``, ``--platform``, the kubernetes options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.errors import InputError

if TYPE_CHECKING:
    from chaos.experiment import Experiment
    from chaos.platforms.base import Platform


def setup_for(name: str) -> str:
    from chaos.experiment import SETUP_NAMES

    if name not in SETUP_NAMES:
        raise InputError(f"--setup: unknown setup {name!r} (choose from {', '.join(SETUP_NAMES)})")
    return name


@dataclass(frozen=True)
class PlatformOptions:
    """The CLI options that go to a platform: each platform takes its own."""

    slots: dict[str, int] = field(default_factory=dict)
    kubeconfig: Path | None = None
    kube_context: str | None = None
    allow_context: str | None = None
    #: A Prometheus to read the proxy counters from (local platform).
    prometheus: str | None = None


def platform_for(name: str, options: PlatformOptions | None = None) -> Platform:
    """The platform ``name`` from the registry, with the options the CLI has for it."""
    from chaos.platforms import platform_factory

    opts = options or PlatformOptions()
    factory = platform_factory(name)
    if name == "local":
        return factory(slots=opts.slots, prometheus_url=opts.prometheus)
    if opts.prometheus is not None:
        raise InputError(f"--prometheus: the {name} platform does not read counters from it yet")
    if name == "kubernetes":
        return factory(
            kubeconfig=opts.kubeconfig, context=opts.kube_context, allow_context=opts.allow_context
        )
    return factory()


def read_experiment(
    path: Path, overrides: list[str], setups: list[str], options: PlatformOptions | None = None
) -> Experiment:
    """Load and check an experiment, against the platform it names too (exit 2 on a problem)."""
    from chaos.engine.preflight import platform_checks
    from chaos.experiment import load_experiment
    from chaos.platforms.base import Problem

    def check(experiment: Experiment) -> list[Problem]:
        try:
            platform = platform_for(experiment.platform, options)
        except InputError as exc:
            return [Problem(("platform",), str(exc))]
        return list(platform_checks(platform)(experiment))

    return load_experiment(path, overrides, setups, check=check)


def parse_slots(values: list[str]) -> dict[str, int]:
    """``--slot mesh=112`` options as a mapping, checked."""
    slots: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not number.isdigit() or not 1 <= int(number) <= 254:
            raise InputError(f"--slot: {value!r} is not like mesh=112 (slot within 1..254)")
        slots[setup_for(name)] = int(number)
    return slots
