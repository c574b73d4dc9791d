"""Platforms: where experiments run. The port is :mod:`chaos.platforms.base`.

Platforms register through the ``sidecar_chaos.platforms`` entry point group
(``local``, ``kubernetes``, ``fake``) and load lazily by name, as faults do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for the annotations: a process that imports one platform module (the demo
    # service, started 6 times per topology) does not pay for the port and the experiment
    # model (pydantic) it never uses, about a third of its start-up.
    from chaos.platforms.base import Platform


def platform_factory(name: str) -> Callable[..., Platform]:
    """The factory registered for platform ``name`` (call it with the platform's options)."""
    from chaos import plugins  # here: the entry points' metadata costs each demo app 30 ms

    loaded = plugins.load(plugins.PLATFORMS, name, "platform")
    if not callable(loaded):
        raise TypeError(f"platform {name!r} is registered as {loaded!r}, not a factory")
    factory: Callable[..., Platform] = loaded
    return factory


def platform_names() -> list[str]:
    from chaos import plugins

    return plugins.names(plugins.PLATFORMS)
