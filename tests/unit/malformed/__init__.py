"""The malformed experiment corpus: one YAML file per case, expectations in ``expected.yaml``.

Reuse it anywhere (the CLI test checks exit code 2 with it)::

    from tests.unit.malformed import cases
    for case in cases(): ... case.path, case.field, case.line, case.says
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CORPUS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class MalformedCase:
    """One malformed file and what its error must say."""

    path: Path
    #: The dotted field the error names; None for a whole-file problem (empty, not YAML, ...).
    field: str | None
    #: The 1-based line the error points at; None where there is no line (an empty file).
    line: int | None
    #: A phrase the message must contain.
    says: str
    #: Found by the platform's check of the workload (unknown targets), not the schema.
    platform: bool = False

    @property
    def id(self) -> str:
        return self.path.stem


def cases() -> list[MalformedCase]:
    """Every case of the corpus, sorted by file name."""
    expected = yaml.safe_load((CORPUS_DIR / "expected.yaml").read_text(encoding="utf-8"))
    return [
        MalformedCase(
            path=CORPUS_DIR / name,
            field=entry["field"],
            line=entry["line"],
            says=entry["says"],
            platform=bool(entry.get("platform", False)),
        )
        for name, entry in sorted(expected.items())
    ]
