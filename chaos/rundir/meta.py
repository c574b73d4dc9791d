"""``meta.json`` of a run directory: what ran, with which versions, and how it ended.

The engine writes it with ``write_meta`` when a run ends (and may write it at the
start with ``finished_utc``/``exit_code`` unset); the report, JUnit and the
history store read it with ``read_meta``. Written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import InputError
from chaos.outpaths import replace_file
from chaos.rundir import META_FILE
from chaos.rundir.dataplane import Table, tables_from_json, tables_to_json

#: A parameter value: parameters are shown in the report's method section as they are.
ParamValue = str | int | float | bool | None


@dataclass(frozen=True)
class RunMeta:
    """One run's identity, versions and outcome (UTC times as ISO-8601 strings)."""

    tool_version: str
    envoy_version: str
    locust_version: str
    python_version: str
    seed: int
    experiment_name: str
    started_utc: str
    finished_utc: str | None = None
    exit_code: int | None = None
    setups: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    #: Random, drawn once per run: two runs of one experiment started in the same second
    #: (a CI matrix, two people) stay two runs. Empty in meta files written before it.
    run_uid: str = ""
    #: Each setup's data-plane table, as the journal recorded it (empty in older runs).
    dataplane: Mapping[str, Table] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """A stable identity of the run: the experiment, when it started, its random uid.

        A copy of the run directory keeps its ``meta.json``, so it keeps its identity.
        """
        base = f"{self.experiment_name}@{self.started_utc}"
        return f"{base}#{self.run_uid}" if self.run_uid else base

    def to_dict(self) -> dict[str, object]:
        """The JSON form (lists for the tuples, a plain dict for the parameters)."""
        d = asdict(self)
        d["setups"] = list(self.setups)
        d["faults"] = list(self.faults)
        d["parameters"] = dict(self.parameters)
        d["dataplane"] = tables_to_json(self.dataplane)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = META_FILE) -> RunMeta:
        """Inverse of ``to_dict``; ``InputError`` naming ``source`` on a missing or mistyped key."""
        try:
            params = d.get("parameters") or {}
            if not isinstance(params, Mapping):
                raise TypeError("parameters must be an object")
            for key, value in params.items():
                if not isinstance(value, str | int | float | bool | type(None)):
                    raise TypeError(f"parameter {key!r} must be a scalar")
            return cls(
                tool_version=str(d["tool_version"]),
                envoy_version=str(d["envoy_version"]),
                locust_version=str(d["locust_version"]),
                python_version=str(d["python_version"]),
                seed=int(d["seed"]),
                experiment_name=str(d["experiment_name"]),
                started_utc=str(d["started_utc"]),
                finished_utc=None if d.get("finished_utc") is None else str(d["finished_utc"]),
                exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
                setups=tuple(str(s) for s in d.get("setups") or ()),
                faults=tuple(str(f) for f in d.get("faults") or ()),
                parameters={str(k): v for k, v in params.items()},
                run_uid=str(d.get("run_uid") or ""),
                dataplane=tables_from_json(d.get("dataplane")),
            )
        except KeyError as exc:
            raise InputError(f"{source}: {exc.args[0]} is missing") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(
                f"{source}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            ) from exc


def write_meta(run_dir: Path | str, meta: RunMeta) -> Path:
    """Write ``meta.json`` into ``run_dir`` atomically and return its path (``OutputError``)."""
    text = json.dumps(meta.to_dict(), indent=2) + "\n"
    return replace_file(Path(run_dir) / META_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def read_meta(run_dir: Path | str) -> RunMeta:
    """Read ``meta.json`` from ``run_dir``; ``InputError`` when missing or malformed."""
    path = Path(run_dir) / META_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable meta file: {why}") from exc
    if not isinstance(raw, Mapping):
        raise InputError(f"{path}: not a JSON object")
    return RunMeta.from_dict(raw, str(path))
