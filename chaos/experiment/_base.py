"""Shared pieces of the spec models: the base config, strict scalars, field-located errors."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError


class Setup(enum.StrEnum):
    """The three ways of putting a proxy in the request path, and ``baseline`` without one.

    The one definition of the setup names: the spec, the CLI and every platform use it.
    ``baseline`` is the same demo chain with no proxy at all (plaintext, no token check):
    the reference a cost measurement subtracts; no fault can target it.
    """

    SIDECAR = "sidecar"
    MESH = "mesh"
    AMBIENT = "ambient"
    BASELINE = "baseline"


#: A setup as an experiment file names it (validated into :class:`Setup`).
SetupName = Setup
#: The setups with proxies (what an experiment runs unless it lists its own).
ALL_SETUPS: tuple[Setup, ...] = (Setup.SIDECAR, Setup.MESH, Setup.AMBIENT)
#: Every setup name, ``baseline`` included.
SETUP_NAMES: tuple[Setup, ...] = tuple(Setup)

# Strict numbers: YAML's `yes`, `"3"` or `3.5` must not turn silently into an int.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
#: 0 < p <= 1.
Share = Annotated[float, Strict(), Field(gt=0, le=1)]
#: 0 <= p <= 1.
Rate = Annotated[float, Strict(), Field(ge=0, le=1)]
#: 0 < p <= 100.
Percent = Annotated[float, Strict(), Field(gt=0, le=100)]
#: A lower-case, path- and label-safe name: `checkout`, `gameday-1`, `node-2`.
Slug = Annotated[
    str, Strict(), Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
]


class SpecModel(BaseModel):
    """Base of every spec model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)


def field_error(at: str, message: str) -> PydanticCustomError:
    """An error of a cross-field check, located at ``at`` (dotted, relative to the model).

    Pydantic locates a model validator's error at the model itself; the loader reads
    ``ctx["at"]`` to point the user at the field (and line) that has to change.
    """
    return PydanticCustomError(
        "spec_field", message.replace("{", "(").replace("}", ")"), {"at": at}
    )
