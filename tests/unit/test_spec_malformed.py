"""Every file of the malformed corpus is rejected with one SpecError at the right field and line."""

from __future__ import annotations

import pytest

from chaos.errors import SpecError
from chaos.spec import SpecErrorGroup, load_experiment
from tests.unit.malformed import CORPUS_DIR, MalformedCase, cases

CASES = cases()


def test_corpus_is_complete() -> None:
    listed = {c.path.name for c in CASES}
    on_disk = {p.name for p in CORPUS_DIR.glob("*.yaml")} - {"expected.yaml"}
    assert listed == on_disk
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_file_is_rejected_at_its_field_and_line(case: MalformedCase) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(case.path)
    error = info.value
    assert not isinstance(error, SpecErrorGroup), f"more than one error: {error}"
    assert error.exit_code == 2
    assert (error.field, error.line) == (case.field, case.line), str(error)
    assert case.says in error.message
    text = str(error)
    assert "\n" not in text
    assert text.startswith(str(case.path) + (f":{case.line}" if case.line else "") + ": ")
    if case.field:
        assert f": {case.field}: " in text
