"""Durations as written in experiment files: ``500ms``, ``15s``, ``2m``, ``1h``, ``1m30s``.

A duration parses to a plain ``float`` of seconds; plain numbers are seconds too.
The annotated types below carry the parsing, the bounds and the JSON Schema, so a
model field only names what kind of duration it holds::

    hold: Duration              # a window: > 0 and <= 24 h
    warmup: NonNegativeDuration # 0 allowed
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

#: Seconds per unit.
UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Anything longer is a typo, not an experiment (and would overflow timers downstream).
MAX_SECONDS = 24 * 3600.0

_PART = r"(\d+(?:\.\d+)?)(ms|h|m|s)"
_DURATION_RE = re.compile(rf"^(?:{_PART})+$")
_PART_RE = re.compile(_PART)
#: The JSON Schema pattern editors check strings against (plain numbers are seconds).
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|h|m|s))+$|^\d+(\.\d+)?$"

_HINT = "must be a duration like 500ms, 15s or 2m"


def _shown(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def parse_duration(value: object) -> float:
    """Parse ``500ms``, ``15s``, ``2m``, ``1h``, ``1m30s`` or a number of seconds.

    Raises ``ValueError`` (a ``PydanticCustomError``) with a message meant for users.
    Bounds (> 0, <= 24 h) are checked by the annotated types, not here.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("duration", f"{_HINT} (got {_shown(value)})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            negative = text.startswith("-")
            body = text[1:] if negative else text
            if not _DURATION_RE.match(body):
                raise PydanticCustomError("duration", f"{_HINT} (got {_shown(value)})") from None
            seconds = sum(float(n) * UNITS[u] for n, u in _PART_RE.findall(body))
            seconds = -seconds if negative else seconds
    else:
        raise PydanticCustomError("duration", f"{_HINT} (got a {type(value).__name__})")
    if not math.isfinite(seconds):
        raise PydanticCustomError("duration", f"{_HINT} (got {_shown(value)})")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form of seconds: ``0.5`` -> ``500ms``, ``120`` -> ``2m``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _bounded(*, minimum: float, allow_equal: bool) -> BeforeValidator:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < minimum or (seconds == minimum and not allow_equal):
            bound = (
                f"at least {format_duration(minimum)}"
                if allow_equal
                else f"greater than {format_duration(minimum)}"
            )
            raise PydanticCustomError("duration", f"must be {bound} (got {_shown(value)})")
        if seconds > MAX_SECONDS:
            raise PydanticCustomError("duration", f"must be at most 24h (got {_shown(value)})")
        return seconds

    return BeforeValidator(check)


def _schema(*, minimum: float, allow_equal: bool) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number", "maximum": MAX_SECONDS}
    number["minimum" if allow_equal else "exclusiveMinimum"] = minimum
    return WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, number],
            "description": "a duration: 500ms, 15s, 2m, 1h, 1m30s, or a number of seconds",
        }
    )


#: A window: more than 0 s, at most 24 h. Validates to float seconds.
Duration = Annotated[
    float, _bounded(minimum=0, allow_equal=False), _schema(minimum=0, allow_equal=False)
]
#: A duration that may be 0 (for example no warm-up). Validates to float seconds.
NonNegativeDuration = Annotated[
    float, _bounded(minimum=0, allow_equal=True), _schema(minimum=0, allow_equal=True)
]
#: A certificate lifetime: X.509 validity has 1 s resolution, so at least 1 s.
CertLifetime = Annotated[
    float, _bounded(minimum=1, allow_equal=True), _schema(minimum=1, allow_equal=True)
]
