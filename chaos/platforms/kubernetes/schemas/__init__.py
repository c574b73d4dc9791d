"""Reduced JSON Schemas of the Istio and Gateway API objects the tool builds.

One file per kind (``<Kind>.json``), written from the real CRDs' v1 schemas but
holding only the fields the tool sets, with ``additionalProperties: false``
everywhere: a typo'd field fails validation instead of being dropped silently by
the API server's pruning. The tests validate every built object against them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: The custom kinds with a schema here.
KINDS = (
    "AuthorizationPolicy",
    "DestinationRule",
    "Gateway",
    "PeerAuthentication",
    "RequestAuthentication",
    "VirtualService",
)


@cache
def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind``; KeyError for a kind without one."""
    if kind not in KINDS:
        raise KeyError(f"no schema for kind {kind!r}; known: {', '.join(KINDS)}")
    text = resources.files(__package__).joinpath(f"{kind}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
